"""Real-time triggers under a steady event stream: event accepted -> help message at the SMTP server (issue 15).

    python -m bench.triggers [--rates 50,100,200] [--seconds 20] [--stores sqlite,postgres] [--players 5000]
                             [--pg-url URL] [--work DIR] [--json]

Per store and rate, in a fresh data home (set up as :mod:`bench.service` sets it up: the store
migrated, ``--players`` clean players in the online profile with an email address each, one API
key with ``events:write``), the service as ``crm serve`` runs it: the API in its own process, one
``crm triggers work`` and one ``crm deliveries work`` process beside it, the shipped triggers of
``campaigns/triggers/`` (the comfort cashback approved by a second person), and a local SMTP
server (aiosmtpd) in this process.

The load generator (its own process, aiohttp on uvloop, open loop: event i posted at
t0 + i / rate, one event per ``POST /v1/events``) sends a casino's event mix over random players:
bets settled (a few heavy losses), sessions, deposits, failed payments (half with a reason the
help trigger answers: 3-D Secure, address check, timeout), consent withdrawals and RG events.

Measured: for every failed payment the help trigger queued (its delivery id is derived from the
trigger and the event), the time from the event's POST to the SMTP server's receipt; p50 / p95 /
p99, against the issue's target (p95 under 1 s) and the stack's seed target (p95 30-90 s), side
by side. The highest rate whose p95 stays under 1 s is named per store. The firings' outcomes
(queued, refused and why, holdout, no match, deduped, held for quiet hours) are counted, so the
share of triggered sends that the rules refused is reported with the rules. CPU per process
over the window, and the machine's busy share, as in :mod:`bench.service`: on a 2-core machine
the API, both workers, the SMTP server, the generator and PostgreSQL share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from email.parser import BytesHeaderParser
from pathlib import Path

from bench.service import (
    BRAND,
    NOW,
    SEED_P95_S,
    SMTP_FROM,
    TARGET_P95_S,
    _count_lines,
    clean_profile,
    free_port,
    machine_ticks,
    pct,
    postgres_cpu,
    proc_cpu,
    raise_fd_limit,
    self_cpu,
    throwaway_postgres,
    wait_healthy,
)

HELP, CASHBACK = "payment_failed_help", "comfort_cashback"
# the event mix: (share, event type)
MIX = ((0.55, "bet.settled"), (0.15, "session.started"), (0.10, "payment.captured"), (0.12, "payment.failed"),
       (0.04, "consent.revoked"), (0.03, "rg.limit.hit"), (0.01, "rg.self_exclusion.started"))
HELP_REASONS = ("3DS_TIMEOUT", "3DS_FAILED", "AVS_MISMATCH", "TIMEOUT")
OTHER_REASONS = ("INSUFFICIENT_FUNDS", "CARD_DECLINED", "RISK_REJECTED")


def payload(kind: str, rng: random.Random) -> dict:
    if kind == "bet.settled":
        stake = rng.choice((100, 500, 1000, 2000, 20_000))
        return {"stake": stake, "win": rng.choice((0, 0, stake // 2, stake * 2)), "currency": "EUR"}
    if kind == "session.started":
        return {"session_id": f"s{rng.randrange(10**9)}", "device": "mobile"}
    if kind in ("payment.captured", "payment.failed"):
        p = {"amount": rng.choice((1000, 2500, 5000)), "currency": "EUR", "psp": "X", "method": "Visa"}
        if kind == "payment.failed":
            p["reason_code"] = rng.choice(HELP_REASONS if rng.random() < 0.5 else OTHER_REASONS)
        return p
    if kind == "consent.revoked":
        return {"channel": rng.choice(("email", "push", "sms"))}
    if kind == "rg.limit.hit":
        return {"kind": "loss", "value": 10_000}
    return {"scope": "brand"}


def events(token: str, players: int, count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    kinds, weights = zip(*((k, w) for w, k in MIX), strict=True)
    out = []
    for i in range(count):
        kind = rng.choices(kinds, weights)[0]
        out.append({"event_id": f"bench_{token}_{i}", "event_type": kind, "trace_id": f"t{i}",
                    "player_id": f"p{token}_{rng.randrange(players):06d}", "brand_id": BRAND,
                    "payload": payload(kind, rng)})
    return out


def delivery_id_of(trigger_id: str, event_id: str) -> str:
    """As :func:`crm.triggers.worker.delivery_id_of` (the bench reads only the wire and the store)."""
    return "t_" + hashlib.sha256(f"{trigger_id}:{event_id}".encode()).hexdigest()[:40]


# --------------------------------------------------------------------------- the load (child)

async def _load(url: str, key: str, rate: float, path: Path, timeout: float) -> list[dict]:
    import aiohttp

    todo = json.loads(path.read_text())
    loop = asyncio.get_running_loop()
    results: list[dict] = [{} for _ in todo]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def one(session, i: int, due: float) -> None:
        r, e = results[i], todo[i]
        r["lag"], r["sent"] = loop.time() - due, time.time()
        e["occurred_at"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        try:
            async with session.post(f"{url}/v1/events", data=json.dumps([e]), headers=headers) as resp:
                r["status"] = resp.status
                text = await resp.text()
        except Exception as ex:  # noqa: BLE001 - counted, never stops the schedule
            r["status"], text = None, f"{type(ex).__name__}: {ex}"
        r["answered"] = time.time()
        if r["status"] != 202:
            r["answer"] = text[:300]

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        t0 = loop.time() + 0.2
        tasks = []
        for i in range(len(todo)):
            due = t0 + i / rate
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, i, due)))
        await asyncio.gather(*tasks)
    return results


def load(url: str, key: str, rate: float, path: Path, timeout: float, out: Path) -> None:
    import resource

    import uvloop

    raise_fd_limit()
    results = uvloop.run(_load(url, key, rate, path, timeout))
    u = resource.getrusage(resource.RUSAGE_SELF)
    out.write_text(json.dumps({"results": results, "cpu_s": u.ru_utime + u.ru_stime}))


# --------------------------------------------------------------------------- one run

def prepare(home: Path, db_url: str | None, token: str, players: int) -> str:
    from crm.campaigns import approvals
    from crm.campaigns.template_reviews import approve_all as approve_templates
    from crm.config import CAMPAIGNS_DIR, Paths
    from crm.store.db import make_engine, upgrade_to_head
    from crm.store.keys import create_key
    from crm.store.profile import store_contacts
    from crm.store.schema import profiles
    from crm.store.vault import Vault
    from crm.triggers.spec import load_triggers

    paths = Paths(home).ensure()
    engine = make_engine(paths, db_url)
    try:
        upgrade_to_head(engine)
        approve_templates(paths, by="Bench Reviewer", reason="the bench's home")
        _, key = create_key(engine, f"bench-events-{token}", BRAND, ["events:write"])
        ids = [f"p{token}_{i:06d}" for i in range(players)]
        with engine.begin() as conn:
            conn.execute(profiles.insert(), [
                {"brand_id": BRAND, "player_id": p, "as_of_date": NOW.date(), "synced_at": NOW,
                 "profile": json.dumps(clean_profile(p) | {"rg_limit_hits_30d": 0})} for p in ids])
            # addresses into the PII vault, their pseudonyms into contacts (crm.store.vault)
            store_contacts(conn, Vault(paths), [(BRAND, p, "email", f"{p}@players.example", NOW) for p in ids])
    finally:
        engine.dispose()
    triggers = {t.id: t for t in load_triggers(CAMPAIGNS_DIR)[0]}
    approvals.approve(paths, triggers[CASHBACK].as_campaign(), "Bench Reviewer", "bench run")
    return key


def firing_counts(home: Path, db_url: str | None) -> list[dict]:
    from crm.config import Paths
    from crm.store.db import make_engine
    from crm.store.triggers import firing_counts as counts

    engine = make_engine(Paths(home), db_url)
    try:
        return counts(engine)
    finally:
        engine.dispose()


def bench_store(store: str, db_url: str | None, work: Path, rate: float, seconds: float, players: int,
                timeout: float) -> dict:
    from crm.channels.mailbox import LocalMailbox
    from crm.config import CAMPAIGNS_DIR

    home = work / f"triggers_{store}_{rate:g}"
    shutil.rmtree(home, ignore_errors=True)
    token = secrets.token_hex(3)
    print(f"[{store} {rate:g} events/s] preparing {players:,} players ...", file=sys.stderr, flush=True)
    key = prepare(home, db_url, token, players)
    todo = events(token, players, int(rate * seconds), seed=int(rate))
    (home / "events.json").write_text(json.dumps(todo))
    result: dict = {"store": store, "rate": rate, "seconds": seconds, "events": len(todo), "players": players}
    with LocalMailbox(home / "mailbox", unknown_share=0.0) as box:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CRM_RATE_LIMIT_", "CRM_DATABASE_URL"))}
        env |= {"CRM_HOME": str(home), "CRM_SMTP_URL": f"{box.url}?timeout=30", "CRM_SMTP_FROM": SMTP_FROM,
                "CRM_CAMPAIGNS_DIR": str(CAMPAIGNS_DIR)}
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, "-m", "bench.service", "--child", "serve", "--home", str(home),
                                   "--port", str(port)] + (["--db-url", db_url] if db_url else []),
                                  env=env, stdout=sys.stderr)
        wenv = env | ({"CRM_DATABASE_URL": db_url} if db_url else {})
        workers = {name: subprocess.Popen([sys.executable, "-m", "crm.cli", *cmd], env=wenv,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for name, cmd in (("trigger_worker", ["triggers", "work"]),
                                     ("delivery_worker", ["deliveries", "work", "--idle-sleep", "0.05"]))}
        try:
            wait_healthy(url, server)
            time.sleep(2)  # the workers import and connect
            cpu0 = {"api": proc_cpu(server.pid), **{n: proc_cpu(p.pid) for n, p in workers.items()},
                    "postgres": postgres_cpu(), "mailbox": self_cpu()}
            busy0, total0 = machine_ticks()
            w0 = time.time()
            gen = subprocess.Popen([sys.executable, "-m", "bench.triggers", "--child", "load", "--url", url,
                                    "--key", key, "--rate", str(rate), "--events", str(home / "events.json"),
                                    "--timeout", str(timeout), "--out", str(home / "load.json")],
                                   env=env, stdout=sys.stderr)
            if gen.wait() != 0:
                raise RuntimeError("the load generator failed")
            loaded = json.loads((home / "load.json").read_text())
            results = loaded["results"]
            _settle(home, db_url, box.directory / "receipts.jsonl")
            w1 = time.time()
            busy1, total1 = machine_ticks()
            cpu1 = {"api": proc_cpu(server.pid), **{n: proc_cpu(p.pid) for n, p in workers.items()},
                    "postgres": postgres_cpu(), "mailbox": self_cpu()}
        finally:
            for p in (*workers.values(), server):
                p.send_signal(signal.SIGTERM)
            for p in (*workers.values(), server):
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
        window = w1 - w0
        cpu = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu0} | {"load_generator": round(loaded["cpu_s"], 2)}
        if store != "postgres":
            cpu.pop("postgres")
        result |= {"window_s": round(window, 2), "cpu_cores_used": {k: round(v / window, 2) for k, v in cpu.items()},
                   "machine_busy_share": round((busy1 - busy0) / max(1, total1 - total0), 3),
                   "firings": firing_counts(home, db_url)}
        result |= _figures(todo, results, box, result["firings"])
    shutil.rmtree(home, ignore_errors=True)
    return result


def _due_firings(home: Path, db_url: str | None) -> int:
    """Firings still to decide now (a firing held until quiet hours end is not due)."""
    import sqlalchemy as sa

    from crm.config import Paths
    from crm.store.db import make_engine
    from crm.store.schema import trigger_firings as f

    engine = make_engine(Paths(home), db_url)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(f).where(
                f.c.status.in_(("pending", "processing")), f.c.due_at <= now)).scalar_one()
    finally:
        engine.dispose()


def _settle(home: Path, db_url: str | None, receipts: Path, idle_s: float = 5.0, limit_s: float = 120.0) -> None:
    """Wait until no firing is due and the mailbox has had nothing new for ``idle_s`` seconds (at
    most ``limit_s``: what has not arrived by then counts as not received)."""
    seen, since, start = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - since < idle_s and time.monotonic() - start < limit_s:
        n = _count_lines(receipts)
        if n != seen or _due_firings(home, db_url):
            seen, since = n, time.monotonic()
        time.sleep(0.5)


def _figures(todo: list[dict], results: list[dict], box, firings: list[dict]) -> dict:
    parser = BytesHeaderParser()
    by_message = {}
    for eml in box.directory.glob("*.eml"):
        with eml.open("rb") as f:
            h = parser.parse(f)
        by_message[str(h["Message-ID"])] = str(h["X-CRM-Delivery-Id"])
    received: dict[str, float] = {}
    for rec in box.receipts():
        did = by_message.get(rec["message_id"])
        if did is not None and did not in received:
            received[did] = rec["at"]
    help_events = [(e, r) for e, r in zip(todo, results, strict=True) if e["event_type"] == "payment.failed"]
    e2e = [received[d] - r["sent"] for e, r in help_events if (d := delivery_id_of(HELP, e["event_id"])) in received]
    http = [r["answered"] - r["sent"] for r in results if r.get("status") == 202]
    errors = [r for r in results if r.get("status") != 202]
    sent = [r["sent"] for r in results]

    def ms(v):
        return None if v is None else round(v * 1000, 1)

    decided = {}
    for f in firings:
        decided.setdefault(f["trigger_id"], {}).setdefault(f["status"], {})[f["rule"] or "-"] = f["n"]
    triggered = sum(f["n"] for f in firings if f["status"] in ("queued", "refused", "holdout"))
    refused = sum(f["n"] for f in firings if f["status"] == "refused")
    out = {"posted": len(results), "errors": len(errors),
           "post_rate": round((len(sent) - 1) / (max(sent) - min(sent)), 1) if len(sent) > 1 else None,
           "http_ms": {"p50": ms(pct(http, 50)), "p95": ms(pct(http, 95)), "p99": ms(pct(http, 99))},
           "help_messages_received": len(e2e),
           "help_queued": sum(f["n"] for f in firings if f["trigger_id"] == HELP and f["status"] == "queued"),
           "e2e_ms": {"p50": ms(pct(e2e, 50)), "p95": ms(pct(e2e, 95)), "p99": ms(pct(e2e, 99)),
                      "max": ms(max(e2e, default=None))},
           "outcomes": decided,
           "refused_share_of_triggered": round(refused / triggered, 3) if triggered else None}
    if errors:
        out["first_errors"] = [{"status": r.get("status"), "answer": r.get("answer")} for r in errors[:3]]
    p95 = out["e2e_ms"]["p95"]
    if p95 is not None:
        out["p95_vs_target_1s"] = round(p95 / 1000 / TARGET_P95_S, 3)
        out["p95_vs_seed_30s"] = round(p95 / 1000 / SEED_P95_S, 4)
    return out


# --------------------------------------------------------------------------- report

def run(rates: list[float], seconds: float, stores: list[str], players: int, work: Path, pg_url: str | None,
        timeout: float) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                    "loadavg_before": [round(x, 2) for x in os.getloadavg()], "runs": [], "skipped": {},
                    "highest_rate_under_target": {}}
    for store in stores:
        for rate in rates:
            if store == "sqlite":
                report["runs"].append(bench_store("sqlite", None, work, rate, seconds, players, timeout))
                continue
            ctx = contextlib.nullcontext((pg_url, None)) if pg_url else throwaway_postgres()
            with ctx as (url, reason):
                if url is None:
                    report["skipped"]["postgres"] = reason
                    break
                report["runs"].append(bench_store("postgres", url, work, rate, seconds, players, timeout))
    for store in stores:
        ok = [r["rate"] for r in report["runs"] if r["store"] == store and r["e2e_ms"]["p95"] is not None
              and r["e2e_ms"]["p95"] < TARGET_P95_S * 1000 and not r["errors"]]
        report["highest_rate_under_target"][store] = max(ok, default=None)
    return report


def format_table(report: dict) -> str:
    lines = [" store  events/s  posted/s  HTTP p95  help msgs  p50 ms  p95 ms  p99 ms  p95/1s  p95/30s  "
             "refused share  errors  busy"]
    for r in report["runs"]:
        e = r["e2e_ms"]
        lines.append(f"{r['store']:>6}  {r['rate']:>8g}  {r['post_rate'] or 0:>8,.1f}  "
                     f"{r['http_ms']['p95'] or 0:>8,.0f}  {r['help_messages_received']:>9,}  {e['p50'] or 0:>6,.0f}  "
                     f"{e['p95'] or 0:>6,.0f}  {e['p99'] or 0:>6,.0f}  {r.get('p95_vs_target_1s', 0):>6.2f}  "
                     f"{r.get('p95_vs_seed_30s', 0):>7.3f}  {r['refused_share_of_triggered'] or 0:>13.3f}  "
                     f"{r['errors']:>6}  {r['machine_busy_share']:.0%}")
    lines.append("(ms from the event's POST to the SMTP server's receipt of the help message; p95/1s: issue 15's "
                 "target; p95/30s: the stack's seed target)")
    for r in report["runs"]:
        refused = r["outcomes"].get(HELP, {}).get("refused", {}) | r["outcomes"].get(CASHBACK, {}).get("refused", {})
        lines.append(f"{r['store']} {r['rate']:g}/s: CPU cores {r['cpu_cores_used']}; outcomes {r['outcomes']}; "
                     f"refused by rule {refused}")
    lines.append(f"highest rate with p95 under 1 s: {report['highest_rate_under_target']}"
                 + (f"; skipped: {report['skipped']}" if report["skipped"] else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.triggers", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="50,100,200", help="events per second, a comma list (each a run)")
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of load per run")
    ap.add_argument("--stores", default="sqlite,postgres")
    ap.add_argument("--players", type=int, default=5000, help="players in the online profile")
    ap.add_argument("--pg-url", default=None, help="a fresh PostgreSQL database (default: a throwaway one)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: $CRM_HOME/bench/work)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a request counts as an error")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--child", choices=["load"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--events", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "load":
        load(args.url, args.key, args.rate, args.events, args.timeout, args.out)
        return 0
    from crm.config import crm_home

    work = args.work or crm_home() / "bench" / "work"
    report = run([float(x) for x in args.rates.split(",")], args.seconds,
                 [s.strip() for s in args.stores.split(",") if s.strip()], args.players, work, args.pg_url,
                 args.timeout)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
