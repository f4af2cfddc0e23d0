-- Registration and profile updates. PII minimisation: email, phone, device_id and ip
-- are never read out of the payload, and birth_date is reduced to year / age downstream.
with player_events as (

    select
        *,
        {{ parse_payload({
            'country': 'VARCHAR', 'region': 'VARCHAR', 'locale': 'VARCHAR',
            'timezone': 'VARCHAR', 'birth_date': 'VARCHAR', 'currency': 'VARCHAR',
            'age_verified': 'BOOLEAN'
        }) }} as p
    from {{ ref('stg_casino__events') }}
    -- a prefix filter is pushed into the Parquet scan (an IN list is not)
    where event_type like 'player.%'

)

select
    event_id,
    event_type,
    player_id,
    brand_id,
    occurred_at,
    p.country,
    p.region,
    p.locale,
    p.timezone,
    try_cast(p.birth_date as date) as birth_date,
    p.currency,
    p.age_verified
from player_events
