{% macro campaign_assignments_glob() -%}
  {#- Where operators' exports of past campaign assignments land (Parquet: campaign_id,
      player_id, arm, channel, sent_at; the simulator writes campaign_assignments.parquet).
      Keep in sync with the `landing.campaign_assignments` source in models/staging/_staging.yml. -#}
  {{- return(env_var('CRM_HOME') ~ '/landing/exports/campaign_assignments*.parquet') -}}
{%- endmacro %}


{% macro campaign_assignments_files_exist() -%}
  {#- True when at least one campaign-assignment export exists, checked at execution time
      with DuckDB's glob() (0 rows for an empty or missing folder). At parse time (no
      database) false: the SQL is then the empty typed relation (like imported_daily). -#}
  {%- if not execute -%}
    {{- return(false) -}}
  {%- endif -%}
  {%- set lookup -%}
    select count(*) from glob('{{ campaign_assignments_glob() }}')
  {%- endset -%}
  {{- return(run_query(lookup).columns[0].values()[0] > 0) -}}
{%- endmacro %}
