"""Landing throughput against the floor: the same files read and written by one bare DuckDB COPY.

    python -m bench.landing [--players 200000] [--days 120] [--seed 42] [--repeat 1] [--json]

A simulated casino is written once; then, each in its own process and a fresh data home:

* ``landing``: ``crm ingest`` of every simulated file (the contract checks, normalization of the
  enumerated values, bounds on times and sizes, de-duplication, quarantine);
* ``bare copy``: one DuckDB ``COPY`` of the same files' rows to one Parquet file, sorted as landing
  sorts them, with no check at all: what reading and writing the bytes costs.

Printed: records, seconds, records per second, peak RSS, and landing's ratio to the bare copy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from bench.run import BIN, home_env, run_timed
from crm.config import Paths

BARE_COPY = """
import sys, duckdb
from crm.sql import literal
con = duckdb.connect()
con.execute("SET memory_limit = '2GB'")
con.execute(f"COPY (SELECT * FROM read_parquet({literal(sys.argv[1])}) ORDER BY occurred_at, event_id) "
            f"TO {literal(sys.argv[2])} (FORMAT parquet, COMPRESSION zstd)")
"""


def bench_landing(root: Path, players: int, days: int, seed: int, repeat: int = 1) -> dict:
    src = root / "sim"
    run_timed([str(BIN / "crm"), "simulate", "--players", str(players), "--days", str(days), "--seed", str(seed),
          "--json"], home_env(src))
    incoming = Paths(src).incoming
    out: dict = {"players": players, "days": days, "landing": [], "bare_copy": []}
    for _ in range(repeat):
        home = root / "land"
        shutil.rmtree(home, ignore_errors=True)
        secs, rss, text = run_timed([str(BIN / "crm"), "ingest", str(incoming), "--json"], home_env(home))
        reports = json.loads(text)
        out["records"] = sum(r["records"] for r in reports)
        out["quarantined"] = sum(r["quarantined"] for r in reports)
        out["landing"].append({"seconds": round(secs, 2), "peak_rss_mib": round(rss)})
        bare = [sys.executable, "-c", BARE_COPY, str(incoming / "*.parquet"), str(root / "bare.parquet")]
        secs, rss, _ = run_timed(bare, home_env(home))
        out["bare_copy"].append({"seconds": round(secs, 2), "peak_rss_mib": round(rss)})
    best = min(r["seconds"] for r in out["landing"])
    floor = min(r["seconds"] for r in out["bare_copy"])
    out["landing_records_per_s"] = round(out["records"] / best)
    out["landing_vs_bare_ratio"] = round(best / floor, 1)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.landing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--players", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side; the best counts")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_landing_") as tmp:
        r = bench_landing(Path(tmp), args.players, args.days, args.seed, args.repeat)
    print(json.dumps(r, indent=2) if args.json else format_table(r))


def format_table(r: dict) -> str:
    land, bare = min(r["landing"], key=lambda x: x["seconds"]), min(r["bare_copy"], key=lambda x: x["seconds"])
    return "\n".join([
        f"{r['records']:,} records ({r['players']:,} players x {r['days']} days; {r['quarantined']:,} quarantined)",
        f"{'':<12} {'seconds':>9} {'records/s':>11} {'peak RSS MiB':>13}",
        f"{'landing':<12} {land['seconds']:>9} {r['landing_records_per_s']:>11,} {land['peak_rss_mib']:>13,}",
        f"{'bare copy':<12} {bare['seconds']:>9} {round(r['records'] / bare['seconds']):>11,} "
        f"{bare['peak_rss_mib']:>13,}",
        f"ratio landing / bare copy: {r['landing_vs_bare_ratio']}"])


if __name__ == "__main__":
    main()
