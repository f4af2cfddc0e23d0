with consent_events as (

    select
        *,
        {{ parse_payload({
            'channel': 'VARCHAR', 'product': 'VARCHAR', 'purpose': 'VARCHAR', 'source': 'VARCHAR'
        }) }} as p
    from {{ ref('stg_casino__events') }}
    -- a prefix filter is pushed into the Parquet scan (an IN list is not)
    where event_type like 'consent.%'

)

select
    event_id,
    event_type,
    player_id,
    brand_id,
    occurred_at,
    p.channel,
    p.product,
    p.purpose,
    p.source as consent_source,
    event_type = 'consent.granted' as is_granted
from consent_events
