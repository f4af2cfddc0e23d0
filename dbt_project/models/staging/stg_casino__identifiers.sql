-- The identifiers of accounts as the PII vault's pseudonyms, one row per event and payload key:
-- from registrations, profile updates and payment events (crm.contract.PII_FIELDS, including the
-- keys derived at the split: ip_net, name_key, address_key). stg_casino__events drops these
-- keys (without_pii); this view reads them from landing under the same as-of cut, and keeps a
-- value ONLY when it is a pseudonym ('pii1:' + 32 hex digits, macro is_pseudonym): a clear value
-- that somehow arrived never enters the warehouse. Pseudonyms are keyed hashes: they tell "the
-- same device" without telling which.
{%- set events = source('landing', 'events') %}

{% if landing_files_exist('events/*.parquet') %}

with carrying as (

    select
        brand_id,
        player_id,
        event_type,
        cast(occurred_at as timestamp) as occurred_at,
        {{ parse_payload(dict.fromkeys(pii_fields(), 'VARCHAR')) }} as p
    from {{ events }}
    where occurred_at < {{ run_as_of_date() }}
      and (event_type in ('player.registered', 'player.updated') or event_type like 'payment.%')
      and contains(payload, '"pii1:')  -- a cheap text search first: most payment events carry none

),

long as (
    {%- for f in pii_fields() %}
    select brand_id, player_id, event_type, occurred_at, '{{ f }}' as attribute, p.{{ f }} as pseudonym
    from carrying
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
)

select brand_id, player_id, event_type, occurred_at, attribute, pseudonym
from long
where {{ is_pseudonym('pseudonym') }}

{% else %}

select
    cast(null as {{ dbt.type_string() }}) as brand_id,
    cast(null as {{ dbt.type_string() }}) as player_id,
    cast(null as {{ dbt.type_string() }}) as event_type,
    cast(null as timestamp) as occurred_at,
    cast(null as {{ dbt.type_string() }}) as attribute,
    cast(null as {{ dbt.type_string() }}) as pseudonym
where false

{% endif %}
