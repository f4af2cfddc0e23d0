{#- The vocabulary lists below are vars generated from crm/contract.py into dbt_project.yml
    (`python -m crm.contract --write-dbt-vars`; a test fails when they are stale): never spell
    them out here. -#}

{% macro channels() -%}
  {#- Channels we send messages on (crm.contract.CHANNELS). -#}
  {{- return(var('vocab_channels')) -}}
{%- endmacro %}


{% macro consent_channels() -%}
  {#- Channels with a consent state in dim_player: the message channels and profiling
      (crm.contract.CONSENT_CHANNELS). -#}
  {{- return(var('vocab_consent_channels')) -}}
{%- endmacro %}


{% macro products() -%}
  {#- Products a consent can name and a campaign can promote (crm.contract.PRODUCTS). -#}
  {{- return(var('vocab_products')) -}}
{%- endmacro %}


{% macro jurisdictions() -%}
  {#- Jurisdictions (licences) we know the rules of (crm.contract.JURISDICTIONS). -#}
  {{- return(var('vocab_jurisdictions')) -}}
{%- endmacro %}


{% macro event_types() -%}
  {#- Event types of the contract (crm.contract.EVENT_TYPES). -#}
  {{- return(var('vocab_event_types')) -}}
{%- endmacro %}


{% macro exclusion_key(scope, brand_id) -%}
  {#- What an rg.self_exclusion.ended must match to end an exclusion: the scope, and for a brand
      exclusion or a cooling-off the brand as well (int_rg_status_derived). -#}
  case when {{ scope }} = 'operator' then 'operator' else {{ scope }} || ':' || {{ brand_id }} end
{%- endmacro %}


{% macro pii_fields() -%}
  {#- Payload keys that hold contact details or device identity (crm.contract.PII_FIELDS): never
      exposed by any relation of the warehouse. -#}
  {{- return(var('vocab_pii_fields')) -}}
{%- endmacro %}


{% macro to_eur_cents(eur_cents_fractional) -%}
  {#- A fractional EUR-cent amount (minor units x fx_rates.eur_per_unit, usually summed
      first) -> whole EUR cents as BIGINT, rounded half away from zero. -#}
  cast(round({{ eur_cents_fractional }}) as bigint)
{%- endmacro %}


{% macro age_band(age_years) -%}
  case
    when {{ age_years }} is null then null
    when {{ age_years }} < 18 then '<18'
    when {{ age_years }} < 24 then '18-23'
    when {{ age_years }} < 35 then '24-34'
    when {{ age_years }} < 55 then '35-54'
    else '55+'
  end
{%- endmacro %}


{% macro fx_rate_or_fail(rate, currency) -%}
  {#- The EUR rate of a joined fx_rates row; a currency without a row stops the build
      (fail_with) instead of silently dropping its money out of the EUR sums. -#}
  case
    when {{ rate }} is null
        then {{ fail_with("'no fx_rates row for currency ' || coalesce(" ~ currency ~ ", 'NULL') || ': add it to seeds/fx_rates.csv'") }}
    else {{ rate }}
  end
{%- endmacro %}


{% macro event_family(family) -%}
  {#- The landed events of one family (event_type '<family>.*'), as a WHERE condition on
      stg_casino__events. A prefix filter is pushed into the Parquet scan (an IN list is not). -#}
  event_type like '{{ family }}.%'
{%- endmacro %}


{% macro event_envelope() -%}
  {#- The envelope columns every staging view of an event family starts with. -#}
  event_id,
    event_type,
    player_id,
    brand_id,
    occurred_at
{%- endmacro %}
