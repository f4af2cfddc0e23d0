-- Bonuses each player received before the run's as-of date: bonus.issued events, and for
-- players known from imported daily aggregates the days with a bonus amount (one per day,
-- a lower bound). For jurisdictions that allow a bonus only on the first occasion (SE):
-- a player with any bonus here gets no further bonus offer.
{% set as_of = run_as_of_date() %}

with received as (

    select player_id, occurred_at as received_at
    from {{ ref('stg_casino__bonuses') }}
    where event_type = 'bonus.issued'
      and occurred_at < {{ as_of }}

    union all

    select player_id, cast(activity_date as timestamp) as received_at
    from {{ ref('stg_imported__player_daily') }}
    where bonus_eur > 0

)

select
    player_id,
    cast(count(*) as integer) as bonuses_received,
    min(received_at) as first_bonus_at,
    max(received_at) as last_bonus_at
from received
group by player_id
