-- The feature snapshot at the run's as-of date: what scoring and segments read.
select {{ star_except(none, ['loaded_at']) }}
from {{ ref('player_feature_snapshots') }}
where as_of_date = {{ run_as_of_date() }}
