-- Every landed event before the run's as-of date: the envelope, and the payload as JSON text
-- without contact details (macros/helpers.sql without_pii: the warehouse holds none).
-- The as-of cut happens here, once, so nothing downstream can see the future of the run.
-- No landed batch yet (a home fed only by imported daily aggregates): an empty relation with
-- the same columns and types, decided at run time (macros/landing_files.sql).
{%- set events = source('landing', 'events') %}  {#- the DAG edge, at parse time #}

{% if landing_files_exist('events/*.parquet') %}

select
    event_id,
    event_type,
    trace_id,
    player_id,
    brand_id,
    cast(occurred_at as timestamp) as occurred_at,
    {{ without_pii('payload') }} as payload,
    batch_id,
    cast(ingested_at as timestamp) as ingested_at
from {{ events }}
where occurred_at < {{ run_as_of_date() }}

{% else %}

select
    cast(null as {{ dbt.type_string() }}) as event_id,
    cast(null as {{ dbt.type_string() }}) as event_type,
    cast(null as {{ dbt.type_string() }}) as trace_id,
    cast(null as {{ dbt.type_string() }}) as player_id,
    cast(null as {{ dbt.type_string() }}) as brand_id,
    cast(null as timestamp) as occurred_at,
    cast(null as {{ dbt.type_string() }}) as payload,
    cast(null as {{ dbt.type_string() }}) as batch_id,
    cast(null as timestamp) as ingested_at
where false

{% endif %}
