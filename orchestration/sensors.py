"""Running on its own: land dropped files, watch mart freshness, notify ops of failures.

- ``landing_sensor`` (on by default): a new file in ``$CRM_HOME/landing/incoming`` requests one
  run of ``land_incoming`` (the ``landed_events`` asset and its check). It lands only: the
  refresh (warehouse, models, lists, dispatch) stays with ``daily_refresh_schedule``, ``crm run``
  or a backfill, because a file drop must never decide on its own to message players.
- ``mart_freshness_checks`` + ``freshness_checks_sensor`` (on by default, read-only): measured
  against the data's own dates, not the wall clock. The expected as-of date is the day after the
  latest landed or imported data (``crm.ingest.landing.default_as_of``, what ``crm run`` runs),
  but not later than the date of the latest 09:00 UTC deadline (the schedule runs at 06:00).
  The key marts (one table each, rebuilt by every refresh) must hold that date: their latest
  materialization is of that partition or a later one (a backfill of an old date leaves them
  describing the old date); ``player_scores`` (one row set per date) must have that partition.
  A 2025 simulation opened in 2026 is fresh when its latest date was run. Failing checks show as
  WARN on the asset pages; the sensor evaluates them after each 09:00 deadline and after a failed
  check's asset is materialized again.
- ``notify_on_run_failure`` / ``notify_on_failed_gate`` (on by default): a failed run, with its
  failed steps and any failed ERROR check (the blocking gates), or a successful run with a
  failed ERROR check, goes to ``crm.notify.notify`` (log line + optional webhook).
"""

import datetime as dt
import json
import os
from pathlib import Path

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    MetadataValue,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset_check,
    build_sensor_for_freshness_checks,
    define_asset_job,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)

from crm.config import export_env
from crm.ingest.landing import SUPPORTED_SUFFIXES, LandingError, already_ingested, default_as_of, file_digest
from crm.notify import notify
from orchestration.assets.landing import landed_events

LANDING_JOB = "land_incoming"
# Jobs that write the landing area or the warehouse: the landing sensor waits while one is in flight.
WRITER_JOBS = ("daily_refresh", LANDING_JOB)
ACTIVE = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]

land_incoming = define_asset_job(
    LANDING_JOB, selection=AssetSelection.assets(landed_events),
    description="Land the new files of landing/incoming (requested by landing_sensor).",
)


# ---- landing sensor -------------------------------------------------------------------------

def _file_key(p: Path) -> tuple[int, str]:
    return p.stat().st_mtime_ns, p.name


def parse_cursor(cursor: str | None) -> tuple[int, str]:
    """The newest (mtime_ns, name) seen so far; (0, "") before the first tick."""
    if not cursor:
        return 0, ""
    c = json.loads(cursor)
    return int(c["mtime_ns"]), str(c["name"])


def files_after(incoming: Path, cursor: tuple[int, str]) -> list[Path]:
    """Supported files whose (mtime, name) is after the cursor, oldest first."""
    if not incoming.is_dir():
        return []
    files = [p for p in incoming.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES]
    keyed = sorted((_file_key(p), p) for p in files)
    return [p for k, p in keyed if k > cursor]


def _writer_in_flight(instance: DagsterInstance) -> str | None:
    for job in WRITER_JOBS:
        runs = instance.get_runs(filters=RunsFilter(job_name=job, statuses=ACTIVE), limit=1)
        if runs:
            return runs[0].run_id
    return None


@sensor(name="landing_sensor", job=land_incoming, minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description="Lands new files dropped in $CRM_HOME/landing/incoming (one run per batch of new files).")
def landing_sensor(context: SensorEvaluationContext):
    paths = export_env()
    cursor = parse_cursor(context.cursor)
    new = files_after(paths.incoming, cursor)
    if not new:
        return SkipReason(f"no new files in {paths.incoming}")
    busy = _writer_in_flight(context.instance)
    if busy:  # the cursor stays: the files are picked up on a later tick
        return SkipReason(f"{len(new)} new file(s) wait for run {busy} to finish")
    mtime_ns, name = _file_key(new[-1])
    next_cursor = json.dumps({"mtime_ns": mtime_ns, "name": name})
    seen = already_ingested(paths)
    pending = [p for p in new if file_digest(p)[:16] not in seen]
    if not pending:  # e.g. landed by `crm ingest` or `crm run` already
        return SensorResult(skip_reason=f"{len(new)} new file(s), content already landed", cursor=next_cursor)
    names = ", ".join(p.name for p in pending)
    return SensorResult(
        run_requests=[RunRequest(run_key=f"landing:{mtime_ns}:{name}",
                                 tags={"crm/trigger": "landing_sensor", "crm/files": names[:200]})],
        cursor=next_cursor,
    )


# ---- freshness of the marts -----------------------------------------------------------------

# One table each, rebuilt by every refresh whatever its date (its partition): the latest update of any partition.
FRESH_MARTS = ["dim_player", "fct_player_daily", "player_features"]
FRESH_PARTITIONED = ["player_scores"]  # daily partitions: the latest one must exist, not any recent update
FRESHNESS_DEADLINE_HOUR = 9  # UTC, three hours after daily_refresh_schedule (06:00 UTC)
# What Dagster's freshness sensor reads on a passed check: no re-evaluation before this time.
FRESH_UNTIL_METADATA_KEY = "dagster/fresh_until_timestamp"


def latest_deadline(now: dt.datetime) -> dt.datetime:
    """The latest 09:00 UTC at or before ``now`` (aware, UTC)."""
    today = now.astimezone(dt.UTC).replace(hour=FRESHNESS_DEADLINE_HOUR, minute=0, second=0, microsecond=0)
    return today if today <= now else today - dt.timedelta(days=1)


def expected_as_of(paths, now: dt.datetime | None = None) -> tuple[dt.date | None, dt.date | None]:
    """(the as-of date the marts and scores should hold, the data's date): the day after the latest landed
    or imported data, capped at the date of the latest 09:00 UTC deadline (data arriving during a day is
    due by the next deadline). (None, None) for a home without data."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        data = default_as_of(paths)
    except LandingError:
        return None, None
    return min(data, latest_deadline(now).date()), data


def _latest_partition(instance, key: AssetKey) -> str | None:
    ev = instance.get_latest_materialization_event(key)
    return ev.dagster_event.partition if ev is not None and ev.dagster_event is not None else None


def data_freshness_check(key: AssetKey, per_partition: bool) -> AssetChecksDefinition:
    """``freshness_check`` on ``key`` against the data's dates (:func:`expected_as_of`). ``per_partition``:
    the expected partition must be materialized (a long table such as player_scores); otherwise the
    latest materialization must be of that partition or a later one (a table rebuilt by each run)."""
    what = ("has the partition of" if per_partition else "was last built for")

    @asset_check(asset=key, name="freshness_check", blocking=False,
                 description=f"WARN unless {key.to_user_string()} {what} the data's latest as-of date (the day "
                             "after the latest landed or imported data, capped at the latest 09:00 UTC).")
    def _check(context: AssetCheckExecutionContext) -> AssetCheckResult:
        now = dt.datetime.now(dt.UTC)
        expected, data = expected_as_of(export_env(), now)
        latest = _latest_partition(context.instance, key)
        meta: dict = {"data_as_of_date": data.isoformat() if data else "no data",
                      "expected_partition": expected.isoformat() if expected else "none",
                      "latest_materialized_partition": latest or "never"}
        if expected is None:
            return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN, metadata=meta,
                                    description="no landed or imported data yet: nothing can be fresh")
        if per_partition:
            passed = expected.isoformat() in context.instance.get_materialized_partitions(key)
        else:
            passed = latest is not None and latest >= expected.isoformat()
        if passed:
            meta[FRESH_UNTIL_METADATA_KEY] = MetadataValue.timestamp(
                (latest_deadline(now) + dt.timedelta(days=1)).timestamp())
        return AssetCheckResult(
            passed=passed, severity=AssetCheckSeverity.WARN, metadata=meta,
            description=f"{key.to_user_string()} {what} {expected} (the data's latest as-of date)" if passed else
            f"stale: {key.to_user_string()} {'lacks the partition' if per_partition else 'was not last built for'} "
            f"{expected}, the data's latest as-of date (latest materialized: {latest or 'never'}); "
            f"run `crm run` or the partition {expected}")

    return _check


mart_freshness_checks = [
    *(data_freshness_check(AssetKey(k), per_partition=False) for k in FRESH_MARTS),
    # a backfill of an old date updates the asset but not the latest scores: check the partition itself
    *(data_freshness_check(AssetKey(k), per_partition=True) for k in FRESH_PARTITIONED),
]
freshness_checks_sensor = build_sensor_for_freshness_checks(
    freshness_checks=mart_freshness_checks, name="freshness_checks_sensor",
    default_status=DefaultSensorStatus.RUNNING,
)


# ---- notifications --------------------------------------------------------------------------

def failed_checks(instance: DagsterInstance, run_id: str, errors_only: bool = True) -> list[dict]:
    """The asset checks that failed in a run (by default only ERROR severity: the gates)."""
    out = []
    for rec in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        ev = rec.dagster_event.event_specific_data
        if ev.passed or (errors_only and ev.severity.value != "ERROR"):
            continue
        out.append({"asset": ev.asset_key.to_user_string(), "check": ev.check_name,
                    "severity": ev.severity.value, "description": ev.description or ""})
    return out


def _run_url(run_id: str) -> str:
    return f"{os.environ.get('CRM_DAGSTER_URL', 'http://127.0.0.1:3000').rstrip('/')}/runs/{run_id}"


def run_event(kind: str, run, checks: list[dict], failed_steps: list[str], message: str = "") -> dict:
    """The notification for one run (what crm.notify.notify receives)."""
    partition = run.tags.get("dagster/partition")
    what = (f"{len(checks)} gate(s) failed: " + "; ".join(f"{c['asset']}:{c['check']}" for c in checks)) \
        if checks else ""
    summary = f"{run.job_name}{f' [{partition}]' if partition else ''} " + \
        ("failed" if kind == "run_failure" else "succeeded with failed gates") + \
        (f" at {', '.join(failed_steps)}" if failed_steps else "") + (f"; {what}" if what else "")
    return {"kind": kind, "severity": "error", "summary": summary, "run_id": run.run_id, "job": run.job_name,
            "partition": partition, "trigger": run.tags.get("crm/trigger") or run.tags.get("dagster/sensor_name"),
            "failed_steps": failed_steps, "failed_checks": checks, "message": message[:2000],
            "url": _run_url(run.run_id)}


@run_failure_sensor(name="notify_on_run_failure", default_status=DefaultSensorStatus.RUNNING,
                    description="Notifies (log + optional CRM_NOTIFY_WEBHOOK) when a run fails, naming the "
                                "failed steps and failed gates.")
def notify_on_run_failure(context: RunFailureSensorContext):
    run = context.dagster_run
    steps = [ev.step_key for ev in context.get_step_failure_events() if ev.step_key]
    message = context.failure_event.message or ""
    outcome = notify(run_event("run_failure", run, failed_checks(context.instance, run.run_id), steps, message))
    context.log.info(f"notified run failure of {run.run_id}: {outcome}")


@run_status_sensor(run_status=DagsterRunStatus.SUCCESS, name="notify_on_failed_gate",
                   default_status=DefaultSensorStatus.RUNNING,
                   description="Notifies when a run succeeded although an ERROR-severity check failed.")
def notify_on_failed_gate(context: RunStatusSensorContext):
    run = context.dagster_run
    checks = failed_checks(context.instance, run.run_id)
    if checks:
        notify(run_event("gate_failure", run, checks, []))


sensors = [landing_sensor, freshness_checks_sensor, notify_on_run_failure, notify_on_failed_gate]
