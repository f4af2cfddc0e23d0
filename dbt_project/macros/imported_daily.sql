{% macro imported_daily_glob() -%}
  {#- Where operators' per-player daily aggregates land (Parquet, written by the importer).
      Keep in sync with the `landing.imported_daily` source in models/staging/_staging.yml. -#}
  {{- return(env_var('CRM_HOME') ~ '/landing/imported_daily/*.parquet') -}}
{%- endmacro %}


{% macro imported_daily_files_exist() -%}
  {#- True when at least one imported Parquet file exists, checked at execution time with
      DuckDB's glob() (0 rows for an empty or missing folder). At parse time (no database)
      false: the SQL is then the empty typed relation, which is all parsing needs. -#}
  {%- if not execute -%}
    {{- return(false) -}}
  {%- endif -%}
  {%- set lookup -%}
    select count(*) from glob('{{ imported_daily_glob() }}')
  {%- endset -%}
  {{- return(run_query(lookup).columns[0].values()[0] > 0) -}}
{%- endmacro %}


{% macro landed_events_files_exist() -%}
  {#- True when at least one landed event batch exists (checked at execution time, like
      imported_daily_files_exist), so a home fed only by `crm import-daily` still builds. -#}
  {%- if not execute -%}
    {{- return(false) -}}
  {%- endif -%}
  {%- set lookup -%}
    select count(*) from glob('{{ env_var('CRM_HOME') ~ '/landing/events/*.parquet' }}')
  {%- endset -%}
  {{- return(run_query(lookup).columns[0].values()[0] > 0) -}}
{%- endmacro %}
