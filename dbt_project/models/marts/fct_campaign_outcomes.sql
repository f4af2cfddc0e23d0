-- Outcomes of randomized campaigns, the input of the readouts (crm/measurement/readout.py): one row per
-- assignment (campaign_id, player_id) in stg_exports__campaign_assignments (operator exports
-- and our own dispatches), both arms, every assigned player: no feature or population filter.
--
-- Send day S = cast(sent_at as date). Windows (fct_player_daily is per UTC day):
--   7 days : converted_7d, deposits_7d, deposit_eur_7d over days [S, S + 7);
--            first_deposit_at = the first payment.captured in [sent_at, sent_at + 7 days)
--   14 days: ngr_eur_14d (NGR nets the bonus cost), bonus_cost_eur_14d, rg_limit_hits_14d over
--            [S, S + 14); campaign_bonus_cost_eur_14d = bonus.issued with this campaign_id
--            in [sent_at, sent_at + 14 days); reactivated_14d = an active day in [S, S + 14) and none in
--            [S - 30, S); self_excluded_14d = an rg.self_exclusion.started (any scope,
--            cooling-off included) in [sent_at, sent_at + 14 days)
-- Completeness, the rule of fct_campaign_exposures / player_labels (data before the run's
-- as-of only): a window is complete when it ends on or before the last date with data + 1;
-- the N days after sent_at are the window here, so sent_at + N days <= that date 00:00
-- (for a send at midnight, as our own dispatches record it, the same as S + N <= end date).
-- Each outcome is NULL while its window is incomplete.
--
-- Message feedback of this campaign (campaign_id on the crm.* event), whenever it came before
-- the as-of: first delivery / open / click timestamps, complained, unsubscribed (never NULL;
-- control players get no message, so theirs are NULL timestamps and false).
{% set as_of = run_as_of_date() %}

with data_end as (

    select least(
        {{ as_of }},
        greatest(
            (select cast(max(occurred_at) as date) + 1 from {{ ref('stg_casino__events') }}),
            (select max(activity_date) + 1 from {{ ref('stg_imported__player_daily') }})
        )
    ) as end_date

),

assignments as (

    select
        campaign_id,
        player_id,
        arm,
        arm = 'treatment' as treated,
        channel,
        sent_at,
        cast(sent_at as date) as sent_date
    from {{ ref('stg_exports__campaign_assignments') }}

),

after_send as (

    -- range join of daily rows to each assignment's 14 days from the send day
    select
        a.campaign_id,
        a.player_id,
        bool_or(f.deposits > 0 and f.activity_date < a.sent_date + 7) as converted,
        sum(f.deposits) filter (where f.activity_date < a.sent_date + 7) as deposits,
        sum(f.deposit_eur) filter (where f.activity_date < a.sent_date + 7) as deposit_eur,
        sum(f.ngr_eur) as ngr_eur,
        sum(f.bonus_cost_eur) as bonus_cost_eur,
        sum(f.rg_limit_hits) as rg_limit_hits,
        bool_or(f.is_active) as active
    from assignments as a
    inner join {{ ref('fct_player_daily') }} as f
        on f.player_id = a.player_id
        and f.activity_date >= a.sent_date
        and f.activity_date < a.sent_date + 14
    group by a.campaign_id, a.player_id

),

before_send as (

    select
        a.campaign_id,
        a.player_id,
        bool_or(f.is_active) as active
    from assignments as a
    inner join {{ ref('fct_player_daily') }} as f
        on f.player_id = a.player_id
        and f.activity_date >= a.sent_date - 30
        and f.activity_date < a.sent_date
    group by a.campaign_id, a.player_id

),

first_deposits as (

    select
        a.campaign_id,
        a.player_id,
        min(p.occurred_at) as first_deposit_at
    from assignments as a
    inner join {{ ref('stg_casino__payments') }} as p
        on p.player_id = a.player_id
        and p.occurred_at >= a.sent_at
        and p.occurred_at < a.sent_at + interval 7 day
    where p.event_type = 'payment.captured'
    group by a.campaign_id, a.player_id

),

campaign_bonuses as (

    -- bonuses issued under this campaign (campaign_id on the bonus payload), to the EUR cent
    select
        a.campaign_id,
        a.player_id,
        {{ to_eur_cents('sum(b.cost * ' ~ fx_rate_or_fail('fx.eur_per_unit', 'b.currency') ~ ')') }} as cost_eur
    from assignments as a
    inner join {{ ref('stg_casino__bonuses') }} as b
        on b.player_id = a.player_id
        and b.campaign_id = a.campaign_id
        and b.occurred_at >= a.sent_at
        and b.occurred_at < a.sent_at + interval 14 day
    left join {{ ref('fx_rates') }} as fx on fx.currency = b.currency
    where b.event_type = 'bonus.issued'
    group by a.campaign_id, a.player_id

),

exclusions as (

    select distinct
        a.campaign_id,
        a.player_id
    from assignments as a
    inner join {{ ref('stg_casino__rg') }} as r
        on r.player_id = a.player_id
        and r.occurred_at >= a.sent_at
        and r.occurred_at < a.sent_at + interval 14 day
    where r.event_type = 'rg.self_exclusion.started'

),

feedback as (

    select
        a.campaign_id,
        a.player_id,
        min(m.occurred_at) filter (where m.event_type = 'crm.delivery') as first_delivery_at,
        min(m.occurred_at) filter (where m.event_type = 'crm.open') as first_open_at,
        min(m.occurred_at) filter (where m.event_type = 'crm.click') as first_click_at,
        bool_or(m.event_type = 'crm.complaint') as complained,
        bool_or(m.event_type = 'crm.unsubscribe') as unsubscribed
    from assignments as a
    inner join {{ ref('stg_casino__crm_messages') }} as m
        on m.player_id = a.player_id
        and m.campaign_id = a.campaign_id
    group by a.campaign_id, a.player_id

),

windows as (

    select
        a.*,
        a.sent_at + interval 7 day <= cast(x.end_date as timestamp) as outcome_7d_complete,
        a.sent_at + interval 14 day <= cast(x.end_date as timestamp) as outcome_14d_complete
    from assignments as a
    cross join data_end as x

)

select
    w.campaign_id,
    w.player_id,
    w.arm,
    w.treated,
    w.channel,
    w.sent_at,
    w.sent_date,
    w.outcome_7d_complete,
    w.outcome_14d_complete,
    -- 7-day outcomes
    case when w.outcome_7d_complete then coalesce(s.converted, false) end as converted_7d,
    case when w.outcome_7d_complete then cast(coalesce(s.deposits, 0) as integer) end as deposits_7d,
    case when w.outcome_7d_complete then cast(coalesce(s.deposit_eur, 0) as bigint) end as deposit_eur_7d,
    case when w.outcome_7d_complete then d.first_deposit_at end as first_deposit_at,
    -- 14-day outcomes
    case when w.outcome_14d_complete then cast(coalesce(s.ngr_eur, 0) as bigint) end as ngr_eur_14d,
    case when w.outcome_14d_complete then cast(coalesce(s.bonus_cost_eur, 0) as bigint) end as bonus_cost_eur_14d,
    case
        when w.outcome_14d_complete then cast(coalesce(cb.cost_eur, 0) as bigint)
    end as campaign_bonus_cost_eur_14d,
    not coalesce(b.active, false) as dormant_30d_before,
    case
        when w.outcome_14d_complete then coalesce(s.active, false) and not coalesce(b.active, false)
    end as reactivated_14d,
    case when w.outcome_14d_complete then cast(coalesce(s.rg_limit_hits, 0) as integer) end as rg_limit_hits_14d,
    case when w.outcome_14d_complete then e.player_id is not null end as self_excluded_14d,
    -- message feedback of this campaign
    m.first_delivery_at,
    m.first_open_at,
    m.first_click_at,
    coalesce(m.complained, false) as complained,
    coalesce(m.unsubscribed, false) as unsubscribed
from windows as w
left join after_send as s
    on s.campaign_id = w.campaign_id and s.player_id = w.player_id
left join before_send as b
    on b.campaign_id = w.campaign_id and b.player_id = w.player_id
left join first_deposits as d
    on d.campaign_id = w.campaign_id and d.player_id = w.player_id
left join campaign_bonuses as cb
    on cb.campaign_id = w.campaign_id and cb.player_id = w.player_id
left join exclusions as e
    on e.campaign_id = w.campaign_id and e.player_id = w.player_id
left join feedback as m
    on m.campaign_id = w.campaign_id and m.player_id = w.player_id
