"""Backfill a range of as-of dates: one Dagster partition backfill, its dates run oldest first.

``python -m orchestration.backfill --start D1 --end D2 [--keep-going] [--json]``; `crm backfill`
calls this in a subprocess so that crm/ never imports Dagster.

The backfill is registered in the instance (the UI's *Backfills* page lists it with its runs),
then its dates run here, in this process, one partition per run and oldest first: the lists of
a date plan around the messages of the dates before it, so a failed date stops the later ones
unless ``--keep-going`` (whose runs carry the ``crm/keep_going`` tag, see
:func:`orchestration.resources.earlier_date_failed`). A backfill launched from the UI runs on the
daemon instead, and the same guard refuses a date whose earlier date of that backfill failed.

Dagster's public API launches a partition backfill only through the daemon (or the UI / GraphQL),
which would submit every date at once and run them without us deciding the order or stopping
at a failure. So this module uses its internal API (``dagster._core.execution.backfill.
PartitionBackfill`` and ``DagsterInstance.add_backfill`` / ``update_backfill``, as the webserver
does) to record the backfill; it marks every target partition as requested, so a running daemon
only watches the backfill and launches none of its runs itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import asdict, dataclass, field

from crm.config import export_env

TRIGGER = "backfill"


@dataclass
class BackfillOutcome:
    backfill_id: str
    dates: list[str]
    ok: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    run_ids: dict[str, str] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return not self.failed and not self.not_run


def date_range(start: dt.date, end: dt.date) -> list[str]:
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def _partitioned_keys(graph) -> list:
    """The refresh's date-bound assets (every partitioned one; landing is not)."""
    return sorted((k for k in graph.materializable_asset_keys if graph.get(k).is_partitioned), key=str)


def register_backfill(instance, graph, dates: list[str], tags: dict[str, str]):
    """Record a partition backfill of ``dates`` over the partitioned assets of ``graph`` (the code
    location's asset graph), every target partition marked as requested (by this process)."""
    # internal API, see the module docstring
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=graph,
        partition_names=dates,
        asset_selection=_partitioned_keys(graph),
        backfill_timestamp=time.time(),
        tags=tags,
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=f"daily_refresh {dates[0]} .. {dates[-1]}",
        description="crm backfill: one run per as-of date, oldest first, in the process that started it",
        run_config=None,
    )
    data = backfill.asset_backfill_data
    data = data.replace_requested_subset(data.target_subset).with_requested_runs_for_target_roots(True)
    backfill = backfill.with_asset_backfill_data(data, dynamic_partitions_store=instance, asset_graph=graph)
    instance.add_backfill(backfill)
    return backfill


def _finish_backfill(instance, graph, backfill_id: str, outcome: BackfillOutcome) -> None:
    """The backfill's final state: partitions materialized / failed, status and end time."""
    from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
    from dagster._core.definitions.events import AssetKeyPartitionKey
    from dagster._core.execution.backfill import BulkActionStatus

    keys = _partitioned_keys(graph)

    def subset(dates: list[str]) -> AssetGraphSubset:
        return AssetGraphSubset.from_asset_partition_set(
            {AssetKeyPartitionKey(k, d) for k in keys for d in dates}, graph
        )

    backfill = instance.get_backfill(backfill_id)
    data = backfill.asset_backfill_data._replace(
        materialized_subset=subset(outcome.ok), failed_and_downstream_subset=subset(outcome.failed + outcome.not_run)
    )
    status = BulkActionStatus.COMPLETED_SUCCESS if outcome.success else BulkActionStatus.COMPLETED_FAILED
    instance.update_backfill(
        backfill.with_asset_backfill_data(data, dynamic_partitions_store=instance, asset_graph=graph)
        .with_status(status)
        .with_end_timestamp(time.time())
    )


def run_backfill(
    instance, dates: list[str], keep_going: bool = False, asset_selection=None, log_level: str = "INFO", on_date=None,
    progress_fd: int | None = None,
) -> BackfillOutcome:
    """Register a partition backfill of ``dates`` and run them oldest first, one partition per run.

    Stops at the first failed date unless ``keep_going``. ``asset_selection``: as for
    :func:`orchestration.run.run_refresh` (default: the whole refresh). ``on_date(i, date)``: called
    before each date (progress); ``progress_fd``: one line per step there (orchestration/progress.py).
    """
    from dagster._core.execution.backfill import BulkActionStatus  # internal API, see the module docstring

    from orchestration.definitions import defs
    from orchestration.resources import BACKFILL_TAG, KEEP_GOING_TAG
    from orchestration.run import run_refresh

    dates = sorted(dates)
    graph = defs.resolve_asset_graph()
    tags = {"crm/trigger": TRIGGER, **({KEEP_GOING_TAG: "true"} if keep_going else {})}
    backfill = register_backfill(instance, graph, dates, tags)
    outcome = BackfillOutcome(backfill.backfill_id, dates)
    try:
        for i, d in enumerate(dates):
            if outcome.failed and not keep_going:
                outcome.not_run.append(d)
                continue
            if on_date:
                on_date(i, d)
            result, _ = run_refresh(
                instance,
                d,
                asset_selection=asset_selection,
                log_level=log_level,
                tags={**tags, BACKFILL_TAG: backfill.backfill_id},
                progress_fd=progress_fd,
            )
            outcome.run_ids[d] = result.run_id
            (outcome.ok if result.success else outcome.failed).append(d)
    except BaseException:
        done = set(outcome.ok) | set(outcome.failed)
        outcome.not_run = [d for d in dates if d not in done]
        _finish_backfill(instance, graph, backfill.backfill_id, outcome)
        instance.update_backfill(instance.get_backfill(backfill.backfill_id).with_status(BulkActionStatus.FAILED))
        raise
    _finish_backfill(instance, graph, backfill.backfill_id, outcome)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.backfill", description=__doc__.split("\n")[0])
    parser.add_argument("--start", required=True, help="first as-of date YYYY-MM-DD")
    parser.add_argument("--end", required=True, help="last as-of date YYYY-MM-DD (inclusive)")
    parser.add_argument("--keep-going", action="store_true", help="run the later dates even after a failed one")
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary")
    parser.add_argument("--verbose", action="store_true",
                        help="stream the full Dagster and dbt log to stderr instead of one line per step")
    args = parser.parse_args(argv)
    try:
        dates = date_range(dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    paths = export_env()
    from dagster import DagsterInstance

    from crm.run_lock import RunInProgress, run_lock
    from orchestration.progress import quiet_terminal

    # stdout keeps the step lines and the summary; the full log (Dagster, dbt) goes to a file
    try:
        with quiet_terminal(paths.home, "crm backfill", verbose=args.verbose, json_output=args.json) as terminal, \
                run_lock(paths, f"crm backfill --start {args.start} --end {args.end}"), \
                DagsterInstance.get() as instance:
            outcome = run_backfill(instance, dates, keep_going=args.keep_going, progress_fd=terminal.progress_fd,
                                   on_date=lambda i, d: terminal.say(f"== backfill {i + 1}/{len(dates)}: as of {d}"))
    except RunInProgress as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(outcome) | {"success": outcome.success}, indent=2))
    else:
        print(
            f"backfill {args.start}..{args.end} (Dagster backfill {outcome.backfill_id}): "
            f"{len(outcome.ok)} of {len(dates)} dates OK"
            + (f"; failed: {', '.join(outcome.failed)}" if outcome.failed else "")
            + (f"; not run: {', '.join(outcome.not_run)}" if outcome.not_run else "")
        )
    return 0 if outcome.success else 1


if __name__ == "__main__":
    sys.exit(main())
