-- Daily activity per player and event family, money converted to EUR cents.
-- Grain: (player_id, activity_date, activity_family); fct_player_daily folds the families
-- into one row per player-day. Every measure is attributed to the UTC day of the event
-- that carries it (session seconds to the day of session.ended, etc.), so a day's row
-- depends only on events of that day: the basis of point-in-time correctness downstream.

with fx as (

    select currency, eur_per_unit from {{ ref('fx_rates') }}

),

session_events as (

    select * from {{ ref('stg_casino__sessions') }}

),

session_starts as (

    select player_id, session_id, min(occurred_at) as started_at
    from session_events
    where event_type = 'session.started'
    group by player_id, session_id

),

sessions_daily as (

    -- sessions are counted on the start day, seconds on the end day; a session.ended
    -- without duration_s is timed against its session.started
    select
        e.player_id,
        cast(e.occurred_at as date) as activity_date,
        'sessions' as activity_family,
        max(e.brand_id) as brand_id,
        count(*) filter (where e.event_type = 'session.started') as sessions,
        coalesce(sum(
            case
                when e.event_type = 'session.ended'
                    then greatest(coalesce(e.duration_s, date_diff('second', s.started_at, e.occurred_at)), 0)
            end
        ), 0) as session_seconds
    from session_events as e
    left join session_starts as s
        on e.event_type = 'session.ended'
        and e.duration_s is null
        and e.player_id = s.player_id
        and e.session_id = s.session_id
    group by all

),

settled_bets as (

    select
        b.*,
        {{ fx_rate_or_fail('fx.eur_per_unit', 'b.currency') }} as eur_per_unit
    from {{ ref('stg_casino__bets') }} as b
    left join fx on b.currency = fx.currency
    where b.event_type = 'bet.settled'

),

bets_daily as (

    select
        player_id,
        cast(occurred_at as date) as activity_date,
        'bets' as activity_family,
        max(brand_id) as brand_id,
        count(*) as bets,
        sum(coalesce(rounds, 1)) as rounds,
        {{ to_eur_cents('sum(stake * eur_per_unit)') }} as stake_eur,
        {{ to_eur_cents('sum(win * eur_per_unit)') }} as win_eur,
        coalesce({{ to_eur_cents('sum(stake * eur_per_unit) filter (where in_bonus)') }}, 0) as bonus_stake_eur
    from settled_bets
    group by all

),

money_payments as (

    select
        p.*,
        {{ fx_rate_or_fail('fx.eur_per_unit', 'p.currency') }} as eur_per_unit
    from {{ ref('stg_casino__payments') }} as p
    left join fx on p.currency = fx.currency
    where p.event_type in ('payment.captured', 'payment.failed', 'payment.withdraw')

),

payments_daily as (

    select
        player_id,
        cast(occurred_at as date) as activity_date,
        'payments' as activity_family,
        max(brand_id) as brand_id,
        count(*) filter (where event_type = 'payment.captured') as deposits,
        coalesce({{ to_eur_cents("sum(amount * eur_per_unit) filter (where event_type = 'payment.captured')") }}, 0) as deposit_eur,
        count(*) filter (where event_type = 'payment.failed') as deposit_failures,
        coalesce({{ to_eur_cents("sum(amount * eur_per_unit) filter (where event_type = 'payment.withdraw')") }}, 0) as withdrawal_eur
    from money_payments
    group by all

),

issued_bonuses as (

    select
        b.*,
        {{ fx_rate_or_fail('fx.eur_per_unit', 'b.currency') }} as eur_per_unit
    from {{ ref('stg_casino__bonuses') }} as b
    left join fx on b.currency = fx.currency
    where b.event_type = 'bonus.issued'

),

bonuses_daily as (

    select
        player_id,
        cast(occurred_at as date) as activity_date,
        'bonuses' as activity_family,
        max(brand_id) as brand_id,
        {{ to_eur_cents('sum(cost * eur_per_unit)') }} as bonus_cost_eur
    from issued_bonuses
    group by all

),

rg_daily as (

    select
        player_id,
        cast(occurred_at as date) as activity_date,
        'rg' as activity_family,
        max(brand_id) as brand_id,
        count(*) filter (where event_type = 'rg.limit.hit') as rg_limit_hits,
        count(*) filter (where event_type = 'rg.reality_check') as reality_checks
    from {{ ref('stg_casino__rg') }}
    where event_type in ('rg.limit.hit', 'rg.reality_check')
    group by all

),

messages_daily as (

    select
        player_id,
        cast(occurred_at as date) as activity_date,
        'messages' as activity_family,
        max(brand_id) as brand_id,
        count(*) filter (where event_type = 'crm.delivery') as messages_delivered,
        count(*) filter (where event_type = 'crm.open') as messages_opened,
        count(*) filter (where event_type = 'crm.click') as messages_clicked
    from {{ ref('stg_casino__crm_messages') }}
    where event_type in ('crm.delivery', 'crm.open', 'crm.click')
    group by all

)

-- UNION ALL BY NAME: a family's missing measures come through as NULL
select * from sessions_daily
union all by name
select * from bets_daily
union all by name
select * from payments_daily
union all by name
select * from bonuses_daily
union all by name
select * from rg_daily
union all by name
select * from messages_daily
