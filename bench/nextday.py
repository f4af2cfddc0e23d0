"""The next day's refresh of one data home, by two checkouts of the code in turns.

    python -m bench.nextday --home H [--players 100000] [--days 120] [--seed 7]
                            --checkouts OLD,NEW [--repeats 1] [--work DIR] [--json]

A change to the daily refresh is measured against the code before it on the same data, the same
machine and the same hour (this machine's speed drifts by up to 40 % within an hour, so figures
of different runs do not compare). Once per home: ``crm simulate``, the last day held back
(:func:`bench.run.hold_back_last_day`), the first ``crm run`` (by the first checkout), and a copy
of that home. Then, per repeat and checkout in turns: the copy restored, the held-back day
landed, and the next day's ``crm run`` with that checkout's code (``PYTHONPATH``), timed with its
peak RSS, its slowest steps and dbt's own node times. The dbt project's fingerprint is recorded
for the checkout first, so a changed project does not turn the compared run into a full rebuild;
the models a checkout changed are rebuilt in full on its own copy of the first day before
(:func:`day1_for`), so that an incremental model whose columns changed can run incrementally.

A checkout is a directory holding a clone of this repository (``git worktree add`` or a clone);
the installed environment (this interpreter's) is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.run import BIN, hold_back_last_day, home_env, run_timed
from crm.config import Paths


def _env(home: Path, checkout: Path) -> dict[str, str]:
    return home_env(home) | {"PYTHONPATH": str(checkout)}


def _project_fingerprint(home: Path, checkout: Path) -> str:
    """The fingerprint of ``checkout``'s dbt project (:func:`crm.warehouse.dbt_project_fingerprint`)."""
    out = subprocess.run([sys.executable, "-c", "from crm.warehouse import dbt_project_fingerprint as f; print(f())"],
                         env=_env(home, checkout), cwd=checkout, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _fingerprint(home: Path, checkout: Path) -> None:
    """Record ``checkout``'s dbt project as the one the home's warehouse was built with."""
    (home / "dbt" / "built_project.sha256").write_text(_project_fingerprint(home, checkout) + "\n")


def _home(work: Path) -> Path:
    """Where every run of the bench happens: one path, since a home holds its own absolute paths
    (MLflow's artifact locations, the warehouse's views of the landed files)."""
    return work / "home"


def _restore(saved: Path, work: Path) -> Path:
    home = _home(work)
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(saved, home, symlinks=True)
    return home


def prepare(work: Path, players: int, days: int, seed: int, checkout: Path) -> Path:
    """The first day's home, kept as ``work/day1`` (made once; reused when it exists)."""
    day1 = work / "day1"
    if (day1 / "held_back").is_dir():
        return day1
    home = _home(work)
    shutil.rmtree(home, ignore_errors=True)
    env = _env(home, checkout)
    run_timed([str(BIN / "crm"), "simulate", "--players", str(players), "--days", str(days), "--seed", str(seed),
               "--fresh", "--json"], env, cwd=checkout)
    hold_back_last_day(Paths(home))
    secs, rss, out = run_timed([str(BIN / "crm"), "run", "--json"], env, cwd=checkout)
    if not json.loads(out)["success"]:
        raise RuntimeError(f"the first refresh failed: {json.loads(out).get('failed_steps')}")
    print(f"  first refresh: {secs:.0f} s, peak {rss:.0f} MiB", flush=True)
    shutil.rmtree(day1, ignore_errors=True)
    home.rename(day1)
    return day1


def day1_for(day1: Path, work: Path, checkout: Path, index: int) -> Path:
    """The first day's home as ``checkout``'s code would have left it: ``day1`` itself when the dbt
    project is the one it was built with; else a copy (``work/day1_<index>``, made once per project)
    where the models the checkout changed (dbt's ``state:modified`` against the first day's manifest)
    are rebuilt in full as of the first day. An incremental model whose columns changed is refused
    by ``on_schema_change='fail'`` otherwise; in production the changed project fingerprint makes
    the next run a full rebuild, which is not what this bench compares."""
    built = (day1 / "dbt" / "built_project.sha256").read_text().strip()
    wanted = _project_fingerprint(day1, checkout)
    if wanted == built:
        return day1
    saved = work / f"day1_{index}"
    marker = saved / "dbt" / "built_project.sha256"
    if marker.exists() and marker.read_text().strip() == wanted:
        return saved
    home = _restore(day1, work)
    state = home / "dbt" / "day1_state"
    shutil.copytree(home / "dbt" / "target", state)
    import duckdb

    with duckdb.connect(str(Paths(home).warehouse), read_only=True) as con:
        as_of = con.execute("SELECT max(as_of_date) FROM player_feature_snapshots").fetchone()[0]
    args = subprocess.run(
        [sys.executable, "-c", "import json, sys, datetime as dt; from pathlib import Path; "
         "from crm.config import DBT_PROJECT_DIR, Paths; from crm.warehouse_spark import dbt_args; "
         "print(json.dumps([str(DBT_PROJECT_DIR), *dbt_args(Paths(Path(sys.argv[1])), "
         "dt.date.fromisoformat(sys.argv[2]), 'duckdb')]))", str(home), as_of.isoformat()],
        env=_env(home, checkout), cwd=checkout, capture_output=True, text=True, check=True)
    project, *rest = json.loads(args.stdout)
    print(f"  {checkout}: its changed models rebuilt on a copy of the first day (as of {as_of}) ...", flush=True)
    run_timed([str(BIN / "dbt"), "run", "--quiet", "--project-dir", project, "--profiles-dir", project,
               "--target-path", str(home / "dbt" / "target"), "--log-path", str(home / "dbt" / "logs"), *rest,
               "--select", "state:modified", "--state", str(state), "--full-refresh"],
              _env(home, checkout), cwd=checkout)
    (home / "dbt" / "built_project.sha256").write_text(wanted + "\n")
    shutil.rmtree(saved, ignore_errors=True)
    home.rename(saved)
    return saved


def next_day(day1: Path, work: Path, checkout: Path) -> dict:
    home = _restore(day1, work)
    held = next((home / "held_back").glob("*.parquet"))
    shutil.move(held, Paths(home).incoming / held.name)
    _fingerprint(home, checkout)
    # in the checkout: Dagster puts the working directory first on the code's import path
    secs, rss, out = run_timed([str(BIN / "crm"), "run", "--json"], _env(home, checkout), check=False, cwd=checkout)
    summary = json.loads(out) if out.strip().startswith("{") else {"success": False, "step_seconds": {}}
    steps = summary.get("step_seconds", {})
    nodes = {}
    results = home / "dbt" / "target" / "run_results.json"
    if results.exists():
        rr = json.loads(results.read_text())
        nodes = {"dbt_seconds": round(rr["elapsed_time"], 1),
                 "models_seconds": round(sum(r["execution_time"] for r in rr["results"]
                                             if r["unique_id"].startswith("model.")), 1),
                 "tests_seconds": round(sum(r["execution_time"] for r in rr["results"]
                                            if r["unique_id"].startswith(("test.", "unit_test."))), 1)}
    shutil.rmtree(home, ignore_errors=True)
    return {"checkout": str(checkout), "success": summary.get("success", False), "seconds": round(secs, 1),
            "failed_steps": summary.get("failed_steps", []),
            "peak_rss_mib": round(rss), "steps_seconds": round(sum(steps.values()), 1),
            "warehouse_seconds": round(steps.get("warehouse", float("nan")), 1), **nodes,
            "slowest": {k: round(v, 1) for k, v in sorted(steps.items(), key=lambda kv: -kv[1])[:10]}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.nextday", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkouts", required=True, help="two (or more) checkout directories, comma-separated")
    ap.add_argument("--players", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=1, help="rounds of the checkouts in turns")
    ap.add_argument("--work", type=Path, default=None,
                    help="where the first day's home is kept (default $CRM_HOME/bench/nextday_<players>)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    checkouts = [Path(c).resolve() for c in args.checkouts.split(",") if c]
    missing = [str(c) for c in checkouts if not (c / "crm" / "__init__.py").exists()]
    if len(checkouts) < 2 or missing:
        ap.error(f"--checkouts: two or more clones of this repository ({', '.join(missing) or 'give two'})")
    from crm.config import crm_home

    work = (args.work or crm_home() / "bench" / f"nextday_{args.players}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"next day at {args.players:,} players: the first day's home in {work / 'day1'} ...", flush=True)
    day1 = prepare(work, args.players, args.days, args.seed, checkouts[0])
    starts = [day1_for(day1, work, c, i) for i, c in enumerate(checkouts)]
    runs = []
    for r in range(args.repeats):
        for c, start in zip(checkouts, starts, strict=True):
            print(f"  round {r + 1}: {c} ...", flush=True)
            runs.append(next_day(start, work, c) | {"round": r + 1})
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    cols = ["round", "seconds", "warehouse_seconds", "dbt_seconds", "models_seconds", "tests_seconds", "peak_rss_mib"]
    print("checkout".ljust(40) + "".join(c.rjust(18) for c in cols))
    for run in runs:
        print(str(run["checkout"])[-40:].ljust(40) + "".join(f"{run.get(c, '')}".rjust(18) for c in cols))
        print("    slowest: " + ", ".join(f"{k} {v}" for k, v in run["slowest"].items()))
        if not run["success"]:
            print("    FAILED: " + (", ".join(run["failed_steps"]) or "see the run's log under the home"))
    return 0 if all(r["success"] for r in runs) else 1


if __name__ == "__main__":
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    raise SystemExit(main())
