-- The bonus-hunter outcome (issue 19, docs/risk_score.md) of each training anchor of
-- player_abuse_features (the first bonus.issued + abuse_observation_days = as_of_date D):
--   C = the first bonus.consumed, at or after the first bonus.issued and before D;
--   W = the first payment.withdraw in [C, C + abuse_label_withdraw_days days);
--   bonus_hunter_outcome = W exists
--       and no bet.settled and no payment.captured in (W, W + abuse_label_inactive_days days]
--       and the bonus-funded share of the settled stake up to W >= abuse_label_bonus_share.
-- A row only once its window is complete: D + withdraw days + inactive days <= the run's as-of date
-- (W < D + withdraw days, so the inactivity after W is then fully observed). The label looks after
-- D (the withdrawal may, the inactivity does); the features never do. Read from the warehouse only:
-- the simulator's truth is never an input.
{%- set as_of = run_as_of_date() %}
{%- set withdraw_days = var('abuse_label_withdraw_days') | int %}
{%- set inactive_days = var('abuse_label_inactive_days') | int %}

with anchors as (

    select brand_id, player_id, as_of_date, first_bonus_at
    from {{ ref('player_abuse_features') }}
    where is_training_anchor
      and as_of_date + {{ withdraw_days + inactive_days }} <= {{ as_of }}

),

consumed as (

    select a.player_id, a.as_of_date, min(b.occurred_at) as consumed_at
    from anchors as a
    inner join {{ ref('stg_casino__bonuses') }} as b
        on b.player_id = a.player_id
        and b.event_type = 'bonus.consumed'
        and b.occurred_at >= a.first_bonus_at
        and b.occurred_at < cast(a.as_of_date as timestamp)
    group by a.player_id, a.as_of_date

),

withdrawn as (

    select c.player_id, c.as_of_date, min(p.occurred_at) as withdrawn_at
    from consumed as c
    inner join {{ ref('stg_casino__payments') }} as p
        on p.player_id = c.player_id
        and p.event_type = 'payment.withdraw'
        and p.occurred_at >= c.consumed_at
        and {{ seconds_between('c.consumed_at', 'p.occurred_at') }} < {{ withdraw_days * 86400 }}
    group by c.player_id, c.as_of_date

),

stake_to_withdrawal as (

    select
        w.player_id,
        w.as_of_date,
        cast(sum(case when b.in_bonus then b.stake else 0 end) as double) / nullif(sum(b.stake), 0) as bonus_share
    from withdrawn as w
    inner join {{ ref('stg_casino__bets') }} as b
        on b.player_id = w.player_id
        and b.event_type = 'bet.settled'
        and b.occurred_at <= w.withdrawn_at
    group by w.player_id, w.as_of_date

),

active_after as (

    -- any bet or deposit in (W, W + inactive days]
    select w.player_id, w.as_of_date, count(*) as events_after
    from withdrawn as w
    inner join {{ ref('stg_casino__events') }} as e
        on e.player_id = w.player_id
        and e.event_type in ('bet.settled', 'payment.captured')
        and e.occurred_at > w.withdrawn_at
        and {{ seconds_between('w.withdrawn_at', 'e.occurred_at') }} <= {{ inactive_days * 86400 }}
    group by w.player_id, w.as_of_date

)

select
    a.brand_id,
    a.player_id,
    a.as_of_date,
    c.consumed_at,
    w.withdrawn_at,
    s.bonus_share as bonus_share_to_withdrawal,
    coalesce(t.events_after, 0) as events_after_withdrawal,
    coalesce(
        w.withdrawn_at is not null
        and coalesce(t.events_after, 0) = 0
        and coalesce(s.bonus_share, 0) >= {{ var('abuse_label_bonus_share') }},
        false
    ) as bonus_hunter_outcome
from anchors as a
left join consumed as c on c.player_id = a.player_id and c.as_of_date = a.as_of_date
left join withdrawn as w on w.player_id = a.player_id and w.as_of_date = a.as_of_date
left join stake_to_withdrawal as s on s.player_id = a.player_id and s.as_of_date = a.as_of_date
left join active_after as t on t.player_id = a.player_id and t.as_of_date = a.as_of_date
