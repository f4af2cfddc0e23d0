-- Settled bets per player, UTC day, game (with its provider and category) and currency, amounts in
-- minor units of that currency (summed exactly as integers; converted to EUR downstream).
-- The bet stream is the largest: its JSON payload is parsed once, here, for both the daily
-- activity (fct_player_daily) and the game preferences of the feature snapshots.
-- bet.placed repeats the stake of the following bet.settled: money counts on bet.settled only.
-- Incremental by day (macros/incremental_days.sql): a daily run rebuilds only the days that
-- can have changed.
{{ config(materialized=day_facts_materialization(), incremental_strategy='delete+insert', unique_key='activity_date',
          on_schema_change='fail', pre_hook="{{ delete_days_from_as_of() }}") }}
{%- set refresh = refresh_days() %}

select
    player_id,
    cast(occurred_at as date) as activity_date,
    game,
    provider,
    game_category,
    currency,
    max(brand_id) as brand_id,
    cast(count(*) as integer) as bets,
    cast(sum(coalesce(rounds, 1)) as bigint) as rounds,
    cast(coalesce(sum(stake), 0) as bigint) as stake,
    cast(coalesce(sum(win), 0) as bigint) as win,
    cast(coalesce(sum(stake) filter (where in_bonus), 0) as bigint) as bonus_stake,
    {{ loaded_at_column(refresh) }} as loaded_at
from {{ ref('stg_casino__bets') }}
where event_type = 'bet.settled'
  and {{ in_refresh_days(refresh, timestamp_column='occurred_at') }}
group by player_id, activity_date, game, provider, game_category, currency
