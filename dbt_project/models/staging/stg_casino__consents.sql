with consent_events as (

    select
        *,
        {{ parse_payload({
            'channel': 'VARCHAR', 'product': 'VARCHAR', 'purpose': 'VARCHAR', 'source': 'VARCHAR'
        }) }} as p
    from {{ ref('stg_casino__events') }}
    where {{ event_family('consent') }}

)

select
    {{ event_envelope() }},
    p.channel,
    p.product,
    p.purpose,
    p.source as consent_source,
    event_type = 'consent.granted' as is_granted
from consent_events
