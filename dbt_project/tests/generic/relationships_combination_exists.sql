{#- Composite foreign key: every combination of `columns` in the model exists in `to`.
    dbt's built-in `relationships` covers one column (use it for a single-column key);
    this is its multi-column form (no dbt packages here, STACK.md). -#}
{% test relationships_combination_exists(model, to, columns) %}

select {% for c in columns %}child.{{ c }}{{ ", " if not loop.last }}{% endfor %}
from {{ model }} as child
left join {{ to }} as parent
    on {% for c in columns %}child.{{ c }} = parent.{{ c }}{{ " and " if not loop.last }}{% endfor %}
where parent.{{ columns[0] }} is null

{% endtest %}
