with bonus_events as (

    select
        *,
        {{ parse_payload({
            'offer_id': 'VARCHAR', 'template': 'VARCHAR', 'cost': 'BIGINT',
            'currency': 'VARCHAR', 'campaign_id': 'VARCHAR', 'wagering': 'DOUBLE'
        }) }} as p
    from {{ ref('stg_casino__events') }}
    -- a prefix filter is pushed into the Parquet scan (an IN list is not)
    where event_type like 'bonus.%'

)

select
    event_id,
    event_type,
    player_id,
    brand_id,
    occurred_at,
    p.offer_id,
    p.template,
    p.cost,
    p.currency,
    p.campaign_id,
    p.wagering
from bonus_events
