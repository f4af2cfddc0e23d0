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
    where {{ event_family('bet') }}

)

select
    {{ event_envelope() }},
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
