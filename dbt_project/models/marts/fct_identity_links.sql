-- Links between accounts of one brand that share identifiers (issue 19; docs/abuse.md): each pair
-- sharing values of at least identity_min_types independent evidence types (device, network,
-- payment, address, name, contact: macros/identity.sql), with a frequency-weighted score.
--
-- Weight of a shared value: ln(accounts of the brand with any identifier / accounts sharing the
-- value), the information of "these two agree on it" (a Fellegi-Sunter agreement weight with the
-- u-probability taken from the value's own frequency). A value shared by more than
-- identity_max_accounts accounts (a carrier's NAT address, a big office network, a common name) is
-- ignored outright: it says little, and its pairs would grow with the square of its accounts.
-- Per type the pair's strongest shared value counts (an IP and its /24 are one type); the score
-- is the sum over types. The pairs are generated in SQL on both engines; the connected components
-- (clusters) are drawn from them in Python (crm.risk.linking: player_clusters).
{%- set max_accounts = var('identity_max_accounts') | int %}
{%- set min_types = var('identity_min_types') | int %}
{%- set min_score = var('identity_min_score') | float %}

with ids as (

    select brand_id, player_id, attribute, attribute_type, pseudonym, first_seen_at
    from {{ ref('int_player_identifiers') }}
    where attribute_type is not null

),

brand_accounts as (

    select brand_id, count(distinct player_id) as accounts
    from {{ ref('int_player_identifiers') }}
    group by brand_id

),

value_use as (

    select brand_id, attribute, pseudonym, count(*) as accounts
    from ids
    group by brand_id, attribute, pseudonym

),

shared as (

    select
        i.brand_id, i.player_id, i.attribute, i.attribute_type, i.pseudonym, i.first_seen_at,
        ln(cast(b.accounts as double) / v.accounts) as weight
    from ids i
    join value_use v
        on i.brand_id = v.brand_id and i.attribute = v.attribute and i.pseudonym = v.pseudonym
    join brand_accounts b
        on i.brand_id = b.brand_id
    where v.accounts between 2 and {{ max_accounts }}

),

pair_types as (

    select
        a.brand_id,
        a.player_id as player_a,
        b.player_id as player_b,
        a.attribute_type,
        max(a.weight) as weight,
        min(greatest(a.first_seen_at, b.first_seen_at)) as since
    from shared a
    join shared b
        on a.brand_id = b.brand_id and a.attribute = b.attribute and a.pseudonym = b.pseudonym
        and a.player_id < b.player_id
    group by a.brand_id, a.player_id, b.player_id, a.attribute_type

),

pairs as (

    select
        brand_id,
        player_a,
        player_b,
        count(*) as shared_types,
        sum(weight) as score,
        {{ sorted_string_agg('attribute_type', ',') }} as linked_by,
        max(since) as linked_since
    from pair_types
    group by brand_id, player_a, player_b

)

select brand_id, player_a, player_b, shared_types, score, linked_by, linked_since
from pairs
where shared_types >= {{ min_types }} and score >= {{ min_score }}
