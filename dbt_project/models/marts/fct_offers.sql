-- One row per offer POST /v1/offers/generate issued before the as-of date, with what became of it:
-- the casino's bonus.* events that carry its offer_id (same brand and player): credited
-- (bonus.issued), consumed, expired. `crm offers report` reads it.
{% set as_of = run_as_of_date() %}

with issued as (

    select *
    from {{ ref('stg_casino__offers') }}
    where occurred_at < cast({{ as_of }} as timestamp)
    qualify row_number() over (partition by brand_id, offer_id order by occurred_at, event_id) = 1

),

redemptions as (

    select
        brand_id,
        player_id,
        offer_id,
        min(occurred_at) filter (where event_type = 'bonus.issued') as credited_at,
        min(occurred_at) filter (where event_type = 'bonus.consumed') as consumed_at,
        min(occurred_at) filter (where event_type = 'bonus.expired') as expired_at,
        max(cost) filter (where event_type = 'bonus.issued') as credited_cost_minor,
        max(currency) filter (where event_type = 'bonus.issued') as credited_currency
    from {{ ref('stg_casino__bonuses') }}
    where offer_id is not null and occurred_at < cast({{ as_of }} as timestamp)
    group by brand_id, player_id, offer_id

)

select
    i.offer_id,
    i.brand_id,
    i.player_id,
    i.occurred_at as issued_at,
    i.expires_at,
    i.intent,
    i.offer_name,
    i.template,
    i.channel,
    i.cost as cost_eur_cents,
    r.credited_at,
    r.consumed_at,
    r.expired_at,
    r.credited_cost_minor,
    r.credited_currency,
    case
        when r.consumed_at is not null then 'consumed'
        when r.expired_at is not null then 'expired'
        when r.credited_at is not null then 'credited'
        else 'issued'
    end as status
from issued as i
left join redemptions as r
    on r.brand_id = i.brand_id and r.player_id = i.player_id and r.offer_id = i.offer_id
