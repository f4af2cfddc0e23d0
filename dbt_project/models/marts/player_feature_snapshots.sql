-- Point-in-time feature snapshots: one row per (player_id, as_of_date) at the run's as-of
-- date and every `snapshot_every_days` before it (`snapshot_count` dates, none earlier than
-- a week after the first day with data). Population at date D: registered (or first
-- imported) before D and active on at least one day in [D - 90, D - 1].
--
-- Point-in-time: a snapshot at D reads only rows of days before D — fct_player_daily and
-- int_activity_daily_dimensions (each row built from that day's events / imports alone),
-- limit kinds first set before D — and the player attributes valid before D (ASOF join on
-- the attribute history). Windows of N days are activity_date in [D - N, D - 1].
-- Feature columns, windows and meanings: ml/features.py (FEATURES); the column list and
-- order are the contract in _marts.yml, checked against the spec by tests/test_features.py.
{% set as_of = run_as_of_date() %}
{% set every = var('snapshot_every_days') | int %}
{% set count = var('snapshot_count') | int %}

with first_data_date as (

    select least(
        (select cast(min(occurred_at) as date) from {{ ref('stg_casino__events') }}),
        (select min(activity_date) from {{ ref('stg_imported__player_daily') }})
    ) as first_date

),

snapshot_dates as (

    select cast({{ as_of }} - cast(step * {{ every }} as integer) as date) as as_of_date
    from range(0, {{ count }}) as steps (step)
    where {{ as_of }} - cast(step * {{ every }} as integer) >= (select first_date + 7 from first_data_date)

),

{#- The windowed sums, written once and evaluated per snapshot date below. -#}
{%- set window_aggregates %}
        max(activity_date) filter (where is_active) as last_active_date,
        max(activity_date) filter (where deposits > 0) as last_deposit_date,
        count(*) filter (where is_active and days_before <= 7) as active_days_7d,
        count(*) filter (where is_active and days_before <= 30) as active_days_30d,
        count(*) filter (where is_active) as active_days_90d,
        coalesce(sum(sessions) filter (where days_before <= 7), 0) as sessions_7d,
        coalesce(sum(sessions) filter (where days_before <= 30), 0) as sessions_30d,
        coalesce(sum(sessions), 0) as sessions_90d,
        coalesce(sum(session_seconds) filter (where days_before <= 30), 0) as session_seconds_30d,
        coalesce(sum(sessions_evening), 0) as sessions_evening_90d,
        coalesce(sum(sessions_night), 0) as sessions_night_90d,
        coalesce(sum(sessions_evening + sessions_night + sessions_daytime), 0) as sessions_timed_90d,
        coalesce(sum(bets) filter (where days_before <= 30), 0) as bets_30d,
        coalesce(sum(stake_eur) filter (where days_before <= 7), 0) as stake_eur_7d,
        coalesce(sum(stake_eur) filter (where days_before <= 30), 0) as stake_eur_30d,
        coalesce(sum(stake_eur), 0) as stake_eur_90d,
        coalesce(sum(win_eur) filter (where days_before <= 30), 0) as win_eur_30d,
        coalesce(sum(win_eur), 0) as win_eur_90d,
        coalesce(sum(bonus_stake_eur) filter (where days_before <= 30), 0) as bonus_stake_eur_30d,
        coalesce(sum(ggr_eur) filter (where days_before <= 7), 0) as net_loss_eur_7d,
        coalesce(sum(ggr_eur) filter (where days_before <= 30), 0) as net_loss_eur_30d,
        coalesce(sum(ngr_eur) filter (where days_before <= 7), 0) as ngr_eur_7d,
        coalesce(sum(ngr_eur) filter (where days_before <= 30), 0) as ngr_eur_30d,
        coalesce(sum(ngr_eur), 0) as ngr_eur_90d,
        coalesce(sum(deposits) filter (where days_before <= 7), 0) as deposits_7d,
        coalesce(sum(deposits) filter (where days_before <= 30), 0) as deposits_30d,
        coalesce(sum(deposits), 0) as deposits_90d,
        coalesce(sum(deposit_eur) filter (where days_before <= 7), 0) as deposit_eur_7d,
        coalesce(sum(deposit_eur) filter (where days_before <= 30), 0) as deposit_eur_30d,
        coalesce(sum(deposit_eur), 0) as deposit_eur_90d,
        coalesce(sum(deposit_failures) filter (where days_before <= 30), 0) as deposit_failures_30d,
        coalesce(sum(deposit_failures), 0) as deposit_failures_90d,
        coalesce(sum(withdrawal_eur) filter (where days_before <= 30), 0) as withdrawal_eur_30d,
        coalesce(sum(withdrawal_eur), 0) as withdrawal_eur_90d,
        coalesce(sum(bonuses_issued) filter (where days_before <= 30), 0) as bonuses_issued_30d,
        coalesce(sum(bonuses_issued), 0) as bonuses_issued_90d,
        coalesce(sum(bonuses_consumed), 0) as bonuses_consumed_90d,
        coalesce(sum(bonus_cost_eur) filter (where days_before <= 30), 0) as bonus_cost_eur_30d,
        coalesce(sum(rg_limit_hits) filter (where days_before <= 30), 0) as rg_limit_hits_30d,
        coalesce(sum(reality_checks) filter (where days_before <= 30), 0) as reality_checks_30d,
        coalesce(sum(messages_delivered) filter (where days_before <= 30), 0) as messages_delivered_30d,
        coalesce(sum(messages_delivered), 0) as messages_delivered_90d,
        coalesce(sum(messages_opened), 0) as messages_opened_90d,
        coalesce(sum(messages_clicked), 0) as messages_clicked_90d
{%- endset %}

window_sums as (

    -- one aggregation per snapshot date D over the daily rows of [D - 90, D - 1]
    -- (unrolled: a player-sized hash table per date is much cheaper than one
    -- player x date aggregation over a range join); population: active in that window
    {%- for k in range(count) %}
    {%- set d = "cast(" ~ as_of ~ " - " ~ (k * every) ~ " as date)" %}
    select
        player_id,
        {{ d }} as as_of_date,
        {{- window_aggregates }}
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
    {%- for k in range(count) %}
    {%- set d = "cast(" ~ as_of ~ " - " ~ (k * every) ~ " as date)" %}
    select
        player_id,
        {{ d }} as as_of_date,
        count(*) filter (where dimension = 'payment_method' and seen_30d) as payment_methods_30d,
        count(*) filter (where dimension = 'payment_method') as payment_methods_90d,
        count(*) filter (where dimension = 'psp' and seen_30d) as psps_30d,
        count(*) filter (where dimension = 'psp') as psps_90d,
        count(*) filter (where dimension = 'provider') as providers_90d,
        arg_min(value, (-stake_eur, -events, value)) filter (where dimension = 'provider') as favourite_provider_90d,
        arg_min(value, (-stake_eur, -events, value)) filter (where dimension = 'game_category') as favourite_game_category_90d
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

player_at_snapshot as (

    -- the attribute version valid just before D; no version = not registered yet = dropped
    select
        w.*,
        h.brand_id,
        h.country,
        h.registered_at
    from window_sums as w
    -- dates too close to the start of the data are not snapshots
    inner join snapshot_dates as d on w.as_of_date = d.as_of_date
    asof inner join {{ ref('int_players_historized') }} as h
        on w.player_id = h.player_id
        and cast(w.as_of_date as timestamp) > h.valid_from

),

snapshot as (

    select
        p.*,
        coalesce(x.payment_methods_30d, 0) as payment_methods_30d,
        coalesce(x.payment_methods_90d, 0) as payment_methods_90d,
        coalesce(x.psps_30d, 0) as psps_30d,
        coalesce(x.psps_90d, 0) as psps_90d,
        coalesce(x.providers_90d, 0) as providers_90d,
        coalesce(x.favourite_provider_90d, 'none') as favourite_provider_90d,
        coalesce(x.favourite_game_category_90d, 'none') as favourite_game_category_90d,
        coalesce(l.rg_limits_set, 0) as rg_limits_set
    from player_at_snapshot as p
    left join dimension_features as x
        on p.player_id = x.player_id
        and p.as_of_date = x.as_of_date
    left join limits_at_snapshot as l
        on p.player_id = l.player_id
        and p.as_of_date = l.as_of_date

)

select
    player_id,
    as_of_date,
    brand_id,
    country,
    -- lifecycle and recency
    cast(date_diff('day', cast(registered_at as date), as_of_date) as integer) as tenure_days,
    cast(coalesce(as_of_date - last_active_date, 999) as integer) as days_since_last_active,
    cast(coalesce(as_of_date - last_deposit_date, 999) as integer) as days_since_last_deposit,
    -- frequency
    cast(active_days_7d as integer) as active_days_7d,
    cast(active_days_30d as integer) as active_days_30d,
    cast(active_days_90d as integer) as active_days_90d,
    cast(sessions_7d as integer) as sessions_7d,
    cast(sessions_30d as integer) as sessions_30d,
    cast(sessions_90d as integer) as sessions_90d,
    case when sessions_30d > 0 then cast(session_seconds_30d as double) / 60 / sessions_30d else 0 end::double as avg_session_minutes_30d,
    case when sessions_timed_90d > 0 then cast(sessions_evening_90d as double) / sessions_timed_90d else 0 end::double as evening_session_share_90d,
    case when sessions_timed_90d > 0 then cast(sessions_night_90d as double) / sessions_timed_90d else 0 end::double as night_session_share_90d,
    cast(bets_30d as integer) as bets_30d,
    -- monetary: gaming
    cast(stake_eur_7d as bigint) as stake_eur_7d,
    cast(stake_eur_30d as bigint) as stake_eur_30d,
    cast(stake_eur_90d as bigint) as stake_eur_90d,
    case when active_days_30d > 0 then cast(stake_eur_30d as double) / active_days_30d else 0 end::double as stake_per_active_day_eur_30d,
    cast(win_eur_30d as bigint) as win_eur_30d,
    cast(win_eur_90d as bigint) as win_eur_90d,
    cast(net_loss_eur_7d as bigint) as net_loss_eur_7d,
    cast(net_loss_eur_30d as bigint) as net_loss_eur_30d,
    cast(ngr_eur_7d as bigint) as ngr_eur_7d,
    cast(ngr_eur_30d as bigint) as ngr_eur_30d,
    cast(ngr_eur_90d as bigint) as ngr_eur_90d,
    -- monetary: payments
    cast(deposits_7d as integer) as deposits_7d,
    cast(deposits_30d as integer) as deposits_30d,
    cast(deposits_90d as integer) as deposits_90d,
    cast(deposit_eur_7d as bigint) as deposit_eur_7d,
    cast(deposit_eur_30d as bigint) as deposit_eur_30d,
    cast(deposit_eur_90d as bigint) as deposit_eur_90d,
    case when deposits_90d > 0 then cast(deposit_eur_90d as double) / deposits_90d else 0 end::double as avg_deposit_eur_90d,
    cast(deposit_failures_30d as integer) as deposit_failures_30d,
    cast(deposit_failures_90d as integer) as deposit_failures_90d,
    cast(payment_methods_30d as integer) as payment_methods_30d,
    cast(payment_methods_90d as integer) as payment_methods_90d,
    cast(psps_30d as integer) as psps_30d,
    cast(psps_90d as integer) as psps_90d,
    cast(withdrawal_eur_30d as bigint) as withdrawal_eur_30d,
    cast(withdrawal_eur_90d as bigint) as withdrawal_eur_90d,
    -- bonuses
    cast(bonuses_issued_30d as integer) as bonuses_issued_30d,
    cast(bonuses_issued_90d as integer) as bonuses_issued_90d,
    cast(bonuses_consumed_90d as integer) as bonuses_consumed_90d,
    cast(bonus_cost_eur_30d as bigint) as bonus_cost_eur_30d,
    case when stake_eur_30d > 0 then cast(bonus_stake_eur_30d as double) / stake_eur_30d else 0 end::double as bonus_stake_share_30d,
    -- game preferences
    cast(favourite_provider_90d as varchar) as favourite_provider_90d,
    cast(favourite_game_category_90d as varchar) as favourite_game_category_90d,
    cast(providers_90d as integer) as providers_90d,
    -- trends: last week against the 30-day weekly average
    case when stake_eur_30d > 0 then cast(stake_eur_7d as double) / (cast(stake_eur_30d as double) / 30 * 7) else 0 end::double as trend_stake_7d_30d,
    case when sessions_30d > 0 then cast(sessions_7d as double) / (cast(sessions_30d as double) / 30 * 7) else 0 end::double as trend_sessions_7d_30d,
    case when deposits_30d > 0 then cast(deposits_7d as double) / (cast(deposits_30d as double) / 30 * 7) else 0 end::double as trend_deposits_7d_30d,
    -- responsible gambling markers
    cast(rg_limits_set as integer) as rg_limits_set,
    cast(rg_limit_hits_30d as integer) as rg_limit_hits_30d,
    cast(reality_checks_30d as integer) as reality_checks_30d,
    -- CRM message engagement; opens / clicks can outnumber deliveries in a window
    -- (re-opens, deliveries before it): rates capped at 1
    cast(messages_delivered_30d as integer) as messages_delivered_30d,
    cast(messages_delivered_90d as integer) as messages_delivered_90d,
    case when messages_delivered_90d > 0 then least(cast(messages_opened_90d as double) / messages_delivered_90d, 1) else 0 end::double as message_open_rate_90d,
    case when messages_delivered_90d > 0 then least(cast(messages_clicked_90d as double) / messages_delivered_90d, 1) else 0 end::double as message_click_rate_90d
from snapshot
