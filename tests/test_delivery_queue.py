"""The delivery queue and its worker on real components: the SQLite store (WAL, migrated), deliveries
made by crm.store.deliveries.create_delivery, a real aiosmtpd SMTP server on localhost, the
shipped templates, the file outbox. Store time is a fake clock the tests move (retries, leases);
the SMTP conversation is real."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import logging
import os
import socket
import threading
from collections import Counter

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from crm.channels import DeliveryResult, RateLimiter, RetryPolicy, TemplateStore
from crm.channels.outbox import deliveries_file
from crm.cli import main
from crm.config import Paths
from crm.service.worker import DeliveryWorker, WorkerConfigError, rate_limits_from_env
from crm.store import deliveries as dl
from crm.store.db import make_engine, upgrade_to_head
from crm.store.profile import store_contacts
from crm.store.queue import claim_due, queue_depth, record_result
from crm.store.schema import address_suppressions, deliveries, delivery_events, profile_stops
from crm.store.vault import Vault
from tests._templates import approve_templates

BOUNCE = "gone@example.test"  # 550 at RCPT
ALWAYS_BUSY = "busy@example.test"  # 451 at RCPT, every time
FROM = "Lucky Star <news@luckystar.example>"
TEMPLATE = "payment_failure_help"
PARAMS = {p.name: p.example for p in TemplateStore().placeholders(TEMPLATE)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Smtp:
    """Stores what arrives; 550 for BOUNCE, 451 for ALWAYS_BUSY, 451 for the first n tries of an
    address in ``defer``; counts RCPT commands per address."""

    def __init__(self) -> None:
        self.received: list[email.message.EmailMessage] = []
        self.rcpt: Counter[str] = Counter()
        self.defer: dict[str, int] = {}
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.rcpt[address] += 1
            if address == BOUNCE:
                return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
            if address == ALWAYS_BUSY or self.defer.get(address, 0) > 0:
                self.defer[address] = self.defer.get(address, 0) - 1
                return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        mime = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self.lock:
            self.received.append(mime)
        return "250 2.0.0 Ok: queued"

    def ids(self) -> list[str]:
        return [m["X-CRM-Delivery-Id"] for m in self.received]


class Clock:
    """The store's time (naive UTC), moved by the test."""

    def __init__(self) -> None:
        self.t = dl.now()

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += dt.timedelta(seconds=seconds)


@pytest.fixture
def smtp():
    handler = Smtp()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


# Every store test runs on SQLite and on PostgreSQL (FOR UPDATE SKIP LOCKED claims): `store_url` in
# conftest.py gives a fresh database per test (PostgreSQL: $CRM_TEST_DATABASE_URL, which .ci/run sets).
@pytest.fixture
def store(tmp_path, store_url):
    paths = Paths(tmp_path)
    engine = make_engine(paths, store_url)
    upgrade_to_head(engine)
    approve_templates(paths)
    yield paths, engine
    engine.dispose()


def env_for(port: int) -> dict:
    return {"CRM_SMTP_URL": f"smtp://127.0.0.1:{port}?timeout=10", "CRM_SMTP_FROM": FROM}


def worker(paths, engine, port, **kw) -> DeliveryWorker:
    return DeliveryWorker(paths, engine, environ=env_for(port), **kw)


def add_contact(paths: Paths, engine, player: str, address: str, channel: str = "email") -> None:
    with engine.begin() as conn:
        store_contacts(conn, Vault(paths), [("A", player, channel, address, dl.now())])


def queue(engine, player: str, channel: str = "email", transactional: bool = False, params=None,
          product: str = "casino", not_before: dt.datetime | None = None, template: str = TEMPLATE,
          is_bonus: bool = False) -> str:
    with engine.begin() as conn:
        return dl.create_delivery(
            conn, brand_id="A", player_id=player, channel=channel, template_id=template,
            params=PARAMS if params is None else params, transactional=transactional, campaign_id="api_test",
            dedup_key="test", product=product, basis={"test": True}, source="api", locale="en",
            not_before=not_before, is_bonus=is_bonus)


def status(engine, delivery_id: str) -> dict:
    return dl.get_delivery(engine, delivery_id)


def add_stop(engine, player: str, kind: str, channel: str | None = None, product: str | None = None,
             retired: bool = False, at: dt.datetime | None = None) -> None:
    at = at or dl.now()
    with engine.begin() as conn:
        conn.execute(profile_stops.insert().values(
            brand_id="A", player_id=player, kind=kind, channel=channel, product=product, event_id=f"e_{player}_{kind}",
            event_type={"withdrawal": "consent.revoked", "limit_hit": "rg.limit.hit"}.get(kind,
                                                                                         "rg.self_exclusion.started"),
            occurred_at=at, received_at=at, retired_at=at if retired else None))


# --------------------------------------------------------------------------- sending

def test_each_delivery_sent_exactly_once_with_its_id_and_no_address_in_logs(store, smtp, caplog):
    paths, engine = store
    handler, port = smtp
    ids = []
    for i in range(5):
        add_contact(paths, engine, f"p{i}", f"player{i}@example.test")
        ids.append(queue(engine, f"p{i}"))
    caplog.set_level(logging.DEBUG, logger="crm")
    with worker(paths, engine, port) as w:
        assert w.run_once(50) == {"claimed": 5, "sent": 5}
        assert w.run_once(50) == {"claimed": 0}
    assert sorted(handler.ids()) == sorted(ids)
    for m in handler.received:
        did = m["X-CRM-Delivery-Id"]
        assert m["Message-ID"] == f"<{did}@luckystar.example>" and m["Subject"].startswith("Trouble with your Visa")
    for did in ids:
        d = status(engine, did)
        assert d["status"] == "sent" and d["attempts"] == 1 and d["lease_until"] is None
        assert d["provider_id"] == f"<{did}@luckystar.example>"
        assert [h["status"] for h in d["history"]] == ["queued", "sending", "sent"]
    assert "@example.test" not in caplog.text and ids[0] in caplog.text
    with engine.connect() as conn:
        details = " ".join(conn.execute(sa.select(delivery_events.c.detail)).scalars())
    assert "@example.test" not in details


def test_hard_bounce_suppresses_the_address_and_the_next_send_is_refused(store, smtp):
    paths, engine = store
    handler, port = smtp
    add_contact(paths, engine, "p1", BOUNCE)
    add_contact(paths, engine, "p1", "+4915100000", channel="sms")
    first = queue(engine, "p1")
    with worker(paths, engine, port) as w:
        assert w.run_once() == {"claimed": 1, "bounced": 1}
        d = status(engine, first)
        assert d["status"] == "bounced" and "550" in d["history"][-1]["detail"]
        assert BOUNCE not in d["history"][-1]["detail"]  # the relay's answer quotes it: blanked out
        with engine.connect() as conn:
            [sup] = conn.execute(sa.select(address_suppressions)).all()
        assert (sup.brand_id, sup.player_id, sup.channel, sup.delivery_id) == ("A", "p1", "email", first)
        second, sms = queue(engine, "p1"), queue(engine, "p1", channel="sms")
        assert w.run_once() == {"claimed": 2, "refused": 1, "sent": 1}
    d = status(engine, second)
    assert d["status"] == "refused" and "address suppressed" in d["history"][-1]["detail"]
    assert handler.rcpt[BOUNCE] == 1 and handler.received == []  # the second never reached the relay
    assert status(engine, sms)["status"] == "sent"  # another channel's address is not suppressed


def test_451_is_retried_later_with_backoff_then_sent(store, smtp):
    paths, engine = store
    handler, port = smtp
    add_contact(paths, engine, "p1", "slow@example.test")
    handler.defer["slow@example.test"] = 2
    did = queue(engine, "p1")
    clock = Clock()
    with worker(paths, engine, port, clock=clock) as w:
        assert w.run_once() == {"claimed": 1, "retry": 1}
        d = status(engine, did)
        wait1 = (d["next_attempt_at"] - clock.t).total_seconds()
        assert d["status"] == "queued" and d["attempts"] == 1 and 15 <= wait1 <= 30  # 30 s, half jittered
        assert w.run_once() == {"claimed": 0}  # not due yet
        clock.advance(wait1 + 0.001)
        assert w.run_once() == {"claimed": 1, "retry": 1}
        wait2 = (status(engine, did)["next_attempt_at"] - clock.t).total_seconds()
        assert 30 <= wait2 <= 60  # doubled
        clock.advance(wait2 + 0.001)
        assert w.run_once() == {"claimed": 1, "sent": 1}
    d = status(engine, did)
    assert d["status"] == "sent" and d["attempts"] == 3 and handler.rcpt["slow@example.test"] == 3
    assert [h["status"] for h in d["history"]] == ["queued", "sending", "queued", "sending", "queued", "sending",
                                                   "sent"]
    assert handler.ids() == [did]


def test_dead_letter_after_the_last_attempt(store, smtp):
    paths, engine = store
    handler, port = smtp
    add_contact(paths, engine, "p1", ALWAYS_BUSY)
    did = queue(engine, "p1")
    clock = Clock()
    outcomes = []
    with worker(paths, engine, port, clock=clock, retry=RetryPolicy(max_attempts=3)) as w:
        for _ in range(5):
            outcomes.append(w.run_once())
            clock.advance(3600)
    assert outcomes == [{"claimed": 1, "retry": 1}, {"claimed": 1, "retry": 1}, {"claimed": 1, "dead_letter": 1},
                        {"claimed": 0}, {"claimed": 0}]
    d = status(engine, did)
    assert d["status"] == "dead_letter" and d["attempts"] == 3 and "attempt 3 of 3" in d["history"][-1]["detail"]
    assert handler.received == [] and handler.rcpt[ALWAYS_BUSY] == 3


def test_stops_received_after_queueing_refuse_the_send(store, smtp):
    paths, engine = store
    handler, port = smtp
    for p in ("p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"):
        add_contact(paths, engine, p, f"{p}@example.test")
    before = dl.now() - dt.timedelta(hours=1)
    add_stop(engine, "p6", "withdrawal", channel="email", at=before)  # before the delivery: the creator's to weigh
    ids = {p: queue(engine, p, transactional=(p == "p2"), is_bonus=(p == "p7"))
           for p in ("p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8")}
    add_stop(engine, "p7", "limit_hit")  # an RG limit hit: holds a bonus offer ...
    add_stop(engine, "p8", "limit_hit")  # ... not a message without one
    add_stop(engine, "p1", "withdrawal", channel="email")  # marketing email withdrawn
    add_stop(engine, "p2", "self_exclusion")  # a transactional message: held too
    add_stop(engine, "p3", "withdrawal", channel="sms")  # another channel
    add_stop(engine, "p4", "withdrawal", channel="*", retired=True)  # the warehouse has seen it
    add_stop(engine, "p5", "withdrawal", channel="*", product="sports")  # another product
    with worker(paths, engine, port) as w:
        assert w.run_once() == {"claimed": 8, "refused": 3, "sent": 5}
    for p in ("p1", "p2", "p7"):
        d = status(engine, ids[p])
        assert d["status"] == "refused"
        assert d["history"][-1]["detail"].startswith("attempt 1: withdrawn before the send")
    assert sorted(handler.ids()) == sorted(ids[p] for p in ("p3", "p4", "p5", "p6", "p8"))
    assert handler.rcpt["p1@example.test"] == handler.rcpt["p2@example.test"] == 0


def test_transactional_before_marketing(store, smtp):
    paths, engine = store
    handler, port = smtp
    t0 = dl.now() - dt.timedelta(minutes=10)
    marketing = [queue(engine, f"m{i}", not_before=t0 + dt.timedelta(seconds=i)) for i in range(4)]
    urgent = queue(engine, "t1", transactional=True)  # queued last, due last
    for p in ("m0", "m1", "m2", "m3", "t1"):
        add_contact(paths, engine, p, f"{p}@example.test")
    with worker(paths, engine, port) as w:
        assert w.run_once(1) == {"claimed": 1, "sent": 1}
        assert handler.ids() == [urgent]
        assert w.run_once(10) == {"claimed": 4, "sent": 4}
    assert handler.ids() == [urgent, *marketing]


def test_addresses_templates_and_the_file_outbox(store, smtp):
    paths, engine = store
    handler, port = smtp
    no_address = queue(engine, "nobody")
    bad = queue(engine, "p1", params={"brand_name": "X"})  # missing parameters
    add_contact(paths, engine, "p1", "p1@example.test")
    push = queue(engine, "p9", channel="push")  # addressed by player id, written to the outbox
    with worker(paths, engine, port) as w:
        assert w.run_once() == {"claimed": 3, "refused": 2, "sent": 1}
    assert status(engine, no_address)["history"][-1]["detail"] == "attempt 1: no address for email"
    assert "cannot render" in status(engine, bad)["history"][-1]["detail"]
    assert handler.received == []
    [line] = deliveries_file(paths.outbox, "push", dl.now().date().isoformat()).read_text().splitlines()
    assert json.loads(line)["delivery_id"] == push and status(engine, push)["status"] == "sent"


# --------------------------------------------------------------------------- concurrency and leases

def test_two_workers_over_200_deliveries_never_send_one_twice(store, smtp):
    paths, engine = store
    handler, port = smtp
    ids = set()
    for i in range(200):
        add_contact(paths, engine, f"p{i}", f"p{i}@example.test")
        ids.add(queue(engine, f"p{i}", transactional=i % 5 == 0))
    start = threading.Barrier(2)
    sent: dict[str, int] = {}

    def run(name: str) -> None:
        with worker(paths, engine, port, worker_id=name) as w:
            start.wait()
            total = 0
            while (counts := w.run_once(7))["claimed"]:
                assert set(counts) <= {"claimed", "sent"}, counts
                total += counts["sent"]
            sent[name] = total

    threads = [threading.Thread(target=run, args=(n,)) for n in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sent["w1"] + sent["w2"] == 200 and sent["w1"] > 0 and sent["w2"] > 0
    assert Counter(handler.ids()) == Counter(ids)  # each exactly once
    with engine.connect() as conn:
        assert conn.execute(sa.select(deliveries.c.status, deliveries.c.attempts).distinct()).all() == [("sent", 1)]


def test_concurrent_claims_are_disjoint(store):
    _, engine = store
    ids = {queue(engine, f"p{i}") for i in range(300)}
    got: list[list[str]] = [[] for _ in range(3)]
    start = threading.Barrier(3)

    def claim(k: int) -> None:
        start.wait()
        while rows := claim_due(engine, 5, f"w{k}"):
            got[k].extend(r["delivery_id"] for r in rows)

    threads = [threading.Thread(target=claim, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    every = [d for g in got for d in g]
    assert len(every) == len(set(every)) == 300 and set(every) == ids


def test_a_crashed_workers_lease_expires_and_the_next_run_sends(store, smtp):
    paths, engine = store
    handler, port = smtp
    add_contact(paths, engine, "p1", "p1@example.test")
    did = queue(engine, "p1")
    clock = Clock()
    [row] = claim_due(engine, 10, "crashed", lease=dt.timedelta(seconds=30), now=clock())  # then it dies
    assert row["attempts"] == 1 and row["status"] == "sending"
    with worker(paths, engine, port, clock=clock) as w:
        assert w.run_once() == {"claimed": 0}  # leased
        clock.advance(31)
        assert w.run_once() == {"claimed": 1, "sent": 1}
    d = status(engine, did)
    assert d["status"] == "sent" and d["attempts"] == 2 and handler.ids() == [did]
    assert "the previous attempt's lease expired" in d["history"][-2]["detail"]
    # the crashed worker comes back with its attempt's result: not recorded over the newer attempt
    late = DeliveryResult(did, "temporary_failure", "late")
    assert record_result(engine, did, late, RetryPolicy().decide(late, 1), now=clock()) is None
    assert status(engine, did)["status"] == "sent" and len(status(engine, did)["history"]) == len(d["history"])


def test_a_delivery_that_keeps_killing_workers_is_dead_lettered(store):
    _, engine = store
    did = queue(engine, "p1")
    t = dl.now()
    for attempt in (1, 2):
        [row] = claim_due(engine, 1, "w", lease=dt.timedelta(seconds=1), now=t, max_attempts=2)
        assert row["attempts"] == attempt
        t += dt.timedelta(seconds=2)  # the worker died: the lease expires
    assert claim_due(engine, 1, "w", now=t, max_attempts=2) == []
    d = status(engine, did)
    assert d["status"] == "dead_letter" and "lease expired on the last allowed attempt" in d["history"][-1]["detail"]


def test_feedback_before_the_result_keeps_its_status(store):
    _, engine = store
    did = queue(engine, "p1")
    [row] = claim_due(engine, 1, "w")
    with engine.begin() as conn:  # the gateway's callback wins the race (as POST /v1/messaging/feedback does)
        dl.add_event(conn, did, "delivered", "feedback delivered")
    ok = DeliveryResult(did, "delivered", "accepted", provider_id="gw-1")
    assert record_result(engine, did, ok, RetryPolicy().decide(ok, 1)) == "delivered"
    d = status(engine, did)
    assert d["status"] == "delivered" and d["provider_id"] == "gw-1"
    assert [h["status"] for h in d["history"]] == ["queued", "sending", "delivered", "sent"]


# --------------------------------------------------------------------------- rate limits, depth, CLI

def test_rate_limit_waits_within_the_lease_and_hands_back_beyond_it(store, smtp):
    paths, engine = store
    handler, port = smtp
    fake = {"t": 0.0}
    slept = []

    def sleep(s: float) -> None:
        slept.append(s)
        fake["t"] += s

    for p in ("p1", "p2", "p3"):
        add_contact(paths, engine, p, f"{p}@example.test")
        queue(engine, p)
    limiter = RateLimiter({"email": (2.0, 1.0)}, lambda: fake["t"])
    with worker(paths, engine, port, limiter=limiter, sleep=sleep) as w:
        assert w.run_once() == {"claimed": 3, "sent": 3}
    assert slept == [0.5, 0.5] and len(handler.received) == 3
    # one message per 1,000 s: the second cannot start within the lease -> back to the queue, untried
    late = [queue(engine, p) for p in ("p1", "p2")]
    limiter = RateLimiter({"email": (0.001, 1.0)}, lambda: fake["t"])
    clock = Clock()
    with worker(paths, engine, port, limiter=limiter, sleep=sleep, clock=clock) as w:
        assert w.run_once() == {"claimed": 2, "sent": 1, "released": 1}
    [held] = [status(engine, d) for d in late if status(engine, d)["status"] == "queued"]
    assert held["attempts"] == 0 and (held["next_attempt_at"] - clock.t).total_seconds() == pytest.approx(1000)
    assert "released untried: rate limit of email" in held["history"][-1]["detail"]


def test_rate_limits_from_env():
    assert rate_limits_from_env({"CRM_RATE_LIMIT_EMAIL": "20/50", "CRM_RATE_LIMIT_SMS": "0.5", "OTHER": "1"}) == \
        {"email": (20.0, 50.0), "sms": (0.5, 1.0)}
    for bad in ("x", "0", "-1/2", "5/0.5", "nan", "inf"):
        with pytest.raises(WorkerConfigError):
            rate_limits_from_env({"CRM_RATE_LIMIT_EMAIL": bad})


def test_queue_depth_and_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_HOME", str(tmp_path))
    monkeypatch.delenv("CRM_DATABASE_URL", raising=False)
    monkeypatch.delenv("CRM_SMTP_URL", raising=False)
    for k in [k for k in os.environ if k.startswith(("CRM_WEBHOOK_", "CRM_RATE_LIMIT_"))]:
        monkeypatch.delenv(k)
    paths = Paths(tmp_path)
    engine = make_engine(paths)
    upgrade_to_head(engine)
    approve_templates(paths)
    old = dl.now() - dt.timedelta(minutes=5)
    queue(engine, "p1", channel="push", not_before=old)
    queue(engine, "p2", channel="in_app")
    queue(engine, "p3", channel="push", not_before=dl.now() + dt.timedelta(hours=1))
    depth = queue_depth(engine)
    assert depth["by_status"]["queued"] == 3 and depth["by_channel"] == {"in_app": {"queued": 1}, "push": {"queued": 2}}
    assert depth["due"] == 2 and depth["oldest_due_age_seconds"] >= 300
    runner = CliRunner()
    for args in (["deliveries", "--help"], ["deliveries", "work", "--help"], ["deliveries", "status", "--help"]):
        r = runner.invoke(main, args)
        assert r.exit_code == 0 and "Usage:" in r.output
    r = runner.invoke(main, ["deliveries", "work", "--once", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):]) == {"claimed": 2, "sent": 2}
    r = runner.invoke(main, ["deliveries", "status", "--json"])
    depth = json.loads(r.output)
    assert depth["by_status"]["sent"] == 2 and depth["due"] == 0 and depth["oldest_due_age_seconds"] is None
    r = runner.invoke(main, ["deliveries", "status"])
    assert r.exit_code == 0 and "push" in r.output and "due now: 0" in r.output
    monkeypatch.setenv("CRM_RATE_LIMIT_PUSH", "fast")
    r = runner.invoke(main, ["deliveries", "work", "--once"])
    assert r.exit_code == 1 and "CRM_RATE_LIMIT_PUSH" in r.output


def test_run_forever_sends_what_arrives_and_stops_when_told(store, smtp):
    paths, engine = store
    handler, port = smtp
    add_contact(paths, engine, "p1", "p1@example.test")
    stop = threading.Event()
    batches = []
    w = worker(paths, engine, port)
    thread = threading.Thread(target=w.run_forever, args=(stop,),
                              kwargs={"idle_sleep": 0.02, "on_batch": batches.append})
    thread.start()
    try:
        ids = [queue(engine, "p1") for _ in range(3)]
        deadline = dt.datetime.now() + dt.timedelta(seconds=10)
        while len(handler.received) < 3 and dt.datetime.now() < deadline:
            stop.wait(0.02)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive() and sorted(handler.ids()) == sorted(ids)
    assert sum(b.get("sent", 0) for b in batches) == 3 and w._made == {}  # adapters closed on the way out


def test_a_text_no_reviewer_approved_is_never_sent(tmp_path, smtp, monkeypatch):
    """Content review at the channel edge: an unreviewed locale, a rejected version, a changed text
    (a new version) are refused; the reviewed version is sent; the author cannot review it."""
    import shutil

    import yaml

    from crm.campaigns.approvals import ApprovalError
    from crm.campaigns.template_reviews import review
    from crm.campaigns.template_reviews import status as review_status

    handler, port = smtp
    templates = tmp_path / "templates"
    templates.mkdir()
    shutil.copy(TemplateStore().root / f"{TEMPLATE}.yaml", templates)
    paths = Paths(tmp_path)
    engine = make_engine(paths)
    upgrade_to_head(engine)
    store = TemplateStore(templates)
    add_contact(paths, engine, "p1", "p1@example.test")
    add_contact(paths, engine, "p2", "p2@example.test")

    def send(player: str) -> dict:
        did = queue(engine, player)
        with worker(paths, engine, port, templates=TemplateStore(templates)) as w:
            w.run_once()
        return status(engine, did)

    row = send("p1")
    assert row["status"] == "refused" and "not approved by a reviewer" in row["history"][-1]["detail"]
    template = store.get(TEMPLATE)
    locale = template.default_locale
    review(paths, template, locale, "rejected", "Rita Reviewer", "the RG line is missing")
    assert send("p1")["status"] == "refused"
    review(paths, template, locale, "approved", "Rita Reviewer", "fixed")
    assert send("p1")["status"] == "sent" and len(handler.received) == 1
    # a changed text is a new version: unreviewed, refused again
    path = templates / f"{TEMPLATE}.yaml"
    path.write_text(path.read_text() + "owner: Otto Owner\n")
    changed = TemplateStore(templates).get(TEMPLATE)
    assert changed.version(locale) == template.version(locale)  # the owner is not part of the text
    data = yaml.safe_load(path.read_text())
    data["locales"][locale]["text"] += "\nOne more line nobody reviewed."
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    changed = TemplateStore(templates).get(TEMPLATE)
    assert changed.version(locale) != template.version(locale)
    assert send("p2")["status"] == "refused"
    assert {r.state for r in review_status(paths, TemplateStore(templates)) if r.locale == locale} == {"unreviewed"}
    with pytest.raises(ApprovalError, match="cannot review"):
        review(paths, changed, locale, "approved", "otto owner", "mine")
    engine.dispose()
