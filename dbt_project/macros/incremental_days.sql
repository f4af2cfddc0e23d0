{#- Incremental day facts: the models whose rows are one UTC day of activity (a row of day D
    depends only on the events and imports of day D) rebuild, on an incremental run, only the
    days that can have changed since their last build, and replace those days whole
    (delete+insert on activity_date). The result equals a full rebuild, late events included:

    - every day of an event or import landed after the model's last build (its `loaded_at`
      watermark), however old the day: an event landed 10 days late rebuilds that day;
    - every day after the last day the model holds, up to the run's as-of date (a day with
      no activity yet, or events landed earlier for days the last build's as-of date cut off);
    - a late player.registered / player.updated (time zone history: the local hour of later
      sessions) rebuilds every day from its day on;
    - a late session.started rebuilds the days of its session.ended (seconds of a session with
      no duration_s are timed against its start).

    Rows of days on or after the as-of date are deleted first (pre_hook
    delete_days_from_as_of): a run for an earlier as-of date leaves no row of its future.
    `crm run --full-refresh` (dbt --full-refresh) rebuilds every day; the warehouse asset also
    does it by itself when the dbt project changed since the last build. -#}

{% macro refresh_days(date_column='activity_date') -%}
  {#- None on a full build (every day); else {'days': ['YYYY-MM-DD', ...], 'loaded_at': 'timestamp'}
      for this incremental run. Looked up once per model at execution time. `date_column`: the
      model's day column (its rows' `loaded_at` is the watermark). -#}
  {%- if not execute or not is_incremental() -%}
    {{- return(none) -}}
  {%- endif -%}
  {%- set as_of = run_as_of_date() -%}
  {%- set lookup -%}
    with state as (
        select max(loaded_at) as loaded_through, max({{ date_column }}) as covered_through
        from {{ this }}
        where {{ date_column }} < {{ as_of }}
    ),
    new_events as (
        select event_type, cast(occurred_at as date) as day, payload
        from {{ ref('stg_casino__events') }}
        where ingested_at > (select loaded_through from state)
    ),
    new_imports as (
        select activity_date as day
        from {{ ref('stg_imported__player_daily') }}
        where imported_at > (select loaded_through from state)
    ),
    late_starts as (
        select json_extract_string(payload, '$.session_id') as session_id, min(day) as day
        from new_events
        where event_type = 'session.started' and day <= (select covered_through from state)
        group by all
    ),
    days as (
        select day from new_events
        union all
        select day from new_imports
        union all
        select cast(unnest(generate_series(cast(covered_through + 1 as timestamp),
                                           cast({{ as_of }} - 1 as timestamp), interval 1 day)) as date)
        from state
        union all
        select cast(unnest(generate_series(cast(min(day) as timestamp),
                                           cast({{ as_of }} - 1 as timestamp), interval 1 day)) as date)
        from new_events
        where event_type in ('player.registered', 'player.updated')
    )
    select
        (select loaded_through is null or covered_through is null from state) as rebuild_all,
        (select strftime(greatest(
            (select max(ingested_at) from {{ ref('stg_casino__events') }}),
            (select max(imported_at) from {{ ref('stg_imported__player_daily') }})
        ), '%Y-%m-%d %H:%M:%S.%f')) as loaded_at,
        (select string_agg(distinct strftime(day, '%Y-%m-%d'), ',' order by strftime(day, '%Y-%m-%d'))
         from days where day < {{ as_of }}) as days,
        (select strftime(min(day), '%Y-%m-%d') from late_starts) as late_starts_from,
        (select strftime(loaded_through, '%Y-%m-%d %H:%M:%S.%f') from state) as loaded_through,
        (select strftime(covered_through, '%Y-%m-%d') from state) as covered_through
  {%- endset -%}
  {%- set row = run_query(lookup).rows[0] -%}
  {%- if row[0] -%}
    {{- return(none) -}}
  {%- endif -%}
  {%- set days = (row[2] or '').split(',') | reject('equalto', '') | list -%}
  {%- if row[3] -%}
    {#- Late session starts: the days of their session.ended, in a second query whose scan of
        session.ended payloads is bounded by literals (pushed into the Parquet scan) and runs only
        when a late start exists. Bounded by a subquery in the first query, it read every
        session.ended payload of the history on every run (1.1 s of its 1.2 at 100,000 players). -#}
    {%- set ended -%}
      with late_starts as (
          select json_extract_string(payload, '$.session_id') as session_id
          from {{ ref('stg_casino__events') }}
          where ingested_at > cast('{{ row[4] }}' as timestamp)
            and event_type = 'session.started'
            and cast(occurred_at as date) <= DATE '{{ row[5] }}'
      )
      select string_agg(distinct strftime(cast(e.occurred_at as date), '%Y-%m-%d'), ',')
      from {{ ref('stg_casino__events') }} as e
      where e.event_type = 'session.ended'
        and e.occurred_at >= cast(DATE '{{ row[3] }}' as timestamp)
        and e.occurred_at < cast({{ as_of }} as timestamp)
        and json_extract_string(e.payload, '$.session_id') in (select session_id from late_starts)
    {%- endset -%}
    {%- set ended_days = (run_query(ended).rows[0][0] or '').split(',') | reject('equalto', '') | list -%}
    {%- set days = (days + ended_days) | unique | sort | list -%}
  {%- endif -%}
  {{- return({'days': days, 'loaded_at': row[1]}) -}}
{%- endmacro %}


{% macro in_refresh_days(refresh, timestamp_column=none, date_column=none) -%}
  {#- A predicate for the rows of `refresh` (refresh_days()): on a timestamp column (events: the
      range bound prunes Parquet row groups by their statistics) or on a date column. -#}
  {%- if refresh is none -%}
    true
  {%- elif refresh['days'] | length == 0 -%}
    false
  {%- else -%}
    {%- set first = "DATE '" ~ refresh['days'][0] ~ "'" -%}
    {%- set literals = [] -%}
    {%- for d in refresh['days'] -%}{%- do literals.append("DATE '" ~ d ~ "'") -%}{%- endfor -%}
    {%- if timestamp_column is not none -%}
      ({{ timestamp_column }} >= cast({{ first }} as timestamp)
       and cast({{ timestamp_column }} as date) in ({{ literals | join(', ') }}))
    {%- else -%}
      ({{ date_column }} >= {{ first }} and {{ date_column }} in ({{ literals | join(', ') }}))
    {%- endif -%}
  {%- endif -%}
{%- endmacro %}


{% macro loaded_at_column(refresh) -%}
  {#- The watermark each row carries: what was landed (events and imports) when it was built. -#}
  {%- if refresh is none -%}
    (select greatest(
        (select max(ingested_at) from {{ ref('stg_casino__events') }}),
        (select max(imported_at) from {{ ref('stg_imported__player_daily') }})))
  {%- else -%}
    cast('{{ refresh["loaded_at"] }}' as timestamp)
  {%- endif -%}
{%- endmacro %}


{% macro feature_snapshot_dates() -%}
  {#- The as-of dates of player_feature_snapshots, newest first: the run's as-of date and the
      latest snapshot_count - 1 dates of the grid before it (every snapshot_every_days days from
      snapshot_grid_anchor). A grid keeps yesterday's snapshots valid today, so a daily run
      builds one new snapshot, not snapshot_count of them. -#}
  {%- set as_of = modules.datetime.date.fromisoformat(run_as_of_date()[6:16]) -%}
  {%- set anchor = modules.datetime.date.fromisoformat(var('snapshot_grid_anchor') | string) -%}
  {%- set every = var('snapshot_every_days') | int -%}
  {%- set offset = (as_of - anchor).days % every -%}
  {%- set last_grid = as_of - modules.datetime.timedelta(days=(offset if offset else every)) -%}
  {%- set dates = [as_of.isoformat()] -%}
  {%- for k in range((var('snapshot_count') | int) - 1) -%}
    {%- do dates.append((last_grid - modules.datetime.timedelta(days=k * every)).isoformat()) -%}
  {%- endfor -%}
  {{- return(dates) -}}
{%- endmacro %}


{% macro snapshot_dates_to_build(refresh) -%}
  {#- Every snapshot date on a full build; on an incremental one the dates not held yet and the
      dates after the first rebuilt day (a snapshot at D reads the days before D). Never empty:
      with nothing to build, a date before any data (no snapshot row comes of it). -#}
  {%- set dates = feature_snapshot_dates() -%}
  {%- if refresh is none -%}
    {{- return(dates) -}}
  {%- endif -%}
  {%- set held = run_query("select distinct strftime(as_of_date, '%Y-%m-%d') from " ~ this).columns[0].values() -%}
  {%- set first = refresh['days'][0] if refresh['days'] else none -%}
  {%- set build = [] -%}
  {%- for d in dates -%}
    {%- if d not in held or (first is not none and first < d) -%}{%- do build.append(d) -%}{%- endif -%}
  {%- endfor -%}
  {{- return(build if build else ['1900-01-01']) -}}
{%- endmacro %}


{% macro delete_other_snapshot_dates() -%}
  {#- pre_hook of player_feature_snapshots: only the run's snapshot dates stay. -#}
  {%- if is_incremental() -%}
    delete from {{ this }} where as_of_date not in (
      {%- for d in feature_snapshot_dates() %}DATE '{{ d }}'{{ ", " if not loop.last }}{% endfor -%})
  {%- else -%}
    select 1
  {%- endif -%}
{%- endmacro %}


{% macro delete_days_from_as_of() -%}
  {#- pre_hook of the incremental day facts: no row on or after the run's as-of date. -#}
  {%- if is_incremental() -%}
    delete from {{ this }} where activity_date >= {{ run_as_of_date() }}
  {%- else -%}
    select 1
  {%- endif -%}
{%- endmacro %}


{% macro delete_unassigned_sends() -%}
  {#- pre_hook of int_campaign_sends_featurized: no row for a (player, send day) that is no longer
      assigned (a day's list published again with other players). -#}
  {%- if is_incremental() -%}
    delete from {{ this }} as held where not exists (
      select 1 from {{ ref('stg_exports__campaign_assignments') }} as a
      where a.player_id = held.player_id and cast(a.sent_at as date) = held.as_of_date)
  {%- else -%}
    select 1
  {%- endif -%}
{%- endmacro %}
