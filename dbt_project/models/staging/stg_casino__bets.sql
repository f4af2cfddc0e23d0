-- bet.placed and bet.settled carry the same fields; marts count money on bet.settled only.
with bet_events as (

    select
        *,
        {{ parse_payload({
            'stake': 'BIGINT', 'win': 'BIGINT', 'currency': 'VARCHAR', 'in_bonus': 'BOOLEAN',
            'provider': 'VARCHAR', 'game': 'VARCHAR', 'game_category': 'VARCHAR',
            'rounds': 'BIGINT', 'session_id': 'VARCHAR'
        }) }} as p
    from {{ ref('stg_casino__events') }}
    -- a prefix filter is pushed into the Parquet scan (an IN list is not)
    where event_type like 'bet.%'

)

select
    event_id,
    event_type,
    player_id,
    brand_id,
    occurred_at,
    p.stake,
    p.win,
    p.currency,
    coalesce(p.in_bonus, false) as in_bonus,
    p.provider,
    p.game,
    p.game_category,
    p.rounds,
    p.session_id
from bet_events
