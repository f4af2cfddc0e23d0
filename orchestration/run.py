"""Run the daily refresh through Dagster, recorded in the instance under DAGSTER_HOME.

``python -m orchestration.run [--date D] [--json]``; `crm run` calls this in a
subprocess so that crm/ never imports Dagster. Runs show up in `make ui`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time

from crm.config import export_env

TRIGGER_TAG = "crm/trigger"
STEP_TAG = "crm/step"  # landing | refresh: which of the two runs of `crm run`
# Dagster's UI shows a run with a `user` tag as launched by that user instead of "Manually launched".
USER_TAG = "user"


def run_tags(step: str, trigger: str = "cli", extra: dict[str, str] | None = None) -> dict[str, str]:
    """The tags of a run started by a ``crm`` command: what started it (``crm/trigger``), which step
    (``crm/step``) and who, by way of which command (``user``: "alice via crm run")."""
    try:
        who = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (a container): the command still says where it came from
        who = "someone"
    command = {"cli": "crm run", "backfill": "crm backfill"}.get((extra or {}).get(TRIGGER_TAG, trigger), "crm")
    return {TRIGGER_TAG: trigger, STEP_TAG: step, USER_TAG: f"{who} via {command}", **(extra or {})}


def dispatches(result) -> list[dict]:
    """Per campaign dispatched in ``result``: its status (dispatched | awaiting_approval | rejected), the
    new messages and the approval's summary, from the dispatch assets' metadata."""
    from orchestration.assets._keys import parse_campaign_key

    out = []
    for ev in result.get_asset_materialization_events():
        mat = ev.event_specific_data.materialization
        parsed = parse_campaign_key(mat.asset_key)
        if parsed and parsed[1] == "dispatch":
            meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
            out.append({"campaign_id": parsed[0], "status": meta.get("status"),
                        "new_messages": meta.get("new_messages", 0), "approval": meta.get("approval", "")})
    return sorted(out, key=lambda d: d["campaign_id"])


def _plain_meta(v):
    """A metadata value as JSON-able data (a Dagster table: its rows as dicts)."""
    from dagster import TableMetadataValue

    if isinstance(v, TableMetadataValue):
        return [dict(r.data) for r in v.records]
    return getattr(v, "value", v)


def _summary(result, as_of: str, seconds: float) -> dict:
    from crm.campaigns.lists import published_lists
    from crm.ingest.landing import landed_summary
    from crm.warehouse import row_counts

    paths = export_env()
    landing = landed_summary(paths)
    marts = row_counts(paths, ["dim_player", "fct_player_daily", "player_feature_snapshots", "player_features",
                               "player_labels", "player_scores"])
    models, risk = {}, {}
    for ev in result.get_asset_materialization_events():
        mat = ev.event_specific_data.materialization
        if mat.asset_key.path[-1] in ("player_clusters", "player_risk_flags"):
            risk[mat.asset_key.path[-1]] = {k: _plain_meta(v) for k, v in mat.metadata.items()}
        if mat.asset_key.path[-1].endswith("_model"):
            models[mat.asset_key.path[-1]] = {k: _plain_meta(v) for k, v in mat.metadata.items()
                                              if not isinstance(getattr(v, "value", v), str) or len(str(v)) < 400}
    gates = [{"check": f"{'/'.join(e.asset_key.path)}:{e.check_name}", "passed": e.passed,
              "severity": e.severity.value, "description": e.description or ""}
             for e in result.get_asset_check_evaluations() if e.check_name != "dispatch_status"]
    lists = [{"campaign_id": m["campaign_id"], "rows": m["counts"]["listed"], "holdout": m["counts"]["holdout"],
              "path": m["path"]} for m in published_lists(paths) if m["as_of_date"] == as_of]
    step_seconds = {ev.step_key: round(ev.event_specific_data.duration_ms / 1000, 2) for ev in result.all_events
                    if ev.event_type_value == "STEP_SUCCESS" and getattr(ev.event_specific_data, "duration_ms", None)}
    failed_steps = [ev.step_key for ev in result.all_events if ev.event_type_value == "STEP_FAILURE"]
    skipped = [ev.step_key for ev in result.all_events if ev.event_type_value == "STEP_SKIPPED"]
    return {"success": result.success, "run_id": result.run_id, "as_of_date": as_of, "seconds": round(seconds, 1),
            "landing": landing, "marts": marts, "models": models, "lists": lists, "dispatch": dispatches(result),
            "gates": gates, "step_seconds": step_seconds, "risk": risk,
            "failed_steps": failed_steps, "skipped_steps": skipped}


def _n(v) -> str:
    """A count: 10,470 (not 1.047e+04)."""
    return f"{int(v):,}" if isinstance(v, int | float) and v == v else str(v)


def _g(v) -> str:
    return f"{v:.4g}" if isinstance(v, int | float) else str(v)


def print_summary(s: dict) -> None:
    print(f"\n== daily refresh as of {s['as_of_date']}: {'OK' if s['success'] else 'FAILED'} "
          f"in {s['seconds']} s (Dagster run {s['run_id']})")
    la = s["landing"]
    print(f"\nLanded: {la.get('files', 0)} files, {la.get('records', 0):,} records = {la.get('loaded', 0):,} loaded + "
          f"{la.get('quarantined', 0):,} quarantined (with reasons) + {la.get('duplicates', 0):,} duplicates")
    print("\nRows per table:")
    for t, n in s["marts"].items():
        print(f"  {t:<28} {n:>10,}")
    nan = float("nan")
    for key, m in s["models"].items():
        if m.get("retrained") is False:
            print(f"\nModel {key}: not retrained: {m.get('retrain_reason')} (champion v{m.get('champion_version')})")
            continue
        if "discovery_recall_at_3" in m:  # next best game
            print(f"\nModel {m.get('model')}: discovery recall@3={m['discovery_recall_at_3']:.3f} "
                  f"(evaluated on the plays after {m.get('eval_cut')}; baselines in the asset's metadata)")
        elif "qini_auc" in m:  # an uplift model
            print(f"\nModel {m.get('model')} ({m.get('selected_learner')}): held-out qini_auc={m['qini_auc']:.4g}  "
                  f"uplift@10%={m.get('uplift_at_10', nan):.4g}  uplift@30%={m.get('uplift_at_30', nan):.4g}  "
                  f"vs churn-score ranking {_g(m.get('baseline_churn_qini_auc'))}")
        elif "precision_at_threshold" in m:  # the bonus-abuse risk model
            print(f"\nModel {m.get('model')}: holdout pr_auc={m.get('pr_auc', nan):.3f}  "
                  f"precision={m['precision_at_threshold']:.3f} recall={m.get('recall_at_threshold', nan):.3f} "
                  f"at the flag threshold, vs the rule 'bonus share of stake > 0.5' "
                  f"{m.get('baseline_share_rule_precision', nan):.3f} / {m.get('baseline_share_rule_recall', nan):.3f}")
        elif m.get("trained") is False:
            print(f"\nModel {key}: not trained: {m.get('reason')}")
            continue
        else:
            print(f"\nModel {m.get('model')}: holdout roc_auc={m.get('roc_auc', nan):.3f}  "
                  f"pr_auc={m.get('pr_auc', nan):.3f}  "
                  f"vs logistic RFM {m.get('baseline_logreg_roc_auc', nan):.3f}, "
                  f"recency {m.get('baseline_recency_roc_auc', nan):.3f}")
        print(f"  {m.get('decision')}")
    print("\nPublished lists:")
    for li in s["lists"]:
        print(f"  {li['campaign_id']:<28} {li['rows']:>8,} rows ({li['holdout']:,} holdout)  {li['path']}")
    cl, fl = s.get("risk", {}).get("player_clusters"), s.get("risk", {}).get("player_risk_flags")
    if cl or fl:
        print("\nBonus abuse and linked accounts:")
        if cl:
            print(f"  {_n(cl.get('accounts_linked'))} accounts linked in {_n(cl.get('clusters'))} clusters "
                  f"(largest {_n(cl.get('largest_cluster'))}) from {_n(cl.get('links'))} links")
        if fl:
            print(f"  {_n(fl.get('flagged'))} of {_n(fl.get('scored'))} scored players flagged for bonus abuse, "
                  f"{_n(fl.get('pending'))} waiting for review (`crm risk queue`)")
    if s.get("dispatch"):
        print("\nDispatch:")
        for d in s["dispatch"]:
            if d["status"] == "dispatched":
                print(f"  {d['campaign_id']:<28} dispatched: {d['new_messages']:,} new messages")
            else:  # nothing sent: the campaign waits for a second person, or was rejected
                print(f"  {d['campaign_id']:<28} NOT SENT ({d['status']}): {d['approval'][:140]}")
    print("\nQuality gates:")
    dbt_tests = [g for g in s["gates"] if not g["description"]]
    ours = [g for g in s["gates"] if g["description"]]
    for g in ours + [g for g in dbt_tests if not g["passed"]]:
        verdict = "PASS" if g["passed"] else "WARN" if g.get("severity") == "WARN" else "FAIL"
        print(f"  {verdict}  {g['check']}  {g['description'][:200]}")
    if dbt_tests:
        print(f"  dbt data tests: {sum(g['passed'] for g in dbt_tests)} of {len(dbt_tests)} passed")
    if s["failed_steps"]:
        print(f"\nFailed steps: {', '.join(s['failed_steps'])}")
    if s["skipped_steps"]:
        print(f"Skipped (blocked upstream): {', '.join(s['skipped_steps'])}")


def run_refresh(instance, as_of: str | None = None, asset_selection=None, log_level: str = "INFO",
                tags: dict[str, str] | None = None, progress_fd: int | None = None):
    """Run the daily refresh for one as-of date (its partition) and return (result, as_of).

    Without an as-of date, new files are landed first in a run of their own, so the
    default date (the day after the latest landed event) sees them. ``tags``: added to the
    run's (a backfill's id, ``crm/keep_going``). With ``progress_fd``, one line per step is
    written there (orchestration/progress.py).
    """

    from crm.ingest.landing import LandingError, default_as_of
    from orchestration.definitions import defs
    from orchestration.sensors import LANDING_JOB

    job = defs.resolve_job_def("daily_refresh")
    run_config: dict = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if progress_fd is not None:
        run_config["loggers"]["progress"] = {"config": {"fd": progress_fd}}
    if not as_of:
        # its own job (the landing sensor's): in the UI's run list it is not a second daily_refresh
        landing = defs.resolve_job_def(LANDING_JOB).execute_in_process(
            instance=instance, raise_on_error=False, run_config=run_config, tags=run_tags("landing"))
        if not landing.success:
            raise LandingError(f"landing failed: see Dagster run {landing.run_id}")
        as_of = default_as_of(export_env()).isoformat()
    # the partition is the run's one as-of date (orchestration.resources.as_of)
    result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config,
                                    partition_key=as_of, asset_selection=asset_selection,
                                    tags=run_tags("refresh", extra=tags))
    return result, as_of


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.run", description=__doc__)
    parser.add_argument("--date", help="as-of date YYYY-MM-DD (default: day after the latest landed event)")
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary")
    parser.add_argument("--verbose", action="store_true",
                        help="stream the full Dagster and dbt log to stderr instead of one line per step")
    parser.add_argument("--log-file", help="where the full log goes (default: $CRM_HOME/logs/run-<time>.log)")
    parser.add_argument("--full-refresh", action="store_true",
                        help="rebuild every day of the warehouse (default: only the days that can have changed)")
    parser.add_argument("--retrain", action="store_true",
                        help="train every model in this run (default: when due: weekly, on drift, or without one)")
    parser.add_argument("--target", choices=("duckdb", "spark"), default="duckdb",
                        help="where dbt builds the warehouse (spark: dbt-spark, then handed over to DuckDB)")
    args = parser.parse_args(argv)

    export_env()
    from dagster import DagsterInstance

    from crm.ingest.landing import LandingError
    from crm.run_lock import RunInProgress, run_lock
    from orchestration.progress import quiet_terminal
    from orchestration.resources import FULL_REFRESH_TAG, RETRAIN_TAG, WAREHOUSE_TARGET_TAG

    paths = export_env()
    start = time.time()
    # stdout keeps the step lines and the summary; the full log (Dagster, dbt) goes to a file
    try:
        with quiet_terminal(paths.home, "crm run", verbose=args.verbose, log_file=args.log_file,
                            json_output=args.json) as terminal, \
                run_lock(paths, f"crm run --date {args.date}" if args.date else "crm run"), \
                DagsterInstance.get() as instance:
            tags = {**({FULL_REFRESH_TAG: "true"} if args.full_refresh else {}),
                    **({RETRAIN_TAG: "true"} if args.retrain else {}),
                    **({WAREHOUSE_TARGET_TAG: args.target} if args.target != "duckdb" else {})}
            result, as_of = run_refresh(instance, args.date, progress_fd=terminal.progress_fd, tags=tags or None)
    except (LandingError, RunInProgress) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    log_file = terminal.log_file
    summary = _summary(result, as_of, time.time() - start)
    if args.json:
        print(json.dumps(summary | {"log_file": log_file}, indent=2, default=str))
    else:
        print_summary(summary)
        if log_file:
            print(f"\nFull log: {log_file}")
    return 0 if summary["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
