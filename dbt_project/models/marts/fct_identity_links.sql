-- Links between accounts of one brand that share identifiers (issue 19; docs/abuse.md): each pair
-- sharing values of at least identity_min_types independent evidence types (device, place,
-- payment, name, contact: macros/identity.sql), registered close in time or sharing many types,
-- with a frequency-weighted score.
--
-- Weight of a shared value: ln(accounts of the brand with any identifier / accounts sharing the
-- value), the information of "these two agree on it" (a Fellegi-Sunter agreement weight with the
-- u-probability taken from the value's own frequency). A value shared by more than
-- identity_max_accounts accounts (a carrier's NAT address, a big office network, a common name) is
-- ignored outright: it says little, and its pairs would grow with the square of its accounts.
-- Per type the pair's strongest shared value counts (an IP and its /24 are one type); the score
-- is the sum over types.
--
-- Two types are not enough on their own: a family shares a home (place) and often a device or a
-- card. What sets a ring apart is that its accounts are opened in a burst: a pair links when its
-- registrations (first identifier seen) are at most identity_burst_hours apart, or when the two
-- accounts have one name and one birth date: one person (a self-excluded player's new account
-- months later reuses name and birth date with a device, a card or the address; a family shares
-- a home and a surname, rarely a name form and a birth date). The pairs are generated in SQL on both engines; the connected
-- components (clusters) are drawn from them in Python (crm.risk.linking: player_clusters).
{%- set max_accounts = var('identity_max_accounts') | int %}
{%- set min_types = var('identity_min_types') | int %}
{%- set burst_hours = var('identity_burst_hours') | int %}
{%- set min_score = var('identity_min_score') | float %}

with ids as (

    select brand_id, player_id, attribute_type, pseudonym, min(first_seen_at) as first_seen_at
    from {{ ref('int_player_identifiers') }}
    where attribute_type is not null
    group by brand_id, player_id, attribute_type, pseudonym

),

registered as (

    select i.brand_id, i.player_id, min(i.first_seen_at) as registered_at, min(b.birth_date) as birth_date
    from {{ ref('int_player_identifiers') }} i
    left join (
        select brand_id, player_id, min(birth_date) as birth_date
        from {{ ref('stg_casino__players') }}
        group by brand_id, player_id
    ) b
        on i.brand_id = b.brand_id and i.player_id = b.player_id
    group by i.brand_id, i.player_id

),

brand_accounts as (

    select brand_id, count(*) as accounts
    from registered
    group by brand_id

),

value_use as (

    -- both name forms are hashed under one label: a value is counted per type, not per key
    select brand_id, attribute_type, pseudonym, count(*) as accounts
    from ids
    group by brand_id, attribute_type, pseudonym

),

shared as (

    select
        i.brand_id, i.player_id, i.attribute_type, i.pseudonym, i.first_seen_at,
        ln(cast(b.accounts as double) / v.accounts) as weight,
        v.accounts
    from ids i
    join value_use v
        on i.brand_id = v.brand_id and i.attribute_type = v.attribute_type and i.pseudonym = v.pseudonym
    join brand_accounts b
        on i.brand_id = b.brand_id
    where v.accounts >= 2

),

blocking_types as (

    -- candidate pairs: two accounts sharing a value of a type other than the name, held by at most
    -- identity_max_accounts accounts (blocking, in record-linkage terms)
    select
        a.brand_id,
        a.player_id as player_a,
        b.player_id as player_b,
        a.attribute_type,
        max(a.weight) as weight,
        min(greatest(a.first_seen_at, b.first_seen_at)) as since
    from shared a
    join shared b
        on a.brand_id = b.brand_id and a.attribute_type = b.attribute_type and a.pseudonym = b.pseudonym
        and a.player_id < b.player_id
    where a.attribute_type <> 'name' and a.accounts <= {{ max_accounts }}
      and b.attribute_type <> 'name' and b.accounts <= {{ max_accounts }}
    group by a.brand_id, a.player_id, b.player_id, a.attribute_type

),

candidate_names as (

    -- each candidate pair with the first account's name forms, keyed by the second account and
    -- the form: the join below can only go through the pair (a join of the name forms with each
    -- other would make pairs by the square of a common name's accounts: 2.9 billion at 1 M players)
    select
        c.brand_id, c.player_a, c.player_b, a.weight, a.first_seen_at,
        c.player_b || '|' || a.pseudonym as wanted
    from (select distinct brand_id, player_a, player_b from blocking_types) c
    join shared a
        on a.brand_id = c.brand_id and a.player_id = c.player_a and a.attribute_type = 'name'

),

name_agreement as (

    -- the name corroborates a candidate pair, however common it is (its weight says how little
    -- a common one tells): name forms are coarse, and small name pools share them widely, so a
    -- cap would drop the very variants that link a ring ("Dave Green" ~ "David Green")
    select
        n.brand_id, n.player_a, n.player_b, 'name' as attribute_type,
        max(n.weight) as weight,
        min(greatest(n.first_seen_at, b.first_seen_at)) as since
    from candidate_names n
    join (
        select brand_id, player_id || '|' || pseudonym as held, first_seen_at
        from shared
        where attribute_type = 'name'
    ) b
        on b.brand_id = n.brand_id and b.held = n.wanted
    group by n.brand_id, n.player_a, n.player_b

),

pair_types as (

    select * from blocking_types
    union all
    select * from name_agreement

),

pairs as (

    select
        brand_id,
        player_a,
        player_b,
        count(*) as shared_types,
        sum(weight) as score,
        {{ sorted_string_agg('attribute_type', ',') }} as linked_by,
        max(case when attribute_type = 'name' then 1 else 0 end) = 1 as shares_name,
        max(since) as linked_since
    from pair_types
    group by brand_id, player_a, player_b
    having count(*) >= {{ min_types }}

)

select
    p.brand_id,
    p.player_a,
    p.player_b,
    p.shared_types,
    p.score,
    p.linked_by,
    p.linked_since,
    abs({{ seconds_between('ra.registered_at', 'rb.registered_at') }}) / 3600.0 as registration_gap_hours
from pairs p
join registered ra on p.brand_id = ra.brand_id and p.player_a = ra.player_id
join registered rb on p.brand_id = rb.brand_id and p.player_b = rb.player_id
where p.score >= {{ min_score }}
  and ((p.shares_name and ra.birth_date = rb.birth_date)
       or abs({{ seconds_between('ra.registered_at', 'rb.registered_at') }}) <= {{ burst_hours * 3600 }})
