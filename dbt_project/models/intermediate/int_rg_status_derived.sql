-- Responsible-gambling status per player at the run's as-of date (one row per player with
-- any RG event). Rules:
--   * an exclusion starts with rg.self_exclusion.started: scope operator (every brand of the
--     operator), brand (the brand of the event) or cooling_off (a break on that brand's account);
--     operator and brand are self-exclusions, cooling_off is a cooling-off period.
--   * exclusions of different scopes are independent: one ends only at the first
--     rg.self_exclusion.ended strictly after it of the *same* scope (and, for brand and
--     cooling_off, the same brand), or at `until` once that has passed; an end of another scope
--     or brand ends nothing (an operator-wide exclusion outranks any brand event). No `until`
--     means indefinite. Landing reads a start of unknown or no scope as operator-wide and
--     quarantines an end of unknown or no scope (crm.contract.VOCABULARIES).
--   * "now" means at as-of: started before it, not ended by an event, `until` NULL or later.
--   * returned_after_exclusion: a session.started after the latest end of every
--     self-exclusion, while none is active.
--   * harm_risk_flag: limit hits or long reality checks in the 30 days before as-of reach
--     their thresholds (vars harm_risk_*).
{% set as_of = run_as_of_date() %}

with rg_events as (

    select * from {{ ref('stg_casino__rg') }}
    where occurred_at < {{ as_of }}

),

exclusion_starts as (

    select
        player_id,
        occurred_at as started_at,
        exclusion_scope,
        exclusion_until,
        case when exclusion_scope = 'cooling_off' then 'cooling_off' else 'self_exclusion' end as exclusion_kind,
        {{ exclusion_key('exclusion_scope', 'brand_id') }} as exclusion_key
    from rg_events
    where event_type = 'rg.self_exclusion.started'

),

exclusion_ends as (

    select
        player_id,
        occurred_at as ended_at,
        {{ exclusion_key('exclusion_scope', 'brand_id') }} as exclusion_key
    from rg_events
    where event_type = 'rg.self_exclusion.ended'
      and exclusion_scope is not null

),

exclusions_resolved as (

    -- ASOF: the first end of the same scope (and brand) strictly after each start
    select
        s.player_id,
        s.exclusion_kind,
        s.exclusion_scope,
        s.started_at,
        s.exclusion_until,
        least(
            e.ended_at,
            case when s.exclusion_until <= {{ as_of }} then s.exclusion_until end
        ) as ended_at
    from exclusion_starts as s
    {{ asof_join('left', 'exclusion_ends', 'e', 's.player_id = e.player_id and s.exclusion_key = e.exclusion_key',
                 's.started_at', '<', 'ended_at', ['player_id', 'exclusion_key']) }}

),

exclusion_status as (

    select
        player_id,
        bool_or(ended_at is null) filter (where exclusion_kind = 'self_exclusion') as self_excluded_now,
        count(*) filter (where exclusion_kind = 'self_exclusion') > 0 as ever_self_excluded,
        max(started_at) filter (where exclusion_kind = 'self_exclusion') as self_exclusion_started_at,
        max_by(exclusion_until, started_at) filter (where exclusion_kind = 'self_exclusion') as self_exclusion_until,
        -- the latest end of all of them, once none is active
        case
            when bool_or(ended_at is null) filter (where exclusion_kind = 'self_exclusion') then null
            else max(ended_at) filter (where exclusion_kind = 'self_exclusion')
        end as self_exclusion_ended_at,
        max_by(exclusion_scope, started_at) filter (where exclusion_kind = 'self_exclusion') as self_exclusion_scope,
        bool_or(ended_at is null) filter (where exclusion_kind = 'cooling_off') as cooling_off_now,
        max_by(exclusion_until, started_at) filter (where exclusion_kind = 'cooling_off') as cooling_off_until
    from exclusions_resolved
    group by player_id

),

limit_and_check_counts as (

    select
        player_id,
        count(distinct limit_kind) filter (where event_type = 'rg.limit.set') as rg_limits_set,
        count(*) filter (
            where event_type = 'rg.limit.hit'
              and occurred_at >= {{ as_of }} - interval 30 day
        ) as rg_limit_hits_30d,
        count(*) filter (
            where event_type = 'rg.reality_check'
              and session_minutes > {{ var('harm_risk_long_session_minutes') }}
              and occurred_at >= {{ as_of }} - interval 30 day
        ) as long_reality_checks_30d
    from rg_events
    group by player_id

),

last_session_start as (

    select
        player_id,
        max(occurred_at) as last_session_started_at
    from {{ ref('stg_casino__sessions') }}
    where event_type = 'session.started'
      and occurred_at < {{ as_of }}
    group by player_id

)

select
    c.player_id,
    coalesce(x.self_excluded_now, false) as self_excluded_now,
    coalesce(x.ever_self_excluded, false) as ever_self_excluded,
    x.self_exclusion_started_at,
    x.self_exclusion_until,
    x.self_exclusion_ended_at,
    x.self_exclusion_scope,
    coalesce(
        x.self_exclusion_ended_at is not null
        and not coalesce(x.self_excluded_now, false)
        and s.last_session_started_at > x.self_exclusion_ended_at,
        false
    ) as returned_after_exclusion,
    coalesce(x.cooling_off_now, false) as cooling_off_now,
    x.cooling_off_until,
    cast(c.rg_limits_set as integer) as rg_limits_set,
    cast(c.rg_limit_hits_30d as integer) as rg_limit_hits_30d,
    cast(c.long_reality_checks_30d as integer) as long_reality_checks_30d,
    (
        c.rg_limit_hits_30d >= {{ var('harm_risk_limit_hits_30d') }}
        or c.long_reality_checks_30d >= {{ var('harm_risk_long_reality_checks_30d') }}
    ) as harm_risk_flag
from limit_and_check_counts as c
left join exclusion_status as x on c.player_id = x.player_id
left join last_session_start as s on c.player_id = s.player_id
