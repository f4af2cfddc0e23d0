-- Outcome labels per feature snapshot, each only where its own window is complete, i.e.
-- ends on or before the last date with data (latest occurred_at date or imported
-- activity_date, + 1; data before the run's as-of date only):
--   churned      : no active day in [as_of_date, as_of_date + churn_window_days);
--                  NULL while that window is incomplete
--   deposited_7d : a captured deposit in [as_of_date, as_of_date + 7);
--                  NULL while that window is incomplete
-- A snapshot gets a row as soon as one of its labels is complete (with the default 30-day
-- churn window: the deposit label is complete 23 days earlier than the churn label).
-- Labels deliberately look after the snapshot date; features never do.
{% set churn_days = var('churn_window_days') | int %}

with data_end as (

    select greatest(
        (select cast(max(occurred_at) as date) + 1 from {{ ref('stg_casino__events') }}),
        (select max(activity_date) + 1 from {{ ref('stg_imported__player_daily') }})
    ) as end_date

),

labelled_dates as (

    select
        s.as_of_date,
        s.as_of_date + {{ churn_days }} <= e.end_date as churn_complete,
        s.as_of_date + 7 <= e.end_date as deposit_complete
    from (select distinct as_of_date from {{ ref('player_feature_snapshots') }}) as s
    cross join data_end as e
    where s.as_of_date + {{ [churn_days, 7] | min }} <= e.end_date

),

future_activity as (

    -- range join of daily rows to the (few) labelled dates
    select
        f.player_id,
        d.as_of_date,
        bool_or(f.is_active and f.activity_date < d.as_of_date + {{ churn_days }}) as active_in_churn_window,
        bool_or(f.deposits > 0 and f.activity_date < d.as_of_date + 7) as deposited_in_7d
    from {{ ref('fct_player_daily') }} as f
    inner join labelled_dates as d
        on f.activity_date >= d.as_of_date
        and f.activity_date < d.as_of_date + {{ [churn_days, 7] | max }}
    group by f.player_id, d.as_of_date

)

select
    s.player_id,
    s.as_of_date,
    case when d.churn_complete then not coalesce(a.active_in_churn_window, false) end as churned,
    case when d.deposit_complete then coalesce(a.deposited_in_7d, false) end as deposited_7d
from {{ ref('player_feature_snapshots') }} as s
inner join labelled_dates as d on s.as_of_date = d.as_of_date
left join future_activity as a
    on s.player_id = a.player_id
    and s.as_of_date = a.as_of_date
