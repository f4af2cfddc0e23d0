{#- Composite primary key: no two rows share the values of `columns` (NULLs group
    together, so a NULL part still counts). dbt's built-in `unique` covers one column
    (use it for a single-column key); this is the pattern of
    dbt_utils.unique_combination_of_columns (no dbt packages here, STACK.md). -#}
{% test unique_combination(model, columns) %}

select
    {{ columns | join(', ') }},
    count(*) as duplicate_rows
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1

{% endtest %}
