-- Categorical activity per player and UTC day: one row per (player_id, activity_date,
-- dimension, value) with dimension
--   provider | game_category   settled bets (`events`) and their stake in EUR cents,
--   payment_method | psp       captured or failed deposits (`events`; stake_eur 0).
-- NULL values (optional payload fields) are left out. Like fct_player_daily, a row depends
-- only on that day's events; player_feature_snapshots turns the rows into distinct counts
-- and favourites over its windows. Incremental by day (macros/incremental_days.sql).
{{ config(materialized=day_facts_materialization(), incremental_strategy='delete+insert', unique_key='activity_date',
          on_schema_change='fail', pre_hook="{{ delete_days_from_as_of() }}") }}
{%- set refresh = refresh_days() %}

with fx as (

    select currency, eur_per_unit from {{ ref('fx_rates') }}

),

games as (

    -- per provider and category first (the game grain below them is for next best game), so
    -- each amount is converted to EUR cents once, as before the game was in the grain
    select
        g.player_id,
        g.activity_date,
        g.provider,
        g.game_category,
        sum(g.bets) as bets,
        {{ to_eur_cents('sum(g.stake) * ' ~ fx_rate_or_fail('any_value(fx.eur_per_unit)', 'g.currency')) }} as stake_eur
    from {{ ref('int_bets_daily_by_game') }} as g
    left join fx on g.currency = fx.currency
    where {{ in_refresh_days(refresh, date_column='g.activity_date') }}
    group by g.player_id, g.activity_date, g.provider, g.game_category, g.currency

),

deposit_attempts as (

    select player_id, activity_date, method, psp, payments
    from {{ ref('int_payments_daily_by_method') }}
    where event_type in ('payment.captured', 'payment.failed')
      and {{ in_refresh_days(refresh, date_column='activity_date') }}

)

select *, {{ loaded_at_column(refresh) }} as loaded_at
from (

select player_id, activity_date, 'provider' as dimension, provider as value,
       cast(sum(bets) as integer) as events, cast(sum(stake_eur) as bigint) as stake_eur
from games
where provider is not null
group by player_id, activity_date, provider

union all

select player_id, activity_date, 'game_category', game_category,
       cast(sum(bets) as integer), cast(sum(stake_eur) as bigint)
from games
where game_category is not null
group by player_id, activity_date, game_category

union all

select player_id, activity_date, 'payment_method', method,
       cast(sum(payments) as integer), cast(0 as bigint)
from deposit_attempts
where method is not null
group by player_id, activity_date, method

union all

select player_id, activity_date, 'psp', psp,
       cast(sum(payments) as integer), cast(0 as bigint)
from deposit_attempts
where psp is not null
group by player_id, activity_date, psp

) as dimensions
