-- Deposit outcomes and withdrawals per player, UTC day, event type, payment method, PSP and
-- currency, amounts in minor units of that currency (summed exactly as integers; converted
-- to EUR downstream). Parsed once for the daily activity and the payment-method features.
-- Incremental by day (macros/incremental_days.sql).
{{ config(materialized=day_facts_materialization(), incremental_strategy='delete+insert', unique_key='activity_date',
          on_schema_change='fail', pre_hook="{{ delete_days_from_as_of() }}") }}
{%- set refresh = refresh_days() %}

select
    player_id,
    cast(occurred_at as date) as activity_date,
    event_type,
    method,
    psp,
    currency,
    max(brand_id) as brand_id,
    cast(count(*) as integer) as payments,
    cast(coalesce(sum(amount), 0) as bigint) as amount,
    {{ loaded_at_column(refresh) }} as loaded_at
from {{ ref('stg_casino__payments') }}
where event_type in ('payment.captured', 'payment.failed', 'payment.withdraw')
  and {{ in_refresh_days(refresh, timestamp_column='occurred_at') }}
group by player_id, activity_date, event_type, method, psp, currency
