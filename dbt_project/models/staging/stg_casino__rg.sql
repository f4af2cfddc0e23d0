-- Responsible-gambling events: limits, limit hits, reality checks, self-exclusions
-- (scope brand | operator | cooling_off).
with rg_events as (

    select
        *,
        {{ parse_payload({
            'kind': 'VARCHAR', 'value': 'BIGINT', 'session_minutes': 'BIGINT',
            'scope': 'VARCHAR', 'until': 'VARCHAR'
        }) }} as p
    from {{ ref('stg_casino__events') }}
    where {{ event_family('rg') }}

)

select
    {{ event_envelope() }},
    p.kind as limit_kind,
    p.value as limit_value,
    p.session_minutes,
    p.scope as exclusion_scope,
    {{ utc_timestamp('p.until') }} as exclusion_until
from rg_events
