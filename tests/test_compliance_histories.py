"""Compliance over random event histories, through the real landing, dbt profile, list and dispatch.

Hypothesis draws players with random sequences of consent changes (per channel, some per
product), unsubscribes, complaints, self-exclusions of every scope and brand (some ended by an
end of the same scope, some by one of another scope that must not end them, some indefinite),
cooling-off periods and sessions. The values are drawn the way a casino's systems really send
them, not only from our vocabulary: odd case, spaces, aliases, invisible and look-alike
characters, channels and scopes we do not know, missing payloads, impossible timestamps. The
generator knows what each record *means* (a withdrawal on an unknown channel withdraws every
channel; an unknown scope on a start is operator-wide; a grant we cannot read grants nothing; a
stop event with an unusable time counts from when it landed); an oracle replays those meanings
player by player and decides who *must* be suppressed. The events are landed, dbt builds the
profile, the list builder selects everyone in scope and dispatch sends the list: no such player
may be on the list or in the outbox, and the warehouse holds none of the e-mail addresses.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os

import duckdb
import pytest
from _dbt import dbt_build
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from test_rerun_day import MAIL, assert_day_limits, outbox_of_day

from crm.campaigns import approvals
from crm.campaigns.dispatch import dispatch_list, outbox_file, read_outbox
from crm.campaigns.lists import build_list, list_dir, publish, record_gate
from crm.campaigns.spec import CampaignSpec
from crm.config import Paths
from crm.ingest.landing import ingest_file
from crm.warehouse import read_audience
from expectations.campaign_list import recompute_violations

pytestmark = pytest.mark.slow

T0 = dt.datetime(2025, 3, 1)
AS_OF = dt.date(2025, 5, 1)
CHANNELS = ("email", "push", "sms")
ALL = "ALL"  # the meaning of a withdrawal that names no channel of ours
UNKNOWN = "UNKNOWN"  # a value we cannot read (a grant or an end with it lands as nothing)
PRODUCT_LAW = ("UK", "DE")  # jurisdictions that ask for consent per product
LATE_DAY = 60  # 2025-04-30: the day before the as-of date, landed after its lists were sent
BAD_TIMES = ("infinity", "-infinity", "epoch", "9999-12-31T00:00:00Z", "1970-01-01T00:00:00Z", None)


def _spellings(word: str) -> st.SearchStrategy:
    """How a casino may spell one of our values: case, spaces, separators, invisible characters."""
    return st.sampled_from([word, word.upper(), word.title(), f" {word} ", f"{word}\u200b", word.replace("_", "-"),
                            word.replace("_", " ").upper(), f"\ufeff{word}"])


_channel = st.one_of(
    st.sampled_from(CHANNELS).flatmap(lambda c: st.tuples(st.just(c), _spellings(c))),
    st.tuples(st.just("email"), st.sampled_from(["e-mail", "E-Mail", "mail"])),
    st.tuples(st.just("sms"), st.sampled_from(["Text", "txt"])),
    st.tuples(st.just(UNKNOWN), st.sampled_from(["fax", "\u0435mail", "emails", "", "pigeon", 7, None])),
)
_product = st.one_of(
    st.just((None, None)),
    st.sampled_from(["casino", "sports"]).flatmap(lambda p: st.tuples(st.just(p), _spellings(p))),
    st.tuples(st.just("sports"), st.sampled_from(["Sportsbook", "sports-betting"])),
    st.tuples(st.just(UNKNOWN), st.sampled_from(["knitting", "c\u0430sino"])),
)
_start_scope = st.one_of(
    st.sampled_from(["brand", "operator", "cooling_off"]).flatmap(lambda s: st.tuples(st.just(s), _spellings(s))),
    st.tuples(st.just("cooling_off"), st.sampled_from(["Cooling-Off", "timeout", "cool off"])),
    st.tuples(st.just("operator"), st.sampled_from(["galaxy", "", "OPERATOR-WIDE", "global", None, 3])),
)
_end_scope = st.one_of(
    st.sampled_from(["brand", "operator", "cooling_off"]).flatmap(lambda s: st.tuples(st.just(s), _spellings(s))),
    st.tuples(st.just(UNKNOWN), st.sampled_from(["galaxy", "", None])),
)
_time = st.one_of(st.just("ok"), st.just("ok"), st.just("ok"), st.sampled_from(BAD_TIMES))

_event = st.one_of(
    st.tuples(st.just("consent.granted"), _channel, _product, st.just("ok")),
    st.tuples(st.sampled_from(["consent.revoked", "crm.unsubscribe", "crm.complaint"]), _channel, _product, _time),
    st.tuples(st.just("rg.self_exclusion.started"), _start_scope, st.sampled_from(["A", "A", "B"]),
              st.one_of(st.none(), st.integers(1, 90), st.just("bad")), _time),
    st.tuples(st.just("rg.self_exclusion.ended"), _end_scope, st.sampled_from(["A", "A", "B"]), st.just("ok")),
    st.tuples(st.just("session.started"), st.just("ok")),
)


@st.composite
def histories(draw) -> list[dict]:
    players = []
    for i in range(draw(st.integers(5, 20))):
        steps = draw(st.lists(st.tuples(st.integers(0, 59), _event), max_size=10))
        players.append({
            "player_id": f"h_{i:03d}",
            "age": draw(st.integers(15, 70)),
            "country": draw(st.sampled_from(["UK", "MT", "DE", "SE", "NL"])),
            "grant_at_registration": draw(st.sets(st.sampled_from(CHANNELS + ("profiling",)))),
            "products_at_registration": draw(st.sampled_from([(), ("casino",), ("casino", "sports")])),
            "steps": sorted(steps, key=lambda s: s[0]),
        })
    return players


def _when(at: dt.datetime, time_kind) -> str | None:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ") if time_kind == "ok" else time_kind


def _events(players: list[dict], late_only: bool = False) -> list[dict]:
    """The raw records of ``players``' histories (``late_only``: only their steps of LATE_DAY)."""
    out: list[dict] = []

    def ev(pid: str, etype: str, at: str | None, payload, brand: str = "A") -> None:
        rec = {"event_id": f"{'late' if late_only else 'ev'}_{len(out)}", "event_type": etype, "player_id": pid,
               "brand_id": brand, "payload": payload}
        if at is not None:
            rec["occurred_at"] = at
        out.append(rec)

    def put(payload: dict, key: str, value) -> dict:
        if value is not None:
            payload[key] = value
        return payload

    for p in players:
        pid = p["player_id"]
        born = dt.date(AS_OF.year - p["age"], 1, 1)
        reg = T0 - dt.timedelta(days=30)
        if not late_only:
            ev(pid, "player.registered", _when(reg, "ok"), {
                "country": p["country"], "locale": "en-GB", "timezone": "UTC", "birth_date": born.isoformat(),
                "currency": "EUR", "age_verified": True, "email": f"{pid}@probe.example", "phone": "+440000000"})
            for ch in sorted(p["grant_at_registration"]):
                for product in (p["products_at_registration"] if ch != "profiling" else ()) or (None,):
                    ev(pid, "consent.granted", _when(reg + dt.timedelta(seconds=1), "ok"),
                       put({"channel": ch, "source": "registration"}, "product", product))
        for n, (day, step) in enumerate(p["steps"]):
            if late_only and day != LATE_DAY:
                continue
            at = T0 + dt.timedelta(days=day, minutes=n)
            kind = step[0]
            if kind.startswith("consent."):
                (_, sent_channel), (_, sent_product), time_kind = step[1], step[2], step[3]
                ev(pid, kind, _when(at, time_kind), put(put({}, "channel", sent_channel), "product", sent_product))
            elif kind.startswith("crm."):
                (_, sent_channel), time_kind = step[1], step[3]
                ev(pid, kind, _when(at, time_kind), put({"delivery_id": f"d{n}", "campaign_id": "c"}, "channel",
                                                        sent_channel))
            elif kind == "rg.self_exclusion.started":
                (_, sent_scope), brand, until, time_kind = step[1], step[2], step[3], step[4]
                payload = put({}, "scope", sent_scope)
                if until == "bad":
                    payload["until"] = "someday"
                elif until is not None:
                    payload["until"] = (at + dt.timedelta(days=until)).strftime("%Y-%m-%dT%H:%M:%SZ")
                ev(pid, kind, _when(at, time_kind), payload, brand)
            elif kind == "rg.self_exclusion.ended":
                (_, sent_scope), brand = step[1], step[2]
                ev(pid, kind, _when(at, "ok"), put({}, "scope", sent_scope), brand)
            else:
                ev(pid, kind, _when(at, "ok"), {"session_id": f"s{n}"})
    return out


def _timeline(p: dict) -> list[tuple[dt.datetime, tuple]]:
    """The player's steps with a usable time, in time order (a stop event with an unusable time
    lands when it was landed: after the as-of date, so it is not part of the profile)."""
    out = []
    for n, (day, step) in enumerate(p["steps"]):
        if step[-1] == "ok":
            out.append((T0 + dt.timedelta(days=day, minutes=n), step))
    return out


def must_be_suppressed(p: dict, channel: str, product: str) -> str | None:
    """An oracle from the meanings of the raw history: a reason the player may not be contacted on
    ``channel`` about ``product`` as of AS_OF, or None. It reads the meanings the generator gave
    each record, not how landing parses them."""
    as_of = dt.datetime.combine(AS_OF, dt.time())
    if p["age"] < 18:
        return "under age"
    on = channel in p["grant_at_registration"]
    granted = on and product in p["products_at_registration"]
    withdrawn = False
    timeline = _timeline(p)
    for _, s in timeline:
        if not s[0].startswith(("consent.", "crm.")):
            continue
        ch, prod = s[1][0], s[2][0]
        if s[0] == "consent.granted":
            if ch == channel and prod != UNKNOWN:  # an unreadable grant grants nothing
                on = True
                if prod == product:
                    granted, withdrawn = True, False
                elif prod is None:  # yes to the channel: no longer a no to the product, not a yes by name
                    withdrawn = False
        elif ch in (channel, ALL, UNKNOWN):  # a withdrawal we cannot attribute withdraws every channel
            on = False
            if s[0] != "consent.revoked" or prod in (None, UNKNOWN, product):
                granted, withdrawn = False, True
    if not on:
        return f"no {channel} consent"
    if withdrawn:
        return f"{product} withdrawn on {channel}"
    if p["country"] in PRODUCT_LAW and not granted:
        return f"{p['country']}: no {channel} consent naming {product}"
    sessions = [t for t, s in timeline if s[0] == "session.started"]
    ends = [(t, s[1][0], s[2]) for t, s in timeline if s[0] == "rg.self_exclusion.ended" and s[1][0] != UNKNOWN]
    last_end = None
    for t, s in timeline:
        if s[0] != "rg.self_exclusion.started":
            continue
        scope, brand, days = s[1][0], s[2], s[3]
        # only an end of the same scope (and, but for operator-wide, the same brand) ends it
        ended = [u for u, e_scope, e_brand in ends
                 if u > t and e_scope == scope and (scope == "operator" or e_brand == brand)]
        until = t + dt.timedelta(days=days) if isinstance(days, int) else None
        end = min([*ended, *([until] if until and until <= as_of else [])], default=None)
        if end is None:
            return "cooling off" if scope == "cooling_off" else f"self-excluded ({scope})"
        if scope != "cooling_off":
            last_end = max(last_end or end, end)
    if last_end is not None and not any(x > last_end for x in sessions):
        return "exclusion ended, not returned"
    return None


def stopped_at_send(p: dict, channel: str) -> str | None:
    """A stop event the generator sent with an unusable time: landed at the landing time (after
    the as-of date), so dispatch's send-time check must catch it."""
    for _, step in p["steps"]:
        if step[-1] == "ok":
            continue
        if step[0] == "rg.self_exclusion.started":
            return "self-exclusion landed at send time"
        if step[1][0] in (channel, ALL, UNKNOWN):
            return f"{step[0]} landed at send time"
    return None


# The probe's cases, always run: an operator-wide exclusion is not ended by a brand exclusion's
# end; a DE player who revoked casino e-mail and then granted sports gets no casino e-mail.
_PROBE_SCOPES = [{"player_id": "h_000", "age": 40, "country": "MT", "grant_at_registration": {"email"},
                  "products_at_registration": ("casino",),
                  "steps": [(1, ("rg.self_exclusion.started", ("operator", "operator"), "A", None, "ok")),
                            (2, ("rg.self_exclusion.started", ("brand", "brand"), "A", None, "ok")),
                            (3, ("rg.self_exclusion.ended", ("brand", "brand"), "A", "ok")),
                            (5, ("session.started", "ok"))]}]
_PROBE_PRODUCT = [{"player_id": "h_000", "age": 40, "country": "DE", "grant_at_registration": {"email"},
                   "products_at_registration": ("casino",),
                   "steps": [(1, ("consent.revoked", ("email", "email"), ("casino", "casino"), "ok")),
                             (2, ("consent.granted", ("email", "email"), ("sports", "sports"), "ok"))]}]


# Each example is a real landing + dbt build + dispatch (~10 s), so no shrinking: a failure prints
# the whole drawn history, which the oracle's message explains.
@settings(max_examples=int(os.environ.get("CRM_HISTORY_EXAMPLES", "4")), deadline=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(players=histories(), channel=st.sampled_from(CHANNELS), product=st.sampled_from(["casino", "sports"]))
@example(players=_PROBE_SCOPES, channel="email", product="casino")
@example(players=_PROBE_PRODUCT, channel="email", product="casino")
def test_random_histories_never_reach_a_list_or_the_outbox(tmp_path_factory, monkeypatch, players, channel, product):
    monkeypatch.setenv(approvals.THRESHOLD_ENV, "1000000000")  # four-eyes is not what this test is about
    home = tmp_path_factory.mktemp("hist")
    paths = Paths(home).ensure()
    src = home / "events.jsonl"
    src.write_text("\n".join(json.dumps(e) for e in _events(players)) + "\n")
    report = ingest_file(src, paths)
    assert report.balanced, report
    assert not {r for r in report.reasons if not r.startswith(("unknown ", "missing field payload.", "wrong type for "
                                                                "payload.", "bad timestamp", "occurred_at out of"))}
    dbt_build(home, AS_OF, "--select", "+dim_player", "+player_features", "--exclude", "test_type:unit",
              "--indirect-selection", "cautious")
    campaign = CampaignSpec.model_validate({"id": "everyone", "name": "everyone", "channel": channel,
                                            "product": product, "experiment": {"holdout": 0.1}})
    audience = read_audience(paths, AS_OF)
    built = build_list(campaign, audience, AS_OF)
    by_id = {p["player_id"]: p for p in players}
    for pid in set(built.rows["player_id"]):
        reason = must_be_suppressed(by_id[pid], channel, product)
        assert reason is None, f"{pid} is on the {channel} list for {product} but {reason}: {by_id[pid]}"
    assert recompute_violations(built.rows, audience).isna().all()

    # dispatch: nobody who must be suppressed, nor anyone with a stop event landed since, is sent
    publish(built, paths)
    record_gate(list_dir(paths, campaign.id, AS_OF), "campaign_list", True, {"summary": "test"})
    dispatch_list(paths, campaign.id, AS_OF, spec=campaign)
    for m in read_outbox(outbox_file(paths, channel, campaign.id, AS_OF)):
        p = by_id[m["player_id"]]
        reason = must_be_suppressed(p, channel, product) or stopped_at_send(p, channel)
        assert reason is None, f"{m['player_id']} was sent a {channel} message but {reason}: {p}"

    # no relation of the warehouse shows a contact detail
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        for (table,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
            cols = [c for c, t in con.execute(f'SELECT column_name, data_type FROM information_schema.columns '
                                              f"WHERE table_name = '{table}'").fetchall() if t == "VARCHAR"]
            for c in cols:
                hit = con.execute(f'SELECT count(*) FROM "{table}" WHERE "{c}" LIKE \'%@probe.example%\' '
                                  f"OR \"{c}\" LIKE '%+440000000%'").fetchone()[0]
                assert hit == 0, f"{table}.{c} holds contact details"


# --------------------------------------------------------------------------- a re-run after late events

SPINS = CampaignSpec.model_validate({
    "id": "spins_push", "name": "free spins by push", "channel": "push", "priority": 5,
    "schedule": {"send_time_utc": "17:00"}, "offer": {"template": "free_spins", "value_eur": 5},
    "experiment": {"holdout": 0.1}})
_late = st.lists(st.tuples(st.integers(0, 19), st.one_of(
    st.tuples(st.sampled_from(["consent.revoked", "crm.unsubscribe", "consent.granted"]), _channel,
              st.just((None, None)), st.just("ok")),
    st.tuples(st.just("rg.self_exclusion.started"), _start_scope, st.just("A"), st.none(), st.just("ok")))),
    max_size=8)


def _day(paths: Paths, specs: list[CampaignSpec]) -> None:
    """Build the day's lists from the warehouse, gate each (the real gate: profile, the day's
    lists and what was already sent) and dispatch the ones that pass."""
    from crm.campaigns.day import build_all
    from crm.campaigns.dispatch import DispatchBlocked
    from orchestration.assets.campaigns import gate_published_list

    for b in build_all(paths, specs, AS_OF):
        publish(b, paths)
        gate_published_list(paths, b.campaign, specs, AS_OF)
        try:
            dispatch_list(paths, b.campaign.id, AS_OF, spec=b.campaign)
        except DispatchBlocked:
            pass  # a list the gate stopped is not sent: safe


# The probe's case, always run: every player got the e-mail bonus at 09:00; they opt out of e-mail
# the evening before (landed late); the rebuilt push campaign must not give them a second bonus.
_CLEAN = [{"player_id": f"h_{i:03d}", "age": 30, "country": "MT", "grant_at_registration": {"email", "push"},
           "products_at_registration": ("casino",), "steps": []} for i in range(6)]
_OPT_OUT = [(i, ("consent.revoked", ("email", "email"), (None, None), "ok")) for i in range(6)]


@settings(max_examples=int(os.environ.get("CRM_RERUN_HISTORY_EXAMPLES", "2")), deadline=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(players=histories(), late=_late)
@example(players=_CLEAN, late=_OPT_OUT)
def test_a_rerun_after_late_events_never_double_offers_or_reaches_a_stopped_player(tmp_path_factory, monkeypatch,
                                                                                    players, late):
    """The probe's re-run, through the real landing and dbt: the day's lists are built and sent;
    late events of the day before land (opt-outs, exclusions, grants); dbt rebuilds the profile of
    the same as-of date; the lists are rebuilt, gated and sent again. Across the day's outbox: one
    bonus offer a player, the cooldown and the daily caps hold, and nobody the oracle stops (with
    the late events) got anything."""
    players = copy.deepcopy(players)  # late steps are added below
    monkeypatch.setenv(approvals.THRESHOLD_ENV, "1000000000")
    home = tmp_path_factory.mktemp("rerun")
    (home / "campaigns").mkdir()
    monkeypatch.setenv("CRM_CAMPAIGNS_DIR", str(home / "campaigns"))  # no calendar: no blackout
    monkeypatch.setenv("CRM_HOME", str(home))
    paths = Paths(home).ensure()
    specs = [MAIL, SPINS]
    src = home / "events.jsonl"
    src.write_text("\n".join(json.dumps(e) for e in _events(players)) + "\n")
    ingest_file(src, paths)
    dbt_build(home, AS_OF, "--select", "+dim_player", "+player_features", "--exclude", "test_type:unit",
              "--indirect-selection", "cautious")
    _day(paths, specs)
    before = {p["player_id"]: copy.deepcopy(p) for p in players}  # what the first dispatch could know
    first = set(outbox_of_day(paths, specs, AS_OF)["idempotency_key"])

    for i, step in late:
        if i < len(players):
            players[i]["steps"].append((LATE_DAY, step))
    late_src = home / "late.jsonl"
    late_src.write_text("\n".join(json.dumps(e) for e in _events(players, late_only=True)) + "\n")
    ingest_file(late_src, paths)
    dbt_build(home, AS_OF, "--select", "+dim_player", "+player_features", "--exclude", "test_type:unit",
              "--indirect-selection", "cautious")
    _day(paths, specs)

    sent = outbox_of_day(paths, specs, AS_OF)
    assert_day_limits(sent, specs)
    assert first <= set(sent["idempotency_key"])  # what was sent stays sent, once
    after = {p["player_id"]: p for p in players}
    for m in sent.to_dict("records"):
        p = (before if m["idempotency_key"] in first else after)[m["player_id"]]
        reason = must_be_suppressed(p, m["channel"], "casino")
        assert reason is None, f"{m['player_id']} got a {m['channel']} message but {reason}: {p}"
