"""Gate overhead: the daily refresh with every quality gate against the same refresh without any check.

    python -m bench.gates --home H [--repeat 1] [--json]

On a data home after `crm run` (models, lists and the day's landed events exist), the refresh of
the same as-of date runs through Dagster twice, each in its own process:

* with checks: the daily_refresh job's assets and all its asset checks (landing_gate,
  marts_*_gate, features_gate, scores_gate, each campaign's compliance_gate and sample_ratio,
  and the dbt tests, which dagster-dbt models as asset checks);
* without checks: the same assets with no asset check selected. dagster-dbt then builds the
  models explicitly with DBT_INDIRECT_SELECTION=empty, so `dbt build` runs no data test (generic
  or singular) either; dbt's unit tests (model logic on fixtures, not checks) run in both.

The dispatch assets are left out of both runs: dispatch refuses a list whose gate did not pass,
so a run without checks could not dispatch and would not do the same work. Everything else
(landing, dbt, training, scoring, lists, readouts) runs in both.

The rerun lands nothing new, so its landing_gate has nothing to check. What the landing gate
costs on the first landing of the home (every landed event) is measured apart, in a third
process: the same suite (expectations.landing.gate_batches) over all landed batches, its seconds
and peak memory (--landing-first).

Overhead = with - without (seconds of `execute_in_process`, Dagster's own work included); the
ratio is with / without. On a shared machine the difference of two runs is noisy, so the checks'
own time is also given from inside the run with checks: the duration of each check's own step
from the run's event log (STEP_START to STEP_SUCCESS) and the dbt tests' time from dbt's
run_results.json (compile + execute of each test node; dbt runs on one thread here, DuckDB having
one writer, so the sum is their wall time inside the `warehouse` step). `own ratio` is
(without + checks' own time) / without.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

SKIP_GROUPS = ("dispatch",)


def _selection(job):
    """(asset keys, check keys) of the job without the dispatch assets and their checks."""
    from dagster import AssetSelection

    graph = job.asset_layer.asset_graph
    keys = (AssetSelection.all() - AssetSelection.groups(*SKIP_GROUPS)).resolve(graph)
    checks = {c for c in graph.asset_check_keys if c.asset_key in keys}
    return keys, checks


def _step_times(instance, run_id: str) -> tuple[dict[str, float], set[str], dict[str, str]]:
    """Seconds per step, the steps that evaluated checks, and step -> check names (from the event log)."""
    start: dict[str, float] = {}
    secs: dict[str, float] = {}
    check_steps: set[str] = set()
    check_names: dict[str, list[str]] = {}
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is None or not ev.step_key:
            continue
        kind = ev.event_type_value
        if kind == "STEP_START":
            start[ev.step_key] = entry.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and ev.step_key in start:
            secs[ev.step_key] = entry.timestamp - start[ev.step_key]
        elif kind == "ASSET_CHECK_EVALUATION":
            data = ev.event_specific_data
            check_steps.add(ev.step_key)
            check_names.setdefault(ev.step_key, []).append(f"{data.asset_key.to_user_string()}:{data.check_name}")
    return secs, check_steps, {k: ", ".join(v) for k, v in check_names.items()}


def _span(result: dict) -> float:
    """Seconds from a dbt node's first timing start (compile) to its last completion (execute)."""
    timing = [t for t in result.get("timing", []) if t.get("started_at") and t.get("completed_at")]
    if not timing:
        return result.get("execution_time") or 0.0
    start = min(dt.datetime.fromisoformat(t["started_at"].replace("Z", "+00:00")) for t in timing)
    end = max(dt.datetime.fromisoformat(t["completed_at"].replace("Z", "+00:00")) for t in timing)
    return (end - start).total_seconds()


def _dbt_test_times(home: Path) -> dict:
    """Per-test execution time of the last dbt invocation in this home (run_results.json)."""
    path = home / "dbt" / "target" / "run_results.json"
    if not path.exists():
        return {"tests": 0, "seconds": 0.0, "top": []}
    results = json.loads(path.read_text())["results"]
    # Data tests (asset checks in Dagster); unit tests are not checks: dbt runs them with their
    # models in both runs, so they are reported apart and not counted as gate time.
    tests = [(r["unique_id"], _span(r)) for r in results if r["unique_id"].startswith("test.")]
    unit = [_span(r) for r in results if r["unique_id"].startswith("unit_test.")]
    models = [_span(r) for r in results if not r["unique_id"].startswith(("test.", "unit_test."))]
    tests.sort(key=lambda t: -t[1])
    return {"tests": len(tests), "seconds": round(sum(s for _, s in tests), 2),
            "unit_tests": len(unit), "unit_test_seconds": round(sum(unit), 2),
            "models": len(models), "model_seconds": round(sum(models), 2),
            "top": [{"test": uid.split(".", 2)[2], "seconds": round(s, 3)} for uid, s in tests[:5]]}


def run_once(with_checks: bool) -> dict:
    """One refresh of the latest as-of date in this process (CRM_HOME / DAGSTER_HOME from the env)."""
    from crm.config import export_env

    paths = export_env()
    from dagster import DagsterInstance

    from crm.ingest.landing import default_as_of
    from orchestration.definitions import defs

    as_of = default_as_of(paths).isoformat()
    job = defs.resolve_job_def("daily_refresh")
    keys, checks = _selection(job)
    sub = job.get_subset(asset_selection=keys, asset_check_selection=checks if with_checks else set())
    run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the date: the partition key
    # dbt and Dagster write to stdout while the job runs: keep stdout for the JSON result.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with DagsterInstance.get() as instance:
            start = time.perf_counter()
            result = sub.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config,
                                            partition_key=as_of, tags={"crm/trigger": "bench.gates"})
            seconds = time.perf_counter() - start
            steps, check_steps, check_names = _step_times(instance, result.run_id)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    evaluations = result.get_asset_check_evaluations()
    return {"with_checks": with_checks, "as_of_date": as_of, "success": result.success, "run_id": result.run_id,
            "seconds": round(seconds, 2), "assets": len(keys), "checks_selected": len(checks) if with_checks else 0,
            "checks_evaluated": len(evaluations), "checks_failed": sum(not e.passed for e in evaluations),
            "steps": {k: round(v, 2) for k, v in steps.items()}, "check_steps": sorted(check_steps),
            "check_names": check_names, "dbt": _dbt_test_times(paths.home)}


def landing_first() -> dict:
    """The landing suite over every landed batch of this home, as on its first landing."""
    from crm.config import export_env
    from crm.ingest.landing import already_ingested
    from expectations.landing import gate_batches

    paths = export_env()
    ids = [b for b, e in already_ingested(paths).items() if e["loaded"] or e["quarantined"]]
    events = sum(already_ingested(paths)[b]["loaded"] for b in ids)
    start = time.perf_counter()
    result = gate_batches(paths, ids)
    return {"batches": len(ids), "events": events, "seconds": round(time.perf_counter() - start, 2),
            "success": result.success}


def bench_gates(home: Path, repeat: int = 1) -> dict:
    """Both runs (with checks first, then without), `repeat` times, each in its own process."""
    from bench.run import home_env, run_timed
    from crm.warehouse import row_counts

    env = home_env(home)
    runs: list[dict] = []
    for _ in range(repeat):
        for mode in ("--with-checks", "--without-checks"):
            secs, rss, out = run_timed([sys.executable, "-m", "bench.gates", "--home", str(home), mode, "--json"], env)
            r = json.loads(out)
            r["process_seconds"], r["peak_rss_mib"] = round(secs, 1), round(rss)
            runs.append(r)
    secs, rss, out = run_timed([sys.executable, "-m", "bench.gates", "--home", str(home), "--landing-first", "--json"],
                          env)
    landing = json.loads(out) | {"process_seconds": round(secs, 1), "peak_rss_mib": round(rss)}
    return summarise(runs, row_counts_safe(home, row_counts), repeat) | {"landing_first": landing}


def summarise(runs: list[dict], players: int | None, repeat: int) -> dict:
    """Overhead and per-check times from the runs of :func:`run_once` (the best of each mode)."""
    with_runs = [r for r in runs if r["with_checks"]]
    without_runs = [r for r in runs if not r["with_checks"]]
    w = min(r["seconds"] for r in with_runs)
    wo = min(r["seconds"] for r in without_runs)
    # Per check: its own step's time in the (fastest) run with checks. The dbt tests run inside the
    # warehouse step (the one step that is in both runs and evaluates checks): their time is from
    # dbt's run_results.json; that step's difference between the runs is shown beside it (noisier).
    best_w = min(with_runs, key=lambda r: r["seconds"])
    best_wo = min(without_runs, key=lambda r: r["seconds"])
    per_check = [{"step": s, "checks": best_w["check_names"].get(s, ""), "seconds": best_w["steps"].get(s, 0.0)}
                 for s in best_w["check_steps"] if s not in best_wo["steps"]]
    dbt_step = next((s for s in best_w["steps"] if s in best_wo["steps"] and s in best_w["check_steps"]), None)
    if dbt_step:
        diff = best_w["steps"][dbt_step] - best_wo["steps"][dbt_step]
        per_check.append({"step": f"{dbt_step}: dbt tests", "seconds": best_w["dbt"]["seconds"],
                          "checks": f"{best_w['dbt']['tests']} dbt data tests (run_results.json; without checks: "
                                    f"{best_wo['dbt']['tests']}; unit tests run in both); step "
                                    f"{diff:+.1f} s vs without"})
    per_check.sort(key=lambda c: -c["seconds"])
    own = sum(c["seconds"] for c in per_check)
    return {"players": players, "as_of_date": best_w["as_of_date"], "repeat": repeat,
            "with_checks_seconds": w, "without_checks_seconds": wo, "overhead_seconds": round(w - wo, 2),
            "overhead_ratio": round(w / wo, 3), "checks_own_seconds": round(own, 2),
            "own_ratio": round((wo + own) / wo, 3), "per_check": per_check,
            "dbt_tests": best_w["dbt"], "runs": runs}


def row_counts_safe(home: Path, row_counts) -> int | None:
    from crm.config import Paths

    try:
        return row_counts(Paths(home), ["dim_player"])["dim_player"]
    except Exception:  # noqa: BLE001 - a figure for the table only
        return None


def format_table(r: dict, top: int = 12) -> str:
    lines = [f"players: {r['players']:,}  as of {r['as_of_date']}  (dispatch assets excluded from both runs)"]
    for x in r["runs"]:
        lines.append(f"  run {'with checks   ' if x['with_checks'] else 'without checks'}  {x['seconds']:>8.1f} s "
                     f"in Dagster ({x['process_seconds']} s process, {x['peak_rss_mib']} MiB peak)  "
                     f"{x['checks_evaluated']} checks evaluated, {x['checks_failed']} failed, success={x['success']}")
    lines.append(f"with checks {r['with_checks_seconds']:.1f} s  without {r['without_checks_seconds']:.1f} s  "
                 f"overhead {r['overhead_seconds']:.1f} s  ratio {r['overhead_ratio']:.3f}"
                 + ("  (best of each)" if r["repeat"] > 1 else ""))
    lines.append(f"checks' own time in the run with checks {r['checks_own_seconds']:.1f} s  "
                 f"own ratio (without + own) / without {r['own_ratio']:.3f}")
    lines.append(f"\ntop checks by time (seconds of each check's step; {len(r['per_check'])} rows):")
    width = max([len(c["step"]) for c in r["per_check"][:top]] + [4])
    lines.append(f"  {'step':<{width}}  {'seconds':>8}  checks")
    for c in r["per_check"][:top]:
        lines.append(f"  {c['step']:<{width}}  {c['seconds']:>8.2f}  {c['checks'][:120]}")
    lf = r.get("landing_first")
    if lf:
        lines.append(f"\nlanding_gate on the first landing (all {lf['batches']} batches, {lf['events']:,} events, "
                     f"own process): {lf['seconds']:.1f} s, {lf['peak_rss_mib']} MiB peak, success={lf['success']}")
    d = r["dbt_tests"]
    if d.get("top"):
        lines.append(f"\nslowest dbt tests (of {d['tests']}, {d['seconds']} s in all): "
                     + ", ".join(f"{t['test'][:60]} {t['seconds']} s" for t in d["top"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gates", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", required=True, type=Path, help="a data home after `crm run`")
    ap.add_argument("--repeat", type=int, default=1, help="pairs of runs (with, without); the best of each is kept")
    ap.add_argument("--json", action="store_true")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--with-checks", dest="mode", action="store_const", const="with",
                      help="internal: one run with checks in this process")
    mode.add_argument("--without-checks", dest="mode", action="store_const", const="without",
                      help="internal: one run without checks in this process")
    mode.add_argument("--landing-first", dest="mode", action="store_const", const="landing",
                      help="internal: the landing suite over every landed batch in this process")
    args = ap.parse_args(argv)
    os.environ["CRM_HOME"] = str(args.home)
    if args.mode == "landing":
        print(json.dumps(landing_first()))
        return 0
    if args.mode:
        print(json.dumps(run_once(args.mode == "with")))
        return 0
    r = bench_gates(args.home, args.repeat)
    print(json.dumps(r, indent=2) if args.json else format_table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
