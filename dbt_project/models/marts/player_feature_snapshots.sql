-- Point-in-time feature snapshots: one row per (player_id, as_of_date) at the run's as-of
-- date and every `snapshot_every_days` before it (`snapshot_count` dates, none earlier than
-- a week after the first day with data). Population at date D: registered before D and
-- active on at least one day in [D - 90, D - 1].
--
-- Point-in-time: a snapshot at D reads only fct_player_daily rows with activity_date < D
-- (each built from events of that day alone) and the player attributes valid before D
-- (ASOF join on the attribute history). Windows of N days are activity_date in [D - N, D - 1].
-- Feature columns and meanings: ml/features.py (FEATURES).
{% set as_of = run_as_of_date() %}
{% set every = var('snapshot_every_days') | int %}
{% set count = var('snapshot_count') | int %}

with first_data_date as (

    select cast(min(occurred_at) as date) as first_date
    from {{ ref('stg_casino__events') }}

),

snapshot_dates as (

    select cast({{ as_of }} - cast(step * {{ every }} as integer) as date) as as_of_date
    from range(0, {{ count }}) as steps (step)
    where {{ as_of }} - cast(step * {{ every }} as integer) >= (select first_date + 7 from first_data_date)

),

daily_in_window as (

    -- each daily row joined to every snapshot whose 90-day look-back contains it
    -- (a range join against a handful of dates, not a player x date cross product)
    select
        d.as_of_date,
        f.*,
        cast(d.as_of_date - f.activity_date as integer) as days_before
    from {{ ref('fct_player_daily') }} as f
    inner join snapshot_dates as d
        on f.activity_date >= d.as_of_date - 90
        and f.activity_date < d.as_of_date

),

window_sums as (

    select
        player_id,
        as_of_date,
        max(activity_date) filter (where is_active) as last_active_date,
        count(*) filter (where is_active and days_before <= 7) as active_days_7d,
        count(*) filter (where is_active and days_before <= 30) as active_days_30d,
        count(*) filter (where is_active) as active_days_90d,
        coalesce(sum(sessions) filter (where days_before <= 7), 0) as sessions_7d,
        coalesce(sum(sessions) filter (where days_before <= 30), 0) as sessions_30d,
        coalesce(sum(session_seconds) filter (where days_before <= 30), 0) as session_seconds_30d,
        coalesce(sum(stake_eur) filter (where days_before <= 7), 0) as stake_eur_7d,
        coalesce(sum(stake_eur) filter (where days_before <= 30), 0) as stake_eur_30d,
        coalesce(sum(stake_eur), 0) as stake_eur_90d,
        coalesce(sum(bonus_stake_eur) filter (where days_before <= 30), 0) as bonus_stake_eur_30d,
        coalesce(sum(ngr_eur) filter (where days_before <= 30), 0) as ngr_eur_30d,
        coalesce(sum(ngr_eur), 0) as ngr_eur_90d,
        coalesce(sum(ggr_eur) filter (where days_before <= 7), 0) as net_loss_eur_7d,
        coalesce(sum(deposits) filter (where days_before <= 30), 0) as deposits_30d,
        coalesce(sum(deposit_eur) filter (where days_before <= 30), 0) as deposit_eur_30d,
        coalesce(sum(deposit_eur), 0) as deposit_eur_90d,
        coalesce(sum(deposit_failures) filter (where days_before <= 30), 0) as deposit_failures_30d,
        coalesce(sum(withdrawal_eur) filter (where days_before <= 30), 0) as withdrawal_eur_30d,
        coalesce(sum(bonus_cost_eur) filter (where days_before <= 30), 0) as bonus_cost_eur_30d,
        coalesce(sum(rg_limit_hits) filter (where days_before <= 30), 0) as rg_limit_hits_30d,
        coalesce(sum(messages_delivered) filter (where days_before <= 30), 0) as messages_delivered_30d,
        coalesce(sum(messages_delivered), 0) as messages_delivered_90d,
        coalesce(sum(messages_opened), 0) as messages_opened_90d
    from daily_in_window
    group by player_id, as_of_date
    -- population: active at least once in the 90 days before the snapshot
    having count(*) filter (where is_active) > 0

),

player_at_snapshot as (

    -- the attribute version valid just before D; no version = not registered yet = dropped
    select
        w.*,
        h.brand_id,
        h.country,
        h.registered_at
    from window_sums as w
    asof inner join {{ ref('int_players_historized') }} as h
        on w.player_id = h.player_id
        and cast(w.as_of_date as timestamp) > h.valid_from

)

select
    player_id,
    as_of_date,
    brand_id,
    country,
    cast(date_diff('day', cast(registered_at as date), as_of_date) as integer) as tenure_days,
    cast(coalesce(as_of_date - last_active_date, 999) as integer) as days_since_last_active,
    cast(active_days_7d as integer) as active_days_7d,
    cast(active_days_30d as integer) as active_days_30d,
    cast(active_days_90d as integer) as active_days_90d,
    cast(sessions_7d as integer) as sessions_7d,
    cast(sessions_30d as integer) as sessions_30d,
    case when sessions_30d > 0 then cast(session_seconds_30d as double) / 60 / sessions_30d else 0 end::double as avg_session_minutes_30d,
    cast(stake_eur_7d as bigint) as stake_eur_7d,
    cast(stake_eur_30d as bigint) as stake_eur_30d,
    cast(stake_eur_90d as bigint) as stake_eur_90d,
    cast(ngr_eur_30d as bigint) as ngr_eur_30d,
    cast(ngr_eur_90d as bigint) as ngr_eur_90d,
    cast(net_loss_eur_7d as bigint) as net_loss_eur_7d,
    cast(deposits_30d as integer) as deposits_30d,
    cast(deposit_eur_30d as bigint) as deposit_eur_30d,
    cast(deposit_eur_90d as bigint) as deposit_eur_90d,
    cast(deposit_failures_30d as integer) as deposit_failures_30d,
    cast(withdrawal_eur_30d as bigint) as withdrawal_eur_30d,
    cast(bonus_cost_eur_30d as bigint) as bonus_cost_eur_30d,
    case when stake_eur_30d > 0 then cast(bonus_stake_eur_30d as double) / stake_eur_30d else 0 end::double as bonus_stake_share_30d,
    cast(rg_limit_hits_30d as integer) as rg_limit_hits_30d,
    cast(messages_delivered_30d as integer) as messages_delivered_30d,
    -- opens can outnumber deliveries in a window (re-opens, deliveries before it): capped at 1
    case when messages_delivered_90d > 0 then least(cast(messages_opened_90d as double) / messages_delivered_90d, 1) else 0 end::double as message_open_rate_90d,
    case when stake_eur_30d > 0 then cast(stake_eur_7d as double) / (cast(stake_eur_30d as double) / 30 * 7) else 0 end::double as trend_stake_7d_30d
from player_at_snapshot
