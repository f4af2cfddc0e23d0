"""Send-time suppression: a player's opt-out, complaint or self-exclusion that landed after the
list's as-of date stops the message, whatever the (gated, approved) list says."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_audit import _publish_gated

from crm import approvals
from crm.campaign_spec import load_campaign
from crm.config import CAMPAIGNS_DIR, Paths
from crm.dispatch import STOP_EVENTS, SUPPRESSED_FILE, dispatch_list, outbox_file, read_outbox
from crm.experiments import HOLDOUT
from crm.landing import ingest_file
from crm.lists import list_dir

AS_OF = dt.date(2025, 10, 1)
SPEC = load_campaign(CAMPAIGNS_DIR / "cashback_recent_losers.yaml")
PAYLOAD = {
    "consent.revoked": {"channel": "email", "product": "casino"},
    "consent.granted": {"channel": "email", "product": "casino"},
    "crm.unsubscribe": {"delivery_id": "d1", "campaign_id": "x", "channel": "email"},
    "crm.complaint": {"delivery_id": "d1", "campaign_id": "x", "channel": "email"},
    "crm.open": {"delivery_id": "d1", "campaign_id": "x", "channel": "email"},
    "rg.self_exclusion.started": {"scope": "all"},
    "rg.limit.set": {"kind": "deposit_daily", "value": 5000},
}


def _land(paths: Paths, tmp, events: list[tuple[str, str, dt.datetime]]) -> None:
    """Land (player, event type, event time) records through the real landing."""
    src = tmp / f"{uuid.uuid4().hex}.jsonl"
    src.write_text("".join(json.dumps({
        "event_id": uuid.uuid4().hex, "event_type": t, "trace_id": "tr", "player_id": p, "brand_id": "A",
        "occurred_at": at.isoformat() + "Z", "payload": PAYLOAD[t]}) + "\n" for p, t, at in events))
    r = ingest_file(src, paths)
    assert r.loaded == len(events), r


def _treated(paths: Paths) -> list[str]:
    import pandas as pd

    rows = pd.read_parquet(list_dir(paths, SPEC.id, AS_OF) / "list.parquet")
    return sorted(rows.loc[rows["variant"] != HOLDOUT, "player_id"].astype(str))


@pytest.fixture
def gated(tmp_path, monkeypatch):
    monkeypatch.setenv(approvals.THRESHOLD_ENV, "1000000000")  # no four-eyes approval needed here
    paths = Paths(tmp_path / "home").ensure()
    _publish_gated(paths, SPEC, AS_OF, n=60)
    return paths


def test_stop_events_after_the_list_date_are_not_sent(tmp_path, gated):
    paths = gated
    t = _treated(paths)
    midnight = dt.datetime.combine(AS_OF, dt.time())
    _land(paths, tmp_path, [
        (t[0], "consent.revoked", midnight),  # at the boundary: the list did not see it
        (t[1], "crm.unsubscribe", midnight + dt.timedelta(hours=9)),
        (t[2], "rg.self_exclusion.started", midnight + dt.timedelta(days=2)),
        (t[3], "crm.complaint", midnight + dt.timedelta(minutes=1)),
        (t[4], "consent.revoked", midnight - dt.timedelta(seconds=1)),  # before: the list's own data
        (t[5], "consent.granted", midnight + dt.timedelta(hours=1)),  # not a stop event
        (t[6], "crm.open", midnight + dt.timedelta(hours=1)),
    ])
    r = dispatch_list(paths, SPEC.id, AS_OF, spec=SPEC)
    sent = {m["player_id"] for m in read_outbox(outbox_file(paths, SPEC.channel, SPEC.id, AS_OF))}
    assert sent == set(t) - set(t[:4])
    assert r.suppressed_at_send == 4 and r.new_messages == len(t) - 4
    assert r.suppressed_reasons == {"consent.revoked": 1, "crm.unsubscribe": 1, "rg.self_exclusion.started": 1,
                                    "crm.complaint": 1}
    record = json.loads((list_dir(paths, SPEC.id, AS_OF) / SUPPRESSED_FILE).read_text())
    assert set(record) == set(t[:4]) and record[t[1]]["event_type"] == "crm.unsubscribe"
    # the assignment export records who was sent: the suppressed are not treated
    import pandas as pd

    export = pd.read_parquet(r.assignments_file)
    assert not set(export.loc[export["arm"] == "treatment", "player_id"]) & set(t[:4])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_message_to_a_player_who_said_stop_since_the_list(tmp_path_factory, data):
    """Over random event histories after (and just before) the list's date, and dispatch run before
    and after they land: no message ever goes to a player with a stop event since the list's date,
    and everyone else treated is sent exactly once."""
    tmp = tmp_path_factory.mktemp("stop")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(approvals.THRESHOLD_ENV, "1000000000")
        paths = Paths(tmp / "home").ensure()
        _publish_gated(paths, SPEC, AS_OF, n=30)
        treated = _treated(paths)
        events = data.draw(st.lists(st.tuples(
            st.sampled_from(treated), st.sampled_from(sorted(PAYLOAD)),
            st.integers(min_value=-3 * 86400, max_value=3 * 86400)), max_size=25))
        split = data.draw(st.integers(min_value=0, max_value=len(events)))
        midnight = dt.datetime.combine(AS_OF, dt.time())
        timed = [(p, t, midnight + dt.timedelta(seconds=s)) for p, t, s in events]
        box = outbox_file(paths, SPEC.channel, SPEC.id, AS_OF)
        # some events land before a first dispatch, the rest before a second one
        stopped_first = {p for p, t, at in timed[:split] if t in STOP_EVENTS and at >= midnight}
        if timed[:split]:
            _land(paths, tmp, timed[:split])
        dispatch_list(paths, SPEC.id, AS_OF, spec=SPEC)
        first = [m["player_id"] for m in read_outbox(box)]
        assert not set(first) & stopped_first
        if timed[split:]:
            _land(paths, tmp, timed[split:])
        dispatch_list(paths, SPEC.id, AS_OF, spec=SPEC)
        sent = [m["player_id"] for m in read_outbox(box)]
        stopped = {p for p, t, at in timed if t in STOP_EVENTS and at >= midnight}
        assert len(sent) == len(set(sent))  # never twice
        # a message already sent stays sent; nobody stopped before a dispatch is sent by it
        assert set(sent) - set(first) <= set(treated) - stopped
        assert set(sent) == set(first) | (set(treated) - stopped)
