-- Every landed event before the run's as-of date: the envelope only, payload kept as JSON text.
-- The as-of cut happens here, once, so nothing downstream can see the future of the run.
select
    event_id,
    event_type,
    trace_id,
    player_id,
    brand_id,
    cast(occurred_at as timestamp) as occurred_at,
    payload,
    batch_id,
    cast(ingested_at as timestamp) as ingested_at
from {{ source('landing', 'events') }}
where occurred_at < {{ run_as_of_date() }}
