"""``/v1/messaging/send``, ``/v1/messaging/feedback`` and ``/v1/deliveries/{id}`` on a real uvicorn
server over the real store: idempotency, refusals by the batch's rules, stops applying at once,
bounces, brands kept apart. The profile copy is written the way :func:`sync_profiles` writes it;
the sync itself from a real warehouse is in test_online_profile.py."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from crm.config import CAMPAIGNS_DIR, Paths
from crm.store.db import make_engine, upgrade_to_head
from crm.store.keys import create_key
from crm.store.schema import accepted_events, address_suppressions, deliveries, profile_stops, profiles
from tests._service import call, own_campaigns, running_server

NOW = dt.datetime(2025, 10, 1, 12, 0)  # a Wednesday, midday in Europe


def clean_profile(player_id: str, brand: str = "A", **over) -> dict:
    """A dim_player row of a player every rule lets through (MT, adult, verified, every consent)."""
    p = {"player_id": player_id, "brand_id": brand, "country": "MT", "locale": "en", "timezone": "Europe/Malta",
         "age_years": 30, "age_verified": True, "self_excluded_now": False, "ever_self_excluded": False,
         "returned_after_exclusion": False, "cooling_off_now": False, "harm_risk_flag": False,
         "consent_profiling": True, "bonuses_received": 0, "as_of_date": "2025-10-01"}
    for ch in ("email", "sms", "push", "in_app"):
        p |= {f"consent_{ch}": True, f"consent_{ch}_version": 1, f"consent_{ch}_source": "signup",
              f"consent_{ch}_changed_at": "2025-01-01T00:00:00", f"consent_{ch}_products": "casino,sports",
              f"consent_{ch}_products_withdrawn": None}
    return p | over


def put_profiles(engine, rows: list[dict]) -> None:
    with engine.begin() as conn:
        for r in rows:
            conn.execute(profiles.delete().where(profiles.c.brand_id == r["brand_id"],
                                                 profiles.c.player_id == r["player_id"]))
            conn.execute(profiles.insert().values(brand_id=r["brand_id"], player_id=r["player_id"],
                                                  profile=json.dumps(r), as_of_date=NOW.date(), synced_at=NOW))


@pytest.fixture(scope="module")
def svc(tmp_path_factory, module_store_url):  # the module runs once per store backend (conftest.py)
    home = tmp_path_factory.mktemp("msg")
    with own_campaigns(home):
        paths = Paths(home).ensure()
        engine = make_engine(paths, module_store_url)
        upgrade_to_head(engine)
        keys = {
            "send": create_key(engine, "sender-a", "A", ["messaging:send"])[1],
            "all": create_key(engine, "all-a", "A", ["messaging:send", "feedback:write", "events:write"])[1],
            "b": create_key(engine, "all-b", "B", ["messaging:send", "feedback:write", "events:write"])[1],
            "events": create_key(engine, "events-a", "A", ["events:write"])[1],
        }
        with running_server(paths, engine=engine, clock=lambda: NOW) as url:
            yield url, keys, engine, paths


def send(url, key, idem, player, channel="email", template="payment_failure_help", policy="transactional", **extra):
    body = {"channel": channel, "player_id": player, "template_id": template, "frequency_policy_id": policy,
            "personalization": {"brand_name": "Lucky", "payment_method": "Visa", "failures": 2,
                                "help_url": "https://example.com/help"}} | extra
    return call(f"{url}/v1/messaging/send", "POST", body, key=key, headers={"X-Idempotency-Key": idem})


def feedback(url, key, delivery_id, event, at=NOW, **extra):
    return call(f"{url}/v1/messaging/feedback", "POST",
                {"delivery_id": delivery_id, "event": event, "occurred_at": at.isoformat() + "Z"} | extra, key=key)


def test_send_is_queued_with_its_basis_and_is_idempotent(svc):
    url, keys, engine, _ = svc
    put_profiles(engine, [clean_profile("p1")])
    status, body = send(url, keys["send"], "k-1", "p1")
    assert status == 202, body
    assert body["status"] == "QUEUED" and body["delivery_id"].startswith("d_")
    # the same key and body: the same answer, one delivery
    assert send(url, keys["send"], "k-1", "p1") == (202, body)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(deliveries)
                            .where(deliveries.c.player_id == "p1")).scalar_one() == 1
    # the same key, another body: a conflict, nothing queued
    status, err = send(url, keys["send"], "k-1", "p1", channel="sms")
    assert status == 409 and "different request body" in err["detail"]
    # no key: refused before anything is looked at
    status, err = call(f"{url}/v1/messaging/send", "POST", {"channel": "email", "player_id": "p1",
                                                            "template_id": "x"}, key=keys["send"])
    assert status == 422 and "X-Idempotency-Key" in json.dumps(err)
    # the delivery and its basis: the consent it was sent on
    status, d = call(f"{url}/v1/deliveries/{body['delivery_id']}", key=keys["send"])
    assert status == 200 and d["status"] == "QUEUED" and d["history"][0]["status"] == "QUEUED"
    assert d["basis"]["consent"] is True and d["basis"]["consent_version"] == 1
    assert d["basis"]["consent_source"] == "signup" and "transactional" in d["basis"]


@pytest.mark.parametrize(("over", "rule"), [
    ({"self_excluded_now": True}, "self_excluded"),
    ({"age_years": 17}, "under_age"),
    ({"consent_email": False}, "no_channel_consent"),
    ({"cooling_off_now": True}, "cooling_off"),
    ({"harm_risk_flag": True}, "harm_risk"),
    ({"linked_self_excluded": True}, "linked_self_excluded"),  # another account of theirs is excluded
    ({"country": "UK", "age_verified": False}, "age_not_verified"),
])
def test_a_send_is_refused_by_the_batch_rule_and_nothing_is_queued(svc, over, rule):
    url, keys, engine, _ = svc
    pid = f"r_{rule}"
    put_profiles(engine, [clean_profile(pid, **over)])
    status, body = send(url, keys["send"], f"k-{rule}", pid)
    assert status == 422 and body["status"] == "REFUSED" and body["rule"] == rule, body
    assert body["reason"]  # in plain words, from the one table of reasons
    with engine.connect() as conn:
        assert not conn.execute(sa.select(deliveries).where(deliveries.c.player_id == pid)).first()
    # the refusal is the answer to that key too
    assert send(url, keys["send"], f"k-{rule}", pid) == (status, body)


def test_unknown_player_other_brand_and_bad_requests(svc):
    url, keys, engine, _ = svc
    put_profiles(engine, [clean_profile("pb", brand="B")])
    status, body = send(url, keys["send"], "k-x1", "nobody")
    assert status == 422 and body["rule"] == "unknown_player"
    status, body = send(url, keys["send"], "k-x2", "pb")  # brand A's key, brand B's player
    assert status == 422 and body["rule"] == "unknown_player"
    assert send(url, keys["b"], "k-x2", "pb")[0] == 202  # B's own key may
    status, body = send(url, keys["send"], "k-x3", "p1", policy="nope")
    assert status == 422 and "frequency_policy_id" in body["detail"]
    status, body = send(url, keys["send"], "k-x4", "p1", template="no_such_template")
    assert status == 422 and "no_such_template" in body["detail"]
    status, body = send(url, keys["send"], "k-x5", "p1", personalization={"brand_name": "x"})  # params missing
    assert status == 422 and "template" in body["detail"]
    status, _ = send(url, keys["events"], "k-x6", "p1")  # a key without messaging:send
    assert status == 403
    status, _ = send(url, keys["send"], "k x7 with spaces", "p1")
    assert status == 422


def test_caps_and_dedup_count_the_api_sends_themselves(svc):
    url, keys, engine, _ = svc
    put_profiles(engine, [clean_profile("pc")])
    body = {"brand_name": "Lucky", "cashback_percent": 10, "cap_eur": 50, "wagering": 1, "expiry_days": 3,
            "claim_url": "https://example.com/c"}
    first = send(url, keys["send"], "k-c1", "pc", channel="push", template="cashback", policy="default",
                 personalization=body)
    assert first[0] == 202, first
    again = send(url, keys["send"], "k-c2", "pc", channel="push", template="cashback", policy="default",
                 personalization=body)
    assert again[0] == 422 and again[1]["rule"] in ("channel_cap_day", "cooldown", "duplicate")
    assert {"cooldown", "duplicate"} <= set(again[1]["failed"])


def test_messages_the_casino_reported_count_in_the_check(svc):
    """A ``crm.delivery`` the casino reported (copied by the profile sync into ``reported_messages``)
    counts in caps, cooldown and dedup as in the lists: a player it reached two hours ago on email
    is refused by the cooldown and the day's email cap; one it reached last week, or another
    brand's player of the same id, is not."""
    from crm.store.schema import reported_messages

    url, keys, engine, _ = svc
    put_profiles(engine, [clean_profile(p) for p in ("rp1", "rp2", "rp3")])
    with engine.begin() as conn:
        conn.execute(reported_messages.insert(), [
            {"brand_id": "A", "player_id": "rp1", "channel": "email", "campaign_id": "casino_own_newsletter",
             "dedup_key": "casino_own_newsletter", "sent_at": NOW - dt.timedelta(hours=2), "synced_at": NOW},
            {"brand_id": "A", "player_id": "rp2", "channel": "email", "campaign_id": "casino_own_newsletter",
             "dedup_key": "casino_own_newsletter", "sent_at": NOW - dt.timedelta(days=8), "synced_at": NOW},
            {"brand_id": "B", "player_id": "rp3", "channel": "email", "campaign_id": "casino_own_newsletter",
             "dedup_key": "casino_own_newsletter", "sent_at": NOW - dt.timedelta(hours=2), "synced_at": NOW}])
    body = {"brand_name": "Lucky", "cashback_percent": 10, "cap_eur": 50, "wagering": 1, "expiry_days": 3,
            "claim_url": "https://example.com/c"}
    refused = send(url, keys["send"], "k-rep1", "rp1", template="cashback", policy="default", personalization=body)
    assert refused[0] == 422 and {"cooldown", "channel_cap_day"} <= set(refused[1]["failed"]), refused
    for idem, player in (("k-rep2", "rp2"), ("k-rep3", "rp3")):
        status, answer = send(url, keys["send"], idem, player, template="cashback", policy="default",
                              personalization=body)
        assert status == 202, answer


def test_quiet_hours_hold_marketing_but_not_transactional(tmp_path, monkeypatch, store_url):
    monkeypatch.setenv("CRM_CAMPAIGNS_DIR", str(CAMPAIGNS_DIR))
    paths = Paths(tmp_path).ensure()
    engine = make_engine(paths, store_url)
    upgrade_to_head(engine)
    key = create_key(engine, "s", "A", ["messaging:send"])[1]
    put_profiles(engine, [clean_profile("night")])
    night = dt.datetime(2025, 10, 1, 1, 30)  # 03:30 in Malta
    with running_server(paths, engine=engine, clock=lambda: night) as url:
        status, body = send(url, key, "n1", "night", policy="default")
        assert status == 422 and body["rule"] == "quiet_hours"
        assert send(url, key, "n2", "night", policy="transactional")[0] == 202


def test_unsubscribe_feedback_withdraws_consent_at_once_and_lands_as_an_event(svc):
    url, keys, engine, _ = svc
    put_profiles(engine, [clean_profile("pu")])
    status, body = send(url, keys["all"], "k-u1", "pu")
    assert status == 202
    did = body["delivery_id"]
    status, fb = feedback(url, keys["all"], did, "unsubscribe")
    assert status == 202 and fb["status"] == "UNSUBSCRIBED" and not fb["duplicate"]
    assert feedback(url, keys["all"], did, "unsubscribe")[1]["duplicate"] is True  # replay: once
    status, refused = send(url, keys["all"], "k-u2", "pu")
    assert status == 422 and refused["rule"] == "no_channel_consent"
    other = send(url, keys["all"], "k-u3", "pu", channel="sms")[1]  # only that channel is withdrawn
    assert other["rule"] == "duplicate" and "no_channel_consent" not in other["failed"]  # same template again
    with engine.connect() as conn:
        events = [json.loads(r.envelope) for r in conn.execute(sa.select(accepted_events.c.envelope)
                                                                .where(accepted_events.c.brand_id == "A"))]
    mine = [e for e in events if e["player_id"] == "pu"]
    assert [e["event_type"] for e in mine] == ["crm.unsubscribe"]
    assert mine[0]["payload"] == {"delivery_id": did, "campaign_id": "api_payment_failure_help", "channel": "email"}
    status, d = call(f"{url}/v1/deliveries/{did}", key=keys["all"])
    assert [h["status"] for h in d["history"]] == ["QUEUED", "UNSUBSCRIBED"]


def test_complaint_and_hard_bounce(svc):
    url, keys, engine, _ = svc
    put_profiles(engine, [clean_profile("pk"), clean_profile("pz")])
    did = send(url, keys["all"], "k-k1", "pk")[1]["delivery_id"]
    assert feedback(url, keys["all"], did, "complaint")[0] == 202
    assert send(url, keys["all"], "k-k2", "pk")[1]["rule"] == "no_channel_consent"
    did = send(url, keys["all"], "k-z1", "pz")[1]["delivery_id"]
    assert feedback(url, keys["all"], did, "bounce", bounce_type="soft")[1]["status"] == "QUEUED"
    cashback = {"brand_name": "Lucky", "cashback_percent": 10, "cap_eur": 50, "wagering": 1, "expiry_days": 3,
                "claim_url": "https://example.com/c"}
    assert send(url, keys["all"], "k-z2", "pz", template="cashback", personalization=cashback)[0] == 202  # soft
    assert feedback(url, keys["all"], did, "bounce", at=NOW + dt.timedelta(minutes=1))[1]["status"] == "BOUNCED"
    status, body = send(url, keys["all"], "k-z3", "pz")
    assert status == 422 and body["rule"] == "address_bounced"
    with engine.connect() as conn:
        assert conn.execute(sa.select(address_suppressions).where(address_suppressions.c.player_id == "pz")).first()
    # a new address lifts the suppression (the casino sends player.updated)
    ev = {"event_id": "upd-pz", "event_type": "player.updated", "player_id": "pz", "brand_id": "A",
          "occurred_at": "2025-10-01T12:05:00Z", "payload": {"email": "new@example.com"}}
    assert call(f"{url}/v1/events", "POST", ev, key=keys["all"])[0] == 202
    after = send(url, keys["all"], "k-z4", "pz")[1]
    assert after["rule"] == "duplicate", after  # past the address check: only the template's dedup holds it


def test_feedback_is_scoped_to_the_keys_brand(svc):
    url, keys, engine, _ = svc
    put_profiles(engine, [clean_profile("pf")])
    did = send(url, keys["all"], "k-f1", "pf")[1]["delivery_id"]
    assert feedback(url, keys["b"], did, "unsubscribe")[0] == 404
    assert call(f"{url}/v1/deliveries/{did}", key=keys["b"])[0] == 404
    assert feedback(url, keys["send"], did, "open")[0] == 403  # no feedback:write
    assert feedback(url, keys["all"], "d_nope", "open")[0] == 404


def test_stop_events_over_the_api_apply_before_the_warehouse_sees_them(svc):
    url, keys, engine, _ = svc
    put_profiles(engine, [clean_profile("ps"), clean_profile("pw"), clean_profile("pv")])
    evs = [
        {"event_id": "se-ps", "event_type": "rg.self_exclusion.started", "player_id": "ps", "brand_id": "A",
         "occurred_at": "2025-10-01T11:00:00Z", "payload": {}},
        # an unknown channel, odd case and spaces: withdraws every channel (landing's safe reading)
        {"event_id": "cr-pw", "event_type": " Consent.Revoked ", "player_id": "pw", "brand_id": "A",
         "occurred_at": "2025-10-01T11:00:00Z", "payload": {"channel": "Carrier Pigeon"}},
        {"event_id": "cr-pv", "event_type": "consent.revoked", "player_id": "pv", "brand_id": "A",
         "occurred_at": "2025-10-01T11:00:00Z", "payload": {"channel": " E-Mail "}},
    ]
    status, body = call(f"{url}/v1/events", "POST", evs, key=keys["all"])
    assert status == 202, body
    assert send(url, keys["all"], "k-s1", "ps")[1]["rule"] == "self_excluded"
    for ch in ("email", "sms", "push"):
        assert send(url, keys["all"], f"k-w-{ch}", "pw", channel=ch)[1]["rule"] == "no_channel_consent"
    assert send(url, keys["all"], "k-v1", "pv")[1]["rule"] == "no_channel_consent"
    assert send(url, keys["all"], "k-v2", "pv", channel="sms")[0] == 202  # email only
    with engine.connect() as conn:
        stops = conn.execute(sa.select(profile_stops.c.player_id, profile_stops.c.kind, profile_stops.c.channel)
                             .where(profile_stops.c.player_id.in_(["ps", "pw", "pv"]))
                             .order_by(profile_stops.c.player_id)).all()
    assert [tuple(s) for s in stops] == [("ps", "self_exclusion", None), ("pv", "withdrawal", "email"),
                                         ("pw", "withdrawal", "*")]


def test_a_stop_over_the_api_reaches_the_other_accounts_of_the_person_at_once(svc):
    """A self-exclusion (or cooling-off) received for one account of a cluster refuses the sends to its
    linked accounts before the warehouse has seen it; an account of another cluster is not touched."""
    url, keys, engine, _ = svc
    put_profiles(engine, [clean_profile("lk1", cluster_id="A:lk1"), clean_profile("lk2", cluster_id="A:lk1"),
                          clean_profile("lk3", cluster_id="A:lk1"), clean_profile("lk9", cluster_id="A:lk9"),
                          clean_profile("lk8", cluster_id="A:lk9")])
    with engine.begin() as conn:
        for pid, cl in (("lk1", "A:lk1"), ("lk2", "A:lk1"), ("lk3", "A:lk1"), ("lk9", "A:lk9"), ("lk8", "A:lk9")):
            conn.execute(profiles.update().where(profiles.c.player_id == pid).values(cluster_id=cl))
    assert send(url, keys["all"], "k-lk2-before", "lk2")[0] == 202
    evs = [{"event_id": "se-lk1", "event_type": " RG.Self_Exclusion.Started", "player_id": "lk1", "brand_id": "A",
            "occurred_at": "2025-10-01T11:00:00Z", "payload": {"scope": "Brand "}}]
    status, body = call(f"{url}/v1/events", "POST", evs, key=keys["all"])
    assert status == 202, body
    assert send(url, keys["all"], "k-lk1", "lk1")[1]["rule"] == "self_excluded"
    for pid in ("lk2", "lk3"):
        status, body = send(url, keys["all"], f"k-{pid}", pid, channel="sms")
        assert status == 422 and body["rule"] == "linked_self_excluded", body
    assert send(url, keys["all"], "k-lk9", "lk9")[0] == 202  # another person


def test_lists_count_the_api_sends(tmp_path):
    """A message sent over the API counts in the lists' history (caps, cooldown), as the lists'
    outbox counts in the API's check: one history, whichever path sent the message."""
    from crm.campaigns.eligibility import Context, evaluate
    from crm.campaigns.history import load_history
    from crm.campaigns.spec import CampaignSpec
    from crm.store import deliveries as dl

    paths = Paths(tmp_path).ensure()
    assert load_history(paths, NOW.date(), [], days=8).empty  # no store yet: nothing, and no store is made
    assert not paths.service_db.exists()
    engine = make_engine(paths)
    upgrade_to_head(engine)
    with engine.begin() as conn:
        dl.create_delivery(conn, brand_id="A", player_id="h1", channel="email", template_id="cashback", params={},
                           transactional=False, campaign_id="api_cashback", dedup_key="api_cashback",
                           product="casino", basis={}, source="api", at=NOW - dt.timedelta(hours=2))
    history = load_history(paths, NOW.date(), [], days=8)
    assert history[["player_id", "channel", "source"]].values.tolist() == [["h1", "email", "api"]]
    spec = CampaignSpec.model_validate({"id": "promo", "name": "p", "channel": "email",
                                        "schedule": {"send_time_utc": "12:00"}})
    import pandas as pd

    verdict = evaluate(pd.DataFrame([clean_profile("h1"), clean_profile("h2")]), spec,
                       Context(as_of=NOW.date(), history=history))
    assert verdict["eligible"].tolist() == [False, True] and verdict["reason"].iloc[0] == "channel_cap_day"


def test_metrics_rates_queue_and_the_complaint_slo(tmp_path, monkeypatch, store_url):
    """/v1/metrics in Prometheus text format, scoped to the key's brand; a complaint rate above
    the SLO is notified once, and again only after it cleared."""
    from prometheus_client.parser import text_string_to_metric_families

    from crm.service.metrics import check_slos
    from crm.store import deliveries as dl

    monkeypatch.setenv("CRM_HOME", str(tmp_path))
    monkeypatch.setenv("CRM_CAMPAIGNS_DIR", str(CAMPAIGNS_DIR))
    monkeypatch.setenv("CRM_SLO_MIN_SENT", "10")
    monkeypatch.setenv("CRM_DATABASE_URL", store_url)  # SQLite: the home's default file all the same
    paths = Paths(tmp_path).ensure()
    engine = make_engine(paths, store_url)
    upgrade_to_head(engine)
    key_a = create_key(engine, "a", "A", ["feedback:write"])[1]
    key_b = create_key(engine, "b", "B", ["feedback:write"])[1]
    ids = []
    with engine.begin() as conn:
        for i in range(20):
            did = dl.create_delivery(conn, brand_id="A", player_id=f"m{i}", channel="email", template_id="t",
                                     params={}, transactional=False, campaign_id="winback", dedup_key="winback",
                                     product="casino", basis={}, source="batch", at=NOW)
            if i < 18:  # two still queued
                dl.add_event(conn, did, dl.SENT, "accepted", at=NOW + dt.timedelta(seconds=0.5))
            ids.append(did)
    with running_server(paths, engine=engine, clock=lambda: NOW + dt.timedelta(minutes=5)) as url:
        for did in ids[:10]:
            assert feedback(url, key_a, did, "delivered")[0] == 202
        assert feedback(url, key_a, ids[0], "complaint")[0] == 202
        status, text = call(f"{url}/v1/metrics", key=key_a)
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(text)}
        sample = {tuple(sorted(s.labels.items())): s.value for s in families["crm_delivery_outcome_rate"].samples}
        base = (("campaign", "winback"), ("channel", "email"), ("source", "batch"))
        assert sample[tuple(sorted((*base, ("outcome", "delivered"))))] == pytest.approx(10 / 18)
        assert sample[tuple(sorted((*base, ("outcome", "complained"))))] == pytest.approx(1 / 18)
        depth = {tuple(sorted(s.labels.items())): s.value for s in families["crm_queue_depth"].samples}
        assert depth[(("channel", "email"), ("status", "queued"))] == 2
        assert families["crm_event_to_send_seconds"].samples[0].value == pytest.approx(0.5)
        # brand B sees nothing of A's
        status, text_b = call(f"{url}/v1/metrics", key=key_b)
        assert status == 200 and "winback" not in text_b
        assert call(f"{url}/v1/metrics")[0] == 401

    notified: set[str] = set()
    first = check_slos(engine, NOW + dt.timedelta(minutes=5), notified)
    assert [b["key"] for b in first] == ["complained:A:winback:email"] and "5.56%" in first[0]["summary"]
    assert check_slos(engine, NOW + dt.timedelta(minutes=6), notified) == []  # once
    log = (tmp_path / "notifications.jsonl")
    assert log.exists() and log.read_text().count("complained:A:winback:email") == 1
