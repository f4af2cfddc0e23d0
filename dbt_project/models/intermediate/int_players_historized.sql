-- Player attributes as a history (SCD type 2): one row per registration / update event,
-- valid from that event until the next one. Attributes an update leaves out are carried
-- forward, so every row is the full picture at `valid_from`. Point-in-time lookups
-- (player_feature_snapshots) ASOF-join on valid_from; dim_player takes the current row.
--
-- Players known from imported daily aggregates (stg_imported__player_daily) before their
-- first player.registered, or without one at all, get versions from the imports: one per
-- imported day on which brand or country change, valid from that day 00:00 UTC, brand and
-- country from the import (last non-NULL value; brand 'unknown' until one is known), no
-- locale / time zone / birth date, not age-verified. registered_at is the first
-- player.registered or the first imported day, whichever is earlier (so it only depends
-- on data before any date the player is visible at). Without imports nothing changes.

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

imported_days as (

    select
        player_id,
        activity_date,
        max(brand_id) as brand_id,
        max(country) as country
    from {{ ref('stg_imported__player_daily') }}
    group by player_id, activity_date

),

first_seen as (

    select
        coalesce(r.player_id, i.player_id) as player_id,
        least(r.registered_at, i.first_imported_at) as registered_at,
        r.registered_at as first_registered_at
    from registrations as r
    full outer join (
        select player_id, cast(min(activity_date) as timestamp) as first_imported_at
        from imported_days
        group by player_id
    ) as i on r.player_id = i.player_id

),

attribute_versions as (

    -- updates that arrive before the registration are ignored (no profile exists yet)
    select
        e.event_id,
        e.player_id,
        e.event_type,
        e.occurred_at as valid_from,
        f.registered_at,
        first_value(e.brand_id) over history as brand_id,
        {{ ignoring_nulls('last_value', 'e.country') }} over history as country,
        {{ ignoring_nulls('last_value', 'e.region') }} over history as region,
        {{ ignoring_nulls('last_value', 'e.locale') }} over history as locale,
        {{ ignoring_nulls('last_value', 'e.timezone') }} over history as timezone,
        {{ ignoring_nulls('last_value', 'e.currency') }} over history as currency,
        {{ ignoring_nulls('last_value', 'e.birth_date') }} over history as birth_date,
        coalesce({{ ignoring_nulls('last_value', 'e.age_verified') }} over history, false) as age_verified
    from player_events as e
    inner join first_seen as f on e.player_id = f.player_id
    where e.occurred_at >= f.first_registered_at
    window history as (
        partition by e.player_id
        -- a registration sorts before an update at the same instant
        order by e.occurred_at, e.event_type = 'player.updated', e.event_id
        rows between unbounded preceding and current row
    )

),

imported_attributes as (

    select
        i.player_id,
        i.activity_date,
        f.registered_at,
        coalesce({{ ignoring_nulls('first_value', 'i.brand_id') }} over history, 'unknown') as brand_id,
        {{ ignoring_nulls('last_value', 'i.country') }} over history as country
    from imported_days as i
    inner join first_seen as f on i.player_id = f.player_id
    -- imported days from the first registration on are described by the events
    where f.first_registered_at is null
       or cast(i.activity_date as timestamp) < f.first_registered_at
    window history as (
        partition by i.player_id
        order by i.activity_date
        rows between unbounded preceding and current row
    )

),

imported_versions as (

    -- a new version only where brand or country change
    select
        'imported:' || player_id || ':' || cast(activity_date as {{ dbt.type_string() }}) as event_id,
        player_id,
        'imported.player_daily' as event_type,
        cast(activity_date as timestamp) as valid_from,
        registered_at,
        brand_id,
        country,
        cast(null as {{ dbt.type_string() }}) as region,
        cast(null as {{ dbt.type_string() }}) as locale,
        cast(null as {{ dbt.type_string() }}) as timezone,
        cast(null as {{ dbt.type_string() }}) as currency,
        cast(null as date) as birth_date,
        false as age_verified
    from imported_attributes
    qualify row_number() over (partition by player_id order by activity_date) = 1
         or brand_id is distinct from lag(brand_id) over (partition by player_id order by activity_date)
         or country is distinct from lag(country) over (partition by player_id order by activity_date)

),

all_versions as (

    -- both list the same columns in the same order
    select * from attribute_versions
    union all
    select * from imported_versions

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
from all_versions
