-- Exposures of past randomized campaigns, the training data of the uplift models: one row
-- per (campaign_id, player_id) sent before the run's as-of date (stg_exports__campaign_
-- assignments), arm treatment | control (other arm labels are left out).
--
-- Features: the player's feature snapshot as of the send day S (int_campaign_sends_featurized:
-- the spec's features from days before S only, so no feature sees the campaign; players
-- without activity in the 90 days before S are kept with zero activity). Every snapshot
-- column but the keys is selected (`s.* exclude`), so features added to the spec flow
-- through without touching this model. Only an assignment of a player not registered
-- before S has no snapshot and is dropped.
--
-- Outcomes (from fct_player_daily, days after the send by design), send day S:
--   deposited_7d : a captured (or imported) deposit on a day in [S, S + 7); NULL while
--                  that window is incomplete
--   ngr_eur_14d  : sum of ngr_eur (EUR cents) over days in [S, S + 14); NULL while incomplete
--   outcome_complete : S + 14 <= the last date with data + 1 (data before the run's as-of
--                  only, the labels' rule), i.e. the 14-day window ended before the as-of.
{% set as_of = run_as_of_date() %}

with data_end as (

    select least(
        {{ as_of }},
        greatest(
            (select cast(max(occurred_at) as date) + 1 from {{ ref('stg_casino__events') }}),
            (select max(activity_date) + 1 from {{ ref('stg_imported__player_daily') }})
        )
    ) as end_date

),

exposures as (

    select
        campaign_id,
        player_id,
        arm,
        arm = 'treatment' as treated,
        channel,
        sent_at,
        cast(sent_at as date) as sent_date,
        cast(sent_at as date) as features_as_of
    from {{ ref('stg_exports__campaign_assignments') }}
    where arm in ('treatment', 'control')

),

outcomes as (

    select
        e.campaign_id,
        e.player_id,
        bool_or(f.deposits > 0 and f.activity_date < e.sent_date + 7) as deposited_in_7d,
        sum(f.ngr_eur) as ngr_in_14d
    from exposures as e
    inner join {{ ref('fct_player_daily') }} as f
        on f.player_id = e.player_id
        and f.activity_date >= e.sent_date
        and f.activity_date < e.sent_date + 14
    group by e.campaign_id, e.player_id

)

select
    e.campaign_id,
    e.player_id,
    e.arm,
    e.treated,
    e.channel,
    e.sent_at,
    e.features_as_of,
    case when e.sent_date + 7 <= x.end_date then coalesce(o.deposited_in_7d, false) end as deposited_7d,
    case when e.sent_date + 14 <= x.end_date then cast(coalesce(o.ngr_in_14d, 0) as bigint) end as ngr_eur_14d,
    e.sent_date + 14 <= x.end_date as outcome_complete,
    s.* exclude (player_id, as_of_date)
from exposures as e
inner join {{ ref('int_campaign_sends_featurized') }} as s
    on s.player_id = e.player_id
    and s.as_of_date = e.features_as_of
cross join data_end as x
left join outcomes as o
    on o.campaign_id = e.campaign_id
    and o.player_id = e.player_id
