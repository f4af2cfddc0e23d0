{#- The feature definitions of ml/features.py in SQL, written once and used by both
    access paths: player_feature_snapshots (every player active in the 90 days before each
    weekly as-of date D, one aggregation per D) and int_campaign_sends_featurized (the
    players of each campaign send, as of the send day, by a join on the player). Both feed
    these macros rows of one (player_id, as_of_date) key with the columns they name, and
    both end in point_in_time_feature_rows() (macros/point_in_time.sql). -#}

{% macro feature_window_aggregates() -%}
  {#- Aggregates over fct_player_daily rows of [D - 90, D - 1] with `days_before` = D -
      activity_date (1..90). Rows whose daily columns are NULL (a player without any day in
      the window, kept by a left join) count as no activity. -#}
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
{%- endmacro %}


{% macro dimension_feature_aggregates() -%}
  {#- Over per-value sums of int_activity_daily_dimensions in [D - 90, D - 1]: `events`,
      `stake_eur`, `seen_30d` per (key, dimension, value). Favourite = highest stake, then
      more bets, then the alphabetically first value. -#}
        count(*) filter (where dimension = 'payment_method' and seen_30d) as payment_methods_30d,
        count(*) filter (where dimension = 'payment_method') as payment_methods_90d,
        count(*) filter (where dimension = 'psp' and seen_30d) as psps_30d,
        count(*) filter (where dimension = 'psp') as psps_90d,
        count(*) filter (where dimension = 'provider') as providers_90d,
        min_by(value, {{ sort_key(['-stake_eur', '-events', 'value']) }}) filter (where dimension = 'provider') as favourite_provider_90d,
        min_by(value, {{ sort_key(['-stake_eur', '-events', 'value']) }}) filter (where dimension = 'game_category') as favourite_game_category_90d
{%- endmacro %}


{% macro feature_columns() -%}
  {#- The snapshot's columns in contract order (ml/features.py) from a relation with the
      key, the player attributes (brand_id, country, registered_at), the window aggregates,
      the dimension features and rg_limits_set. -#}
    player_id,
    as_of_date,
    brand_id,
    country,
    -- lifecycle and recency
    cast({{ days_between('cast(registered_at as date)', 'as_of_date') }} as integer) as tenure_days,
    cast(coalesce({{ days_between('last_active_date', 'as_of_date') }}, 999) as integer) as days_since_last_active,
    cast(coalesce({{ days_between('last_deposit_date', 'as_of_date') }}, 999) as integer) as days_since_last_deposit,
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
    cast(favourite_provider_90d as {{ dbt.type_string() }}) as favourite_provider_90d,
    cast(favourite_game_category_90d as {{ dbt.type_string() }}) as favourite_game_category_90d,
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
{%- endmacro %}


{% macro dimension_and_limit_columns(dims, limits) -%}
  {#- The dimension features (relation alias `dims`, left-joined: no row = none seen) and
      rg_limits_set (alias `limits`) with their no-data defaults. -#}
        coalesce({{ dims }}.payment_methods_30d, 0) as payment_methods_30d,
        coalesce({{ dims }}.payment_methods_90d, 0) as payment_methods_90d,
        coalesce({{ dims }}.psps_30d, 0) as psps_30d,
        coalesce({{ dims }}.psps_90d, 0) as psps_90d,
        coalesce({{ dims }}.providers_90d, 0) as providers_90d,
        coalesce({{ dims }}.favourite_provider_90d, 'none') as favourite_provider_90d,
        coalesce({{ dims }}.favourite_game_category_90d, 'none') as favourite_game_category_90d,
        coalesce({{ limits }}.rg_limits_set, 0) as rg_limits_set
{%- endmacro %}
