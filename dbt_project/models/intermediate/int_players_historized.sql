-- Player attributes as a history (SCD type 2): one row per registration / update event,
-- valid from that event until the next one. Attributes an update leaves out are carried
-- forward, so every row is the full picture at `valid_from`. Point-in-time lookups
-- (player_feature_snapshots) ASOF-join on valid_from; dim_player takes the current row.

with player_events as (

    select * from {{ ref('stg_casino__players') }}

),

registrations as (

    select
        player_id,
        min(occurred_at) as registered_at
    from player_events
    where event_type = 'player.registered'
    group by player_id

),

attribute_versions as (

    -- updates that arrive before the registration are ignored (no profile exists yet)
    select
        e.event_id,
        e.player_id,
        e.event_type,
        e.occurred_at as valid_from,
        r.registered_at,
        first_value(e.brand_id) over history as brand_id,
        last_value(e.country ignore nulls) over history as country,
        last_value(e.region ignore nulls) over history as region,
        last_value(e.locale ignore nulls) over history as locale,
        last_value(e.timezone ignore nulls) over history as timezone,
        last_value(e.currency ignore nulls) over history as currency,
        last_value(e.birth_date ignore nulls) over history as birth_date,
        coalesce(last_value(e.age_verified ignore nulls) over history, false) as age_verified
    from player_events as e
    inner join registrations as r on e.player_id = r.player_id
    where e.occurred_at >= r.registered_at
    window history as (
        partition by e.player_id
        -- a registration sorts before an update at the same instant
        order by e.occurred_at, e.event_type = 'player.updated', e.event_id
        rows between unbounded preceding and current row
    )

)

select
    event_id,
    player_id,
    event_type,
    valid_from,
    lead(valid_from) over (
        partition by player_id
        order by valid_from, event_type = 'player.updated', event_id
    ) as valid_to,
    registered_at,
    brand_id,
    country,
    region,
    locale,
    timezone,
    currency,
    birth_date,
    age_verified
from attribute_versions
