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
    -- a prefix filter is pushed into the Parquet scan (an IN list is not)
    where event_type like 'rg.%'

)

select
    event_id,
    event_type,
    player_id,
    brand_id,
    occurred_at,
    p.kind as limit_kind,
    p.value as limit_value,
    p.session_minutes,
    p.scope as exclusion_scope,
    {{ utc_timestamp('p.until') }} as exclusion_until
from rg_events
