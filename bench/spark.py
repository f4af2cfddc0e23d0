"""The warehouse build on local Apache Spark beside the same build on DuckDB (issue 16).

    python -m bench.spark [--players 200000] [--days 120] [--work DIR] [--json]

One simulated casino is landed once; then, on the same landed files:

* ``dbt build`` on DuckDB (every model, seed and test; a full build, as Spark's always is);
* ``dbt build --target spark`` (dbt-spark's session method: a local Spark in the dbt process,
  ``CRM_SPARK_CORES`` / ``CRM_SPARK_MEMORY``), every model, seed and test;
* the hand-off of Spark's tables into the DuckDB file (crm.warehouse_spark.publish_to_duckdb).

Each in its own process: seconds and the peak of the summed RSS of the process tree (dbt and, on
Spark, its JVM), sampled from /proc every half second. The ratio Spark / DuckDB is the price of the engine on
one machine; Spark's point is the cluster (docs/architecture.md, "Spark").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.run import BIN, home_env, run_timed
from crm.config import DBT_PROJECT_DIR, Paths, crm_home


def _dbt(home: Path, as_of: str, target: str) -> list[str]:
    from crm.warehouse_spark import dbt_args

    return [str(BIN / "dbt"), "build", "--quiet", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir",
            str(DBT_PROJECT_DIR), "--target-path", str(home / "dbt" / f"target_{target}"),
            *dbt_args(Paths(home), dt.date.fromisoformat(as_of), target, full_refresh=target == "duckdb")]


def _tree_rss_mib(root: int) -> float:
    """Summed resident memory of ``root`` and its descendants (Linux /proc). Read by hand: psutil is
    not in the lock, and wait4's peak RSS would miss the JVM, which PySpark does not wait for."""
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            parent[int(d.name)] = int(fields[1])
            rss[int(d.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier and p not in tree]
        tree.update(kids)
        frontier = kids
    return sum(rss.get(p, 0) for p in tree) / 2**20


def run_sampled(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak summed RSS of the process tree in MiB) of a command that must succeed."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0

    def sample() -> None:
        nonlocal peak
        while proc.poll() is None:
            peak = max(peak, _tree_rss_mib(proc.pid))
            time.sleep(0.5)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    code = proc.wait()
    t.join()
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed with exit code {code}")
    return time.perf_counter() - start, peak


def bench_spark(work: Path, players: int, days: int) -> dict:
    home = work / f"spark_{players}"
    shutil.rmtree(home, ignore_errors=True)
    env = home_env(home)
    print(f"  simulate and land {players:,} players x {days} days ...", flush=True)
    run_timed([str(BIN / "crm"), "simulate", "--players", str(players), "--days", str(days), "--json"], env)
    land_secs, _, _ = run_timed([str(BIN / "crm"), "ingest", str(Paths(home).incoming)], env)
    events = sum(json.loads(line)["loaded"] for line in Paths(home).ingest_log.read_text().splitlines())
    import duckdb

    with duckdb.connect() as con:
        last = con.execute(f"SELECT max(occurred_at)::DATE + 1 FROM read_parquet('{Paths(home).events}/*.parquet')"
                           ).fetchone()[0]
    as_of = last.isoformat()
    print("  dbt build on DuckDB ...", flush=True)
    duck_secs, duck_rss = run_sampled(_dbt(home, as_of, "duckdb"), env)
    print("  dbt build on Spark ...", flush=True)
    spark_secs, spark_rss = run_sampled(_dbt(home, as_of, "spark"), env)
    print("  hand-off of Spark's tables to DuckDB ...", flush=True)
    start = time.perf_counter()
    from crm.warehouse_spark import publish_to_duckdb

    counts = publish_to_duckdb(Paths(home))
    publish_secs = time.perf_counter() - start
    shutil.rmtree(home, ignore_errors=True)
    return {"players": players, "days": days, "events": events, "as_of": as_of, "landing_seconds": round(land_secs, 1),
            "duckdb_build_seconds": round(duck_secs, 1), "duckdb_peak_rss_mib": round(duck_rss),
            "spark_build_seconds": round(spark_secs, 1), "spark_peak_rss_mib": round(spark_rss),
            "spark_vs_duckdb_ratio": round(spark_secs / duck_secs, 1),
            "handoff_seconds": round(publish_secs, 1), "handoff_tables": len(counts),
            "handoff_rows": sum(counts.values()),
            "spark_cores": os.environ.get("CRM_SPARK_CORES", "*"),
            "spark_memory": os.environ.get("CRM_SPARK_MEMORY", "4g")}


def format_table(rows: list[dict]) -> str:
    from bench.run import _table

    return _table(rows, ["players", "events", "duckdb_build_seconds", "duckdb_peak_rss_mib", "spark_build_seconds",
                         "spark_peak_rss_mib", "spark_vs_duckdb_ratio", "handoff_seconds",
                         "handoff_rows"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.spark", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--players", default="200000", help="players (a comma list runs each size)")
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: $CRM_HOME/bench/work)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    work = args.work or crm_home() / "bench" / "work"
    work.mkdir(parents=True, exist_ok=True)
    rows = [bench_spark(work, int(n), args.days) for n in args.players.split(",") if n.strip()]
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
