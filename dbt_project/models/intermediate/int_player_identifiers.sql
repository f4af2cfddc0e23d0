-- Each account's identifiers in long form: one row per (brand, player, attribute, pseudonym),
-- when first and last seen, in how many events, and the independent evidence type the attribute
-- is (macro identity_attribute_types; NULL: kept, links nothing). Input of the entity resolution
-- (fct_identity_links, crm.risk.linking).
{%- set types = identity_attribute_types() %}

select
    brand_id,
    player_id,
    attribute,
    case attribute
        {%- for a, t in types.items() %}
        when '{{ a }}' then '{{ t }}'
        {%- endfor %}
    end as attribute_type,
    pseudonym,
    min(occurred_at) as first_seen_at,
    max(occurred_at) as last_seen_at,
    count(*) as events
from {{ ref('stg_casino__identifiers') }}
group by brand_id, player_id, attribute, pseudonym
