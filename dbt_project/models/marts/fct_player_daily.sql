-- One row per player and UTC day with any counted activity before the run's as-of date.
-- Money in EUR cents. is_active (a session, a settled bet or a captured deposit; for an
-- imported day also a stake or sessions > 0) is the activity definition every feature,
-- label and dim_player.first_active_date uses.
--
-- Imported daily aggregates (landing/imported_daily) are one more family: on a day with
-- both events and an import, the measures add up (sessions, stake, win, deposits, ...);
-- has_imported marks such days. Without imports every row is built from events alone.
--
-- Incremental by day (macros/incremental_days.sql): a daily run rebuilds only the days that
-- can have changed; `crm run --full-refresh` rebuilds all.
{{ config(materialized=day_facts_materialization(), incremental_strategy='delete+insert', unique_key='activity_date',
          on_schema_change='fail', pre_hook="{{ delete_days_from_as_of() }}") }}
{%- set refresh = refresh_days() %}

with family_days as (

    select * from {{ ref('int_activity_daily_aggregated') }}
    where {{ in_refresh_days(refresh, date_column='activity_date') }}

),

player_days as (

    select
        player_id,
        activity_date,
        max(brand_id) as brand_id,
        cast(coalesce(sum(sessions), 0) as integer) as sessions,
        cast(coalesce(sum(session_seconds), 0) as bigint) as session_seconds,
        cast(coalesce(sum(sessions_evening), 0) as integer) as sessions_evening,
        cast(coalesce(sum(sessions_night), 0) as integer) as sessions_night,
        cast(coalesce(sum(sessions_daytime), 0) as integer) as sessions_daytime,
        cast(coalesce(sum(bets), 0) as integer) as bets,
        cast(coalesce(sum(rounds), 0) as bigint) as rounds,
        cast(coalesce(sum(stake_eur), 0) as bigint) as stake_eur,
        cast(coalesce(sum(win_eur), 0) as bigint) as win_eur,
        cast(coalesce(sum(bonus_stake_eur), 0) as bigint) as bonus_stake_eur,
        cast(coalesce(sum(deposits), 0) as integer) as deposits,
        cast(coalesce(sum(deposit_eur), 0) as bigint) as deposit_eur,
        cast(coalesce(sum(deposit_failures), 0) as integer) as deposit_failures,
        cast(coalesce(sum(withdrawal_eur), 0) as bigint) as withdrawal_eur,
        cast(coalesce(sum(bonuses_issued), 0) as integer) as bonuses_issued,
        cast(coalesce(sum(bonuses_consumed), 0) as integer) as bonuses_consumed,
        cast(coalesce(sum(bonus_cost_eur), 0) as bigint) as bonus_cost_eur,
        cast(coalesce(sum(ngr_eur), 0) as bigint) as ngr_eur,
        cast(coalesce(sum(rg_limit_hits), 0) as integer) as rg_limit_hits,
        cast(coalesce(sum(reality_checks), 0) as integer) as reality_checks,
        cast(coalesce(sum(messages_delivered), 0) as integer) as messages_delivered,
        cast(coalesce(sum(messages_opened), 0) as integer) as messages_opened,
        cast(coalesce(sum(messages_clicked), 0) as integer) as messages_clicked,
        coalesce(bool_or(imported_active), false) as imported_active,
        coalesce(bool_or(imported), false) as has_imported
    from family_days
    group by player_id, activity_date

)

select
    player_id,
    activity_date,
    brand_id,
    sessions,
    session_seconds,
    sessions_evening,
    sessions_night,
    sessions_daytime,
    bets,
    rounds,
    stake_eur,
    win_eur,
    bonus_stake_eur,
    stake_eur - win_eur as ggr_eur,
    deposits,
    deposit_eur,
    deposit_failures,
    withdrawal_eur,
    bonuses_issued,
    bonuses_consumed,
    bonus_cost_eur,
    ngr_eur,
    rg_limit_hits,
    reality_checks,
    messages_delivered,
    messages_opened,
    messages_clicked,
    (sessions > 0 or bets > 0 or deposits > 0 or imported_active) as is_active,
    has_imported,
    {{ loaded_at_column(refresh) }} as loaded_at
from player_days
