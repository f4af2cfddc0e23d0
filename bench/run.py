"""Benchmarks of casino-crm: figures and ratios against a baseline measured in the same run.

    python -m bench.run [--sim-sizes 20000,200000,1000000] [--e2e-sizes 20000,200000] [--days 120]
                        [--lists-players 1000000] [--gates/--no-gates] [--gates-repeat 1]
                        [--landing-players 200000] [--service-rate 200] [--service-seconds 25]
                        [--service-stores sqlite,postgres] [--triggers-rates 25,50,100]
                        [--spark-players 200000] [--abuse-sizes 20000] [--risk-sizes 20000]
                        [--only simulator,landing,refresh,spark,service,triggers,abuse,risk]

* simulator: events/s and peak memory (max RSS of the simulating process) per size;
* landing (`crm ingest`: the contract checks and normalization) against one bare DuckDB copy of
  the same files (bench.landing; --landing-players 0 skips it);
* daily refresh end to end (`crm run`: landing, dbt, training, scoring, lists, gates,
  dispatch) per size, each in a fresh data home;
* the dbt build as a ratio to one bare DuckDB aggregation over the same landed events;
* on the first end-to-end home: model quality and scoring speed (bench.ml), uplift learners
  against causalml's on the same split (bench.uplift) and targeting policies at one budget
  against the simulator's truth (bench.policy), next best game against its baselines (bench.games),
  and the day's campaign lists over that home
  replicated to --lists-players players against one bare DuckDB join (bench.lists; 0 skips it);
* targeting policies (value uplift, the same rule with a model fitted on the true effects, NGR
  uplift, churn, random, oracle) over --policy-seeds simulator seeds at each of --policy-sizes,
  with 95 % intervals of the true incremental NGR per euro of bonus (bench.policy --sizes);
* on the last end-to-end home (200,000 players by default): gate overhead, the refresh of the
  same as-of date with every asset check against the same assets without any (bench.gates;
  --no-gates skips it);
* the warehouse build on local Apache Spark (dbt-spark) beside the same build on DuckDB, from the
  same landed files, and the hand-off of Spark's tables to DuckDB (bench.spark; --spark-players 0
  skips it);
* the integration API (issue 14): `POST /v1/messaging/send` under a steady open-loop load
  (--service-rate requests/s for --service-seconds) on SQLite and on PostgreSQL, to the local SMTP
  server's receipt of each message, against the target p95 under 1 s (bench.service);
* real-time triggers (issue 15): a casino's event mix posted to `POST /v1/events` at steady rates
  (--triggers-rates events/s), event to the help message's SMTP receipt, the highest rate with
  p95 under 1 s, and the share of triggered sends the rules refused, by rule (bench.triggers).
* ring detection (issue 19): entity resolution over the identifiers' pseudonyms (player_clusters)
  against the simulator's planted rings, beside "any shared attribute" and "same ip" linking, and
  the linking step's time and peak memory, at each of --abuse-sizes (bench.abuse).
* bonus-abuse risk score (issue 19): precision and recall of the flags of player_risk_scores against
  the simulator's bonus hunters (ring members and re-registrations beside), next to the rule "bonus
  share of stake > 0.5", and the training's and the scoring's time and peak memory, at each of
  --risk-sizes (bench.risk).

--only runs some steps, e.g. `make bench BENCH_ARGS="--only service"`.

Each step runs in its own process so peak memory is that step's own. Results are printed
as a table and written as JSON under $CRM_HOME/bench/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from crm.config import DBT_PROJECT_DIR, Paths, crm_home

BIN = Path(sys.executable).parent
STEPS = ("simulator", "landing", "refresh", "policy", "spark", "service", "triggers", "abuse", "risk")


def run_timed(cmd: list[str], env: dict[str, str], check: bool = True,
              cwd: Path | None = None) -> tuple[float, float, str]:
    """Run a command; return (seconds, peak RSS in MiB of that process tree's largest member, stdout).
    ``check``: raise when it fails; ``cwd``: its working directory (default this process's)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=cwd)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if check and os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {os.waitstatus_to_exitcode(status)}")
    return seconds, usage.ru_maxrss / 1024, out


def home_env(home: Path) -> dict[str, str]:
    return os.environ | {"CRM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
                         "MLFLOW_DISABLE_TELEMETRY": "true", "GX_ANALYTICS_ENABLED": "false"}


def bench_simulator(root: Path, players: int, days: int) -> dict:
    home = root / f"sim_{players}"
    shutil.rmtree(home, ignore_errors=True)
    secs, rss, out = run_timed([str(BIN / "crm"), "simulate", "--players", str(players), "--days", str(days),
                           "--json"], home_env(home))
    events = json.loads(out)["events"]
    size = sum(p.stat().st_size for p in Paths(home).incoming.glob("*"))
    shutil.rmtree(home, ignore_errors=True)
    return {"players": players, "days": days, "events": events, "seconds": round(secs, 2),
            "events_per_s": round(events / secs), "peak_rss_mib": round(rss), "bytes_on_disk": size}


def bench_refresh(root: Path, players: int, days: int, with_ml: bool = False, lists_players: int = 0,
                  gates_repeat: int = 0) -> dict:
    home = root / f"e2e_{players}"
    shutil.rmtree(home, ignore_errors=True)
    env = home_env(home)
    run_timed([str(BIN / "crm"), "simulate", "--players", str(players), "--days", str(days), "--json"], env)
    held_back = hold_back_last_day(Paths(home))  # landed later: the next day's refresh
    secs, rss, out = run_timed([str(BIN / "crm"), "run", "--json"], env)
    summary = json.loads(out)
    if not summary["success"]:
        raise RuntimeError(f"refresh failed at {players} players: {summary['failed_steps']}")
    # the first build of the whole history, alone: dbt build --full-refresh
    as_of_vars = json.dumps({"as_of_date": summary["as_of_date"]})
    dbt_secs, _, _ = run_timed([str(BIN / "dbt"), "build", "--quiet", "--full-refresh", "--project-dir",
                                str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path",
                                str(home / "dbt" / "target"), "--vars", as_of_vars], env)
    # the next day: its events land, then the daily refresh (incremental warehouse, models when due)
    shutil.move(held_back, Paths(home).incoming / held_back.name)
    next_secs, next_rss, out = run_timed([str(BIN / "crm"), "run", "--json"], env, check=False)
    nxt = json.loads(out) if out.strip().startswith("{") else {"success": False, "failed_steps": ["(no summary)"]}
    if not nxt["success"]:  # reported, not raised: the first refresh's figures are kept
        print(f"  the next day's refresh failed at {players:,} players: {nxt.get('failed_steps')}", flush=True)
    log = Paths(home).ingest_log.read_text().splitlines()
    events = sum(json.loads(line)["loaded"] for line in log)
    # the baseline: one bare DuckDB aggregation over every landed event (the whole history)
    bare_secs, _, _ = run_timed([sys.executable, "-c", BARE_QUERY, str(Paths(home).events)], env)
    next_wh = nxt.get("step_seconds", {}).get("warehouse", float("nan"))
    result = {"players": players, "days": days, "events": events, "refresh_seconds": round(secs, 1),
              "refresh_peak_rss_mib": round(rss), "dbt_build_seconds": round(dbt_secs, 1),
              "bare_duckdb_seconds": round(bare_secs, 2), "dbt_vs_bare_ratio": round(dbt_secs / bare_secs, 1),
              "first_steps": {k: round(v, 1) for k, v in sorted(summary.get("step_seconds", {}).items(),
                                                                 key=lambda kv: -kv[1])[:12]},
              "next_day_success": nxt["success"], "next_day_failed_steps": nxt.get("failed_steps", []),
              "next_day_as_of": nxt.get("as_of_date"), "next_day_refresh_seconds": round(next_secs, 1),
              "next_day_peak_rss_mib": round(next_rss), "next_day_warehouse_seconds": round(next_wh, 1),
              "next_day_vs_bare_ratio": round(next_secs / bare_secs, 1),
              "next_day_warehouse_vs_bare_ratio": round(next_wh / bare_secs, 1),
              "next_day_retrained": sorted(k for k, m in nxt.get("models", {}).items() if m.get("retrained")),
              "next_day_steps": {k: round(v, 1) for k, v in sorted(nxt.get("step_seconds", {}).items(),
                                                                    key=lambda kv: -kv[1])[:12]},
              "model_roc_auc": round(summary["models"].get("churn_model", {}).get("roc_auc", float("nan")), 3),
              "recency_baseline_auc": round(summary["models"].get("churn_model", {}).get(
                  "baseline_recency_roc_auc", float("nan")), 3),
              "lists": {li["campaign_id"]: li["rows"] for li in summary["lists"]}}
    if with_ml:
        # Model quality and scoring speed on this home (issue 3): in its own process.
        _, _, out = run_timed([sys.executable, "-m", "bench.ml", "--home", str(home), "--json"], env)
        result["ml"] = json.loads(out)
        # Uplift learners against causalml's meta-learners on the same split, and targeting
        # policies at one budget against the simulator's truth (issue 4). Each in its own
        # process like every step: a child started from a big process reports the parent's
        # peak RSS as its own, so in-process work here would inflate the next refresh's figure.
        print("uplift learners vs causalml (python -m bench.uplift) ...", flush=True)
        _, _, out = run_timed([sys.executable, "-m", "bench.uplift", "--home", str(home), "--json"], env)
        result["uplift"] = json.loads(out)
        print("targeting policies at one budget (python -m bench.policy) ...", flush=True)
        _, _, out = run_timed([sys.executable, "-m", "bench.policy", "--home", str(home), "--json"], env)
        result["policy"] = json.loads(out)
        print("next best game vs popularity and favourite provider (python -m bench.games) ...", flush=True)
        _, _, out = run_timed([sys.executable, "-m", "bench.games", "--home", str(home), "--json"], env)
        result["games"] = json.loads(out)
    if with_ml and lists_players:
        # The day's campaign lists over this home replicated to lists_players players (issue 5).
        # In its own process: the peak RSS of its measuring children is theirs, not this one's.
        print(f"campaign lists over {lists_players:,} players (python -m bench.lists) ...", flush=True)
        cmd = [sys.executable, "-m", "bench.lists", "--home", str(home), "--players", str(lists_players),
               "--work", str(root / f"lists_{lists_players}"), "--json"]
        _, _, out = run_timed(cmd, env)
        result["lists_bench"] = json.loads(out)  # not "lists": that is the refresh's rows per list
    if gates_repeat:
        # Gate overhead (issue 6): the refresh of this as-of date with all checks vs. without any,
        # each run in its own process (bench.gates starts them), dispatch left out of both.
        print(f"gate overhead on {players:,} players (python -m bench.gates) ...", flush=True)
        _, _, out = run_timed([sys.executable, "-m", "bench.gates", "--home", str(home), "--repeat", str(gates_repeat),
                          "--json"], env)
        result["gates"] = json.loads(out)
    shutil.rmtree(home, ignore_errors=True)
    return result


def hold_back_last_day(paths: Paths) -> Path:
    """Move the simulated events of the last day out of ``landing/incoming`` into one file beside it
    (returned): landed after the first refresh, they are the next day's feed."""
    import duckdb

    from crm.sql import literal

    files = sorted(paths.incoming.glob("*.parquet"))
    held = paths.home / "held_back" / "events_last_day.parquet"
    held.parent.mkdir(parents=True, exist_ok=True)
    source = f"read_parquet([{', '.join(literal(str(f)) for f in files)}])"
    rest = paths.incoming / "events_before_last_day.parquet"
    with duckdb.connect() as con:
        con.execute("SET preserve_insertion_order = false")
        last = con.execute(f"SELECT max(try_cast(occurred_at AS TIMESTAMP))::DATE FROM {source}").fetchone()[0]
        day = f"try_cast(occurred_at AS TIMESTAMP)::DATE = {literal(last.isoformat())}::DATE"
        con.execute(f"COPY (SELECT * FROM {source} WHERE {day}) TO {literal(str(held))} (FORMAT parquet)")
        con.execute(f"COPY (SELECT * FROM {source} WHERE NOT coalesce({day}, false)) TO {literal(str(rest))} "
                    "(FORMAT parquet)")
    for f in files:
        f.unlink()
    return held


# The baseline: one DuckDB query aggregating landed events to player-day activity
# (what fct_player_daily does), with nothing else: no staging, tests or other marts.
BARE_QUERY = """
import sys, duckdb
con = duckdb.connect()
con.execute(f'''
CREATE TABLE daily AS
SELECT player_id, CAST(occurred_at AS DATE) AS day,
       count(*) FILTER (WHERE event_type = 'session.started') AS sessions,
       sum(CAST(payload->>'$.stake' AS BIGINT)) FILTER (WHERE event_type = 'bet.settled') AS stake,
       sum(CAST(payload->>'$.win' AS BIGINT)) FILTER (WHERE event_type = 'bet.settled') AS win,
       sum(CAST(payload->>'$.amount' AS BIGINT)) FILTER (WHERE event_type = 'payment.captured') AS deposits
FROM read_parquet('{sys.argv[1]}/*.parquet')
GROUP BY ALL
''')
"""


def _table(rows: list[dict], cols: list[str]) -> str:
    widths = [max([len(c), *(len(f"{r.get(c, '')}") for r in rows)]) for c in cols]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(f"{r.get(c, '')}".rjust(w) for c, w in zip(cols, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sim-sizes", default="20000,200000,1000000", help="players per simulator run")
    ap.add_argument("--e2e-sizes", default="20000,200000", help="players per end-to-end refresh")
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--lists-players", type=int, default=1_000_000,
                    help="players for the campaign-lists bench on the first end-to-end home (0: skip)")
    ap.add_argument("--ml", action=argparse.BooleanOptionalAction, default=True,
                    help="model quality, uplift learners and targeting policies (bench.ml, .uplift, .policy) on "
                         "the first end-to-end home")
    ap.add_argument("--gates", action=argparse.BooleanOptionalAction, default=True,
                    help="gate overhead (bench.gates) on the last end-to-end home")
    ap.add_argument("--gates-repeat", type=int, default=1,
                    help="pairs of gate-overhead runs (with, without checks); the best of each is kept")
    ap.add_argument("--landing-players", type=int, default=200_000,
                    help="players for the landing bench against a bare DuckDB copy (bench.landing; 0: skip)")
    ap.add_argument("--spark-players", type=int, default=200_000,
                    help="players for the warehouse build on local Spark beside DuckDB (bench.spark; 0: skip)")
    ap.add_argument("--service-rate", default="200",
                    help="requests/s of the service bench (bench.service; a comma list runs each rate)")
    ap.add_argument("--service-seconds", type=float, default=25.0, help="seconds of load per service run")
    ap.add_argument("--service-stores", default="sqlite,postgres", help="stores of the service bench")
    ap.add_argument("--triggers-rates", default="25,50,100", help="events/s of the trigger bench (bench.triggers)")
    ap.add_argument("--triggers-seconds", type=float, default=20.0, help="seconds of load per trigger run")
    ap.add_argument("--policy-sizes", default="20000,200000",
                    help="players per targeting-policy comparison (python -m bench.policy --sizes)")
    ap.add_argument("--policy-seeds", type=int, default=5, help="simulator seeds per policy size")
    ap.add_argument("--abuse-sizes", default="20000",
                    help="players per ring-detection run (bench.abuse; the issue's large size: 20000,1000000)")
    ap.add_argument("--risk-sizes", default="20000",
                    help="players per risk-score run (bench.risk; e.g. 20000,200000)")
    ap.add_argument("--only", default=",".join(STEPS),
                    help=f"the steps to run, a comma list of {', '.join(STEPS)} (default: all)")
    args = ap.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if only - set(STEPS):
        ap.error(f"--only: unknown steps {', '.join(sorted(only - set(STEPS)))}; choose from {', '.join(STEPS)}")
    root = crm_home() / "bench" / "work"
    root.mkdir(parents=True, exist_ok=True)
    report: dict = {"started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "platform": platform.platform()},
                    "simulator": [], "refresh": []}
    for n in [int(x) for x in args.sim_sizes.split(",") if x and "simulator" in only]:
        print(f"simulator: {n:,} players x {args.days} days ...", flush=True)
        report["simulator"].append(bench_simulator(root, n, args.days))
    if args.landing_players and "landing" in only:
        print(f"landing: {args.landing_players:,} players x {args.days} days vs a bare copy ...", flush=True)
        _, _, out = run_timed([sys.executable, "-m", "bench.landing", "--players", str(args.landing_players),
                          "--days", str(args.days), "--json"], os.environ.copy())
        report["landing"] = json.loads(out)
    e2e_sizes = [int(x) for x in args.e2e_sizes.split(",") if x and "refresh" in only]
    for i, n in enumerate(e2e_sizes):
        print(f"daily refresh end to end: {n:,} players x {args.days} days ...", flush=True)
        report["refresh"].append(bench_refresh(
            root, n, args.days, with_ml=args.ml and i == 0, lists_players=args.lists_players,
            gates_repeat=args.gates_repeat if args.gates and i == len(e2e_sizes) - 1 else 0))
    if args.policy_sizes and "policy" in only:
        print(f"targeting policies over {args.policy_seeds} seeds at {args.policy_sizes} players "
              "(python -m bench.policy) ...", flush=True)
        _, _, out = run_timed([sys.executable, "-m", "bench.policy", "--sizes", args.policy_sizes, "--seeds",
                               str(args.policy_seeds), "--work", str(root), "--json"], os.environ.copy())
        report["policy_seeds"] = json.loads(out)
    if args.spark_players and "spark" in only:
        print(f"warehouse build on local Spark beside DuckDB: {args.spark_players:,} players "
              "(python -m bench.spark) ...",
              flush=True)
        _, _, out = run_timed([sys.executable, "-m", "bench.spark", "--players", str(args.spark_players),
                               "--days", str(args.days), "--work", str(root), "--json"], os.environ.copy())
        report["spark"] = json.loads(out)
    if "service" in only:
        # Its own processes: the service, the load generator and (here) the SMTP server (issue 14).
        print(f"service: POST /v1/messaging/send at {args.service_rate}/s on {args.service_stores} "
              "(python -m bench.service) ...", flush=True)
        _, _, out = run_timed([sys.executable, "-m", "bench.service", "--json", "--rate", args.service_rate,
                               "--seconds", str(args.service_seconds), "--stores", args.service_stores,
                               "--work", str(root)], os.environ.copy())
        report["service"] = json.loads(out)
    if "triggers" in only:
        print(f"triggers: an event mix at {args.triggers_rates} events/s on {args.service_stores} "
              "(python -m bench.triggers) ...", flush=True)
        _, _, out = run_timed([sys.executable, "-m", "bench.triggers", "--json", "--rates", args.triggers_rates,
                               "--seconds", str(args.triggers_seconds), "--stores", args.service_stores,
                               "--work", str(root)], os.environ.copy())
        report["triggers"] = json.loads(out)
    for n in [int(x) for x in args.abuse_sizes.split(",") if x and "abuse" in only]:
        print(f"ring detection: {n:,} players x {args.days} days (python -m bench.abuse) ...", flush=True)
        _, _, out = run_timed([sys.executable, "-m", "bench.abuse", "--players", str(n), "--days", str(args.days),
                               "--keep", str(root / f"abuse_{n}"), "--json"], os.environ.copy())
        report.setdefault("abuse", []).append(json.loads(out))
    for n in [int(x) for x in args.risk_sizes.split(",") if x and "risk" in only]:
        print(f"risk score: {n:,} players x {args.days} days (python -m bench.risk) ...", flush=True)
        _, _, out = run_timed([sys.executable, "-m", "bench.risk", "--players", str(n), "--days", str(args.days),
                               "--keep", str(root / f"risk_{n}"), "--json"], os.environ.copy())
        report.setdefault("risk", []).append(json.loads(out))

    # the measurements are saved before anything is printed: a printing bug never loses an hour of them
    out = crm_home() / "bench" / f"bench-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(root, ignore_errors=True)
    print_report(report)
    print(f"\nwritten to {out}")
    return 0


def print_report(report: dict) -> None:
    if report["simulator"]:
        print("\nSimulator")
        print(_table(report["simulator"], ["players", "days", "events", "seconds", "events_per_s", "peak_rss_mib"]))
    if "landing" in report:
        from bench.landing import format_table as landing_table

        print("\nLanding (crm ingest) vs. one bare DuckDB copy of the same files (python -m bench.landing)")
        print(landing_table(report["landing"]))
    if report["refresh"]:
        print("\nDaily refresh (crm run, through Dagster) and dbt build vs. one bare DuckDB aggregation")
        print(_table(report["refresh"], ["players", "events", "refresh_seconds", "refresh_peak_rss_mib",
                                         "dbt_build_seconds", "bare_duckdb_seconds", "dbt_vs_bare_ratio",
                                         "model_roc_auc", "recency_baseline_auc"]))
        for r in report["refresh"]:
            print(f"  {r['players']:,} players, first refresh's slowest steps: "
                  + ", ".join(f"{k} {v} s" for k, v in list(r.get("first_steps", {}).items())[:8]))
        print("\nThe next day's refresh (one new day of events landed; incremental warehouse, models when due) "
              "vs. one bare DuckDB aggregation of the whole history")
        print(_table(report["refresh"], ["players", "next_day_refresh_seconds", "next_day_peak_rss_mib",
                                         "next_day_warehouse_seconds", "bare_duckdb_seconds", "next_day_vs_bare_ratio",
                                         "next_day_warehouse_vs_bare_ratio"]))
        for r in report["refresh"]:
            print(f"  {r['players']:,} players, retrained: {', '.join(r['next_day_retrained']) or 'none'}; "
                  f"slowest steps: " + ", ".join(f"{k} {v} s" for k, v in list(r["next_day_steps"].items())[:6]))
        sizes = sorted(report["refresh"], key=lambda r: r["players"])
        if len(sizes) > 1:
            small, big = sizes[0], sizes[-1]
            print(f"  cost growth: next day's refresh at {big['players']:,} / at {small['players']:,} players = "
                  f"{big['next_day_refresh_seconds'] / small['next_day_refresh_seconds']:.1f} "
                  f"(players ×{big['players'] / small['players']:.0f}); warehouse step "
                  f"{big['next_day_warehouse_seconds'] / small['next_day_warehouse_seconds']:.1f}")
    for r in report["refresh"]:
        if "ml" in r:
            from bench.ml import format_table

            print(f"\nModels on the {r['players']:,}-player home (python -m bench.ml)")
            print(format_table(r["ml"]))
        if "uplift" in r:
            from bench.uplift import format_table as uplift_table

            print(f"\nUplift learners vs causalml on synthetic data and the {r['players']:,}-player home "
                  "(python -m bench.uplift)")
            print(uplift_table(r["uplift"]))
        if "policy" in r:
            from bench.policy import format_table as policy_table

            print(f"\nTargeting policies on the {r['players']:,}-player home (python -m bench.policy)")
            print(policy_table(r["policy"]))
        if "games" in r:
            from bench.games import format_table as games_table

            print(f"\nNext best game on the {r['players']:,}-player home (python -m bench.games)")
            print(games_table(r["games"]))
        if "lists_bench" in r:
            from bench.lists import format_table as lists_table

            print(f"\nCampaign lists on the {r['players']:,}-player home replicated (python -m bench.lists)")
            print(lists_table(r["lists_bench"]))
        if "gates" in r:
            from bench.gates import format_table as gates_table

            print(f"\nGate overhead on the {r['players']:,}-player home: refresh with all checks vs. without "
                  "(python -m bench.gates)")
            print(gates_table(r["gates"]))
    if "policy_seeds" in report:
        from bench.policy import format_summary

        print("\nTargeting policies over simulator seeds (python -m bench.policy --sizes ... --seeds ...)")
        for size, r in report["policy_seeds"].items():
            print(format_summary(int(size), r["summary"]))
    if "spark" in report:
        from bench.spark import format_table as spark_table

        print("\nThe warehouse build (dbt build, every model, seed and test) on local Spark beside DuckDB, same landed "
              "files (python -m bench.spark)")
        print(spark_table(report["spark"]))
    if "service" in report:
        from bench.service import format_table as service_table

        print("\nPOST /v1/messaging/send under an open-loop load, to the SMTP server's receipt, vs the target "
              "p95 < 1 s (python -m bench.service)")
        print(service_table(report["service"]))
    if "triggers" in report:
        from bench.triggers import format_table as triggers_table

        print("\nReal-time triggers: an event mix posted to /v1/events, event to the help message's SMTP receipt, vs "
              "the target p95 < 1 s (python -m bench.triggers)")
        print(triggers_table(report["triggers"]))
    for r in report.get("abuse", []):
        from bench.abuse import format_table as abuse_table

        print("\nRing detection: player_clusters vs naive linking, against the truth (python -m bench.abuse)")
        print(abuse_table(r))
    for r in report.get("risk", []):
        from bench.risk import format_table as risk_table

        print("\nBonus-abuse risk score: flags vs the truth, beside 'bonus share of stake > 0.5' "
              "(python -m bench.risk)")
        print(risk_table(r))


if __name__ == "__main__":
    sys.exit(main())
