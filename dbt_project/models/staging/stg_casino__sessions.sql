with session_events as (

    select
        *,
        {{ parse_payload({
            'session_id': 'VARCHAR', 'device': 'VARCHAR', 'channel': 'VARCHAR',
            'duration_s': 'BIGINT'
        }) }} as p
    from {{ ref('stg_casino__events') }}
    where {{ event_family('session') }}

)

select
    {{ event_envelope() }},
    p.session_id,
    p.device,
    p.channel,
    p.duration_s
from session_events
