with session_events as (

    select
        *,
        {{ parse_payload({
            'session_id': 'VARCHAR', 'device': 'VARCHAR', 'channel': 'VARCHAR',
            'duration_s': 'BIGINT'
        }) }} as p
    from {{ ref('stg_casino__events') }}
    -- a prefix filter is pushed into the Parquet scan (an IN list is not)
    where event_type like 'session.%'

)

select
    event_id,
    event_type,
    player_id,
    brand_id,
    occurred_at,
    p.session_id,
    p.device,
    p.channel,
    p.duration_s
from session_events
