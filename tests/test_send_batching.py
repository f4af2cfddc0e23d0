"""Sends waiting together are checked together (crm.service.batcher, crm.campaigns.online.check_sends),
and that changes no answer.

* property (hypothesis): over random players (missing values, unknown countries, broken time
  zones), message histories, channels, templates, frequency policies and instants, one
  :func:`check_sends` call over all players gives each the verdict :func:`check_send` gives them
  alone, and that verdict is the plain-written oracle's (tests/_compliance.py);
* the batcher: conflicting items (one player, one idempotency key) never share a batch and keep
  their order; an exception reaches only the callers it belongs to;
* end to end on a real server: a burst held behind one slow batch is checked as one batch, and
  still every player gets at most one message under the caps, twin requests get one answer,
  ineligible players are refused, and a player whose profile the check cannot read fails alone
  (a 500, nothing queued) while the others of its batch are sent.
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.campaigns.online import BUILT_IN, check_send, check_sends, send_spec
from crm.config import CAMPAIGNS_DIR, Paths
from crm.service import create_app
from crm.service.batcher import Batcher
from crm.store.db import make_engine, upgrade_to_head
from crm.store.keys import create_key
from crm.store.schema import deliveries
from tests._compliance import AS_OF, history_messages, message_histories, oracle_reasons, profile_rows, profiles
from tests._service import call, running_server
from tests.test_service_messaging import NOW, clean_profile, put_profiles

CHANNELS = ("email", "sms", "push", "in_app")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_a_batch_gives_every_player_the_verdict_they_get_alone_and_the_oracles(data):
    frame = data.draw(profiles(max_players=10, clean_share=0.6))
    rows = profile_rows(frame)
    players: list[dict | None] = [{"player_id": pid, **row} for pid, row in rows.to_dict("index").items()]
    players += [None] * data.draw(st.integers(0, 2))  # not in the profile copy: refused, fail closed
    players = data.draw(st.permutations(players))
    policy_id = data.draw(st.sampled_from(sorted(BUILT_IN)))
    channel = data.draw(st.sampled_from(CHANNELS))
    template = data.draw(st.sampled_from(["payment_failure_help", "cashback"]))
    at = dt.datetime.combine(AS_OF, dt.time(data.draw(st.integers(0, 23)), data.draw(st.sampled_from([0, 59]))))
    spec = send_spec(policy_id, BUILT_IN[policy_id], channel, template, "A", at)
    history = data.draw(message_histories(list(rows.index), [spec.id, "api_cashback"]))

    together = check_sends(players, spec, history, at)
    alone = [check_send(p, spec, history, at) for p in players]
    assert together == alone
    messages = history_messages(history)
    for p, verdict in zip(players, together, strict=True):
        if p is None:
            assert verdict.rule == "unknown_player" and not verdict.eligible
            continue
        mine = [m for m in messages if m["player_id"] == p["player_id"]]
        expected = oracle_reasons(p, spec, mine)
        assert verdict.eligible == (not expected), (p["player_id"], verdict, expected)


# --------------------------------------------------------------------------- the batcher

def test_conflicting_items_never_share_a_batch_and_keep_their_order():
    gate, seen = threading.Event(), []

    def run(values):
        gate.wait(10)
        seen.append(list(values))
        return [v.upper() for v in values]

    b = Batcher(run, name="t")
    first = b.submit("a0", conflicts=("a",))
    deadline = time.monotonic() + 5
    while not b.batches and time.monotonic() < deadline:  # the thread holds a0, blocked on the gate
        time.sleep(0.005)
    futures = [b.submit(v, conflicts=(v[0],)) for v in ("a1", "b1", "a2", "c1", "b2")]
    gate.set()
    assert first.result(5) == "A0" and [f.result(5) for f in futures] == ["A1", "B1", "A2", "C1", "B2"]
    assert seen == [["a0"], ["a1", "b1", "c1"], ["a2", "b2"]]
    b.close()
    with pytest.raises(RuntimeError, match="closed"):
        b.submit("late")


def test_an_exception_reaches_only_its_own_callers():
    def run(values):
        if "all" in values:
            raise ValueError("the whole batch")
        return [KeyError(v) if v == "bad" else v for v in values]

    b = Batcher(run, name="t")
    good, bad = b.submit("good"), b.submit("bad")
    assert good.result(5) == "good"
    with pytest.raises(KeyError):
        bad.result(5)
    with pytest.raises(ValueError, match="whole batch"):
        b.submit("all").result(5)
    assert b.submit("after").result(5) == "after"  # the thread lives on
    b.close()


# --------------------------------------------------------------------------- end to end

@pytest.fixture()
def burst(tmp_path, monkeypatch, store_url):
    campaigns = tmp_path / "campaigns"
    shutil.copytree(CAMPAIGNS_DIR, campaigns)
    monkeypatch.setenv("CRM_CAMPAIGNS_DIR", str(campaigns))
    paths = Paths(tmp_path / "home").ensure()
    engine = make_engine(paths, store_url)
    upgrade_to_head(engine)
    _, key = create_key(engine, "burst", "A", ["messaging:send"])
    app = create_app(paths, engine=engine, clock=lambda: NOW)
    with running_server(paths, app=app) as url:
        yield url, key, engine, app
    engine.dispose()


def _hold_first_batch(app):
    """Hold the send checker's first batch until the returned event is set (the real check runs)."""
    sender, gate = app.state.sender, threading.Event()
    run = sender._run

    def held(calls):
        gate.wait(30)
        return run(calls)

    sender._run = held
    return gate


def test_a_burst_is_checked_as_one_batch_with_every_rule_holding(burst):
    url, key, engine, app = burst
    clean = [clean_profile(f"c{i}") for i in range(12)]
    out = [clean_profile("x_excluded", self_excluded_now=True), clean_profile("x_minor", age_years=17),
           clean_profile("x_no_email", consent_email=False)]
    unreadable = clean_profile("x_garbage", harm_risk_flag="yes")  # a value the rules cannot read
    put_profiles(engine, [*clean, *out, unreadable])

    def send(player, idem):
        return call(f"{url}/v1/messaging/send", "POST",
                    {"channel": "email", "player_id": player, "template_id": "payment_failure_help",
                     "frequency_policy_id": "default",
                     "personalization": {"brand_name": "L", "help_url": "https://example.com/h"}},
                    key=key, headers={"X-Idempotency-Key": idem})

    gate = _hold_first_batch(app)
    # every clean player twice with two keys (the email cap allows one a day), once more with a
    # twin of the first key; the ineligible and the unreadable once each
    requests = [("c0", "warm")]
    requests += [(p["player_id"], f"{p['player_id']}-{n}") for n in (1, 2) for p in clean]
    requests += [(p["player_id"], f"{p['player_id']}-1") for p in clean]
    requests += [(p["player_id"], f"{p['player_id']}-1") for p in [*out, unreadable]]
    with ThreadPoolExecutor(len(requests)) as pool:
        futures = [pool.submit(send, *requests[0])]
        time.sleep(0.3)  # the first request is in the held batch; the others queue behind it
        futures += [pool.submit(send, *r) for r in requests[1:]]
        deadline = time.monotonic() + 20
        while len(app.state.sender._pending) < len(requests) - 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        answers = [f.result(60) for f in futures]

    assert app.state.sender.largest >= len(clean) + len(out) + 1  # one player per batch at most once
    by = {}
    for (player, idem), (status, body) in zip(requests, answers, strict=True):
        by.setdefault(player, []).append((idem, status, body))
    for p in clean:
        pid = p["player_id"]
        got = by[pid]
        assert len({b["delivery_id"] for _, status, b in got if status == 202}) == 1, got  # the cap: one message
        twins = [(s, b) for idem, s, b in got if idem == f"{pid}-1"]
        assert twins[0] == twins[1]  # one key, one answer
        refused = [b for _, s, b in got if s == 422]
        assert all(b["status"] == "REFUSED" for b in refused)
    assert {by[p["player_id"]][0][2]["rule"] for p in out} == {"self_excluded", "under_age", "no_channel_consent"}
    assert by["x_garbage"][0][1] == 500  # fails closed, alone
    with engine.connect() as conn:
        sent = dict(conn.execute(sa.select(deliveries.c.player_id, sa.func.count())
                                 .group_by(deliveries.c.player_id)).all())
    assert sent == {p["player_id"]: 1 for p in clean}
