with bonus_events as (

    select
        *,
        {{ parse_payload({
            'offer_id': 'VARCHAR', 'template': 'VARCHAR', 'cost': 'BIGINT',
            'currency': 'VARCHAR', 'campaign_id': 'VARCHAR', 'wagering': 'DOUBLE'
        }) }} as p
    from {{ ref('stg_casino__events') }}
    where {{ event_family('bonus') }}

)

select
    {{ event_envelope() }},
    p.offer_id,
    p.template,
    p.cost,
    p.currency,
    p.campaign_id,
    p.wagering
from bonus_events
