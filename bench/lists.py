"""Campaign lists at scale: building and publishing a day's lists over N players, against one
bare DuckDB query joining the profile, features and scores of those players (issue 5).

    python -m bench.lists --home PATH [--players 1000000] [--repeats 3] [--work DIR] [--keep] [--no-assets]
                          [--json] [--out FILE]

``PATH`` is a simulated data home after ``crm run``. From it, a new data home (``--work``,
default ``$CRM_HOME/bench/work/lists_<N>``) is made in DuckDB SQL: ``dim_player``,
``player_features``, ``player_scores`` (every model, the as-of date of ``PATH``) and the
message history (``stg_casino__crm_messages``, and the outbox files if any) replicated to N
players with new pseudonymous ids (``<player_id>_<copy>``). The campaigns are those of
``campaigns/`` (with its calendar), plus generated variants (:data:`VARIANTS`: other
channels and offers at their own priorities) while there are fewer than ``--campaigns``
(default 5), written as YAML into ``<work>/campaigns`` (``CRM_CAMPAIGNS_DIR``); the table
shows how far the cross-campaign rules (caps, cooldown, one bonus per player per day,
budgets) bind.

Each measure runs in its own process (peak RSS of that process, ``os.wait4``):

* baseline: one DuckDB query joining ``dim_player``, ``player_features`` and the pivoted
  ``player_scores`` (the join ``crm.warehouse.read_audience`` runs), fetched as an Arrow table;
* ``read_audience`` alone (the input every list shares, as a pandas DataFrame);
* the day's lists as one refresh: ``crm.campaigns.day.build_all`` then ``crm.campaigns.lists.publish``
  of each (build and publish timed apart; peak RSS also at the end of the build);
* the day's lists as the Dagster assets build them: ``build_one`` + ``publish`` per campaign
  in priority order (the audience read once, as `CrmResource.audience` shares it in a run; each reads
  the published higher-priority lists).

Times are in-process seconds of the work (interpreter start and imports excluded; the
process wall time is given beside them), the fastest of ``--repeats`` runs taken in turns;
peak RSS is the largest of the runs. The ratios are to the baseline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

# Generated campaigns, added to the repository's only while there are fewer than --campaigns:
# other channels and offers at their own priorities, so the day's caps, cooldown, the
# one-bonus-per-day rule and the budgets bind across campaigns.
VARIANTS: tuple[dict, ...] = (
    {"id": "bench_inapp_at_risk", "name": "In-app nudge for players at risk (bench)", "owner": "bench",
     "channel": "in_app", "priority": 10, "segment": {"named": "at_risk"},
     "schedule": {"send_time_utc": "09:00"}, "max_list_size": 50_000,
     "experiment": {"salt": "bench", "holdout": 0.1, "variants": {"A": 0.5, "B": 0.5}}},
    {"id": "bench_sms_active_free_spins", "name": "Free spins by SMS for active players (bench)", "owner": "bench",
     "channel": "sms", "priority": 20, "segment": {"named": "active"},
     "offer": {"template": "free_spins", "value_eur": 5, "wagering": 5, "expiry_days": 3},
     "budget": {"total_eur": 20_000, "per_player_per_day_eur": 50},
     "schedule": {"send_time_utc": "12:00"}, "experiment": {"salt": "bench", "holdout": 0.1}},
    {"id": "bench_push_newcomers_bonus", "name": "Welcome bonus by push for newcomers (bench)", "owner": "bench",
     "channel": "push", "priority": 30, "segment": {"named": "newcomers"},
     "offer": {"template": "bonus", "value_eur": 10, "wagering": 10, "expiry_days": 7},
     "experiment": {"salt": "bench", "holdout": 0.1}},
    {"id": "bench_email_high_value", "name": "Newsletter for high-value players (bench)", "owner": "bench",
     "channel": "email", "priority": 200, "segment": {"named": "high_value"},
     "experiment": {"salt": "bench", "holdout": 0.05}},
)

# Eligibility rules a higher-priority list of the same day can make fail.
DAY_RULES = ("channel_cap_day", "global_cap_day", "cooldown", "bonus_already_today", "cost_per_player_day")


# --------------------------------------------------------------------------- the data home

def _as_of(con) -> dt.date:
    return con.execute("SELECT max(as_of_date) FROM src.dim_player").fetchone()[0]


def make_home(src: Path, work: Path, players: int) -> dict:
    """A data home at ``work`` with ``players`` players replicated from the home ``src``."""
    import duckdb

    from crm.config import Paths

    src_paths, paths = Paths(src), Paths(work)
    if not src_paths.warehouse.exists():
        raise SystemExit(f"no warehouse at {src_paths.warehouse}: run `crm simulate` and `crm run` first")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    con = duckdb.connect(str(paths.warehouse))
    try:
        con.execute(f"ATTACH '{src_paths.warehouse}' AS src (READ_ONLY)")
        as_of = _as_of(con)
        base = con.execute("SELECT count(*) FROM src.dim_player").fetchone()[0]
        copies = -(-players // base)
        width = len(str(copies - 1))
        # copy k of player p is p_k; the first `players` of (copy, player) order
        con.execute(f"""
            CREATE TEMP TABLE ids AS
            SELECT player_id AS src_id, k, player_id || '_' || lpad(k::VARCHAR, {width}, '0') AS new_id
            FROM src.dim_player, range({copies}) t(k)
            ORDER BY k, player_id LIMIT {players}""")

        def replicate(table: str, where: str = "", replace: str = "") -> int:
            con.execute(f"""
                CREATE TABLE {table} AS
                SELECT t.* REPLACE (i.new_id AS player_id{replace})
                FROM src.{table} t JOIN ids i ON t.player_id = i.src_id {where}
                ORDER BY i.k, t.player_id""")
            return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

        counts = {
            "dim_player": replicate("dim_player"),
            "player_features": replicate("player_features"),
            "player_scores": replicate("player_scores", f"WHERE t.as_of_date = DATE '{as_of}'"),
        }
        has_messages = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_catalog = 'src' "
                                   "AND table_name = 'stg_casino__crm_messages'").fetchone()[0]
        if has_messages:  # a view over the landed events in src: materialized here
            counts["stg_casino__crm_messages"] = replicate(
                "stg_casino__crm_messages",
                replace=", t.event_id || '_' || i.k AS event_id, t.delivery_id || '_' || i.k AS delivery_id")
        # Our own dispatched messages (history, budgets spent, bonuses offered), if the home has any.
        outbox_rows = 0
        for f in sorted(src_paths.outbox.glob("*/*/*.jsonl")):
            target = paths.outbox / f.relative_to(src_paths.outbox)
            target.parent.mkdir(parents=True, exist_ok=True)
            cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_json('{f}', "
                                              "format = 'newline_delimited')").fetchall()}
            key = ", m.idempotency_key || '_' || i.k AS idempotency_key" if "idempotency_key" in cols else ""
            con.execute(f"""
                COPY (SELECT m.* REPLACE (i.new_id AS player_id{key})
                      FROM read_json('{f}', format = 'newline_delimited') m JOIN ids i ON m.player_id = i.src_id
                      ORDER BY i.k, m.player_id)
                TO '{target}' (FORMAT json)""")
            outbox_rows += con.execute(f"SELECT count(*) FROM read_json('{target}', "
                                       "format = 'newline_delimited')").fetchone()[0]
    finally:
        con.close()
    counts["outbox"] = outbox_rows
    secs = time.perf_counter() - t0
    return {"as_of_date": as_of.isoformat(), "source_players": base, "copies": copies, "rows": counts,
            "seconds": round(secs, 1), "warehouse_bytes": paths.warehouse.stat().st_size}


def write_campaigns(directory: Path, n: int) -> list[str]:
    """The repository's campaigns (and calendar) plus generated variants up to ``n``, as YAML in ``directory``."""
    from crm.campaigns.spec import load_campaigns
    from crm.config import campaigns_dir

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for f in sorted(campaigns_dir().glob("*.y*ml")):
        shutil.copy(f, directory / f.name)
    specs, errors = load_campaigns(directory)
    if errors:
        raise SystemExit("broken campaign files:\n" + "\n".join(errors))
    for v in VARIANTS[:max(0, n - len(specs))]:
        (directory / f"{v['id']}.yaml").write_text(yaml.safe_dump(v, sort_keys=False))
    specs, errors = load_campaigns(directory)
    if errors:
        raise SystemExit("broken generated campaign:\n" + "\n".join(errors))
    return [s.id for s in sorted(specs, key=lambda s: s.order_key)]


# --------------------------------------------------------------------------- the measures (child processes)

def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(module, name: str, sink: list) -> None:
    """Wrap ``module.name`` so each call's seconds go to ``sink`` (first argument's id, if a campaign)."""
    fn = getattr(module, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        sink.append((getattr(args[0], "id", name) if args else name, time.perf_counter() - t0))
        return out

    setattr(module, name, wrapper)


def _summary(b, build_s: float | None = None, publish_s: float | None = None) -> dict:
    s = b.campaign
    sup = b.suppression
    first = sup["first_failing_rule"]
    return {
        "campaign_id": s.id, "priority": s.priority, "channel": s.channel, "offer": s.offer.label,
        "target": s.target.by, "in_segment": b.funnel["in_segment"], "eligible": b.funnel["eligible"],
        "listed": b.funnel["listed"], "holdout": b.funnel["holdout"],
        "first_failing_day_rule": sum(first.get(r, 0) for r in DAY_RULES),
        "day_rules_every": {r: sup["every_failing_rule"][r] for r in DAY_RULES if r in sup["every_failing_rule"]},
        "after_eligibility": sup.get("after_eligibility", {}),
        "stopped_by": b.targeting.get("stopped_by"),
        "build_seconds": None if build_s is None else round(build_s, 2),
        "publish_seconds": None if publish_s is None else round(publish_s, 2),
    }


def child(step: str, work: Path, as_of: dt.date) -> dict:
    """One measure, in this process (the parent runs it in a fresh one)."""
    from crm.campaigns import day as campaign_day
    from crm.campaigns import lists
    from crm.campaigns.spec import load_campaigns
    from crm.config import Paths, campaigns_dir
    from crm.warehouse import read_audience

    paths = Paths(work)
    shutil.rmtree(paths.lists, ignore_errors=True)
    specs, errors = load_campaigns(campaigns_dir())
    if errors:
        raise SystemExit("\n".join(errors))
    out: dict = {"step": step, "campaigns": len(specs)}
    t0 = time.perf_counter()
    if step == "audience":
        audience = read_audience(paths, as_of)
        out |= {"seconds": time.perf_counter() - t0, "rows": len(audience), "columns": audience.shape[1]}
    elif step == "refresh":  # build_all, then publish each list (what a refresh of the day does)
        per_list: list = []
        contexts: list = []
        _timed(lists, "build_list", per_list)  # build_day calls it once per campaign
        _timed(campaign_day, "day_context", contexts)
        audience = read_audience(paths, as_of)
        t_aud = time.perf_counter() - t0
        built = campaign_day.build_all(paths, specs, as_of, audience=audience)
        t_build = time.perf_counter() - t0
        out["build_peak_rss_mib"] = round(_maxrss_mib())
        published = {}
        for b in built:
            t = time.perf_counter()
            lists.publish(b, paths)
            published[b.campaign.id] = time.perf_counter() - t
        build_s = dict(per_list)
        out |= {"seconds": time.perf_counter() - t0, "audience_seconds": round(t_aud, 3),
                "build_seconds": round(t_build, 3), "context_seconds": round(sum(s for _, s in contexts), 3),
                "publish_seconds": round(sum(published.values()), 3),
                "rows": len(audience),
                "lists": [_summary(b, build_s.get(b.campaign.id), published[b.campaign.id]) for b in built]}
    elif step == "assets":  # build_one + publish per campaign in priority order (the Dagster assets)
        done = []
        audience = read_audience(paths, as_of)  # once per run, as the assets share it (CrmResource.audience)
        for spec in sorted(specs, key=lambda s: s.order_key):
            t = time.perf_counter()
            b = campaign_day.build_one(paths, spec, specs, as_of, audience=audience)
            t_b = time.perf_counter() - t
            lists.publish(b, paths)
            done.append(_summary(b, t_b, time.perf_counter() - t - t_b))
        out |= {"seconds": time.perf_counter() - t0, "lists": done}
    else:
        raise ValueError(step)
    out["seconds"] = round(out["seconds"], 3)
    return out


# The baseline: one query, the join read_audience runs (profile, the features it lacks, the
# scores of the as-of date pivoted per model), fetched as an Arrow table; nothing else.
BASELINE = """
import json, sys, time, duckdb
t0 = time.perf_counter()
con = duckdb.connect(sys.argv[1], read_only=True)
rel = con.sql(sys.argv[2])  # a relation: to Arrow without the extra copy of a DB-API result
table = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
secs = time.perf_counter() - t0
print(json.dumps({"seconds": round(secs, 3), "rows": table.num_rows, "columns": table.num_columns,
                  "bytes": table.nbytes}))
"""


def baseline_sql(warehouse: Path, as_of: dt.date) -> str:
    import duckdb

    from crm.warehouse import SCORE_MODELS, SCORES_TABLE

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        profile = {r[0] for r in con.execute("DESCRIBE dim_player").fetchall()}
        features = [r[0] for r in con.execute("DESCRIBE player_features").fetchall() if r[0] not in profile]
    finally:
        con.close()
    pivot = ", ".join(f"max(score) FILTER (WHERE model = '{m}') AS {m}_score, "
                      f"max(model_version) FILTER (WHERE model = '{m}') AS {m}_model_version" for m in SCORE_MODELS)
    cols = "".join(f', f."{c}"' for c in features) + "".join(
        f", s.{m}_score, s.{m}_model_version" for m in SCORE_MODELS)
    return (f"SELECT p.* {cols} FROM dim_player p LEFT JOIN player_features f USING (player_id) "
            f"LEFT JOIN (SELECT player_id, {pivot} FROM {SCORES_TABLE} WHERE as_of_date = DATE '{as_of}' "
            "GROUP BY player_id) s USING (player_id)")


def run_timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, dict]:
    """Run a measuring process: (wall seconds, its peak RSS in MiB, the JSON of its last stdout line)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        out = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd[:5])} ... failed with exit code {code}:\n{err.read()[-4000:]}")
    return seconds, usage.ru_maxrss / 1024, json.loads(out.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the bench

def run(home: Path, players: int = 1_000_000, *, campaigns: int = 5, work: Path | None = None, keep: bool = False,
        assets: bool = True, repeats: int = 3, log=print) -> dict:
    from crm.config import REPO_ROOT, Paths, crm_home

    work = (work or crm_home() / "bench" / "work" / f"lists_{players}").resolve()
    env = os.environ | {"CRM_HOME": str(work), "CRM_CAMPAIGNS_DIR": str(work / "campaigns"),
                        "DAGSTER_HOME": str(work / "dagster"), "MLFLOW_DISABLE_TELEMETRY": "true",
                        "GX_ANALYTICS_ENABLED": "false", "PYTHONPATH": os.pathsep.join(
                            [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    me = [sys.executable, "-m", "bench.lists", "--child"]
    # Every step runs in a child of this (small) process. Linux counts the RSS a child had
    # before exec (from a big parent: the parent's) in its peak, so a fresh interpreter
    # started here gives the floor under the figures below.
    _, floor, _ = run_timed([sys.executable, "-c", "print('{}')"], env)
    log(f"replicating {home} to {players:,} players ...")
    wall, rss, made = run_timed([*me, "home", "--home", str(Path(home).resolve()), "--work", str(work),
                            "--players", str(players)], env)
    made |= {"peak_rss_mib": round(rss)}
    as_of = made["as_of_date"]
    log(f"  data home {work}: {made['rows']['dim_player']:,} players ({made['copies']} copies of "
        f"{made['source_players']:,}) as of {as_of} in {made['seconds']:.1f} s, peak RSS {rss:,.0f} MiB")
    ids = write_campaigns(work / "campaigns", campaigns)
    log(f"  {len(ids)} campaigns in build order: {', '.join(ids)}")

    def measure(name: str, cmd: list[str]) -> dict:
        log(f"{name} ...")
        wall, rss, out = run_timed(cmd, env)
        out |= {"process_seconds": round(wall, 2), "peak_rss_mib": round(rss)}
        log(f"  {out['seconds']:.2f} s (process {wall:.1f} s), peak RSS {rss:,.0f} MiB")
        return out

    def keep_best(old: dict | None, new: dict) -> dict:
        """The fastest run's figures; peak RSS the largest of all runs, every run's seconds listed."""
        best = new if old is None or new["seconds"] < old["seconds"] else old
        runs = [*(old or {}).get("runs_seconds", []), new["seconds"]]
        peaks = {k: max(new[k], (old or {}).get(k, 0)) for k in ("peak_rss_mib", "build_peak_rss_mib") if k in new}
        return best | {"runs_seconds": runs} | peaks

    tail = ["--work", str(work), "--as-of", as_of]
    result: dict = {"players": made["rows"]["dim_player"], "as_of_date": as_of, "campaigns": ids, "home": made,
                    "machine": {"cpus": os.cpu_count()}, "floor_rss_mib": round(floor)}
    steps = [("baseline", "baseline: one bare DuckDB query joining profile, features and scores",
              [sys.executable, "-c", BASELINE, str(Paths(work).warehouse),
               baseline_sql(Paths(work).warehouse, dt.date.fromisoformat(as_of))]),
             ("read_audience", "crm.warehouse.read_audience", [*me, "audience", *tail]),
             ("refresh", f"build_all + publish of {len(ids)} lists", [*me, "refresh", *tail])]
    if assets:
        steps.append(("assets", f"build_one + publish per campaign ({len(ids)} Dagster assets)",
                      [*me, "assets", *tail]))
    result["repeats"] = repeats
    try:
        # The measures take turns, so a busy spell on the (shared) machine hits all of them alike.
        for i in range(repeats):
            for key, name, cmd in steps:
                result[key] = keep_best(result.get(key), measure(
                    f"{name}{f' (run {i + 1}/{repeats})' if repeats > 1 else ''}", cmd))
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    base = result["baseline"]["seconds"]
    r = result["refresh"]
    result["ratios"] = {
        "read_audience_vs_baseline": round(result["read_audience"]["seconds"] / base, 1),
        "build_vs_baseline": round(r["build_seconds"] / base, 1),
        "lists_vs_baseline": round(r["seconds"] / base, 1),
        **({"assets_vs_baseline": round(result["assets"]["seconds"] / base, 1)} if "assets" in result else {}),
    }
    return result


def format_table(r: dict) -> str:
    base = r["baseline"]["seconds"]
    ref = r["refresh"]
    lists_s = ref["build_seconds"] - ref["audience_seconds"] - ref["context_seconds"]
    rows = [("bare DuckDB join -> Arrow (baseline)", base, r["baseline"]["process_seconds"],
             r["baseline"]["peak_rss_mib"]),
            ("read_audience -> pandas, alone", r["read_audience"]["seconds"], r["read_audience"]["process_seconds"],
             r["read_audience"]["peak_rss_mib"]),
            (f"build_all + publish ({len(r['campaigns'])} lists of the day)", ref["seconds"], ref["process_seconds"],
             ref["peak_rss_mib"]),
            ("  read_audience", ref["audience_seconds"], None, None),
            ("  day context (history, outbox, budgets)", ref["context_seconds"], None, None),
            (f"  {len(r['campaigns'])} x build_list (priority order)", lists_s, None, None),
            ("  = build_all alone (no publish)", ref["build_seconds"], None, ref["build_peak_rss_mib"]),
            ("  publish (CSV, Parquet, XLSX, manifest)", ref["publish_seconds"], None, None)]
    if "assets" in r:
        a = r["assets"]
        rows.append((f"build_one + publish x{len(r['campaigns'])} (Dagster assets)", a["seconds"],
                     a["process_seconds"], a["peak_rss_mib"]))
    lines = [f"Campaign lists: {r['players']:,} players ({r['home']['copies']} copies of a "
             f"{r['home']['source_players']:,}-player home), {len(r['campaigns'])} campaigns, as of {r['as_of_date']}",
             "", f"  {'step':<42}{'seconds':>9}{'process s':>11}{'peak RSS MiB':>14}{'x baseline':>12}"]
    for name, s, p, m in rows:
        lines.append(f"  {name:<42}{s:>9.2f}{'' if p is None else f'{p:.1f}':>11}"
                     f"{'' if m is None else f'{m:,}':>14}{s / base:>12.1f}")
    lines += ["", f"  {'campaign (build order)':<30}{'prio':>5} {'channel':<7} {'offer':<11}{'target':<7}"
                  f"{'segment':>9}{'eligible':>9}{'listed':>8}{'holdout':>8}{'day-rule':>9}  {'stopped_by':<14}"
                  f"{'build s':>8}{'publish s':>10}"]
    for li in ref["lists"]:
        lines.append(f"  {li['campaign_id']:<30}{li['priority']:>5} {li['channel']:<7} {li['offer']:<11}"
                     f"{li['target']:<7}{li['in_segment']:>9,}{li['eligible']:>9,}{li['listed']:>8,}"
                     f"{li['holdout']:>8,}{li['first_failing_day_rule']:>9,}  {li['stopped_by'] or '-':<14}"
                     f"{li['build_seconds'] or 0:>8.2f}{li['publish_seconds'] or 0:>10.2f}")
    lines.append("  day-rule: players whose first failing rule is one a higher-priority list of the day makes fail "
                 f"({', '.join(DAY_RULES)}); every failing:")
    for li in ref["lists"]:
        if li["day_rules_every"]:
            every = ", ".join(f"{k} {v:,}" for k, v in li["day_rules_every"].items())
            lines.append(f"    {li['campaign_id']}: {every}")
    lines.append(f"  seconds: fastest of {r['repeats']} runs in turns; "
                 f"peak RSS: of each measuring process (largest run); a bare interpreter started the same way: "
                 f"{r['floor_rss_mib']:,} MiB. Data home made in {r['home']['seconds']} s "
                 f"(peak RSS {r['home']['peak_rss_mib']:,} MiB, warehouse "
                 f"{r['home']['warehouse_bytes'] / 2**20:,.0f} MiB).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.lists", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, help="a simulated data home after `crm run` (the players to replicate)")
    ap.add_argument("--players", type=int, default=1_000_000, help="players in the benchmark home (default 1,000,000)")
    ap.add_argument("--campaigns", type=int, default=5, help="campaigns: the repository's plus generated ones")
    ap.add_argument("--work", type=Path, help="where to make the benchmark home (default "
                                              "$CRM_HOME/bench/work/lists_<players>; replaced)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each measure, in turns; the fastest is kept")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark home afterwards")
    ap.add_argument("--no-assets", action="store_true", help="skip the build_one-per-campaign (Dagster) measure")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    ap.add_argument("--out", type=Path, help="also write the figures as JSON to this file")
    ap.add_argument("--child", choices=("home", "audience", "refresh", "assets"), help=argparse.SUPPRESS)
    ap.add_argument("--as-of", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "home":
        print(json.dumps(make_home(args.home, args.work, args.players), default=str))
        return 0
    if args.child:
        print(json.dumps(child(args.child, args.work, dt.date.fromisoformat(args.as_of)), default=str))
        return 0
    if args.home is None:
        ap.error("--home is required")
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    res = run(args.home, args.players, campaigns=args.campaigns, work=args.work, keep=args.keep,
              assets=not args.no_assets, repeats=max(1, args.repeats), log=log)
    res["date"] = dt.date.today().isoformat()
    print(json.dumps(res, indent=1) if args.json else "\n" + format_table(res))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
