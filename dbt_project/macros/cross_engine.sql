{#- The SQL that differs between the engines the project builds on: DuckDB (the default) and
    Apache Spark (dbt-spark, `crm run --target spark`). Each macro dispatches on the adapter
    (adapter.dispatch: `duckdb__...` / `spark__...`, `default__` when both agree); models call
    these and dbt's own cross-database macros (dbt.datediff, dbt.type_string), never an
    engine's dialect directly. tests/test_spark.py builds the marts on both from the same landed
    data and compares them row for row. -#}


{% macro register_landing_tables() -%}
  {#- on-run-start: make the landed Parquet folders readable as the `landing` sources. -#}
  {{- return(adapter.dispatch('register_landing_tables', 'casino_crm')()) -}}
{%- endmacro %}

{% macro default__register_landing_tables() -%}
  {#- dbt-duckdb reads each source's external_location (read_parquet of the glob). -#}
  select 1
{%- endmacro %}

{% macro spark__register_landing_tables() -%}
  {#- Spark: one catalog table per source over its Parquet files (re-created each run, so new
      batches are seen). A source without any file gets no table; its staging model returns a
      typed empty relation (landing_files_exist). -#}
  {%- if execute -%}
    {%- do run_query('create database if not exists landing') -%}
    {%- for name, pattern in [('events', 'events/*.parquet'), ('imported_daily', 'imported_daily/*.parquet'),
                              ('campaign_assignments', 'exports/campaign_assignments*.parquet')] -%}
      {%- do run_query('drop table if exists landing.' ~ name) -%}
      {%- if landing_files_exist(pattern) -%}
        {%- do run_query("create table landing." ~ name ~ " using parquet options (path '"
                         ~ landing_glob(pattern) | replace("\\", "\\\\") | replace("'", "\\'")
                         ~ "', mergeSchema 'true')") -%}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  select 1
{%- endmacro %}


{% macro landing_files_exist(pattern) -%}
  {#- True when at least one file matches landing_glob(pattern). Staging models over optional
      sources (landed events, imported daily aggregates, campaign exports) use it to return a
      typed empty relation instead of failing on a folder with no file, so a home fed by only
      one of them still builds. At parse time (no database) false. -#}
  {%- if not execute -%}
    {{- return(false) -}}
  {%- endif -%}
  {{- return(adapter.dispatch('landing_files_exist', 'casino_crm')(pattern)) -}}
{%- endmacro %}

{% macro duckdb__landing_files_exist(pattern) -%}
  {#- DuckDB's glob(): 0 rows for an empty or missing folder, checked at execution time. -#}
  {%- set lookup -%}
    select count(*) from glob('{{ landing_glob(pattern) }}')
  {%- endset -%}
  {{- return(run_query(lookup).columns[0].values()[0] > 0) -}}
{%- endmacro %}

{% macro spark__landing_files_exist(pattern) -%}
  {#- Spark SQL cannot list a folder: the caller (crm.warehouse.dbt_vars) passes the patterns
      that have files as the var `landing_files`. -#}
  {%- set present = var('landing_files', none) -%}
  {%- if present is none -%}
    {{ exceptions.raise_compiler_error("on Spark, set var landing_files (the landing patterns with files, "
                                       ~ "crm.warehouse.dbt_vars) to build") }}
  {%- endif -%}
  {{- return(pattern in present) -}}
{%- endmacro %}


{% macro day_facts_materialization() -%}
  {#- The day facts are incremental by day on DuckDB (delete+insert, macros/incremental_days.sql).
      dbt-spark has no delete+insert on Parquet: there they are rebuilt as tables. -#}
  {{- return(adapter.dispatch('day_facts_materialization', 'casino_crm')()) -}}
{%- endmacro %}

{% macro default__day_facts_materialization() -%}{{ return('incremental') }}{%- endmacro %}

{% macro spark__day_facts_materialization() -%}{{ return('table') }}{%- endmacro %}


{% macro parse_payload(fields, payload='payload') -%}
  {#- Parse the JSON payload once into a STRUCT of typed fields, e.g.
      parse_payload({'stake': 'BIGINT', 'currency': 'VARCHAR'}). One parse per row is about
      twice as fast as one `payload ->> 'field'` per field, which matters on the bet stream.
      Missing fields (and values of another JSON type, which landing already rejects) come out
      as NULL. -#}
  {{- return(adapter.dispatch('parse_payload', 'casino_crm')(fields, payload)) -}}
{%- endmacro %}

{% macro duckdb__parse_payload(fields, payload) -%}
  json_transform({{ payload }}, '{{ tojson(fields) }}')
{%- endmacro %}

{% macro spark__parse_payload(fields, payload) -%}
  from_json({{ payload }}, '{% for name, type in fields.items() %}`{{ name }}` {{ 'STRING' if type == 'VARCHAR' else type }}{{ ", " if not loop.last }}{% endfor %}')
{%- endmacro %}


{% macro without_pii(payload) -%}
  {#- The payload text without the values of the pii_fields() keys (the warehouse holds no
      contact details). Checked with a cheap text search first: only the few records that carry
      one are re-written. -#}
  case
    when {% for f in pii_fields() %}contains({{ payload }}, '"{{ f }}"'){{ " or " if not loop.last }}{% endfor %}
        then {{ adapter.dispatch('payload_without_keys', 'casino_crm')(payload, pii_fields()) }}
    else {{ payload }}
  end
{%- endmacro %}

{% macro duckdb__payload_without_keys(payload, keys) -%}
  cast(json_merge_patch({{ payload }}, '{ {%- for f in keys %}"{{ f }}": null{{ ", " if not loop.last }}{% endfor -%} }') as varchar)
{%- endmacro %}

{% macro spark__payload_without_keys(payload, keys) -%}
  {#- Spark has no JSON patch: each key's value (a JSON string, number, boolean or null; landing
      guarantees valid JSON text) is replaced by null, so the text stays valid JSON. -#}
  regexp_replace({{ payload }}, '("(?:{{ keys | join("|") }})"\\s*:\\s*)("(?:[^"\\\\]|\\\\.)*"|-?[0-9][0-9.eE+-]*|true|false|null)', '$1null')
{%- endmacro %}


{% macro utc_timestamp(iso_text) -%}
  {#- ISO-8601 text ('...Z' or with an offset) -> naive UTC TIMESTAMP; NULL if unparsable. -#}
  {{- adapter.dispatch('utc_timestamp', 'casino_crm')(iso_text) -}}
{%- endmacro %}

{% macro duckdb__utc_timestamp(iso_text) -%}
  timezone('UTC', try_cast({{ iso_text }} as timestamptz))
{%- endmacro %}

{% macro spark__utc_timestamp(iso_text) -%}
  {#- the session time zone is UTC (profiles.yml): an offset is converted, none means UTC -#}
  try_cast({{ iso_text }} as timestamp)
{%- endmacro %}


{% macro utc_to_local(timestamp_utc, time_zone) -%}
  {#- A naive UTC timestamp -> the naive local time in an IANA time zone (a known one: see
      known_time_zones()). -#}
  {{- adapter.dispatch('utc_to_local', 'casino_crm')(timestamp_utc, time_zone) -}}
{%- endmacro %}

{% macro duckdb__utc_to_local(timestamp_utc, time_zone) -%}
  timezone({{ time_zone }}, timezone('UTC', {{ timestamp_utc }}))
{%- endmacro %}

{% macro spark__utc_to_local(timestamp_utc, time_zone) -%}
  from_utc_timestamp({{ timestamp_utc }}, {{ time_zone }})
{%- endmacro %}


{% macro known_time_zones() -%}
  {#- A relation (one column `name`) of the time zone names the engine can convert to. -#}
  {{- adapter.dispatch('known_time_zones', 'casino_crm')() -}}
{%- endmacro %}

{% macro duckdb__known_time_zones() -%}
  select name from pg_timezone_names()
{%- endmacro %}

{% macro spark__known_time_zones() -%}
  {#- Spark cannot list its zones in SQL: the IANA names of pytz (dbt's `modules`), which Java
      knows as well. -#}
  select explode(array({% for z in modules.pytz.all_timezones if '/' in z %}'{{ z }}'{{ ", " if not loop.last }}{% endfor %})) as name
{%- endmacro %}


{% macro age_in_years(birth_date, on_date) -%}
  {#- Completed years of age on a date (birthday counts from that day on; a 29 February birthday
      counts on 28 February in other years, on both engines). -#}
  {{- adapter.dispatch('age_in_years', 'casino_crm')(birth_date, on_date) -}}
{%- endmacro %}

{% macro duckdb__age_in_years(birth_date, on_date) -%}
  cast(date_sub('year', {{ birth_date }}, {{ on_date }}) as integer)
{%- endmacro %}

{% macro spark__age_in_years(birth_date, on_date) -%}
  {#- months_between counts whole months when both days are the same or both the last of their
      month, as DuckDB's date_sub does -#}
  cast(floor(months_between({{ on_date }}, {{ birth_date }}) / 12) as integer)
{%- endmacro %}


{% macro fail_with(message_expression) -%}
  {#- An expression that stops the query with a message (used where a silent NULL would lose
      money or a rule). -#}
  {{- adapter.dispatch('fail_with', 'casino_crm')(message_expression) -}}
{%- endmacro %}

{% macro duckdb__fail_with(message_expression) -%}error({{ message_expression }}){%- endmacro %}

{% macro spark__fail_with(message_expression) -%}raise_error({{ message_expression }}){%- endmacro %}


{% macro string_array(values) -%}
  {#- A SQL array of string literals, e.g. string_array(products()). -#}
  {{- adapter.dispatch('array_of', 'casino_crm')(values | map('tojson') | map('replace', '"', "'") | list) -}}
{%- endmacro %}

{% macro array_of(expressions) -%}
  {#- A SQL array of expressions. -#}
  {{- adapter.dispatch('array_of', 'casino_crm')(expressions) -}}
{%- endmacro %}

{% macro duckdb__array_of(expressions) -%}[{{ expressions | join(', ') }}]{%- endmacro %}

{% macro spark__array_of(expressions) -%}array({{ expressions | join(', ') }}){%- endmacro %}


{% macro unnest_array(array_expression) -%}
  {#- One row per element of an array (in a SELECT list). -#}
  {{- adapter.dispatch('unnest_array', 'casino_crm')(array_expression) -}}
{%- endmacro %}

{% macro duckdb__unnest_array(array_expression) -%}unnest({{ array_expression }}){%- endmacro %}

{% macro spark__unnest_array(array_expression) -%}explode({{ array_expression }}){%- endmacro %}


{% macro star_except(relation_alias, columns) -%}
  {#- Every column of a relation (alias, or none for the FROM) but some. -#}
  {{- adapter.dispatch('star_except', 'casino_crm')(relation_alias, columns) -}}
{%- endmacro %}

{% macro duckdb__star_except(relation_alias, columns) -%}
  {{ relation_alias ~ '.' if relation_alias }}* exclude ({{ columns | join(', ') }})
{%- endmacro %}

{% macro spark__star_except(relation_alias, columns) -%}
  {{ relation_alias ~ '.' if relation_alias }}* except ({{ columns | join(', ') }})
{%- endmacro %}


{% macro sorted_string_agg(expression, separator) -%}
  {#- The distinct-free, sorted concatenation of a text column; a FILTER clause may follow. -#}
  {{- adapter.dispatch('sorted_string_agg', 'casino_crm')(expression, separator) -}}
{%- endmacro %}

{% macro duckdb__sorted_string_agg(expression, separator) -%}
  string_agg({{ expression }}, '{{ separator }}' order by {{ expression }})
{%- endmacro %}

{% macro spark__sorted_string_agg(expression, separator) -%}
  string_agg({{ expression }}, '{{ separator }}') within group (order by {{ expression }})
{%- endmacro %}


{% macro sort_key(expressions) -%}
  {#- A composite value ordered field by field, for arg_min / min_by ties. -#}
  {{- adapter.dispatch('sort_key', 'casino_crm')(expressions) -}}
{%- endmacro %}

{% macro duckdb__sort_key(expressions) -%}row({{ expressions | join(', ') }}){%- endmacro %}

{% macro spark__sort_key(expressions) -%}struct({{ expressions | join(', ') }}){%- endmacro %}


{% macro asof_join(kind, relation, alias, match, left_time, op, right_time, partition_by) -%}
  {#- `{kind} join` of the one row of `relation` per left row whose `right_time` is the nearest
      on the `op` side: op '>=' / '>' -> the latest right_time at or before / strictly before
      left_time; op '<' / '<=' -> the first right_time strictly after / at or after left_time.
      `match` is the equality condition (e.g. "e.player_id = h.player_id"), `partition_by` the
      same columns of the relation (e.g. ['player_id']).
      DuckDB: its ASOF join. Spark: the relation with the neighbouring right_time of each row
      (lead / lag over the partition), joined on the interval it covers. -#}
  {{- adapter.dispatch('asof_join', 'casino_crm')(kind, relation, alias, match, left_time, op, right_time, partition_by) -}}
{%- endmacro %}

{% macro duckdb__asof_join(kind, relation, alias, match, left_time, op, right_time, partition_by) -%}
  asof {{ kind }} join {{ relation }} as {{ alias }}
        on {{ match }}
        and {{ left_time }} {{ op }} {{ alias }}.{{ right_time }}
{%- endmacro %}

{% macro spark__asof_join(kind, relation, alias, match, left_time, op, right_time, partition_by) -%}
  {%- if op in ('>=', '>') -%}
    {%- set neighbour = 'lead' -%}
    {%- set bound = left_time ~ (' < ' if op == '>=' else ' <= ') ~ alias ~ '._asof_neighbour' -%}
  {%- elif op in ('<', '<=') -%}
    {%- set neighbour = 'lag' -%}
    {%- set bound = left_time ~ (' >= ' if op == '<' else ' > ') ~ alias ~ '._asof_neighbour' -%}
  {%- else -%}
    {{ exceptions.raise_compiler_error("asof_join: op must be one of >=, >, <, <=, got " ~ op) }}
  {%- endif -%}
  {{ kind }} join (
        select *, {{ neighbour }}({{ right_time }}) over (partition by {{ partition_by | join(', ') }} order by {{ right_time }}) as _asof_neighbour
        from {{ relation }}
    ) as {{ alias }}
        on {{ match }}
        and {{ left_time }} {{ op }} {{ alias }}.{{ right_time }}
        and ({{ alias }}._asof_neighbour is null or {{ bound }})
{%- endmacro %}


{% macro days_between(start_date, end_date) -%}
  {#- Calendar days from start to end (DATE or TIMESTAMP; day boundaries crossed), NULL if
      either is NULL. dbt.datediff would do on DuckDB, but on Spark it fails on a NULL date. -#}
  {{- adapter.dispatch('days_between', 'casino_crm')(start_date, end_date) -}}
{%- endmacro %}

{% macro duckdb__days_between(start_date, end_date) -%}date_diff('day', {{ start_date }}, {{ end_date }}){%- endmacro %}

{% macro spark__days_between(start_date, end_date) -%}datediff({{ end_date }}, {{ start_date }}){%- endmacro %}


{% macro seconds_between(start_timestamp, end_timestamp) -%}
  {#- Whole seconds from start to end (second boundaries crossed), NULL if either is NULL. -#}
  {{- adapter.dispatch('seconds_between', 'casino_crm')(start_timestamp, end_timestamp) -}}
{%- endmacro %}

{% macro duckdb__seconds_between(start_timestamp, end_timestamp) -%}date_diff('second', {{ start_timestamp }}, {{ end_timestamp }}){%- endmacro %}

{% macro spark__seconds_between(start_timestamp, end_timestamp) -%}(unix_timestamp({{ end_timestamp }}) - unix_timestamp({{ start_timestamp }})){%- endmacro %}


{% macro read_by_crm_materialization() -%}
  {#- A staging relation the Python side reads (e.g. stg_casino__crm_messages for the online
      profiles): a view on DuckDB; a table on Spark, whose Parquet files the hand-off to DuckDB
      copies (crm.warehouse_spark). -#}
  {{- return('table' if target.type == 'spark' else 'view') -}}
{%- endmacro %}


{% macro ignoring_nulls(window_function, expression) -%}
  {#- first_value / last_value of the non-NULL values (an OVER clause follows). -#}
  {{- adapter.dispatch('ignoring_nulls', 'casino_crm')(window_function, expression) -}}
{%- endmacro %}

{% macro duckdb__ignoring_nulls(window_function, expression) -%}{{ window_function }}({{ expression }} ignore nulls){%- endmacro %}

{% macro spark__ignoring_nulls(window_function, expression) -%}{{ window_function }}({{ expression }}, true){%- endmacro %}


{% macro union_all_by_name(relations) -%}
  {#- UNION ALL BY NAME over CTEs with their column lists: `relations` is a list of
      (name, [columns]); the result has every column once, in order of first appearance, NULL
      where a relation lacks it. Spark SQL has no BY NAME, and a CTE's columns cannot be looked
      up at compile time, hence the lists: a column left out of its list is missing from the
      result on both engines (fct_player_daily then fails to build). -#}
  {%- set columns = [] -%}
  {%- for name, cols in relations -%}
    {%- for c in cols if c not in columns -%}{%- do columns.append(c) -%}{%- endfor -%}
  {%- endfor -%}
  {%- for name, cols in relations %}
    select {% for c in columns %}{{ c if c in cols else 'null as ' ~ c }}{{ ", " if not loop.last }}{% endfor %}
    from {{ name }}
    {%- if not loop.last %}
    union all
    {%- endif %}
  {%- endfor %}
{%- endmacro %}


{% macro spark__load_csv_rows(model, agate_table) %}
  {#- dbt-spark's own version passes the seed's values as bindings, which its session connection pastes
      into the SQL between single quotes without escaping: a value with a quote (Gonzo's Quest,
      Play'n GO) breaks the statement, and a crafted one could inject SQL. Here every value becomes a
      Spark literal: NULL, a boolean, a number, or a string with its backslashes and quotes escaped. -#}
  {% set batch_size = get_batch_size() %}
  {% set column_override = model['config'].get('column_types', {}) %}
  {% set statements = [] %}
  {% for chunk in agate_table.rows | batch(batch_size) %}
      {% set sql %}
          insert into {{ this.render() }} values
          {% for row in chunk -%}
              ({%- for col_name in agate_table.column_names -%}
                  {%- set inferred_type = adapter.convert_type(agate_table, loop.index0) -%}
                  {%- set type = column_override.get(col_name, inferred_type) -%}
                  {%- set v = row[loop.index0] -%}
                  cast({{ spark_seed_literal(v) }} as {{ type }})
                  {%- if not loop.last %},{%- endif %}
              {%- endfor -%})
              {%- if not loop.last %},{%- endif %}
          {%- endfor %}
      {% endset %}
      {% do adapter.add_query(sql, abridge_sql_log=True) %}
      {% if loop.index0 == 0 %}
          {% do statements.append(sql) %}
      {% endif %}
  {% endfor %}
  {{ return(statements[0]) }}
{% endmacro %}


{% macro spark_seed_literal(v) -%}
  {%- if v is none -%} null
  {%- elif v is sameas true -%} true
  {%- elif v is sameas false -%} false
  {%- elif v is number -%} {{ v }}
  {%- else -%} '{{ (v | string) | replace("\\", "\\\\") | replace("'", "\\'") }}'
  {%- endif -%}
{%- endmacro %}
