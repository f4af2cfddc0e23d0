-- Current marketing consent per (player, channel, product), for jurisdictions that ask for
-- consent per product (crm/jurisdictions.py: product_consent_required).
--
-- A product's state is decided by the latest change that concerns it, in the order of
-- int_consents_versioned (time, a withdrawal after a grant at the same instant, event id):
--   * a consent.granted / consent.revoked naming that product;
--   * a channel-wide withdrawal: consent.revoked without a product, crm.unsubscribe or
--     crm.complaint on the channel (they withdraw every product of the channel).
-- A grant without a product is not product-specific and grants no product (fail closed).
-- One row per product ever named in a consent event of the channel; profiling is not a
-- message channel and has no products here.

with changes as (

    select * from {{ ref('int_consents_versioned') }}
    where channel <> 'profiling'

),

products as (

    select distinct player_id, channel, product
    from changes
    where product is not null

),

relevant as (

    select
        p.player_id,
        p.channel,
        p.product,
        c.event_id,
        c.changed_at,
        c.change_source,
        c.consent_state,
        c.consent_version
    from products as p
    inner join changes as c
        on c.player_id = p.player_id
        and c.channel = p.channel
        and (c.product = p.product or (c.product is null and not c.consent_state))

)

select
    player_id,
    channel,
    product,
    arg_max(consent_state, consent_version) as consent_state,
    arg_max(changed_at, consent_version) as changed_at,
    arg_max(change_source, consent_version) as change_source,
    arg_max(event_id, consent_version) as event_id
from relevant
group by player_id, channel, product
