"""`POST /v1/messaging/send` under a steady open-loop load, to the SMTP server's receipt (issue 14).

    python -m bench.service [--rate 200[,20]] [--seconds 25] [--stores sqlite,postgres] [--warmup 100]
                            [--pg-url URL] [--work DIR] [--json] [--out FILE]

Per store (SQLite, then PostgreSQL 15), in a fresh data home:

* the store migrated to head, one API key (brand A, scope messaging:send), the online profile
  filled directly with one clean player per request (the row shape ``crm profiles sync`` writes:
  adult, verified, MT, every consent) and a ``contacts`` row with an email address for each;
* a local SMTP server (:class:`crm.channels.mailbox.LocalMailbox`, aiosmtpd, no unknown users)
  in this process; it records every receipt with its time;
* the service as ``crm serve`` runs it: the API in its own process (``crm.service.create_app(paths,
  engine=..., clock=...)`` served by uvicorn, uvloop + httptools; access log off) and
  ``--delivery-workers`` (default 1) ``crm deliveries work`` processes beside it, sending over
  SMTP to the mailbox (``CRM_SMTP_URL``), no rate limit; the API's clock is midday of a fixed
  Wednesday (2025-10-01 12:00 UTC) advancing with the real clock, so sends are checked at midday
  and the queue keeps its time order (a clock frozen at one instant would give every delivery the
  same due time, and the queue would then order them by their random ids);
* the load generator in its own process (aiohttp on uvloop): an open-loop schedule, request i
  sent at t0 + i / rate whether or not earlier ones were answered (no connection limit: a slow
  answer never delays the next request), each to another player (caps and dedup would refuse a
  repeat) with ``frequency_policy_id`` "transactional", template ``payment_failure_help``, its
  own ``X-Idempotency-Key``; it records the schedule, the send time, the answer time, the status
  and the delivery id of each request.

``--warmup`` requests (at 50/s, other players) go first and are not counted: the first request
imports pandas, reads the templates and opens the worker's SMTP connection.

Latency per accepted request: **HTTP** = answer - send (the 202 alone); **to the mailbox** =
the SMTP server's receipt of the message - send, matched on the message's ``X-CRM-Delivery-Id``
header (the delivery id of the 202). Throughput: answers per second and messages received per
second from the first send to the last answer / receipt. Refusals (422) and errors (anything
else, timeouts included) must be 0; every accepted message must arrive once.

The baseline side by side is the target: the stack's seed target for a trigger to the inbox is
p95 30-90 s; ours (issue 14) is p95 under 1 s. The table gives our p95 to the mailbox as a ratio
to 1 s and to 30 s, and PostgreSQL's figures as a ratio to SQLite's.

Honesty on a small machine: the API, the delivery workers, the SMTP server, the load generator
and PostgreSQL share the machine's cores (2 here). Each one's CPU seconds over the measured
window are reported (the API, the workers and PostgreSQL from /proc, the
generator its own rusage, this process -- the mailbox -- its own), with the whole machine's
busy share from /proc/stat, so a figure limited by the machine, not the code, shows as such.

Postgres: ``--pg-url`` uses that database (emptied of nothing: give a fresh one); otherwise a
throwaway role and database are created as the postgres user (``runuser -u postgres -- psql``)
on the local 15 cluster (started with ``pg_ctlcluster 15 main start`` if it is down) and dropped
afterwards. When that is impossible the store is skipped with the reason printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from email.parser import BytesHeaderParser
from pathlib import Path

NOW = dt.datetime(2025, 10, 1, 12, 0)  # a Wednesday, midday in Europe
BRAND = "A"
TEMPLATE = "payment_failure_help"
PERSONALIZATION = {"brand_name": "Lucky Star", "payment_method": "Visa", "failures": 2,
                   "help_url": "https://luckystar.example/help"}
TARGET_P95_S = 1.0  # issue 14: p95 from the send request to the provider under 1 s
SEED_P95_S = 30.0  # the stack's seed target for a trigger: p95 30-90 s
SMTP_FROM = "casino-crm bench <crm@casino-crm.example>"
WARMUP_RATE = 50.0
TICK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- the service (child)

def serve(home: Path, db_url: str | None, port: int, switch_interval: float | None = None) -> None:
    """The service as ``crm serve`` runs it (API + delivery worker), on a clock at midday.
    ``switch_interval``: the interpreter's GIL switch interval (a diagnostic; default Python's 5 ms)."""
    if switch_interval:
        sys.setswitchinterval(switch_interval)
    import uvicorn

    from crm.config import Paths
    from crm.service import create_app
    from crm.store.db import make_engine

    raise_fd_limit()
    paths = Paths(home)
    start = time.monotonic()

    def clock() -> dt.datetime:
        return NOW + dt.timedelta(seconds=time.monotonic() - start)

    app = create_app(paths, engine=make_engine(paths, db_url), clock=clock)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --------------------------------------------------------------------------- the load (child)

async def _load(url: str, key: str, rate: float, count: int, first: int, token: str, timeout: float) -> list[dict]:
    import aiohttp

    loop = asyncio.get_running_loop()
    results: list[dict] = [{} for _ in range(count)]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    bodies = [json.dumps({"channel": "email", "player_id": player_id(token, first + i), "template_id": TEMPLATE,
                          "personalization": PERSONALIZATION, "frequency_policy_id": "transactional"}).encode()
              for i in range(count)]

    async def one(session: aiohttp.ClientSession, i: int, due: float) -> None:
        r = results[i]
        r["i"], r["lag"], r["sent"] = first + i, loop.time() - due, time.time()
        p0 = time.perf_counter()
        try:
            async with session.post(f"{url}/v1/messaging/send", data=bodies[i],
                                    headers=headers | {"X-Idempotency-Key": f"bench-{token}-{first + i}"}) as resp:
                text = await resp.text()
                r["status"] = resp.status
        except Exception as e:  # noqa: BLE001 - every failure is counted, none stops the schedule
            r["status"], text = None, f"{type(e).__name__}: {e}"
        r["http"] = time.perf_counter() - p0
        r["answered"] = time.time()
        try:
            r["delivery_id"] = json.loads(text).get("delivery_id") if r["status"] == 202 else None
        except ValueError:
            r["delivery_id"] = None
        if r["status"] != 202:
            r["answer"] = text[:300]

    connector = aiohttp.TCPConnector(limit=0)  # open loop: never wait for a free connection
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        t0 = loop.time() + 0.2
        tasks = []
        for i in range(count):
            due = t0 + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, i, due)))
        await asyncio.gather(*tasks)
    return results


def raise_fd_limit() -> None:
    """Open loop under overload means thousands of open connections: lift the soft fd limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def load(url: str, key: str, rate: float, count: int, first: int, token: str, timeout: float, out: Path) -> None:
    raise_fd_limit()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is in the lock
        runner = asyncio.run
    results = runner(_load(url, key, rate, count, first, token, timeout))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.write_text(json.dumps({"results": results, "cpu_s": usage.ru_utime + usage.ru_stime}))


# --------------------------------------------------------------------------- set-up

def player_id(token: str, i: int) -> str:
    return f"p{token}_{i:06d}"


def clean_profile(pid: str) -> dict:
    """A dim_player row every rule lets through (the shape of tests/test_service_messaging.py)."""
    p = {"player_id": pid, "brand_id": BRAND, "country": "MT", "locale": "en", "timezone": "Europe/Malta",
         "age_years": 30, "age_verified": True, "self_excluded_now": False, "ever_self_excluded": False,
         "returned_after_exclusion": False, "cooling_off_now": False, "harm_risk_flag": False,
         "consent_profiling": True, "bonuses_received": 0, "as_of_date": NOW.date().isoformat()}
    for ch in ("email", "sms", "push", "in_app"):
        p |= {f"consent_{ch}": True, f"consent_{ch}_version": 1, f"consent_{ch}_source": "signup",
              f"consent_{ch}_changed_at": "2025-01-01T00:00:00", f"consent_{ch}_products": "casino,sports",
              f"consent_{ch}_products_withdrawn": None}
    return p


def prepare_store(home: Path, db_url: str | None, token: str, players: int) -> str:
    """Migrate the store, fill the profile and contacts with ``players`` clean players; return a key."""
    from crm.campaigns.template_reviews import approve_all as approve_templates
    from crm.config import Paths
    from crm.store.db import make_engine, upgrade_to_head
    from crm.store.keys import create_key
    from crm.store.profile import store_contacts
    from crm.store.schema import profiles
    from crm.store.vault import Vault

    paths = Paths(home).ensure()
    engine = make_engine(paths, db_url)
    try:
        upgrade_to_head(engine)
        approve_templates(paths, by="Bench Reviewer", reason="the bench's home")
        _, key = create_key(engine, f"bench-send-{token}", BRAND, ["messaging:send"])
        ids = [player_id(token, i) for i in range(players)]
        with engine.begin() as conn:
            conn.execute(profiles.insert(), [{"brand_id": BRAND, "player_id": p, "as_of_date": NOW.date(),
                                              "profile": json.dumps(clean_profile(p)), "synced_at": NOW}
                                             for p in ids])
            # addresses into the PII vault, their pseudonyms into contacts (crm.store.vault)
            store_contacts(conn, Vault(paths), [(BRAND, p, "email", f"{p}@players.example", NOW) for p in ids])
    finally:
        engine.dispose()
    return key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the service did not answer /healthz")
        time.sleep(0.1)


# --------------------------------------------------------------------------- PostgreSQL

def _psql(sql: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                           *options, "-c", sql], capture_output=True, text=True, timeout=60)


@contextlib.contextmanager
def throwaway_postgres():
    """Yield (url, None) of a new role and database on the local cluster (dropped after), or
    (None, the reason) when there is none to be had."""
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        yield None, "psycopg2 is not installed (pip install psycopg2-binary)"
        return
    if shutil.which("pg_lsclusters") is None or shutil.which("runuser") is None:
        yield None, "no PostgreSQL cluster tools (pg_lsclusters) or runuser on this machine"
        return
    if os.geteuid() != 0:
        yield None, "not root: cannot create a throwaway role as the postgres user (give --pg-url)"
        return
    clusters = [line.split() for line in subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True,
                                                         check=False).stdout.splitlines()]
    main = next((c for c in clusters if c[:2] == ["15", "main"]), None)
    if main is None:
        yield None, "no PostgreSQL 15 cluster 'main' (pg_lsclusters)"
        return
    if main[3] != "online":
        started = subprocess.run(["pg_ctlcluster", "15", "main", "start"], capture_output=True, text=True, check=False)
        if started.returncode != 0:
            yield None, f"pg_ctlcluster 15 main start failed: {(started.stderr or started.stdout).strip()[:300]}"
            return
    _drop_orphans()
    name, password = f"crm_bench_{os.getpid()}_{secrets.token_hex(3)}", secrets.token_hex(16)
    made = _psql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    if made.returncode == 0:
        made = _psql(f"CREATE DATABASE {name} OWNER {name}")
    if made.returncode != 0:
        _psql(f"DROP ROLE IF EXISTS {name}")
        yield None, f"cannot create a throwaway database: {made.stderr.strip()[:300]}"
        return
    try:
        yield f"postgresql+psycopg2://{name}:{password}@127.0.0.1:{main[2]}/{name}", None
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        _psql(f"DROP ROLE IF EXISTS {name}")


def _drop_orphans() -> None:
    """Drop the throwaway databases and roles of bench runs that died before their clean-up (the
    process in their name is gone: killed by a signal its handler could not catch)."""
    listed = _psql("SELECT datname FROM pg_database WHERE datname LIKE 'crm\\_bench\\_%' "
                   "UNION SELECT rolname FROM pg_roles WHERE rolname LIKE 'crm\\_bench\\_%'", "-At")
    for name in sorted(set(listed.stdout.split())):
        parts = name.split("_")
        if len(parts) != 4 or not parts[2].isdigit() or not re.fullmatch(r"[0-9a-f]{6}", parts[3]):
            continue  # not a name this bench makes: left alone
        if Path(f"/proc/{parts[2]}").exists():
            continue  # its run may still be going
        print(f"[postgres] dropping {name}, left by a bench run that died", file=sys.stderr, flush=True)
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        _psql(f"DROP ROLE IF EXISTS {name}")


# --------------------------------------------------------------------------- CPU accounting

def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def postgres_cpu() -> float:
    """CPU seconds of every running ``postgres`` process (the server and its backends)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text[text.find("(") + 1:text.rfind(")")] == "postgres":
            fields = text.rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores (/proc/stat)."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def self_cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


# --------------------------------------------------------------------------- one store

def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(-(-q * len(s) // 100)) - 1))]


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def run_load(url: str, key: str, rate: float, count: int, first: int, token: str, timeout: float, out: Path,
             env: dict) -> subprocess.Popen:
    """Start the load generator (its own process); it writes its records to ``out``."""
    return subprocess.Popen([sys.executable, "-m", "bench.service", "--child", "load", "--url", url, "--key", key,
                             "--rate", str(rate), "--count", str(count), "--first", str(first), "--token", token,
                             "--timeout", str(timeout), "--out", str(out)], env=env, stdout=sys.stderr)


def bench_store(store: str, db_url: str | None, work: Path, rate: float, seconds: float, warmup: int,
                timeout: float, switch_interval: float | None = None, delivery_workers: int = 1) -> dict:
    from crm.channels.mailbox import LocalMailbox

    home = work / f"service_{store}_{rate:g}"
    shutil.rmtree(home, ignore_errors=True)
    count = int(rate * seconds)
    token = secrets.token_hex(3)
    print(f"[{store} {rate:g}/s] preparing {warmup + count:,} players ...", file=sys.stderr, flush=True)
    key = prepare_store(home, db_url, token, warmup + count)
    result: dict = {"store": store, "rate": rate, "seconds": seconds, "requests": count, "warmup": warmup,
                    "switch_interval_s": switch_interval or sys.getswitchinterval(),
                    "delivery_workers": delivery_workers}
    with LocalMailbox(home / "mailbox", unknown_share=0.0) as box:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_RATE_LIMIT_")}
        env |= {"CRM_HOME": str(home), "CRM_SMTP_URL": f"{box.url}?timeout=30", "CRM_SMTP_FROM": SMTP_FROM}
        env.pop("CRM_DATABASE_URL", None)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "bench.service", "--child", "serve", "--home", str(home), "--port", str(port)]
        if switch_interval:
            cmd += ["--switch-interval", str(switch_interval)]
        server = subprocess.Popen(cmd + (["--db-url", db_url] if db_url else []), env=env, stdout=sys.stderr)
        receipts = box.directory / "receipts.jsonl"
        # the delivery workers as `crm serve` starts them: processes of their own beside the API
        wenv = env | ({"CRM_DATABASE_URL": db_url} if db_url else {})
        workers = [subprocess.Popen([sys.executable, "-m", "crm.cli", "deliveries", "work", "--idle-sleep", "0.05"],
                                    env=wenv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for _ in range(delivery_workers)]
        try:
            wait_healthy(url, server)
            # warm-up: other players, at a gentle rate, all the way to the mailbox
            if warmup:
                proc = run_load(url, key, WARMUP_RATE, warmup, 0, token, 60, home / "warmup.json", env)
                if proc.wait() != 0:
                    raise RuntimeError("the warm-up load generator failed")
                warm = json.loads((home / "warmup.json").read_text())["results"]
                bad = [r for r in warm if r["status"] != 202]
                if bad:
                    raise RuntimeError(f"warm-up: {len(bad)} of {warmup} not accepted, e.g. {bad[0]}")
                _wait_receipts(receipts, warmup, server, idle_timeout=30)
            warm_receipts = _count_lines(receipts)
            print(f"[{store} {rate:g}/s] {count:,} requests ...", file=sys.stderr, flush=True)
            cpu0 = {"service": proc_cpu(server.pid), "workers": sum(proc_cpu(w.pid) for w in workers),
                    "postgres": postgres_cpu(), "mailbox": self_cpu()}
            busy0, total0 = machine_ticks()
            w0 = time.time()
            gen = run_load(url, key, rate, count, warmup, token, timeout, home / "load.json", env)
            gen_rc = gen.wait()
            if gen_rc != 0:
                raise RuntimeError(f"the load generator exited with {gen_rc}")
            loaded = json.loads((home / "load.json").read_text())
            results = loaded["results"]
            accepted = sum(1 for r in results if r.get("status") == 202)
            _wait_receipts(receipts, warm_receipts + accepted, server, idle_timeout=30)
            w1 = time.time()
            busy1, total1 = machine_ticks()
            cpu1 = {"service": proc_cpu(server.pid), "workers": sum(proc_cpu(w.pid) for w in workers),
                    "postgres": postgres_cpu(), "mailbox": self_cpu()}
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        statuses = _store_statuses(home, db_url)
        window = w1 - w0
        cpu = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu0}
        cpu["load_generator"] = round(loaded["cpu_s"], 2)
        if store != "postgres":
            cpu.pop("postgres")
        result |= {"window_s": round(window, 2), "cpu_s": cpu,
                   "cpu_cores_used": {k: round(v / window, 2) for k, v in cpu.items()},
                   "machine_busy_share": round((busy1 - busy0) / max(1, total1 - total0), 3),
                   "cpus": os.cpu_count(), "store_statuses": statuses}
        result |= _figures(results, box)
    shutil.rmtree(home, ignore_errors=True)
    return result


def _wait_receipts(path: Path, expected: int, server: subprocess.Popen, idle_timeout: float) -> None:
    """Wait until the mailbox has ``expected`` receipts, or nothing new arrived for ``idle_timeout`` s."""
    seen, last_change = -1, time.monotonic()
    while True:
        n = _count_lines(path)
        if n >= expected:
            return
        if n != seen:
            seen, last_change = n, time.monotonic()
        elif time.monotonic() - last_change > idle_timeout or server.poll() is not None:
            return  # what is missing is counted as missing
        time.sleep(0.2)


def _store_statuses(home: Path, db_url: str | None) -> dict:
    import sqlalchemy as sa

    from crm.config import Paths
    from crm.store.db import make_engine
    from crm.store.schema import deliveries

    engine = make_engine(Paths(home), db_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.select(deliveries.c.status, sa.func.count())
                                     .group_by(deliveries.c.status)).all())
    finally:
        engine.dispose()


def _figures(results: list[dict], box) -> dict:
    """Throughput, latency percentiles, refusals and errors from the generator's records and the
    mailbox's receipts (matched on X-CRM-Delivery-Id)."""
    parser = BytesHeaderParser()
    id_of_message: dict[str, str] = {}  # Message-ID -> X-CRM-Delivery-Id
    for eml in box.directory.glob("*.eml"):
        with eml.open("rb") as f:
            h = parser.parse(f)
        id_of_message[str(h["Message-ID"])] = str(h["X-CRM-Delivery-Id"])
    received: dict[str, float] = {}
    duplicates = 0
    for rec in box.receipts():
        did = id_of_message.get(rec["message_id"])
        if did is None:
            continue
        if did in received or rec["duplicate"]:
            duplicates += 1
            continue
        received[did] = rec["at"]
    ok = [r for r in results if r.get("status") == 202 and r.get("delivery_id")]
    refused = [r for r in results if r.get("status") == 422]
    errors = [r for r in results if r.get("status") not in (202, 422)]
    arrived = [r for r in ok if r["delivery_id"] in received]
    first_sent = min(r["sent"] for r in results)
    last_sent = max(r["sent"] for r in results)
    http = [r["http"] for r in ok]
    e2e = [received[r["delivery_id"]] - r["sent"] for r in arrived]
    queued = [received[r["delivery_id"]] - r["answered"] for r in arrived]
    last_answer = max(r["answered"] for r in results)
    last_receipt = max((received[r["delivery_id"]] for r in arrived), default=None)
    lags = [r["lag"] for r in results]

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 1)

    out = {
        "sent": len(results), "accepted": len(ok), "refused": len(refused), "errors": len(errors),
        "received": len(arrived), "missing": len(ok) - len(arrived), "duplicates": duplicates,
        "send_rate": round((len(results) - 1) / (last_sent - first_sent), 1) if last_sent > first_sent else None,
        "answer_rate": round(len(ok) / (last_answer - first_sent), 1),
        "receipt_rate": round(len(arrived) / (last_receipt - first_sent), 1) if last_receipt else None,
        "drain_after_last_send_s": round(last_receipt - last_sent, 2) if last_receipt else None,
        "generator_lag_ms": {"p50": ms(pct(lags, 50)), "p99": ms(pct(lags, 99)), "max": ms(max(lags))},
        "http_ms": {"p50": ms(pct(http, 50)), "p95": ms(pct(http, 95)), "p99": ms(pct(http, 99)),
                    "max": ms(max(http, default=None))},
        "e2e_ms": {"p50": ms(pct(e2e, 50)), "p95": ms(pct(e2e, 95)), "p99": ms(pct(e2e, 99)),
                   "max": ms(max(e2e, default=None))},
        "queue_ms": {"p50": ms(pct(queued, 50)), "p95": ms(pct(queued, 95)), "p99": ms(pct(queued, 99))},
    }
    if refused or errors:
        out["first_problems"] = [{"status": r.get("status"), "answer": r.get("answer")} for r in (refused + errors)[:5]]
    p95 = out["e2e_ms"]["p95"]
    if p95 is not None:
        out["p95_vs_target_1s"] = round(p95 / 1000 / TARGET_P95_S, 3)
        out["p95_vs_seed_30s"] = round(p95 / 1000 / SEED_P95_S, 4)
    return out


# --------------------------------------------------------------------------- report

def run(rates: list[float], seconds: float, stores: list[str], warmup: int, work: Path, pg_url: str | None,
        timeout: float, switch_interval: float | None = None, delivery_workers: int = 1) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in os.getloadavg()],
                    "runs": [], "skipped": {}, "postgres_vs_sqlite": {}}
    for rate in rates:
        for store in stores:
            if store == "sqlite":
                report["runs"].append(bench_store("sqlite", None, work, rate, seconds, warmup, timeout,
                                                  switch_interval, delivery_workers))
            elif store == "postgres":
                # a fresh database per run (or the one given, with new players and a new key)
                ctx = contextlib.nullcontext((pg_url, None)) if pg_url else throwaway_postgres()
                with ctx as (url, reason):
                    if url is None:
                        print(f"[postgres] skipped: {reason}", file=sys.stderr, flush=True)
                        report["skipped"]["postgres"] = reason
                        continue
                    report["runs"].append(bench_store("postgres", url, work, rate, seconds, warmup, timeout,
                                                      switch_interval, delivery_workers))
            else:
                raise SystemExit(f"unknown store {store!r}: sqlite or postgres")
        by = {r["store"]: r for r in report["runs"] if r["rate"] == rate}
        if "sqlite" in by and "postgres" in by:
            s, p = by["sqlite"], by["postgres"]
            ratio = {f"{kind}_{q}": round(p[kind][q] / s[kind][q], 2)
                     for kind in ("http_ms", "e2e_ms") for q in ("p50", "p95", "p99") if p[kind][q] and s[kind][q]}
            if p["receipt_rate"] and s["receipt_rate"]:
                ratio["received_per_s"] = round(p["receipt_rate"] / s["receipt_rate"], 2)
            report["postgres_vs_sqlite"][f"{rate:g}"] = ratio
    return report


def _f(v, spec: str = ",.0f") -> str:
    return "–" if v is None else format(v, spec)


def format_table(report: dict) -> str:
    rows = report["runs"]
    lines = []
    if rows:
        r0 = rows[0]
        lines.append(f"open loop, {r0['seconds']:g} s of load per run (+{r0['warmup']} warm-up requests), "
                     f"{report['cpus']} CPUs, load average before {report['loadavg_before'][0]:.2f}")
        head = ["store", "rate/s", "sent/s", "answers/s", "received/s", "HTTP p50", "p95", "p99",
                "mailbox p50", "p95", "p99", "max", "p95 / 1 s", "p95 / 30 s", "refused", "errors", "missing", "dup"]
        table = [head]
        for r in rows:
            h, e = r["http_ms"], r["e2e_ms"]
            table.append([r["store"], f"{r['rate']:g}", _f(r["send_rate"], ".1f"), _f(r["answer_rate"], ".1f"),
                          _f(r["receipt_rate"], ".1f"), _f(h["p50"]), _f(h["p95"]), _f(h["p99"]), _f(e["p50"]),
                          _f(e["p95"]), _f(e["p99"]), _f(e["max"]), _f(r.get("p95_vs_target_1s"), ".2f"),
                          _f(r.get("p95_vs_seed_30s"), ".3f"), str(r["refused"]), str(r["errors"]), str(r["missing"]),
                          str(r["duplicates"])])
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in table]
        lines.append("(ms from each request's send: HTTP = its 202; mailbox = the SMTP server's receipt of its "
                     "message; p95 / 1 s: issue 14's target; p95 / 30 s: the stack's seed target)")
        for r in rows:
            cores = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_cores_used"].items())
            per_req = (r["cpu_s"]["service"] + r["cpu_s"].get("workers", 0)) / max(1, r["accepted"]) * 1000
            lines.append(f"{r['store']} {r['rate']:g}/s: CPU cores used over the {r['window_s']:.1f} s window: "
                         f"{cores} (service: {per_req:.1f} ms CPU per message, API + workers); machine "
                         f"{r['machine_busy_share']:.0%} busy of {r['cpus']} cores; queue (202 -> mailbox) p50 "
                         f"{r['queue_ms']['p50']} ms, p95 {r['queue_ms']['p95']} ms; generator lag p99 "
                         f"{r['generator_lag_ms']['p99']} ms; last message {r['drain_after_last_send_s']} s after the "
                         f"last send; deliveries {r['store_statuses']}")
            for p in r.get("first_problems", []):
                lines.append(f"  problem: {p}")
    for rate, ratio in report.get("postgres_vs_sqlite", {}).items():
        lines.append(f"PostgreSQL / SQLite at {rate}/s: " + ", ".join(f"{k} {v:.2f}×" for k, v in ratio.items()))
    for store, reason in report.get("skipped", {}).items():
        lines.append(f"{store}: skipped: {reason}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", default="200", help="requests per second (open loop); a comma list runs each")
    ap.add_argument("--seconds", type=float, default=25.0, help="seconds of load per run")
    ap.add_argument("--stores", default="sqlite,postgres", help="sqlite, postgres or both")
    ap.add_argument("--warmup", type=int, default=100, help="requests before the measurement (not counted)")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds a request may take before the generator counts it as an error")
    ap.add_argument("--pg-url", help="a PostgreSQL database to use instead of a throwaway one")
    ap.add_argument("--work", type=Path, help="where the data homes go (default $CRM_HOME/bench/work)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    ap.add_argument("--out", type=Path, help="also write the figures as JSON to this file")
    ap.add_argument("--switch-interval", type=float,
                    help="diagnostic: the service's GIL switch interval in seconds (sys.setswitchinterval; "
                         "default Python's 0.005)")
    ap.add_argument("--delivery-workers", type=int, default=1,
                    help="delivery worker processes beside the API, as `crm serve --delivery-workers`")
    ap.add_argument("--child", choices=("serve", "load"), help=argparse.SUPPRESS)
    ap.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--db-url", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--token", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "serve":
        serve(args.home, args.db_url, args.port, args.switch_interval)
        return 0
    if args.child == "load":
        load(args.url, args.key, float(args.rate), args.count, args.first, args.token, args.timeout, args.out)
        return 0
    from crm.config import crm_home

    # a SIGTERM unwinds like Ctrl-C, so the throwaway database is dropped (a SIGKILL's is dropped
    # by the next run: _drop_orphans)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = args.work or crm_home() / "bench" / "work"
    rates = [float(x) for x in args.rate.split(",") if x]
    report = run(rates, args.seconds, [s for s in args.stores.split(",") if s], args.warmup, work, args.pg_url,
                 args.timeout, args.switch_interval, args.delivery_workers)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1) if args.json else "\n" + format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
