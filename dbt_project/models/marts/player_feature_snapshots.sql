-- Point-in-time feature snapshots: one row per (player_id, as_of_date) at the run's as-of
-- date and every `snapshot_every_days` before it (`snapshot_count` dates, none earlier than
-- a week after the first day with data). Population at date D: registered (or first
-- imported) before D and active on at least one day in [D - 90, D - 1].
--
-- Point-in-time: a snapshot at D reads only rows of days before D — fct_player_daily and
-- int_activity_daily_dimensions (each row built from that day's events / imports alone),
-- limit kinds first set before D — and the player attributes valid before D (ASOF join on
-- the attribute history; macros/point_in_time.sql, shared with int_campaign_sends_featurized).
-- Windows of N days are activity_date in [D - N, D - 1].
-- Feature columns, windows and meanings: ml/features.py (FEATURES); the column list and
-- order are the contract in player_feature_snapshots.yml (and player_features.yml), checked
-- against the spec by tests/test_features.py.
--
-- Incremental by as-of date: a run builds the snapshots it does not hold yet (the run's as-of
-- date, a new grid date) and rebuilds those that a day rebuilt in the daily facts can change
-- (a snapshot at D reads days before D: refresh_days(), macros/incremental_days.sql); a
-- snapshot date that is no longer one of the run's is deleted (pre_hook).
{{ config(materialized=day_facts_materialization(), incremental_strategy='delete+insert', unique_key='as_of_date',
          on_schema_change='fail', pre_hook="{{ delete_other_snapshot_dates() }}") }}
{%- set as_of = run_as_of_date() %}
{%- set refresh = refresh_days('as_of_date') %}
{%- set build_dates = snapshot_dates_to_build(refresh) %}

with first_data_date as (

    select least(
        (select cast(min(occurred_at) as date) from {{ ref('stg_casino__events') }}),
        (select min(activity_date) from {{ ref('stg_imported__player_daily') }})
    ) as first_date

),

snapshot_dates as (

    select as_of_date
    from (values {% for d in build_dates %}(DATE '{{ d }}'){{ ", " if not loop.last }}{% endfor %}) as t (as_of_date)
    where as_of_date >= (select first_date + 7 from first_data_date)

),



window_sums as (

    -- one aggregation per snapshot date D over the daily rows of [D - 90, D - 1]
    -- (unrolled: a player-sized hash table per date is much cheaper than one
    -- player x date aggregation over a range join); population: active in that window
    {%- for day in build_dates %}
    {%- set d = "DATE '" ~ day ~ "'" %}
    select
        player_id,
        {{ d }} as as_of_date,
        {{ feature_window_aggregates() }}
    from (
        select *, cast({{ d }} - activity_date as integer) as days_before
        from {{ ref('fct_player_daily') }}
        where activity_date >= {{ d }} - 90
          and activity_date < {{ d }}
    ) as daily
    group by player_id
    having count(*) filter (where is_active) > 0
    {{ "union all" if not loop.last }}
    {%- endfor %}

),

dimension_features as (

    -- provider / game category / payment method / PSP per player, first summed per value
    -- over [D - 90, D - 1] (unrolled per D like window_sums); favourite = highest stake,
    -- then more bets, then the alphabetically first value
    {%- for day in build_dates %}
    {%- set d = "DATE '" ~ day ~ "'" %}
    select
        player_id,
        {{ d }} as as_of_date,
        {{ dimension_feature_aggregates() }}
    from (
        select
            player_id,
            dimension,
            value,
            sum(events) as events,
            sum(stake_eur) as stake_eur,
            max(activity_date) >= {{ d }} - 30 as seen_30d
        from {{ ref('int_activity_daily_dimensions') }}
        where activity_date >= {{ d }} - 90
          and activity_date < {{ d }}
        group by player_id, dimension, value
    ) as per_value
    group by player_id
    {{ "union all" if not loop.last }}
    {%- endfor %}

),

limit_kinds as (

    select player_id, limit_kind, min(occurred_at) as first_set_at
    from {{ ref('stg_casino__rg') }}
    where event_type = 'rg.limit.set'
      and limit_kind is not null
    group by player_id, limit_kind

),

limits_at_snapshot as (

    select
        l.player_id,
        d.as_of_date,
        count(*) as rg_limits_set
    from limit_kinds as l
    inner join snapshot_dates as d on l.first_set_at < cast(d.as_of_date as timestamp)
    group by l.player_id, d.as_of_date

),

snapshot_keys as (

    -- the population: active in the window, on the snapshot dates only (dates too close to
    -- the start of the data are not snapshots)
    select w.*
    from window_sums as w
    inner join snapshot_dates as d on w.as_of_date = d.as_of_date

)

select *, {{ loaded_at_column(refresh) }} as loaded_at
from (
{{ point_in_time_feature_rows(
    window_sums='snapshot_keys',
    dimension_features='dimension_features',
    limits='limits_at_snapshot',
    players=ref('int_players_historized'),
) }}
) as features
