-- Outcome labels for feature snapshots whose label window is complete, i.e.
-- as_of_date + churn_window_days <= the last date with data (latest occurred_at date + 1,
-- events before the run's as-of date only).
--   churned      : no active day in [as_of_date, as_of_date + churn_window_days)
--   deposited_7d : a captured deposit in [as_of_date, as_of_date + 7)
-- Labels deliberately look after the snapshot date; features never do.
{% set churn_days = var('churn_window_days') | int %}

with data_end as (

    select cast(max(occurred_at) as date) + 1 as end_date
    from {{ ref('stg_casino__events') }}

),

labelled_dates as (

    select distinct s.as_of_date
    from {{ ref('player_feature_snapshots') }} as s
    where s.as_of_date + {{ churn_days }} <= (select end_date from data_end)

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
    not coalesce(a.active_in_churn_window, false) as churned,
    coalesce(a.deposited_in_7d, false) as deposited_7d
from {{ ref('player_feature_snapshots') }} as s
inner join labelled_dates as d on s.as_of_date = d.as_of_date
left join future_activity as a
    on s.player_id = a.player_id
    and s.as_of_date = a.as_of_date
