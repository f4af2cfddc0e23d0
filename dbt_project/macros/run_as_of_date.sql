{% macro run_as_of_date() -%}
  {#-
    The run's as-of date as a SQL DATE literal. Every mart describes the world strictly
    before this date 00:00 UTC.

    - var `as_of_date` ('YYYY-MM-DD') when given;
    - otherwise the day after the latest landed occurred_at, looked up once per model at
      execution time (so the value is a literal in the compiled SQL, not a subquery).
  -#}
  {%- set raw = var('as_of_date', none) -%}
  {%- if raw is not none and (raw | string | trim) != '' -%}
    {%- set value = raw | string | trim -%}
    {%- if not modules.re.match('^\d{4}-\d{2}-\d{2}$', value) -%}
      {{ exceptions.raise_compiler_error("var as_of_date must be 'YYYY-MM-DD', got '" ~ value ~ "'") }}
    {%- endif -%}
    {{- return("DATE '" ~ value ~ "'") -}}
  {%- endif -%}

  {%- if not execute -%}
    {#- parsing: no database access; any valid date keeps the SQL well-formed -#}
    {{- return("DATE '1970-01-01'") -}}
  {%- endif -%}

  {#- source() is resolved at execution only, so it adds no edge to the DAG (every model
      already depends on landing.events through staging). -#}
  {%- set lookup -%}
    select cast(cast(max(occurred_at) as date) + 1 as {{ dbt.type_string() }}) from {{ source('landing', 'events') }}
  {%- endset -%}
  {%- set latest = run_query(lookup).columns[0].values()[0] -%}
  {%- if latest is none -%}
    {{ exceptions.raise_compiler_error("no landed events: set var as_of_date or land events first") }}
  {%- endif -%}
  {{- return("DATE '" ~ latest ~ "'") -}}
{%- endmacro %}
