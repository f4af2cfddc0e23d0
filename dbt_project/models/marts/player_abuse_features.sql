-- Bonus-abuse behaviour features (issue 19, docs/risk_score.md): one row per (player, as-of date D)
-- for every player with a bonus.issued before D. Two as-of dates per player (one row when they are
-- the same day):
--   * the training anchor: the day of the first bonus.issued + abuse_observation_days
--     (player_abuse_labels labels these rows, with what happens after D);
--   * the run's as-of date (what crm.risk.score scores).
-- Point in time: a row at D reads only events before D 00:00 UTC (daily facts of days before D,
-- event rows with occurred_at < D), and other accounts registered before D. The cluster features
-- (player_clusters) are joined in Python: clusters are drawn after dbt (crm.risk.linking).
{%- set as_of = run_as_of_date() %}
{%- set obs_days = var('abuse_observation_days') | int %}
{%- set burst_seconds = (var('identity_burst_hours') | int) * 3600 %}
{%- set max_accounts = var('identity_max_accounts') | int %}
{%- set min_deposit = var('abuse_min_deposit') %}

with fx as (

    select currency, eur_per_unit from {{ ref('fx_rates') }}

),

first_bonus as (

    select player_id, max(brand_id) as brand_id, min(occurred_at) as first_bonus_at
    from {{ ref('stg_casino__bonuses') }}
    where event_type = 'bonus.issued'
      and occurred_at < cast({{ as_of }} as timestamp)
    group by player_id

),

anchors as (

    -- the training anchor (when already reached) and the run's as-of date, one row per date
    select
        brand_id,
        player_id,
        first_bonus_at,
        as_of_date,
        bool_or(is_training_anchor) as is_training_anchor,
        bool_or(not is_training_anchor) as is_run_date
    from (
        select brand_id, player_id, first_bonus_at,
               cast(first_bonus_at as date) + {{ obs_days }} as as_of_date, true as is_training_anchor
        from first_bonus
        where cast(first_bonus_at as date) + {{ obs_days }} <= {{ as_of }}
        union all
        select brand_id, player_id, first_bonus_at, {{ as_of }} as as_of_date, false as is_training_anchor
        from first_bonus
    ) as a
    group by brand_id, player_id, first_bonus_at, as_of_date

),

registrations as (

    select player_id, max(brand_id) as brand_id, min(occurred_at) as registered_at, max(country) as country
    from {{ ref('stg_casino__players') }}
    where event_type = 'player.registered'
    group by player_id

),

daily as (

    select
        a.player_id,
        a.as_of_date,
        sum(f.stake_eur) as stake_eur,
        sum(f.bonus_stake_eur) as bonus_stake_eur,
        sum(case when f.activity_date >= cast(a.first_bonus_at as date) then f.stake_eur else 0 end)
            as stake_since_bonus_eur,
        sum(f.deposits) as deposits,
        sum(f.deposit_eur) as deposit_eur,
        sum(f.withdrawal_eur) as withdrawal_eur,
        sum(f.bonuses_issued) as bonuses_issued,
        sum(f.bonuses_consumed) as bonuses_consumed,
        count(case when f.is_active then 1 end) as days_active,
        max(case when f.is_active then f.activity_date end) as last_active_date
    from anchors as a
    inner join {{ ref('fct_player_daily') }} as f
        on f.player_id = a.player_id
        and f.activity_date < a.as_of_date
    group by a.player_id, a.as_of_date

),

games as (

    -- stake by game kind: table and live games, and low-volatility games (seeds/games.csv)
    select
        a.player_id,
        a.as_of_date,
        sum(case when g.game_category in ('table', 'live') then g.stake * fx.eur_per_unit else 0 end)
            as table_live_stake,
        sum(case when s.volatility = 'low' then g.stake * fx.eur_per_unit else 0 end) as low_volatility_stake,
        sum(g.stake * fx.eur_per_unit) as stake
    from anchors as a
    inner join {{ ref('int_bets_daily_by_game') }} as g
        on g.player_id = a.player_id
        and g.activity_date < a.as_of_date
    left join fx on fx.currency = g.currency
    left join {{ ref('games') }} as s on s.game = g.game
    group by a.player_id, a.as_of_date

),

wagering as (

    -- the wagering the bonuses issued before D ask for (cost x multiple, EUR cents)
    select
        a.player_id,
        a.as_of_date,
        sum(case when b.event_type = 'bonus.issued' then b.cost * fx.eur_per_unit * coalesce(b.wagering, 1) end)
            as wagering_required_eur,
        min(case when b.event_type = 'bonus.consumed' then b.occurred_at end) as first_consumed_at
    from anchors as a
    inner join {{ ref('stg_casino__bonuses') }} as b
        on b.player_id = a.player_id
        and b.occurred_at < cast(a.as_of_date as timestamp)
        and b.event_type in ('bonus.issued', 'bonus.consumed')
    left join fx on fx.currency = b.currency
    group by a.player_id, a.as_of_date

),

deposits_ranked as (

    select
        player_id,
        occurred_at,
        amount,
        row_number() over (partition by player_id order by occurred_at, event_id) as n
    from {{ ref('stg_casino__payments') }}
    where event_type = 'payment.captured'

),

withdrawals as (

    -- the first withdrawal after the first bonus, and after the first bonus consumed, before D
    select
        a.player_id,
        a.as_of_date,
        min(p.occurred_at) as first_withdrawal_at,
        min(case when p.occurred_at >= w.first_consumed_at then p.occurred_at end) as withdrawal_after_consumed_at
    from anchors as a
    left join wagering as w on w.player_id = a.player_id and w.as_of_date = a.as_of_date
    inner join {{ ref('stg_casino__payments') }} as p
        on p.player_id = a.player_id
        and p.event_type = 'payment.withdraw'
        and p.occurred_at >= a.first_bonus_at
        and p.occurred_at < cast(a.as_of_date as timestamp)
    group by a.player_id, a.as_of_date

),

networks as (

    -- each account's network pseudonyms; a value shared by more than identity_max_accounts accounts
    -- (a carrier's NAT, a big office) says nothing about a burst and is left out, as in the linking
    select i.brand_id, i.player_id, i.pseudonym
    from {{ ref('int_player_identifiers') }} as i
    inner join (
        select brand_id, pseudonym
        from {{ ref('int_player_identifiers') }}
        where attribute = 'ip_net'
        group by brand_id, pseudonym
        having count(distinct player_id) <= {{ max_accounts }}
    ) as v on v.brand_id = i.brand_id and v.pseudonym = i.pseudonym
    where i.attribute = 'ip_net'

),

bursts as (

    -- other accounts of the brand on one of the account's networks, registered before D and within
    -- identity_burst_hours of the account's own registration
    select
        a.player_id,
        a.as_of_date,
        count(distinct o.player_id) as registration_burst
    from anchors as a
    inner join networks as n on n.brand_id = a.brand_id and n.player_id = a.player_id
    inner join networks as o on o.brand_id = n.brand_id and o.pseudonym = n.pseudonym and o.player_id <> n.player_id
    inner join registrations as r on r.player_id = a.player_id
    inner join registrations as ro on ro.player_id = o.player_id
    where ro.registered_at < cast(a.as_of_date as timestamp)
      and abs({{ seconds_between('r.registered_at', 'ro.registered_at') }}) <= {{ burst_seconds }}
    group by a.player_id, a.as_of_date

)

select
    a.brand_id,
    a.player_id,
    a.as_of_date,
    a.is_training_anchor,
    a.is_run_date,
    a.first_bonus_at,
    r.country,
    cast(coalesce(d.stake_eur, 0) as bigint) as stake_eur,
    cast(coalesce(d.bonus_stake_eur, 0) as double) / nullif(d.stake_eur, 0) as bonus_stake_share,
    cast(coalesce(d.stake_since_bonus_eur, 0) as double) / nullif(w.wagering_required_eur, 0) as wagering_ratio,
    {{ seconds_between('a.first_bonus_at', 'x.first_withdrawal_at') }} / 3600.0 as hours_bonus_to_withdrawal,
    {{ seconds_between('w.first_consumed_at', 'x.withdrawal_after_consumed_at') }} / 3600.0
        as hours_consumed_to_withdrawal,
    case
        {%- for country, minimum in min_deposit.items() %}
        when r.country = '{{ country }}' then cast(fd.amount as double) / {{ minimum }}
        {%- endfor %}
    end as first_deposit_vs_min,
    {{ seconds_between('r.registered_at', 'fd.occurred_at') }} / 3600.0 as hours_registration_to_deposit,
    g.table_live_stake / nullif(g.stake, 0) as table_live_stake_share,
    g.low_volatility_stake / nullif(g.stake, 0) as low_volatility_stake_share,
    cast(coalesce(d.days_active, 0) as integer) as days_active,
    cast(coalesce(d.deposits, 0) as integer) as deposits,
    cast(coalesce(d.withdrawal_eur, 0) as double) / nullif(d.deposit_eur, 0) as cashout_ratio,
    cast(coalesce(d.bonuses_issued, 0) as integer) as bonuses_issued,
    cast(coalesce(d.bonuses_consumed, 0) as integer) as bonuses_consumed,
    {{ days_between('d.last_active_date', 'a.as_of_date') }} as days_since_last_active,
    {{ days_between('cast(r.registered_at as date)', 'a.as_of_date') }} as days_since_registration,
    cast(coalesce(b.registration_burst, 0) as integer) as registration_burst
from anchors as a
left join registrations as r on r.player_id = a.player_id
left join daily as d on d.player_id = a.player_id and d.as_of_date = a.as_of_date
left join games as g on g.player_id = a.player_id and g.as_of_date = a.as_of_date
left join wagering as w on w.player_id = a.player_id and w.as_of_date = a.as_of_date
left join withdrawals as x on x.player_id = a.player_id and x.as_of_date = a.as_of_date
left join deposits_ranked as fd on fd.player_id = a.player_id and fd.n = 1 and fd.occurred_at < cast(a.as_of_date as timestamp)
left join bursts as b on b.player_id = a.player_id and b.as_of_date = a.as_of_date
