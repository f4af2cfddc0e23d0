with wallet_events as (

    select
        *,
        {{ parse_payload({'amount': 'BIGINT', 'currency': 'VARCHAR', 'reason': 'VARCHAR'}) }} as p
    from {{ ref('stg_casino__events') }}
    -- a prefix filter is pushed into the Parquet scan (an IN list is not)
    where event_type like 'wallet.%'

)

select
    event_id,
    event_type,
    player_id,
    brand_id,
    occurred_at,
    p.amount,
    p.currency,
    p.reason
from wallet_events
