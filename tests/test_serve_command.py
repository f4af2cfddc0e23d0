"""``crm serve`` as a user runs it: the API, a delivery worker and a trigger worker process,
supervised together, with the local mailbox. A send goes in over HTTP and arrives over SMTP; a
failed payment posted as an event arrives as the trigger's help message; SIGTERM stops every process."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import re
import signal
import subprocess
import sys
import time

import sqlalchemy as sa

from crm.config import CAMPAIGNS_DIR, Paths
from crm.store.db import make_engine, upgrade_to_head
from crm.store.keys import create_key
from crm.store.profile import store_contacts
from crm.store.vault import Vault
from crm.triggers.spec import load_trigger
from tests._service import call, free_port
from tests._templates import approve_templates
from tests.test_service_messaging import clean_profile, put_profiles, send


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_crm_serve_delivers_through_its_worker_process_and_stops_them_all(tmp_path):
    paths = Paths(tmp_path).ensure()
    engine = make_engine(paths, f"sqlite:///{paths.service_db}")
    upgrade_to_head(engine)
    approve_templates(paths)
    _, key = create_key(engine, "serve-test", "A", ["messaging:send", "events:write"])
    help_ = load_trigger(CAMPAIGNS_DIR / "triggers" / "payment_failed_help.yaml")
    [p2] = [p for p in (f"p{i}" for i in range(2, 50)) if not help_.in_holdout("A", p)][:1]
    put_profiles(engine, [clean_profile("p1"), clean_profile(p2)])
    with engine.begin() as conn:
        store_contacts(conn, Vault(paths), [("A", p, "email", f"{p}@players.example", dt.datetime(2025, 9, 1))
                                            for p in ("p1", p2)])
    engine.dispose()
    port, smtp_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRM_SMTP", "CRM_DATABASE_URL"))}
    env["CRM_HOME"], env["CRM_CAMPAIGNS_DIR"] = str(tmp_path), str(CAMPAIGNS_DIR)
    serve = subprocess.Popen([sys.executable, "-m", "crm.cli", "serve", "--port", str(port), "--local-mailbox",
                              str(smtp_port), "--delivery-workers", "1", "--hand-off-every", "0"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: serve.poll() is not None or _healthy(url), 60, "the API")
        assert serve.poll() is None, serve.stderr.read()
        status, body = send(url, key, "serve-1", "p1")
        assert status == 202, body
        [eml] = _wait(lambda: sorted((tmp_path / "mailbox").glob("*.eml")), 30, "the message in the mailbox")
        msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        assert msg["X-CRM-Delivery-Id"] == body["delivery_id"] and msg["To"] == "p1@players.example"
        status, d = call(f"{url}/v1/deliveries/{body['delivery_id']}", key=key)
        assert status == 200 and d["status"] == "SENT", d
        # a failed payment posted as an event: the trigger worker queues the help message, the
        # delivery worker sends it
        now = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
        status, body = call(f"{url}/v1/events", "POST", [{
            "event_id": "ev-fail-1", "event_type": "payment.failed", "trace_id": "tr-1", "player_id": p2,
            "brand_id": "A", "occurred_at": now.isoformat() + "Z",
            "payload": {"amount": 2500, "currency": "EUR", "psp": "X", "method": "Visa",
                        "reason_code": "3DS_TIMEOUT"}}],
            key=key)
        assert status == 202 and body["accepted"] == 1, body
        two = _wait(lambda: [p for p in sorted((tmp_path / "mailbox").glob("*.eml")) if p != eml], 30,
                    "the trigger's message in the mailbox")
        msg = email.message_from_bytes(two[0].read_bytes(), policy=email.policy.default)
        assert msg["To"] == f"{p2}@players.example" and msg["X-CRM-Delivery-Id"].startswith("t_")
        assert "Visa" in msg["Subject"]
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
    log = serve.stderr.read()
    started = {name: int(pid) for name, pid in re.findall(r"started (\S+) \(pid (\d+)\)", log)}
    assert set(started) == {"api", "delivery-worker-1", "trigger-worker-1"}, log
    assert serve.returncode == 0, log
    assert not [name for name, pid in started.items() if _alive(pid)], "a child outlived crm serve"
    with make_engine(paths, f"sqlite:///{paths.service_db}").connect() as conn:
        assert conn.execute(sa.text("select count(*) from deliveries where status = 'sent'")).scalar() == 2


def _healthy(url: str) -> bool:
    try:
        return call(f"{url}/healthz")[0] == 200
    except OSError:  # not listening yet
        return False
