"""Resources and the as-of date: where the data home is, and which date a run describes.

The as-of date has one source: the run's daily partition (``context.partition_key``), read by
:func:`as_of`. Every date-bound asset (the dbt models, models, scores, lists and their gates,
dispatch, readouts) is partitioned with :data:`DAILY`; only landing (``landed_events``), which
lands whatever files are there, is not. A caller that wants "the latest date" computes it
(``crm.ingest.landing.default_as_of``) and passes it as the partition key (orchestration/run.py).
"""

import datetime as dt
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
from dagster import ConfigurableResource, DagsterRunStatus, DailyPartitionsDefinition, RunsFilter
from pydantic import PrivateAttr

from crm.config import Paths, export_env
from crm.contract import EARLIEST_EVENT_TIME
from crm.run_lock import run_lock

# Where the daily partitions start: CRM_PARTITIONS_START (YYYY-MM-DD) when set.
PARTITIONS_START_ENV = "CRM_PARTITIONS_START"


def earliest_data_date(paths: Paths) -> dt.date | None:
    """The first day of the home's data: the earliest landed event or imported daily row (within the
    dates landing and import accept), or None for a home without data."""
    import duckdb

    from crm.ingest.landing import landed_glob

    days = []
    glob = landed_glob(paths)
    imported = paths.home / "landing" / "imported_daily"
    with duckdb.connect() as con:
        if glob:
            day = con.execute("SELECT min(occurred_at) FROM read_parquet(?) WHERE occurred_at >= ?",
                              [glob, EARLIEST_EVENT_TIME]).fetchone()[0]
            if day is not None:
                days.append(day.date())
        if any(imported.glob("*.parquet")):
            day = con.execute("SELECT min(activity_date) FROM read_parquet(?) WHERE activity_date >= ?",
                              [str(imported / "*.parquet"), EARLIEST_EVENT_TIME.date()]).fetchone()[0]
            if day is not None:
                days.append(day)
    return min(days) if days else None


def partitions_start(paths: Paths | None = None) -> dt.date:
    """The first daily partition: ``CRM_PARTITIONS_START``, else the first day of the home's data (read when
    the code location loads: the UI shows the data's own dates, not 13,000 empty days from 1990), else
    where landing and import accept data (crm.contract.EARLIEST_EVENT_TIME)."""
    fixed = os.environ.get(PARTITIONS_START_ENV)
    if fixed:
        return dt.date.fromisoformat(fixed)
    try:
        found = earliest_data_date(paths or export_env())
    except Exception as e:  # noqa: BLE001 - an unreadable home must not stop the code location from loading
        logging.getLogger(__name__).warning(f"partitions start at {EARLIEST_EVENT_TIME:%Y-%m-%d}: {e}")
        found = None
    return found or EARLIEST_EVENT_TIME.date()


# One partition per as-of date. end_offset=1: today's partition exists, because the
# as-of date D describes everything strictly before D 00:00 UTC, complete once D starts. They
# start on the first day of the data (partitions_start): an operator's history of any age has
# its dates (a constant 2024 start refused a history from 2013), and a 2025 simulation is not
# shown as 1 of 13,000 days filled. A home without data starts at EARLIEST_EVENT_TIME (1990); data
# older than the start that arrives while the UI runs needs a reload of the code location.
DAILY = DailyPartitionsDefinition(start_date=partitions_start().isoformat(), end_offset=1, timezone="UTC")
PARTITION_TAG = "dagster/partition"
BACKFILL_TAG = "dagster/backfill"
# On a run: start it although an earlier date failed (see earlier_date_failed).
KEEP_GOING_TAG = "crm/keep_going"
RETRAIN_TAG = "crm/retrain"  # "true": every model trains in this run, due or not (`crm run --retrain`)
FULL_REFRESH_TAG = "crm/full_refresh"  # "true": the dbt build rebuilds every day (`crm run --full-refresh`)
# "spark": dbt builds the warehouse on Spark, handed over to DuckDB after it (`crm run --target spark`)
WAREHOUSE_TARGET_TAG = "crm/warehouse_target"


def as_of(context) -> dt.date:
    """The as-of date of a running asset or asset check: its daily partition, nothing else."""
    if not context.has_partition_key:
        raise ValueError("a date-bound asset runs for one daily partition (the as-of date): pick a partition "
                         "(`crm run --date D`, a backfill, or a partition in the UI)")
    return dt.date.fromisoformat(context.partition_key)


def _failed(runs) -> dict[str, str]:
    """{partition: run id} of the partitions whose latest run (of ``runs``, newest first) failed."""
    latest: dict[str, object] = {}
    for r in runs:
        latest.setdefault(r.tags.get(PARTITION_TAG), r)
    return {p: r.run_id for p, r in latest.items()
            if p and r.status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)}


def earlier_date_failed(instance, run) -> str | None:
    """Why ``run`` must not start, or None. The lists of a date plan around the messages of the
    dates before it, so the dates run oldest first and a failed date stops the later ones:

    - a run of a backfill (tag ``dagster/backfill``, e.g. one launched from the UI) does not start
      while an earlier date of the same backfill failed in its latest run;
    - a run launched by hand (no schedule, sensor or ``crm`` trigger) does not start while the
      latest run of the day before failed.

    The tag ``crm/keep_going`` (any value but "false") overrides both; ``crm run --date D``
    (trigger ``cli``) and the schedule are not held back.
    """
    tags = run.tags
    partition = tags.get(PARTITION_TAG)
    if not partition or tags.get(KEEP_GOING_TAG, "false").lower() not in ("", "false", "0", "no"):
        return None
    override = f"set the run tag {KEEP_GOING_TAG}=true to run it anyway"
    backfill = tags.get(BACKFILL_TAG)
    if backfill:
        failed = _failed(instance.get_runs(filters=RunsFilter(tags={BACKFILL_TAG: backfill})))
        earlier = sorted(p for p in failed if p < partition)
        if earlier:
            return (f"as-of date {partition} not run: the earlier date {earlier[0]} of backfill {backfill} failed "
                    f"(run {failed[earlier[0]]}); a date's lists depend on the dates before it. Fix and re-run "
                    f"{earlier[0]} first, or {override}")
        return None
    if tags.get("crm/trigger") or tags.get("dagster/schedule_name") or tags.get("dagster/sensor_name"):
        return None
    before = (dt.date.fromisoformat(partition) - dt.timedelta(days=1)).isoformat()
    failed = _failed(instance.get_runs(filters=RunsFilter(tags={PARTITION_TAG: before}), limit=1))
    if before in failed:
        return (f"as-of date {partition} not run: the latest run of the day before ({before}, run "
                f"{failed[before]}) failed; a date's lists depend on the dates before it. Re-run {before} "
                f"first, or {override}")
    return None


class EarlierDateFailed(Exception):
    """A later as-of date was asked for while an earlier one failed (:func:`earlier_date_failed`)."""


class CrmResource(ConfigurableResource):
    """The data home (``CRM_HOME``). A run holds the home's run lock (:mod:`crm.run_lock`) from
    start to end: a second writer stops with a clear message. The as-of date is the run's
    partition (:func:`as_of`), never configuration."""

    # the day's audience, read once per run (see audience()); a resource is set up once per run
    _audiences: dict = PrivateAttr(default_factory=dict)

    def paths(self) -> Paths:
        return export_env()

    def audience(self, as_of: dt.date) -> pd.DataFrame:
        """Profile + features + scores of ``as_of`` (:func:`crm.warehouse.read_audience`), read once per
        run: every campaign list asset of the run selects from the same frame. The assets that build
        its tables (dim_player, player_features, player_scores) run before any list, and no list
        writes them; the lists never change the frame (each builds its own rows from it)."""
        from crm.warehouse import read_audience

        if as_of not in self._audiences:
            self._audiences.clear()
            self._audiences[as_of] = read_audience(self.paths(), as_of)
        return self._audiences[as_of]

    @contextmanager
    def yield_for_execution(self, context) -> Iterator["CrmResource"]:
        run = context.dagster_run
        if run is not None and context.instance is not None:
            why = earlier_date_failed(context.instance, run)
            if why:
                raise EarlierDateFailed(why)
        with run_lock(self.paths(), f"Dagster run {context.run_id}" if context.run_id else "Dagster run"):
            yield self
