-- The feature snapshot of every assigned player as of the day of the send: one row per
-- (player_id, as_of_date) where as_of_date = the send day S of a campaign assignment
-- (stg_exports__campaign_assignments, both arms). Same columns, definitions and
-- point-in-time rule as player_feature_snapshots (the shared aggregates of
-- macros/feature_snapshots.sql and the point-in-time join of macros/point_in_time.sql): a
-- row at S reads only days before S, so no feature sees the campaign.
--
-- Population: every assigned player registered before S, including players with no active
-- day in the 90 days before S (dormant, or registered and never played: exactly the
-- players win-back campaigns target). Their activity features are zero, their recency
-- 999 ("never in the window"). player_feature_snapshots keeps its own population (active
-- in the window) because churn is only defined for players who were active.
--
-- Access path: a join of the (player, S) keys to the player's daily rows of [S - 90, S - 1]
-- instead of one aggregation per date, since the keys are a small, data-dependent set.
--
-- Incremental by key, like player_feature_snapshots by date: a run builds the keys it does not
-- hold yet and rebuilds those a rebuilt day of the daily facts can change (a row at S reads
-- the days before S: S after the first day of refresh_days(), macros/incremental_days.sql; a
-- late event, registration, update or limit lands in those days). A key no longer assigned is
-- deleted (pre_hook): a run for an earlier as-of date drops the sends of its future, as the
-- staging model does (sent_at before the as-of date), and builds them again when the date moves
-- forward. The daily run then featurizes only the new sends, where it rebuilt all of them.
{{ config(materialized=day_facts_materialization(), incremental_strategy='delete+insert',
          unique_key=['player_id', 'as_of_date'], on_schema_change='fail',
          pre_hook="{{ delete_unassigned_sends() }}") }}
{%- set refresh = refresh_days('as_of_date') %}

with send_keys as (

    select distinct a.player_id, cast(a.sent_at as date) as as_of_date
    from {{ ref('stg_exports__campaign_assignments') }} as a
    {%- if refresh is not none %}
    where {% if refresh['days'] %}cast(a.sent_at as date) > DATE '{{ refresh["days"][0] }}' or {% endif -%}
        not exists (
            select 1 from {{ this }} as held
            where held.player_id = a.player_id and held.as_of_date = cast(a.sent_at as date)
        )
    {%- endif %}

),

window_sums as (

    select
        player_id,
        as_of_date,
        {{ feature_window_aggregates() }}
    from (
        select
            k.player_id,
            k.as_of_date,
            {{ star_except('f', ['player_id']) }},
            cast({{ days_between('f.activity_date', 'k.as_of_date') }} as integer) as days_before
        from send_keys as k
        left join {{ ref('fct_player_daily') }} as f
            on f.player_id = k.player_id
            and f.activity_date >= k.as_of_date - 90
            and f.activity_date < k.as_of_date
    ) as daily
    group by player_id, as_of_date

),

dimension_features as (

    select
        player_id,
        as_of_date,
        {{ dimension_feature_aggregates() }}
    from (
        select
            k.player_id,
            k.as_of_date,
            d.dimension,
            d.value,
            sum(d.events) as events,
            sum(d.stake_eur) as stake_eur,
            max(d.activity_date) >= k.as_of_date - 30 as seen_30d
        from send_keys as k
        inner join {{ ref('int_activity_daily_dimensions') }} as d
            on d.player_id = k.player_id
            and d.activity_date >= k.as_of_date - 90
            and d.activity_date < k.as_of_date
        group by k.player_id, k.as_of_date, d.dimension, d.value
    ) as per_value
    group by player_id, as_of_date

),

limits_at_send as (

    -- limit kinds first set before S
    select k.player_id, k.as_of_date, count(distinct r.limit_kind) as rg_limits_set
    from send_keys as k
    inner join {{ ref('stg_casino__rg') }} as r
        on r.player_id = k.player_id
        and r.event_type = 'rg.limit.set'
        and r.limit_kind is not null
        and r.occurred_at < cast(k.as_of_date as timestamp)
    group by k.player_id, k.as_of_date

)

,

featurized as (

{{ point_in_time_feature_rows(
    window_sums='window_sums',
    dimension_features='dimension_features',
    limits='limits_at_send',
    players=ref('int_players_historized'),
) }}

)

select *, {{ loaded_at_column(refresh) }} as loaded_at
from featurized
