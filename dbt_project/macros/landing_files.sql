{% macro landing_glob(pattern) -%}
  {#- A path pattern under the data home's landing area, e.g. 'events/*.parquet'.
      Keep in sync with the external locations of the sources in models/staging/_sources.yml. -#}
  {{- return(env_var('CRM_HOME') ~ '/landing/' ~ pattern) -}}
{%- endmacro %}
