"""Property: no send over the API ever reaches a player who fails a rule at the moment of sending.

Random players (tests/_compliance.py: missing values, unknown countries, broken time zones), then
random interleavings of sends (channels, templates, frequency policies), consent withdrawals and
self-exclusions over ``/v1/events`` (with values the contract does not expect: odd case, spaces,
unknown channels and scopes), feedback (unsubscribe, complaint, hard bounce) and the clock moving
on. The test keeps its own model of each player (the drawn profile, the stops it sent, the sends
that were accepted) and checks every answer against the plain-written oracle of
tests/_compliance.py: an accepted send must pass every rule, a refused one must fail one.
Everything runs through a real uvicorn server and the real store.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.campaigns.online import BUILT_IN, send_spec
from crm.config import Paths
from crm.store.db import make_engine, upgrade_to_head
from crm.store.keys import create_key
from crm.store.schema import profiles as profiles_table
from tests._compliance import AS_OF, oracle_reasons, profile_rows, profiles
from tests._service import call, running_server

CHANNELS = ("email", "sms", "push", "in_app")
# how a casino might write a channel in a withdrawal, and what the test reads it as ("*": all)
CHANNEL_SPELLINGS = {"email": "email", " E-Mail ": "email", "SMS": "sms", "Push ": "push", "in-app": "in_app",
                     "carrier pigeon": "*", "": "*", None: "*"}
SCOPES = ("operator", "brand", "cooling_off", " Cooling-Off", "galaxy", None)
TEMPLATES = {
    "payment_failure_help": {"brand_name": "Lucky", "payment_method": "Visa", "failures": 2,
                             "help_url": "https://example.com/help"},
    "cashback": {"brand_name": "Lucky", "cashback_percent": 10, "cap_eur": 50, "wagering": 1, "expiry_days": 3,
                 "claim_url": "https://example.com/c"},
}
START_TIMES = [dt.time(1, 0), dt.time(6, 0), dt.time(10, 0), dt.time(14, 0), dt.time(20, 30)]

ops = st.lists(st.one_of(
    st.tuples(st.just("send"), st.integers(0, 7), st.sampled_from(CHANNELS), st.sampled_from(sorted(TEMPLATES)),
              st.sampled_from(["default", "transactional"])),
    st.tuples(st.just("revoke"), st.integers(0, 7), st.sampled_from(list(CHANNEL_SPELLINGS))),
    st.tuples(st.just("exclude"), st.integers(0, 7), st.sampled_from(SCOPES)),
    st.tuples(st.just("feedback"), st.integers(0, 20), st.sampled_from(["unsubscribe", "complaint", "bounce",
                                                                        "open", "delivered"])),
    st.tuples(st.just("wait"), st.sampled_from([1, 30, 60 * 13, 60 * 24, 60 * 24 * 3])),
), min_size=1, max_size=25)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("online_props")
    campaigns = home / "campaigns"
    campaigns.mkdir()  # no calendar, no campaigns: the oracle is given no blackouts either
    old = os.environ.get("CRM_CAMPAIGNS_DIR")
    os.environ["CRM_CAMPAIGNS_DIR"] = str(campaigns)
    paths = Paths(home).ensure()
    engine = make_engine(paths)
    upgrade_to_head(engine)
    clock = {"now": dt.datetime.combine(AS_OF, dt.time(10))}
    try:
        with running_server(paths, engine=engine, clock=lambda: clock["now"]) as url:
            yield url, engine, clock
    finally:
        if old is None:
            os.environ.pop("CRM_CAMPAIGNS_DIR", None)
        else:
            os.environ["CRM_CAMPAIGNS_DIR"] = old


_brands = itertools.count()


def _model_row(row: dict, stops: dict) -> dict:
    """The drawn profile with the test's own reading of the stops it sent."""
    r = dict(row)
    for ch in stops["withdrawn"]:
        r[f"consent_{ch}"] = False
    if stops["excluded"]:
        r["self_excluded_now"] = True
    return r


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(players=profiles(max_players=8, clean_share=0.6), steps=ops, start=st.sampled_from(START_TIMES))
def test_no_send_reaches_a_player_who_fails_a_rule_at_that_moment(server, players, steps, start):
    url, engine, clock = server
    brand = f"prop{next(_brands)}"
    key = create_key(engine, f"k-{brand}", brand, ["messaging:send", "events:write", "feedback:write"])[1]
    players = players.assign(brand_id=brand)
    rows = profile_rows(players).to_dict("index")
    ids = list(rows)
    with engine.begin() as conn:
        for pid, r in rows.items():
            conn.execute(profiles_table.insert().values(
                brand_id=brand, player_id=pid, profile=json.dumps({"player_id": pid, **r}, default=str),
                as_of_date=AS_OF, synced_at=dt.datetime.combine(AS_OF, dt.time())))
    clock["now"] = dt.datetime.combine(AS_OF, start)
    state = {pid: {"withdrawn": set(), "excluded": False, "bounced": set(), "messages": []} for pid in ids}
    accepted: list[tuple[str, str, str]] = []  # (delivery id, player, channel)
    n = 0
    for op in steps:
        n += 1
        now = clock["now"]
        if op[0] == "wait":
            clock["now"] = now + dt.timedelta(minutes=op[1])
        elif op[0] == "send":
            _, i, channel, template, policy = op
            pid = ids[i % len(ids)]
            status, body = call(f"{url}/v1/messaging/send", "POST",
                                {"channel": channel, "player_id": pid, "template_id": template,
                                 "personalization": TEMPLATES[template], "frequency_policy_id": policy},
                                key=key, headers={"X-Idempotency-Key": f"{brand}-{n}"})
            spec = send_spec(policy, BUILT_IN[policy], channel, template, brand, now)
            s = state[pid]
            expected = oracle_reasons(_model_row(rows[pid], s), spec, s["messages"], None, as_of=now.date())
            if channel in s["bounced"]:
                expected.append("address bounced")
            if status == 202:
                assert not expected, f"{pid} was sent {template} by {channel} at {now} but fails {expected}: " \
                                     f"{rows[pid]}, stops {s}"
                accepted.append((body["delivery_id"], pid, channel))
                s["messages"].append({"channel": channel, "dedup_key": spec.dedup_key, "sent_at": now,
                                      "is_bonus_offer": False, "cost_cents": 0, "offer_ends_at": None})
            else:
                assert status == 422 and body["status"] == "REFUSED", (status, body)
                assert expected, f"{pid} was refused ({body['rule']}) but passes every rule of the oracle"
        elif op[0] == "revoke":
            _, i, spelling = op
            pid = ids[i % len(ids)]
            payload = {} if spelling is None else {"channel": spelling}
            ev = {"event_id": f"{brand}-rv-{n}", "event_type": "Consent.Revoked ", "player_id": pid,
                  "brand_id": brand, "occurred_at": now.isoformat() + "Z", "payload": payload}
            status, body = call(f"{url}/v1/events", "POST", ev, key=key)
            assert status == 202, body  # a withdrawal naming a player is never quarantined
            read = CHANNEL_SPELLINGS[spelling]
            state[pid]["withdrawn"] |= set(CHANNELS) if read == "*" else {read}
        elif op[0] == "exclude":
            _, i, scope = op
            pid = ids[i % len(ids)]
            payload = {} if scope is None else {"scope": scope}
            ev = {"event_id": f"{brand}-se-{n}", "event_type": "rg.self_exclusion.started", "player_id": pid,
                  "brand_id": brand, "occurred_at": now.isoformat() + "Z", "payload": payload}
            status, body = call(f"{url}/v1/events", "POST", ev, key=key)
            assert status == 202, body
            state[pid]["excluded"] = True  # whatever the scope: cooling off and exclusion both stop messages
        elif op[0] == "feedback" and accepted:
            _, j, event = op
            did, pid, channel = accepted[j % len(accepted)]
            status, body = call(f"{url}/v1/messaging/feedback", "POST",
                                {"delivery_id": did, "event": event, "occurred_at": now.isoformat() + "Z"}, key=key)
            assert status == 202, body
            if event in ("unsubscribe", "complaint"):
                state[pid]["withdrawn"].add(channel)
            elif event == "bounce":
                state[pid]["bounced"].add(channel)
    with engine.begin() as conn:  # keep the module's store small
        conn.execute(sa.delete(profiles_table).where(profiles_table.c.brand_id == brand))
