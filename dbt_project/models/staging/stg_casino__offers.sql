-- Offers POST /v1/offers/generate issued (offer.issued, written by the service itself): the
-- casino's bonus.* events carry the offer_id back (fct_offers joins them).
with offer_events as (

    select
        *,
        {{ parse_payload({
            'offer_id': 'VARCHAR', 'template': 'VARCHAR', 'cost': 'BIGINT', 'currency': 'VARCHAR',
            'campaign_id': 'VARCHAR', 'intent': 'VARCHAR', 'offer_name': 'VARCHAR', 'channel': 'VARCHAR',
            'expires_at': 'VARCHAR'
        }) }} as p
    from {{ ref('stg_casino__events') }}
    where {{ event_family('offer') }}

)

select
    {{ event_envelope() }},
    p.offer_id,
    p.template,
    p.cost,
    p.currency,
    p.campaign_id,
    p.intent,
    p.offer_name,
    p.channel,
    {{ utc_timestamp('p.expires_at') }} as expires_at
from offer_events
