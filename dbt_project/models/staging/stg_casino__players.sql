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
    where {{ event_family('player') }}

)

select
    {{ event_envelope() }},
    p.country,
    p.region,
    p.locale,
    p.timezone,
    try_cast(p.birth_date as date) as birth_date,
    p.currency,
    p.age_verified
from player_events
