{#- Every row satisfies a boolean SQL expression (rows where it is false or NULL fail).
    dbt has no built-in for this: the pattern of dbt_utils.expression_is_true (no dbt
    packages here, STACK.md), model-level only. -#}
{% test expression_is_true(model, expression) %}

select *
from {{ model }}
where not coalesce(({{ expression }}), false)

{% endtest %}
