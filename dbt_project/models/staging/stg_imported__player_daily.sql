-- Operators' own per-player daily aggregates ("bring your own data"), written by the importer
-- as Parquet under $CRM_HOME/landing/imported_daily/, already in canonical columns (money in
-- EUR cents). Same as-of cut as the events: only days strictly before the run's as-of date.
--
-- Re-imports: when several batches carry the same (player_id, activity_date), the latest
-- batch (imported_at, then batch_id) wins and every row of that batch for the day is kept
-- (rows of one batch add up downstream); older batches for that day are ignored, so
-- importing an overlapping export again never double counts.
--
-- No files (empty or missing folder): an empty relation with the same columns and types,
-- decided at run time (macros/landing_files.sql), so the rest of the project does not care.
{%- set imported = source('landing', 'imported_daily') %}  {#- the DAG edge, at parse time #}
{%- set as_of = run_as_of_date() %}

{% if landing_files_exist('imported_daily/*.parquet') %}

with imported as (

    select
        cast(player_id as {{ dbt.type_string() }}) as player_id,
        cast(activity_date as date) as activity_date,
        cast(brand_id as {{ dbt.type_string() }}) as brand_id,
        cast(country as {{ dbt.type_string() }}) as country,
        cast(gender as {{ dbt.type_string() }}) as gender,
        coalesce(cast(deposit_eur as bigint), 0) as deposit_eur,
        coalesce(cast(withdrawal_eur as bigint), 0) as withdrawal_eur,
        coalesce(cast(stake_eur as bigint), 0) as stake_eur,
        coalesce(cast(win_eur as bigint), 0) as win_eur,
        cast(ngr_eur as bigint) as ngr_eur,
        coalesce(cast(bonus_eur as bigint), 0) as bonus_eur,
        cast(sessions as integer) as sessions,
        cast(batch_id as {{ dbt.type_string() }}) as batch_id,
        cast(imported_at as timestamp) as imported_at
    from {{ imported }}

)

select *
from imported
where player_id is not null
  and activity_date is not null
  and activity_date < {{ as_of }}
qualify dense_rank() over (
    partition by player_id, activity_date
    order by imported_at desc nulls last, batch_id desc nulls last
) = 1

{% else %}

select
    cast(null as {{ dbt.type_string() }}) as player_id,
    cast(null as date) as activity_date,
    cast(null as {{ dbt.type_string() }}) as brand_id,
    cast(null as {{ dbt.type_string() }}) as country,
    cast(null as {{ dbt.type_string() }}) as gender,
    cast(null as bigint) as deposit_eur,
    cast(null as bigint) as withdrawal_eur,
    cast(null as bigint) as stake_eur,
    cast(null as bigint) as win_eur,
    cast(null as bigint) as ngr_eur,
    cast(null as bigint) as bonus_eur,
    cast(null as integer) as sessions,
    cast(null as {{ dbt.type_string() }}) as batch_id,
    cast(null as timestamp) as imported_at
where false

{% endif %}
