-- Marketing consent per (player, message channel, product of crm.contract.PRODUCTS), in two
-- readings, both decided by the latest change that concerns the product, in the order of
-- int_consents_versioned (time, a withdrawal after a grant at the same instant, event id):
--
--   * consent_state (consented by name, for jurisdictions that ask for consent per product,
--     crm/campaigns/jurisdictions.py product_consent_required): the latest of the changes naming the
--     product (consent.granted / consent.revoked with it) and of the channel-wide withdrawals
--     (consent.revoked without a product, crm.unsubscribe, crm.complaint, a withdrawal of every
--     channel) is a grant naming it. A grant without a product names none (fail closed).
--   * is_withdrawn (everywhere): the latest of every change concerning the product, the
--     channel-wide grants included, is a withdrawal: the player said no to it and has not
--     said yes since. Never promoted on the channel, in any jurisdiction.
--
-- Only rows with a named consent or a withdrawal are kept: a product with neither has no row.
-- profiling is not a message channel and has no products here.

with changes as (

    select * from {{ ref('int_consents_versioned') }}
    where channel <> 'profiling'

),

products as (

    select {{ unnest_array(string_array(products())) }} as product

),

relevant as (

    -- a change naming the product, or a channel-wide one (no product)
    select
        c.player_id,
        c.channel,
        p.product,
        c.event_id,
        c.changed_at,
        c.change_source,
        c.consent_state,
        c.consent_version,
        c.product is not null as names_it
    from changes as c
    inner join products as p
        on c.product = p.product or c.product is null

),

decided as (

    select
        player_id,
        channel,
        product,
        coalesce(
            max_by(consent_state, consent_version) filter (where names_it or not consent_state), false
        ) as consent_state,
        not max_by(consent_state, consent_version) as is_withdrawn,
        max_by(changed_at, consent_version) as changed_at,
        max_by(change_source, consent_version) as change_source,
        max_by(event_id, consent_version) as event_id
    from relevant
    group by player_id, channel, product

)

select * from decided
where consent_state or is_withdrawn
