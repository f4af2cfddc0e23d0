with wallet_events as (

    select
        *,
        {{ parse_payload({'amount': 'BIGINT', 'currency': 'VARCHAR', 'reason': 'VARCHAR'}) }} as p
    from {{ ref('stg_casino__events') }}
    where {{ event_family('wallet') }}

)

select
    {{ event_envelope() }},
    p.amount,
    p.currency,
    p.reason
from wallet_events
