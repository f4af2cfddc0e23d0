{% macro point_in_time_feature_rows(window_sums, dimension_features, limits, players) -%}
  {#- The feature rows of a set of (player_id, as_of_date) keys, in contract order
      (feature_columns()): the one point-in-time join of player_feature_snapshots (keys =
      active players x weekly as-of dates) and int_campaign_sends_featurized (keys = assigned
      players x send days).

      - window_sums: relation with the keys and the feature_window_aggregates() columns;
        its rows are the population (one row per key).
      - dimension_features: the keys with the dimension_feature_aggregates() columns; a
        key without a row saw no provider / category / method / PSP.
      - limits: the keys with rg_limits_set (limit kinds first set before the as-of date);
        a key without a row set none.
      - players: the attribute history (int_players_historized). The version valid just
        before the as-of date gives brand_id, country and registered_at (ASOF join on
        valid_from < as_of_date 00:00); a key without such a version (not registered yet)
        is dropped.

      A full SELECT statement: the model puts it last, after the CTEs it names. -#}
select
{{ feature_columns() }}
from (

    select
        p.*,
        {{ dimension_and_limit_columns('x', 'l') }}
    from (

        -- the attribute version valid just before the as-of date; no version = not
        -- registered yet = dropped
        select
            w.*,
            h.brand_id,
            h.country,
            h.registered_at
        from {{ window_sums }} as w
        {{ asof_join('inner', players, 'h', 'w.player_id = h.player_id',
                     'cast(w.as_of_date as timestamp)', '>', 'valid_from', ['player_id']) }}

    ) as p
    left join {{ dimension_features }} as x
        on p.player_id = x.player_id
        and p.as_of_date = x.as_of_date
    left join {{ limits }} as l
        on p.player_id = l.player_id
        and p.as_of_date = l.as_of_date

) as snapshot
{%- endmacro %}
