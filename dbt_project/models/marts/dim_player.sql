-- The CDP record: one row per player registered before the run's as-of date, or known
-- before it only from imported daily aggregates (brand / country from the import, no
-- consents, no age: such players get features and scores but are never contactable).
-- Identity and jurisdiction (current values), age (birth_date is reduced to birth_year and
-- age; no contact details or device ids), consent state per channel with its version and
-- last change, the products consented and withdrawn per message channel (int_consents_by_product:
-- a withdrawn product is never promoted; where the jurisdiction asks for consent per product, only
-- a consented one is), bonuses received (int_bonuses_received;
-- SE: a bonus only on the first occasion), responsible-gambling status and activity recency.
{% set as_of = run_as_of_date() %}

with current_attributes as (

    select * from {{ ref('int_players_historized') }}
    where valid_to is null

),

consent_state as (

    -- pivot the current consent row of each channel into columns
    select
        player_id,
        {%- for ch in consent_channels() %}
        coalesce(bool_or(consent_state) filter (where channel = '{{ ch }}' and is_current), false) as consent_{{ ch }},
        coalesce(max(consent_version) filter (where channel = '{{ ch }}'), 0) as consent_{{ ch }}_version,
        max(changed_at) filter (where channel = '{{ ch }}' and is_current) as consent_{{ ch }}_changed_at,
        max(change_source) filter (where channel = '{{ ch }}' and is_current) as consent_{{ ch }}_source
        {{- "," if not loop.last }}
        {%- endfor %}
    from {{ ref('int_consents_versioned') }}
    group by player_id

),

product_consents as (

    -- per message channel, the products with a current grant and those withdrawn, sorted and
    -- comma-separated
    select
        player_id,
        {%- for ch in consent_channels() if ch != 'profiling' %}
        {{ sorted_string_agg('product', ',') }} filter (where channel = '{{ ch }}' and consent_state)
            as consent_{{ ch }}_products,
        {{ sorted_string_agg('product', ',') }} filter (where channel = '{{ ch }}' and is_withdrawn)
            as consent_{{ ch }}_products_withdrawn
        {{- "," if not loop.last }}
        {%- endfor %}
    from {{ ref('int_consents_by_product') }}
    group by player_id

),

rg_status as (

    select * from {{ ref('int_rg_status_derived') }}

),

first_active as (

    select
        player_id,
        min(activity_date) as first_active_date
    from {{ ref('fct_player_daily') }}
    where is_active
    group by player_id

),

last_active as (

    -- same activity as fct_player_daily.is_active, at full timestamp precision for events;
    -- an active imported day counts at its 00:00 UTC
    select
        player_id,
        max(last_active_at) as last_active_at
    from (
        select player_id, max(occurred_at) as last_active_at
        from {{ ref('stg_casino__events') }}
        where event_type in ('session.started', 'bet.settled', 'payment.captured')
        group by player_id

        union all

        select player_id, cast(max(activity_date) as timestamp)
        from {{ ref('stg_imported__player_daily') }}
        where coalesce(sessions, 0) > 0 or stake_eur > 0 or deposit_eur > 0
        group by player_id
    ) as sources
    group by player_id

),

with_age as (

    select
        *,
        {{ age_in_years('birth_date', as_of) }} as age_years
    from current_attributes

)

select
    p.player_id,
    p.brand_id,
    p.country,
    p.region,
    p.locale,
    p.timezone,
    p.currency,
    p.registered_at,
    cast(year(p.birth_date) as integer) as birth_year,
    p.age_years,
    {{ age_band('p.age_years') }} as age_band,
    coalesce(p.age_years >= 18, false) as is_adult,
    p.age_verified,
    {%- for ch in consent_channels() %}
    coalesce(c.consent_{{ ch }}, false) as consent_{{ ch }},
    coalesce(c.consent_{{ ch }}_version, 0) as consent_{{ ch }}_version,
    c.consent_{{ ch }}_changed_at,
    c.consent_{{ ch }}_source,
    {%- endfor %}
    coalesce(rg.self_excluded_now, false) as self_excluded_now,
    coalesce(rg.ever_self_excluded, false) as ever_self_excluded,
    rg.self_exclusion_started_at,
    rg.self_exclusion_until,
    rg.self_exclusion_ended_at,
    coalesce(rg.returned_after_exclusion, false) as returned_after_exclusion,
    coalesce(rg.cooling_off_now, false) as cooling_off_now,
    coalesce(rg.rg_limits_set, 0) as rg_limits_set,
    coalesce(rg.rg_limit_hits_30d, 0) as rg_limit_hits_30d,
    coalesce(rg.harm_risk_flag, false) as harm_risk_flag,
    fa.first_active_date,
    la.last_active_at,
    cast({{ days_between('cast(p.registered_at as date)', as_of) }} as integer) as tenure_days,
    {%- for ch in consent_channels() if ch != 'profiling' %}
    pc.consent_{{ ch }}_products,
    pc.consent_{{ ch }}_products_withdrawn,
    {%- endfor %}
    coalesce(b.bonuses_received, 0) as bonuses_received,
    b.first_bonus_at,
    b.last_bonus_at,
    {{ as_of }} as as_of_date
from with_age as p
left join consent_state as c on p.player_id = c.player_id
left join rg_status as rg on p.player_id = rg.player_id
left join first_active as fa on p.player_id = fa.player_id
left join last_active as la on p.player_id = la.player_id
left join product_consents as pc on p.player_id = pc.player_id
left join {{ ref('int_bonuses_received') }} as b on p.player_id = b.player_id
