"""Compliance over random event histories, through the real landing and dbt profile.

Hypothesis draws players with random sequences of consent changes, unsubscribes,
complaints, self-exclusions (some ended, some indefinite), cooling-off periods and
sessions. The events are landed, dbt builds the profile, the list builder selects
everyone in scope, and an oracle that replays each player's raw events decides who
*must* be suppressed. No such player may appear on the list.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from _dbt import dbt_build
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from crm.campaign_spec import CampaignSpec
from crm.config import Paths
from crm.landing import ingest_file
from crm.lists import build_list
from crm.warehouse import read_audience
from expectations.campaign_list import recompute_violations

pytestmark = pytest.mark.slow

T0 = dt.datetime(2025, 3, 1)
AS_OF = dt.date(2025, 5, 1)
CHANNELS = ("email", "push", "sms")

_event = st.one_of(
    st.tuples(st.just("consent.granted"), st.sampled_from(CHANNELS)),
    st.tuples(st.just("consent.revoked"), st.sampled_from(CHANNELS)),
    st.tuples(st.just("crm.unsubscribe"), st.sampled_from(CHANNELS)),
    st.tuples(st.just("crm.complaint"), st.sampled_from(CHANNELS)),
    st.tuples(st.just("rg.self_exclusion.started"), st.sampled_from(["brand", "operator", "cooling_off"]),
              st.one_of(st.none(), st.integers(1, 90))),  # until = start + days (None: indefinite)
    st.tuples(st.just("rg.self_exclusion.ended"), st.sampled_from(["brand", "operator", "cooling_off"])),
    st.tuples(st.just("session.started")),
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
            "steps": sorted(steps, key=lambda s: s[0]),
        })
    return players


def _events(players: list[dict]) -> list[dict]:
    out: list[dict] = []

    def ev(pid: str, etype: str, at: dt.datetime, payload: dict) -> None:
        out.append({"event_id": f"ev_{len(out)}", "event_type": etype, "player_id": pid, "brand_id": "A",
                    "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "payload": payload})

    for p in players:
        pid = p["player_id"]
        born = dt.date(AS_OF.year - p["age"], 1, 1) if p["age"] else None
        reg = T0 - dt.timedelta(days=30)
        ev(pid, "player.registered", reg, {"country": p["country"], "locale": "en-GB", "timezone": "UTC",
                                           "birth_date": born.isoformat(), "currency": "EUR", "age_verified": True})
        for ch in sorted(p["grant_at_registration"]):
            ev(pid, "consent.granted", reg + dt.timedelta(seconds=1), {"channel": ch, "source": "registration"})
        for n, (day, step) in enumerate(p["steps"]):
            at = T0 + dt.timedelta(days=day, minutes=n)
            kind = step[0]
            if kind.startswith("consent."):
                ev(pid, kind, at, {"channel": step[1]})
            elif kind.startswith("crm."):
                ev(pid, kind, at, {"delivery_id": f"d{n}", "campaign_id": "c", "channel": step[1]})
            elif kind == "rg.self_exclusion.started":
                payload = {"scope": step[1]}
                if step[2] is not None:
                    payload["until"] = (at + dt.timedelta(days=step[2])).strftime("%Y-%m-%dT%H:%M:%SZ")
                ev(pid, kind, at, payload)
            elif kind == "rg.self_exclusion.ended":
                ev(pid, kind, at, {"scope": step[1]})
            else:
                ev(pid, kind, at, {"session_id": f"s{n}"})
    return out


def must_be_suppressed(p: dict, channel: str) -> str | None:
    """A conservative oracle from the raw history: a reason the player may not be contacted, or None."""
    as_of = dt.datetime.combine(AS_OF, dt.time())
    if p["age"] < 18:
        return "under age"
    consent = channel in p["grant_at_registration"]
    timeline = [(T0 + dt.timedelta(days=d, minutes=n), s) for n, (d, s) in enumerate(p["steps"])]
    for _, s in timeline:
        if s[0] == "consent.granted" and s[1] == channel:
            consent = True
        elif s[0] in ("consent.revoked", "crm.unsubscribe", "crm.complaint") and s[1] == channel:
            consent = False
    if not consent:
        return f"no {channel} consent"
    sessions = [t for t, s in timeline if s[0] == "session.started"]
    for t, s in timeline:
        if s[0] != "rg.self_exclusion.started":
            continue
        scope, days = s[1], s[2]
        ended = [u for u, e in timeline if e[0] == "rg.self_exclusion.ended" and u > t
                 and (e[1] == "cooling_off") == (scope == "cooling_off")]
        until = t + dt.timedelta(days=days) if days is not None else None
        end = min([*ended, *([until] if until and until <= as_of else [])], default=None)
        if scope == "cooling_off":
            if end is None:
                return "cooling off"
        elif end is None:
            return "self-excluded"
        elif not any(x > end for x in sessions):
            return "exclusion ended, not returned"
    return None


# Each example is a real landing + dbt build (~8 s), so no shrinking: a failure prints the
# whole drawn history, which the oracle's message explains.
@settings(max_examples=int(os.environ.get("CRM_HISTORY_EXAMPLES", "6")), deadline=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(players=histories(), channel=st.sampled_from(CHANNELS))
def test_random_histories_never_reach_a_list(tmp_path_factory, players, channel):
    home = tmp_path_factory.mktemp("hist")
    paths = Paths(home).ensure()
    src = home / "events.jsonl"
    src.write_text("\n".join(json.dumps(e) for e in _events(players)) + "\n")
    report = ingest_file(src, paths)
    assert report.quarantined == 0, report.reasons
    dbt_build(home, AS_OF, "--select", "+dim_player", "+player_features", "--exclude", "test_type:unit",
              "--indirect-selection", "cautious")
    campaign = CampaignSpec.model_validate({"id": "everyone", "name": "everyone", "channel": channel,
                                            "experiment": {"holdout": 0.1}})
    audience = read_audience(paths, AS_OF)
    built = build_list(campaign, audience, AS_OF)
    listed = set(built.rows["player_id"])
    by_id = {p["player_id"]: p for p in players}
    for pid in listed:
        reason = must_be_suppressed(by_id[pid], channel)
        assert reason is None, f"{pid} is on the {channel} list but {reason}: {by_id[pid]}"
    assert recompute_violations(built.rows, audience).isna().all()
