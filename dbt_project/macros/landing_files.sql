{% macro landing_glob(pattern) -%}
  {#- A path pattern under the data home's landing area, e.g. 'events/*.parquet'.
      Keep in sync with the external locations of the sources in models/staging/_sources.yml. -#}
  {{- return(env_var('CRM_HOME') ~ '/landing/' ~ pattern) -}}
{%- endmacro %}


{% macro landing_files_exist(pattern) -%}
  {#- True when at least one file matches landing_glob(pattern), checked at execution time
      with DuckDB's glob() (0 rows for an empty or missing folder). At parse time (no
      database) false. Staging models over optional sources (landed events, imported daily
      aggregates, campaign exports) use it to return a typed empty relation instead of
      failing on a folder with no file, so a home fed by only one of them still builds. -#}
  {%- if not execute -%}
    {{- return(false) -}}
  {%- endif -%}
  {%- set lookup -%}
    select count(*) from glob('{{ landing_glob(pattern) }}')
  {%- endset -%}
  {{- return(run_query(lookup).columns[0].values()[0] > 0) -}}
{%- endmacro %}
