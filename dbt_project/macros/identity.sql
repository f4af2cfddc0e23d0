{#- Entity resolution over the identifiers' pseudonyms (issue 19; docs/abuse.md). -#}

{% macro identity_attribute_types() -%}
  {#- The payload keys whose pseudonyms link accounts, and the independent evidence each one is:
      two accounts link only when they share values of two different types. An IP, its network,
      a street address and its derived key are one type, `place`: a household's address and its
      router's IP are one fact (where someone lives), not two, and counted apart they link every
      family (measured: bench/abuse.py, BENCHMARKS.md). Both name forms are one type. The other
      identifiers (first / last name alone, postcode alone, a full name's exact spelling) are kept
      in int_player_identifiers but link nothing: too common on their own, and name_key covers a
      name's variants. -#}
  {{- return({
      'device_id': 'device',
      'ip': 'place', 'ip_net': 'place', 'address': 'place', 'address_key': 'place',
      'payment_instrument': 'payment', 'card_number': 'payment', 'iban': 'payment',
      'name_key': 'name', 'name_key_swapped': 'name',
      'email': 'contact', 'phone': 'contact'
  }) -}}
{%- endmacro %}


{% macro is_pseudonym(expression) -%}
  {#- True for a keyed hash of the PII vault (crm.store.vault.Vault.pseudonym: 'pii1:' and 32
      lower-case hex digits) and nothing else: a clear value that reached the payload never
      passes. -#}
  {{- adapter.dispatch('is_pseudonym', 'casino_crm')(expression) -}}
{%- endmacro %}

{% macro duckdb__is_pseudonym(expression) -%}
  coalesce(regexp_full_match({{ expression }}, 'pii1:[0-9a-f]{32}'), false)
{%- endmacro %}

{% macro spark__is_pseudonym(expression) -%}
  coalesce({{ expression }} rlike '^pii1:[0-9a-f]{32}$', false)
{%- endmacro %}
