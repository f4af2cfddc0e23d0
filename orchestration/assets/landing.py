"""Landing: new files in landing/incoming -> validated events + quarantine."""

import datetime as dt

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    MaterializeResult,
    asset,
    asset_check,
)

from crm.ingest.landing import (
    already_ingested,
    batches_to_gate,
    ingest_pending,
    landed_summary,
    record_landing_gate,
)
from orchestration.assets._gates import docs_dir, gate_check_result, warned_only
from orchestration.assets._meta import md_table
from orchestration.resources import PARTITION_TAG, CrmResource


@asset(group_name="landing", kinds={"parquet", "duckdb"},
       description="Contract events landed from landing/incoming; bad records quarantined with a reason.")
def landed_events(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
    paths = crm.paths()
    reports = ingest_pending(paths)
    for r in reports:
        context.log.info(f"landed {r.source_file}: {r.records} records = {r.loaded} loaded + "
                         f"{r.quarantined} quarantined + {r.duplicates} duplicates")
    totals = landed_summary(paths)
    reasons: dict[str, int] = {}
    for r in reports:
        for k, v in r.reasons.items():
            reasons[k] = reasons.get(k, 0) + v
    return MaterializeResult(metadata={
        "files_this_run": len(reports),
        "records_this_run": sum(r.records for r in reports),
        "loaded_this_run": sum(r.loaded for r in reports),
        "quarantined_this_run": sum(r.quarantined for r in reports),
        "duplicates_this_run": sum(r.duplicates for r in reports),
        "quarantine_reasons": md_table(reasons, "reason", "records"),
        "total_loaded": totals.get("loaded", 0),
        "total_quarantined": totals.get("quarantined", 0),
        "first_event_at": totals.get("first_event_at", ""),
        "last_event_at": totals.get("last_event_at", ""),
        "path": str(paths.events),
        "batch_ids": ",".join(r.batch_id for r in reports if r.loaded or r.quarantined),
    })


@asset_check(asset=landed_events, blocking=True, description="records in = loaded + quarantined + duplicates, per file")
def landing_counts_add_up(crm: CrmResource) -> AssetCheckResult:
    entries = list(already_ingested(crm.paths()).values())
    bad = [e["source_file"] for e in entries
           if e["records"] != e["loaded"] + e["quarantined"] + e["duplicates"]]
    return AssetCheckResult(passed=not bad, severity=AssetCheckSeverity.ERROR,
                            description=f"{len(entries)} files; counts add up" if not bad
                            else f"counts do not add up for: {', '.join(bad)}",
                            metadata={"files": len(entries), "unbalanced_files": ", ".join(bad) or "none"})


@asset_check(asset=landed_events, name="landing_gate", blocking=True,
             description="Great Expectations suite on every landed batch that has not passed it yet (new ones "
                         "and earlier failures, from the gate ledger): schema and column types, envelope not null, "
                         "unique event ids, known event types, no event after its ingest time, quarantine rate "
                         "per file under the threshold (CRM_GATE_MAX_QUARANTINE_RATE).")
def landing_gate(context: AssetCheckExecutionContext, crm: CrmResource) -> AssetCheckResult:
    from expectations.landing import gate_batches

    paths = crm.paths()
    ids = batches_to_gate(paths)
    if not ids:
        return AssetCheckResult(passed=True, severity=AssetCheckSeverity.ERROR,
                                description="every landed batch has passed the landing gate: nothing to check",
                                metadata={"batches": 0})
    result = gate_batches(paths, ids, docs_dir=docs_dir(paths))
    check = gate_check_result(result, {"batches": ", ".join(ids)})
    # the verdict (after any override) goes to the ledger: a failed batch is checked again next run
    # a WARN (warnings only) is a pass: the batches need not be checked again
    record_landing_gate(paths, ids, check.passed or warned_only(check), check.description or result.summary())
    return check


@asset_check(asset=landed_events, name="feed_complete", blocking=True,
             description="The newest day of the run (as-of date - 1) has its data: at least "
                         "CRM_FEED_MIN_SHARE (default 20 %) of the median day of the 14 before it, events and "
                         "imported rows. A day without data is a feed outage, named here, not feature drift.")
def feed_complete(context: AssetCheckExecutionContext, crm: CrmResource) -> AssetCheckResult:
    from crm.ingest.feed import check_feed

    partition = context.run.tags.get(PARTITION_TAG)
    if not partition:  # a landing run (landing_sensor) has no as-of date: the daily refresh checks
        return AssetCheckResult(passed=True, severity=AssetCheckSeverity.ERROR,
                                description="no as-of date in this run: checked by the daily refresh")
    feed = check_feed(crm.paths(), dt.date.fromisoformat(partition))
    return AssetCheckResult(passed=feed.passed, severity=AssetCheckSeverity.ERROR, description=feed.message,
                            metadata={"day": feed.day.isoformat(), "records": feed.volume,
                                      "median_day": round(feed.median) if feed.median is not None else "n/a",
                                      "min_share": feed.min_share})


landing_checks = [landing_counts_add_up, landing_gate, feed_complete]
