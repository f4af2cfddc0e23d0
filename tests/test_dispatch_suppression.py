"""Send-time suppression: a self-exclusion, or an opt-out / complaint on the list's channel not
followed by a grant, from a week before the list's as-of date on (late arrivals, events landed
after the build) stops the message, whatever the (gated, approved) list says."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_audit import _publish_gated

from crm.campaigns import approvals
from crm.campaigns.dispatch import (
    STOP_LOOKBACK_DAYS,
    SUPPRESSED_FILE,
    WITHDRAWALS,
    dispatch_list,
    outbox_file,
    read_outbox,
)
from crm.campaigns.experiments import HOLDOUT
from crm.campaigns.lists import list_dir
from crm.campaigns.spec import load_campaign
from crm.config import CAMPAIGNS_DIR, Paths
from crm.ingest.landing import ingest_file

AS_OF = dt.date(2025, 10, 1)
SPEC = load_campaign(CAMPAIGNS_DIR / "cashback_recent_losers.yaml")
CHANNEL = SPEC.channel  # push
OTHER = "email" if CHANNEL != "email" else "push"
KINDS = ("consent.revoked", "consent.granted", "crm.unsubscribe", "crm.complaint", "crm.open",
         "rg.self_exclusion.started", "rg.limit.set")


def _payload(kind: str, channel: str) -> dict:
    if kind.startswith("consent."):
        return {"channel": channel, "product": "casino"}
    if kind.startswith("crm."):
        return {"delivery_id": "d1", "campaign_id": "x", "channel": channel}
    return {"scope": "all"} if kind == "rg.self_exclusion.started" else {"kind": "deposit_daily", "value": 5000}


def _land(paths: Paths, tmp, events: list[tuple]) -> None:
    """Land (player, event type, event time[, channel]) records through the real landing."""
    src = tmp / f"{uuid.uuid4().hex}.jsonl"
    src.write_text("".join(json.dumps({
        "event_id": uuid.uuid4().hex, "event_type": e[1], "trace_id": "tr", "player_id": e[0], "brand_id": "A",
        "occurred_at": e[2].isoformat() + "Z", "payload": _payload(e[1], e[3] if len(e) > 3 else CHANNEL)}) + "\n"
        for e in events))
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


def test_stop_events_since_a_week_before_the_list_are_not_sent(tmp_path, gated):
    paths = gated
    t = _treated(paths)
    midnight = dt.datetime.combine(AS_OF, dt.time())
    h = dt.timedelta(hours=1)
    _land(paths, tmp_path, [
        (t[0], "consent.revoked", midnight),  # at the as-of date: the list did not see it
        (t[1], "crm.unsubscribe", midnight + 9 * h),
        (t[2], "rg.self_exclusion.started", midnight + dt.timedelta(days=2)),
        (t[3], "crm.complaint", midnight - 1 * h),  # the evening before, landed after the build
        (t[4], "consent.revoked", midnight - dt.timedelta(days=STOP_LOOKBACK_DAYS)),  # the window's first instant
        # not stops:
        (t[5], "consent.granted", midnight + h),
        (t[6], "crm.open", midnight + h),
        (t[7], "crm.unsubscribe", midnight + h, OTHER),  # another channel
        (t[8], "consent.revoked", midnight - 5 * h), (t[8], "consent.granted", midnight - 2 * h),  # granted again
        (t[9], "consent.revoked", midnight - dt.timedelta(days=STOP_LOOKBACK_DAYS, seconds=1)),  # before the window
        (t[10], "rg.limit.set", midnight + h),
    ])
    r = dispatch_list(paths, SPEC.id, AS_OF, spec=SPEC)
    sent = {m["player_id"] for m in read_outbox(outbox_file(paths, SPEC.channel, SPEC.id, AS_OF))}
    stopped = set(t[:5])
    assert sent == set(t) - stopped
    assert r.suppressed_at_send == 5 and r.new_messages == len(t) - 5
    assert r.suppressed_reasons == {"consent.revoked": 2, "crm.unsubscribe": 1, "rg.self_exclusion.started": 1,
                                    "crm.complaint": 1}
    record = json.loads((list_dir(paths, SPEC.id, AS_OF) / SUPPRESSED_FILE).read_text())
    assert set(record) == stopped and record[t[1]]["event_type"] == "crm.unsubscribe"
    assert record[t[1]]["channel"] == CHANNEL and record[t[2]]["channel"] is None
    # the assignment export records who was sent: the suppressed are in neither arm
    import pandas as pd

    export = pd.read_parquet(r.assignments_file)
    assert not set(export["player_id"]) & stopped


def _oracle(events: list[tuple], cutoff: dt.datetime) -> set[str]:
    """Who a send at this point must leave out, written apart from the SQL: a self-exclusion in the
    window, or, per player on the list's channel, a latest consent change (withdrawal wins a tie)
    in the window that is a withdrawal."""
    out = {p for p, k, at, ch in events if k == "rg.self_exclusion.started" and at >= cutoff}
    latest: dict[str, tuple] = {}
    for p, k, at, ch in events:
        if at >= cutoff and ch == CHANNEL and k in ("consent.granted", *WITHDRAWALS):
            key = (at, k != "consent.granted")
            if p not in latest or key > latest[p][0]:
                latest[p] = (key, k)
    return out | {p for p, (_, k) in latest.items() if k != "consent.granted"}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_message_to_a_player_who_said_stop_since_the_list(tmp_path_factory, data):
    """Over random event histories around the list's date (channels, grants after withdrawals,
    ties), landed in two parts with a dispatch after each: nobody the rule leaves out at a dispatch
    is sent by it, everyone else treated is sent exactly once, and what was sent stays sent."""
    tmp = tmp_path_factory.mktemp("stop")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(approvals.THRESHOLD_ENV, "1000000000")
        paths = Paths(tmp / "home").ensure()
        _publish_gated(paths, SPEC, AS_OF, n=30)
        treated = _treated(paths)
        window = STOP_LOOKBACK_DAYS * 86400
        events = data.draw(st.lists(st.tuples(
            st.sampled_from(treated[:8]), st.sampled_from(KINDS),
            st.sampled_from([-window - 1, -window, -3600, -1, 0, 1, 3600, 86400]) | st.integers(-10 * 86400, 3 * 86400),
            st.sampled_from([CHANNEL, OTHER])), max_size=25))
        split = data.draw(st.integers(min_value=0, max_value=len(events)))
        midnight = dt.datetime.combine(AS_OF, dt.time())
        cutoff = midnight - dt.timedelta(days=STOP_LOOKBACK_DAYS)
        timed = [(p, k, midnight + dt.timedelta(seconds=s), ch) for p, k, s, ch in events]
        box = outbox_file(paths, SPEC.channel, SPEC.id, AS_OF)
        if timed[:split]:
            _land(paths, tmp, timed[:split])
        dispatch_list(paths, SPEC.id, AS_OF, spec=SPEC)
        first = [m["player_id"] for m in read_outbox(box)]
        assert set(first) == set(treated) - _oracle(timed[:split], cutoff)
        if timed[split:]:
            _land(paths, tmp, timed[split:])
        dispatch_list(paths, SPEC.id, AS_OF, spec=SPEC)
        sent = [m["player_id"] for m in read_outbox(box)]
        assert len(sent) == len(set(sent))  # never twice
        assert set(sent) == set(first) | (set(treated) - _oracle(timed, cutoff))


def _outbox(paths: Paths) -> list[dict]:
    return read_outbox(outbox_file(paths, SPEC.channel, SPEC.id, AS_OF))


def test_a_late_send_rechecks_quiet_hours_at_the_moment_it_goes_out(tmp_path, gated):
    """The list was checked for 17:00 UTC (19:00 in Berlin). A dispatch that only runs at 22:30
    UTC (00:30 in Berlin) would message everyone in their night: it holds them, and a dispatch
    the next morning sends them, once, with both times recorded."""
    paths = gated
    t = _treated(paths)
    planned = dt.datetime.combine(AS_OF, SPEC.schedule.send_time)
    late = dispatch_list(paths, SPEC.id, AS_OF, spec=SPEC, now=planned + dt.timedelta(hours=5, minutes=30))
    assert late.new_messages == 0 and late.suppressed_reasons == {"quiet_hours_at_send": len(t)}
    record = json.loads((list_dir(paths, SPEC.id, AS_OF) / SUPPRESSED_FILE).read_text())
    assert "00:30 Europe/Berlin" in record[t[0]]["occurred_at"] and not _outbox(paths)
    morning = dt.datetime.combine(AS_OF + dt.timedelta(days=1), dt.time(8))  # 10:00 in Berlin
    r = dispatch_list(paths, SPEC.id, AS_OF, spec=SPEC, now=morning)
    assert r.new_messages == len(t) and r.suppressed_at_send == 0
    sent = _outbox(paths)
    assert {m["player_id"] for m in sent} == set(t)
    assert {(m["planned_send_at"], m["sent_at"]) for m in sent} == {("2025-10-01T17:00:00Z", "2025-10-02T08:00:00Z")}
    again = dispatch_list(paths, SPEC.id, AS_OF, spec=SPEC, now=morning + dt.timedelta(hours=1))
    assert again.new_messages == 0 and len(_outbox(paths)) == len(t)  # sent once


def test_an_on_time_send_records_its_planned_time_and_a_late_one_its_own(tmp_path, gated):
    paths = gated
    t = _treated(paths)
    on_time = dispatch_list(paths, SPEC.id, AS_OF, spec=SPEC)  # CRM_NOW=planned in the tests
    assert on_time.new_messages == len(t)
    assert {(m["planned_send_at"], m["sent_at"]) for m in _outbox(paths)} == {("2025-10-01T17:00:00Z",) * 2}


def test_a_late_send_holds_only_the_players_whose_night_it_is(tmp_path, monkeypatch):
    """Players in Tokyo and in Berlin on one list sent at 12:30 UTC: 21:30 in Tokyo (quiet), 14:30
    in Berlin. A player whose time zone is not a zone has no local time: held too (fail closed)."""
    from test_campaigns import _audience

    from crm.campaigns.lists import build_list, publish, record_gate

    monkeypatch.setenv(approvals.THRESHOLD_ENV, "1000000000")
    paths = Paths(tmp_path / "home").ensure()
    spec = SPEC.model_copy(update={"schedule": SPEC.schedule.model_copy(update={"send_time_utc": "07:00"})})
    audience = _audience(30)
    audience.loc[audience.index[:10], "timezone"] = "Asia/Tokyo"
    audience.loc[audience.index[10:12], "timezone"] = "Europe"
    built = build_list(spec, audience, AS_OF)
    publish(built, paths)
    record_gate(list_dir(paths, spec.id, AS_OF), "campaign_list", True, {"summary": "ok"})
    treated = built.rows[built.rows["variant"] != HOLDOUT]
    r = dispatch_list(paths, spec.id, AS_OF, spec=spec, now=dt.datetime.combine(AS_OF, dt.time(12, 30)))
    zone = dict(zip(audience["player_id"], audience["timezone"], strict=True))
    sent = {m["player_id"] for m in read_outbox(outbox_file(paths, spec.channel, spec.id, AS_OF))}
    assert sent == {p for p in treated["player_id"] if zone[p] == "Europe/Berlin"}
    held = sum(zone[p] != "Europe/Berlin" for p in treated["player_id"])
    assert held and r.suppressed_reasons == {"quiet_hours_at_send": held}


@pytest.mark.parametrize(("value", "simulated", "expected"), [
    ("planned", False, None), ("", True, None), ("2025-10-01T22:30:00Z", False, dt.datetime(2025, 10, 1, 22, 30)),
    ("2025-10-02T00:30:00+02:00", True, dt.datetime(2025, 10, 1, 22, 30)),
])
def test_the_dispatch_clock(tmp_path, monkeypatch, value, simulated, expected):
    from crm.config import dispatch_clock

    paths = Paths(tmp_path).ensure()
    if simulated:
        paths.simulation_file.write_text("{}")
    monkeypatch.setenv("CRM_NOW", value)
    assert dispatch_clock(paths) == expected


def test_the_dispatch_clock_is_the_wall_clock_of_a_live_home(tmp_path, monkeypatch):
    from crm.config import dispatch_clock

    monkeypatch.delenv("CRM_NOW", raising=False)
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    assert before <= dispatch_clock(Paths(tmp_path).ensure()) <= before + dt.timedelta(seconds=5)
    monkeypatch.setenv("CRM_NOW", "yesterday")
    with pytest.raises(ValueError, match="CRM_NOW"):
        dispatch_clock(Paths(tmp_path))


# ---- dates dispatched out of order ----------------------------------------------------------------

def _outbox_messages(paths: Paths) -> list[dict]:
    return [m for f in sorted(paths.outbox.glob("*/*/*.jsonl")) for m in read_outbox(f)]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations([0, 1, 2, 3]), held_back=st.sets(st.integers(0, 3), max_size=2))
def test_a_date_sent_after_a_later_one_never_reaches_a_player_the_later_one_reached(
        tmp_path_factory, monkeypatch, order, held_back):
    """Lists of four consecutive dates (the same players on each), dispatched in any order, some
    held back to the end (as a list approved late would be): a message is only ever written for a
    player who had no message of a later as-of date at that moment, and the others are held."""
    from crm.campaigns.dispatch import LATER_MESSAGE_SENT

    monkeypatch.setenv(approvals.THRESHOLD_ENV, "1000000000")
    paths = Paths(tmp_path_factory.mktemp("home")).ensure()
    dates = [AS_OF + dt.timedelta(days=i) for i in range(4)]
    for d in dates:
        _publish_gated(paths, SPEC, d, n=30)
    sequence = [i for i in order if i not in held_back] + sorted(held_back)
    for i in sequence:
        before = _outbox_messages(paths)
        report = dispatch_list(paths, SPEC.id, dates[i], spec=SPEC)
        known = {m["idempotency_key"] for m in before}
        new = [m for m in _outbox_messages(paths) if m["idempotency_key"] not in known]
        later = {m["player_id"] for m in before if m["as_of_date"] > dates[i].isoformat()}
        assert not later & {m["player_id"] for m in new}, (sequence, i)
        held = json.loads((list_dir(paths, SPEC.id, dates[i]) / SUPPRESSED_FILE).read_text()) if later else {}
        assert {p for p, why in held.items() if why["event_type"] == LATER_MESSAGE_SENT} >= later & set(
            _treated_on(paths, dates[i])), (sequence, i)
        assert report.new_messages == len(new)


def _treated_on(paths: Paths, as_of: dt.date) -> list[str]:
    import pandas as pd

    rows = pd.read_parquet(list_dir(paths, SPEC.id, as_of) / "list.parquet")
    return sorted(rows.loc[rows["variant"] != HOLDOUT, "player_id"].astype(str))
