-- Settled bets per player, UTC day, game provider, game category and currency, amounts in
-- minor units of that currency (summed exactly as integers; converted to EUR downstream).
-- The bet stream is the largest: its JSON payload is parsed once, here, for both the daily
-- activity (fct_player_daily) and the game preferences of the feature snapshots.
-- bet.placed repeats the stake of the following bet.settled: money counts on bet.settled only.

select
    player_id,
    cast(occurred_at as date) as activity_date,
    provider,
    game_category,
    currency,
    max(brand_id) as brand_id,
    cast(count(*) as integer) as bets,
    cast(sum(coalesce(rounds, 1)) as bigint) as rounds,
    cast(coalesce(sum(stake), 0) as bigint) as stake,
    cast(coalesce(sum(win), 0) as bigint) as win,
    cast(coalesce(sum(stake) filter (where in_bonus), 0) as bigint) as bonus_stake
from {{ ref('stg_casino__bets') }}
where event_type = 'bet.settled'
group by player_id, activity_date, provider, game_category, currency
