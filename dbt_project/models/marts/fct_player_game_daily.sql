-- What each player played per UTC day and game, before the as-of date: the input of next best
-- game (ml/games.py). On DuckDB a view over int_bets_daily_by_game (no second copy of the bet
-- grain); on Spark a table, since only tables are handed over to the DuckDB warehouse
-- (crm/warehouse_spark.py). Rounds and bets count engagement without a currency.
{{ config(materialized=('view' if target.type == 'duckdb' else 'table')) }}
{% set as_of = run_as_of_date() %}

select
    player_id,
    max(brand_id) as brand_id,
    activity_date,
    game,
    max(provider) as provider,
    max(game_category) as game_category,
    cast(sum(bets) as integer) as bets,
    cast(sum(rounds) as bigint) as rounds
from {{ ref('int_bets_daily_by_game') }}
where game is not null and activity_date < {{ as_of }}
group by player_id, activity_date, game
