"""Exactly once across a crash: a dispatched list of 1,000 messages (10,000 with CRM_CRASH_TEST_MESSAGES)
queued through the batch path
(crm.campaigns.enqueue), sent by a real ``crm deliveries work`` process to a real SMTP server on
localhost; the worker is killed with SIGKILL mid-way, a new one drains the queue. Every message is
in the mailbox once, none is lost, and the SMTP transactions beyond 10,000 are at most the one
message that was on the wire when the process died (resent with the same Message-ID, which the
mailbox, like a real provider, keeps once)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from crm.campaigns.enqueue import enqueue_outbox
from crm.campaigns.spec import CampaignSpec
from crm.channels.mailbox import LocalMailbox
from crm.config import Paths
from crm.store.db import make_engine, upgrade_to_head
from crm.store.profile import store_contacts
from crm.store.schema import deliveries
from crm.store.vault import Vault
from tests._templates import approve_templates

# 1,000 in CI (under a minute); CRM_CRASH_TEST_MESSAGES=10000 for the full drill (BENCHMARKS.md)
MESSAGES = int(os.environ.get("CRM_CRASH_TEST_MESSAGES", "1000"))
LEASE = 3.0


def _crm(*args: str, env: dict) -> list[str]:
    return [str(Path(sys.executable).with_name("crm")), *args]


def test_sigkill_mid_dispatch_every_message_once(tmp_path):
    paths = Paths(tmp_path).ensure()
    engine = make_engine(paths)
    upgrade_to_head(engine)
    approve_templates(paths)
    spec = CampaignSpec.model_validate({"id": "crash_test", "name": "crash", "channel": "email",
                                        "offer": {"template": "bonus", "value_eur": 10, "wagering": 5}})
    as_of = "2025-10-01"
    messages = [{"idempotency_key": f"crash_test|{as_of}|p{i:05d}|email", "campaign_id": "crash_test",
                 "channel": "email", "player_id": f"p{i:05d}", "variant": "A", "as_of_date": as_of, "locale": "en",
                 "timezone": "Europe/Malta", "offer_template": "bonus", "offer_cost_eur_cents": 1000,
                 "planned_send_at": f"{as_of}T10:00:00Z", "sent_at": f"{as_of}T10:00:00Z"} for i in range(MESSAGES)]
    brands = {m["player_id"]: "A" for m in messages}
    with engine.begin() as conn:
        store_contacts(conn, Vault(paths), [("A", m["player_id"], "email", f"{m['player_id']}@example.com",
                                             dt.datetime(2025, 9, 1)) for m in messages])
    assert enqueue_outbox(paths, spec, messages, brands, engine=engine) == MESSAGES
    assert enqueue_outbox(paths, spec, messages, brands, engine=engine) == 0  # a re-dispatch queues nothing twice

    with LocalMailbox(tmp_path / "mailbox") as box:
        env = os.environ | {"CRM_HOME": str(tmp_path), "CRM_SMTP_URL": box.url,
                            "CRM_SMTP_FROM": "crm <crm@casino-crm.example>"}
        env.pop("CRM_DATABASE_URL", None)
        worker = subprocess.Popen(_crm("deliveries", "work", "--lease", str(LEASE), "--limit", "100", env=env),
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while len(box.receipts()) < MESSAGES // 3:
            assert worker.poll() is None, "the worker died on its own"
            assert time.monotonic() < deadline, "the worker sends too slowly"
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
        received_before = len(box.receipts())
        assert MESSAGES // 3 <= received_before < MESSAGES, "the kill came after the end: nothing was tested"

        time.sleep(LEASE + 0.5)  # the dead worker's leases expire
        res = subprocess.run(_crm("deliveries", "drain", "--lease", str(LEASE), "--limit", "500", "--json", env=env),
                             env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]

        stored = box.messages()
        receipts = box.receipts()
    ids = [m["X-CRM-Delivery-Id"] for m in stored]
    assert len(ids) == len(set(ids)) == MESSAGES  # every message once in the mailbox, none lost
    duplicates = len(receipts) - MESSAGES
    assert 0 <= duplicates <= 1, f"{duplicates} messages went over SMTP twice"
    assert sum(r["duplicate"] for r in receipts) == duplicates
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status))
                        .all())
    assert statuses == {"sent": MESSAGES}
