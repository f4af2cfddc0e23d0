-- Past randomized campaign assignments exported by the operator (or the simulator) as
-- Parquet under $CRM_HOME/landing/exports/campaign_assignments*.parquet: one row per
-- (campaign_id, player_id) with the arm (treatment | control), the channel and sent_at (the
-- scheduled send time; for control players when it would have been sent), UTC.
--
-- As-of cut: only assignments sent strictly before the run's as-of date. Arm and channel are
-- trimmed and lower-cased. Exact duplicate rows (an export landed twice) count once; two
-- files disagreeing about one (campaign_id, player_id) fail the mart's key test.
--
-- No files (empty or missing folder): an empty relation with the same columns and types,
-- decided at run time (macros/landing_files.sql), so a home without exports builds as before.
{%- set assignments = source('landing', 'campaign_assignments') %}  {#- the DAG edge, at parse time #}
{%- set as_of = run_as_of_date() %}

{% if landing_files_exist('exports/campaign_assignments*.parquet') %}

with assignments as (

    select distinct
        cast(campaign_id as {{ dbt.type_string() }}) as campaign_id,
        cast(player_id as {{ dbt.type_string() }}) as player_id,
        lower(trim(cast(arm as {{ dbt.type_string() }}))) as arm,
        lower(trim(cast(channel as {{ dbt.type_string() }}))) as channel,
        cast(sent_at as timestamp) as sent_at
    from {{ assignments }}

)

select *
from assignments
where campaign_id is not null
  and player_id is not null
  and sent_at is not null
  and sent_at < cast({{ as_of }} as timestamp)

{% else %}

select
    cast(null as {{ dbt.type_string() }}) as campaign_id,
    cast(null as {{ dbt.type_string() }}) as player_id,
    cast(null as {{ dbt.type_string() }}) as arm,
    cast(null as {{ dbt.type_string() }}) as channel,
    cast(null as timestamp) as sent_at
where false

{% endif %}
