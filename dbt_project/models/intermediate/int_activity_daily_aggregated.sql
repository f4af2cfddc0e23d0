-- Daily activity per player and family, money converted to EUR cents.
-- Grain: (player_id, activity_date, activity_family); fct_player_daily folds the families
-- into one row per player-day. Every measure is attributed to the UTC day of the event
-- that carries it (session seconds to the day of session.ended, etc.), so a day's row
-- depends only on that day's events (and, for the local hour of a session start, on the
-- player's time zone valid at that moment): the basis of point-in-time correctness.
--
-- Money: minor units are summed exactly per (player, day, currency) and converted once
-- (round half away from zero), so the EUR cents of a day never depend on summation order.
--
-- The `imported` family holds the operators' own daily aggregates (stg_imported__player_daily,
-- already EUR cents). It is added to the event families of the same player-day: events and
-- imports for one day add up; an operator must not send a day both ways.
--
-- Incremental by day (macros/incremental_days.sql): a daily run rebuilds only the days that
-- can have changed (every family of such a day, so a day is always whole).
{{ config(materialized=day_facts_materialization(), incremental_strategy='delete+insert', unique_key='activity_date',
          on_schema_change='fail', pre_hook="{{ delete_days_from_as_of() }}") }}
{%- set refresh = refresh_days() %}

with fx as (

    select currency, eur_per_unit from {{ ref('fx_rates') }}

),

session_events as (

    select * from {{ ref('stg_casino__sessions') }}
    where {{ in_refresh_days(refresh, timestamp_column='occurred_at') }}

),

session_starts as (

    -- the starts of the sessions whose end has no duration_s, on any day (a session can
    -- start on an earlier day than the ones rebuilt)
    select player_id, session_id, min(occurred_at) as started_at
    from {{ ref('stg_casino__sessions') }}
    where event_type = 'session.started'
      and session_id in (select session_id from session_events
                         where event_type = 'session.ended' and duration_s is null)
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
                    then greatest(coalesce(e.duration_s, {{ seconds_between('s.started_at', 'e.occurred_at') }}), 0)
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

known_time_zones as (

    {{ known_time_zones() }}

),

session_start_hours as (

    -- local hour of each session start in the player's time zone valid at that moment
    -- (attribute history, so a later time-zone change does not rewrite the past); an
    -- unknown or invalid time zone counts as UTC
    select
        e.player_id,
        cast(e.occurred_at as date) as activity_date,
        hour({{ utc_to_local('e.occurred_at', "coalesce(tz.name, 'UTC')") }}) as local_hour
    from session_events as e
    {{ asof_join('left', ref('int_players_historized'), 'h', 'e.player_id = h.player_id',
                 'e.occurred_at', '>=', 'valid_from', ['player_id']) }}
    left join known_time_zones as tz on h.timezone = tz.name
    where e.event_type = 'session.started'

),

session_hours_daily as (

    select
        player_id,
        activity_date,
        'session_hours' as activity_family,
        count(*) filter (where local_hour >= 18) as sessions_evening,
        count(*) filter (where local_hour < 6) as sessions_night,
        count(*) filter (where local_hour >= 6 and local_hour < 18) as sessions_daytime
    from session_start_hours
    group by all

),

bets_by_currency as (

    select
        g.player_id,
        g.activity_date,
        max(g.brand_id) as brand_id,
        sum(g.bets) as bets,
        sum(g.rounds) as rounds,
        {{ to_eur_cents('sum(g.stake) * ' ~ fx_rate_or_fail('any_value(fx.eur_per_unit)', 'g.currency')) }} as stake_eur,
        {{ to_eur_cents('sum(g.win) * ' ~ fx_rate_or_fail('any_value(fx.eur_per_unit)', 'g.currency')) }} as win_eur,
        {{ to_eur_cents('sum(g.bonus_stake) * ' ~ fx_rate_or_fail('any_value(fx.eur_per_unit)', 'g.currency')) }} as bonus_stake_eur
    from {{ ref('int_bets_daily_by_game') }} as g
    left join fx on g.currency = fx.currency
    where {{ in_refresh_days(refresh, date_column='g.activity_date') }}
    group by g.player_id, g.activity_date, g.currency

),

bets_daily as (

    select
        player_id,
        activity_date,
        'bets' as activity_family,
        max(brand_id) as brand_id,
        sum(bets) as bets,
        sum(rounds) as rounds,
        sum(stake_eur) as stake_eur,
        sum(win_eur) as win_eur,
        sum(bonus_stake_eur) as bonus_stake_eur,
        sum(stake_eur) - sum(win_eur) as ngr_eur
    from bets_by_currency
    group by all

),

payments_by_currency as (

    select
        p.player_id,
        p.activity_date,
        max(p.brand_id) as brand_id,
        sum(p.payments) filter (where p.event_type = 'payment.captured') as deposits,
        {{ to_eur_cents("sum(p.amount) filter (where p.event_type = 'payment.captured') * " ~ fx_rate_or_fail('any_value(fx.eur_per_unit)', 'p.currency')) }} as deposit_eur,
        sum(p.payments) filter (where p.event_type = 'payment.failed') as deposit_failures,
        {{ to_eur_cents("sum(p.amount) filter (where p.event_type = 'payment.withdraw') * " ~ fx_rate_or_fail('any_value(fx.eur_per_unit)', 'p.currency')) }} as withdrawal_eur
    from {{ ref('int_payments_daily_by_method') }} as p
    left join fx on p.currency = fx.currency
    where {{ in_refresh_days(refresh, date_column='p.activity_date') }}
    group by p.player_id, p.activity_date, p.currency

),

payments_daily as (

    select
        player_id,
        activity_date,
        'payments' as activity_family,
        max(brand_id) as brand_id,
        coalesce(sum(deposits), 0) as deposits,
        coalesce(sum(deposit_eur), 0) as deposit_eur,
        coalesce(sum(deposit_failures), 0) as deposit_failures,
        coalesce(sum(withdrawal_eur), 0) as withdrawal_eur
    from payments_by_currency
    group by all

),

bonuses_by_currency as (

    select
        b.player_id,
        cast(b.occurred_at as date) as activity_date,
        max(b.brand_id) as brand_id,
        count(*) filter (where b.event_type = 'bonus.issued') as bonuses_issued,
        count(*) filter (where b.event_type = 'bonus.consumed') as bonuses_consumed,
        coalesce({{ to_eur_cents("sum(b.cost) filter (where b.event_type = 'bonus.issued') * "
                                 ~ fx_rate_or_fail('any_value(fx.eur_per_unit)', 'b.currency')) }}, 0) as bonus_cost_eur
    from {{ ref('stg_casino__bonuses') }} as b
    left join fx on b.currency = fx.currency
    where b.event_type in ('bonus.issued', 'bonus.consumed')
      and {{ in_refresh_days(refresh, timestamp_column='b.occurred_at') }}
    group by b.player_id, activity_date, b.currency

),

bonuses_daily as (

    select
        player_id,
        activity_date,
        'bonuses' as activity_family,
        max(brand_id) as brand_id,
        sum(bonuses_issued) as bonuses_issued,
        sum(bonuses_consumed) as bonuses_consumed,
        sum(bonus_cost_eur) as bonus_cost_eur,
        -sum(bonus_cost_eur) as ngr_eur
    from bonuses_by_currency
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
      and {{ in_refresh_days(refresh, timestamp_column='occurred_at') }}
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
      and {{ in_refresh_days(refresh, timestamp_column='occurred_at') }}
    group by all

),

imported_daily as (

    -- operators' aggregates: a deposit amount counts as one deposit; NGR as the operator
    -- reports it (stake - win - bonus when missing); no bets, hours, RG or message data
    select
        player_id,
        activity_date,
        'imported' as activity_family,
        max(brand_id) as brand_id,
        coalesce(sum(sessions), 0) as sessions,
        sum(stake_eur) as stake_eur,
        sum(win_eur) as win_eur,
        cast(bool_or(deposit_eur > 0) as integer) as deposits,
        sum(deposit_eur) as deposit_eur,
        sum(withdrawal_eur) as withdrawal_eur,
        sum(bonus_eur) as bonus_cost_eur,
        sum(coalesce(ngr_eur, stake_eur - win_eur - bonus_eur)) as ngr_eur,
        bool_or(coalesce(sessions, 0) > 0 or stake_eur > 0 or deposit_eur > 0) as imported_active,
        true as imported
    from {{ ref('stg_imported__player_daily') }}
    where {{ in_refresh_days(refresh, date_column='activity_date') }}
    group by all

),

families as (

    -- one row per family and day: a family's missing measures come through as NULL
    -- (UNION ALL BY NAME, which Spark SQL lacks, spelled out: macros/cross_engine.sql)
    {%- set key = ['player_id', 'activity_date', 'activity_family'] %}
    {{ union_all_by_name([
        ('sessions_daily', key + ['brand_id', 'sessions', 'session_seconds']),
        ('session_hours_daily', key + ['sessions_evening', 'sessions_night', 'sessions_daytime']),
        ('bets_daily', key + ['brand_id', 'bets', 'rounds', 'stake_eur', 'win_eur', 'bonus_stake_eur', 'ngr_eur']),
        ('payments_daily', key + ['brand_id', 'deposits', 'deposit_eur', 'deposit_failures', 'withdrawal_eur']),
        ('bonuses_daily', key + ['brand_id', 'bonuses_issued', 'bonuses_consumed', 'bonus_cost_eur', 'ngr_eur']),
        ('rg_daily', key + ['brand_id', 'rg_limit_hits', 'reality_checks']),
        ('messages_daily', key + ['brand_id', 'messages_delivered', 'messages_opened', 'messages_clicked']),
        ('imported_daily', key + ['brand_id', 'sessions', 'stake_eur', 'win_eur', 'deposits', 'deposit_eur',
                                  'withdrawal_eur', 'bonus_cost_eur', 'ngr_eur', 'imported_active', 'imported']),
    ]) }}

)

select *, {{ loaded_at_column(refresh) }} as loaded_at
from families
