-- Message feedback: delivery, open, click, unsubscribe, complaint, bounce.
with message_events as (

    select
        *,
        {{ parse_payload({'delivery_id': 'VARCHAR', 'campaign_id': 'VARCHAR', 'channel': 'VARCHAR'}) }} as p
    from {{ ref('stg_casino__events') }}
    -- a prefix filter is pushed into the Parquet scan (an IN list is not)
    where event_type like 'crm.%'

)

select
    event_id,
    event_type,
    player_id,
    brand_id,
    occurred_at,
    p.delivery_id,
    p.campaign_id,
    p.channel
from message_events
