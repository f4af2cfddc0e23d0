"""Offer generation: no generated offer ever breaks a jurisdiction, economy or RG rule (hypothesis over
random players, odd values included, histories, catalogues and constraints, against the independent
oracle of tests/_compliance.py), and ``POST /v1/offers/generate`` on a real uvicorn server over the
real store (SQLite and PostgreSQL): recorded with an id, idempotent, one bonus a day with the lists'
ledger, the intent's budget, brands kept apart, ``offer.issued`` landed and joined to the casino's
bonus.* events in ``fct_offers``."""

from __future__ import annotations

import datetime as dt
import json
import math

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from crm.campaigns.history import MESSAGE_COLUMNS, api_messages, empty_history
from crm.campaigns.offer_generation import (
    Catalogue,
    OfferCatalogueError,
    decide,
    harm_markers,
    load_catalogue,
    offer_spec,
)
from crm.campaigns.spec import OFFER_TEMPLATES
from crm.config import CAMPAIGNS_DIR, Paths
from crm.store.db import make_engine, upgrade_to_head
from crm.store.keys import create_key
from crm.store.schema import accepted_events, offer_spend, offers
from tests._compliance import AS_OF, message_histories, oracle_reasons, profile_rows, profiles
from tests._service import call, own_campaigns, running_server
from tests.test_service_messaging import clean_profile, put_profiles

AT = dt.datetime.combine(AS_OF, dt.time(12, 0))
CHANNELS = ("email", "sms", "push", "in_app")


# --------------------------------------------------------------------------- the rules, as properties

@st.composite
def catalogues(draw) -> Catalogue:
    n = draw(st.integers(1, 5))
    offers_ = {}
    for i in range(n):
        template = draw(st.sampled_from(OFFER_TEMPLATES[1:]))
        offers_[f"o{i}"] = {"offer": {"template": template, "value_eur": draw(st.sampled_from([0, 2, 5, 40, 100])),
                                      "percent": draw(st.sampled_from([0, 10, 50])),
                                      "cap_eur": draw(st.sampled_from([0, 20, 25, 120])),
                                      "wager_eur": 20, "wagering": draw(st.sampled_from([0, 1, 10, 10, 10.01, 35])),
                                      "expiry_days": draw(st.integers(1, 14))},
                            "relative_effect": draw(st.sampled_from([0, 0.3, 1, 1, 1.4, 10]))}
    budget = draw(st.sampled_from([None, None, 1, 5, 100]))
    intent = {"offers": list(offers_), "product": draw(st.sampled_from(["casino", "casino", "sports"])),
              "min_net_value_eur": draw(st.sampled_from([0, 0, 0, 1, 50]))}
    if budget is not None:
        intent["budget_eur_per_day"] = budget
    return Catalogue.model_validate({"offers": offers_, "intents": {"any": intent}})


ODD_COUNTRIES = [" uk", "Uk", "nl ", "SE\u200b", "", "ÜK", "mt"]
ODD_HITS = [0, 0, 0, 0, 1, -1, None, "2", "0", float("nan"), float("inf"), True, False, 10**30]
ODD_VALUES = [None, "abc", "500", float("nan"), float("inf"), -float("inf"), 1e300, -5.0, 0.0, True, 3000.0, 20000.0]


def _independent_markers(row: dict) -> bool:
    """Any harm marker, read independently of the generator: a flag that is not exactly False, or a
    limit hit count that is not a real number at most 0."""
    if any(row.get(c) is not False for c in ("harm_risk_flag", "self_excluded_now", "cooling_off_now",
                                              "ever_self_excluded")):
        return True
    hits = row.get("rg_limit_hits_30d")
    return not (type(hits) in (int, float) and not math.isnan(hits) and hits <= 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_no_generated_offer_breaks_a_rule(data):
    frame = data.draw(profiles(max_players=4, clean_share=0.9))
    rows = profile_rows(frame)
    catalogue = data.draw(catalogues())
    intent = catalogue.intents["any"]
    channel = data.draw(st.sampled_from(CHANNELS))
    at = dt.datetime.combine(AS_OF, dt.time(data.draw(st.sampled_from([12] * 5 + [3, 10, 14, 22])), 0))
    history = data.draw(message_histories(list(rows.index), ["offer_any", "camp"]))
    messages = [dict(r, sent_at=pd.Timestamp(r["sent_at"]).to_pydatetime(),
                     offer_ends_at=None if pd.isna(r["offer_ends_at"]) else pd.Timestamp(r["offer_ends_at"])
                     .to_pydatetime()) for r in history.to_dict("records")]
    max_cost = data.draw(st.sampled_from([None, None, None, 0, 199, 200, 500, 10**12]))
    rg_safe = data.draw(st.booleans())
    budget_left = None if intent.budget_eur_per_day is None else data.draw(st.sampled_from([0, 150, 500, 10_000]))
    for pid, row in rows.to_dict("index").items():
        row = {"player_id": pid, **row}
        if data.draw(st.booleans()):  # values the contract does not expect
            row["country"] = data.draw(st.sampled_from(ODD_COUNTRIES + [row["country"]]))
        row["rg_limit_hits_30d"] = data.draw(st.one_of(st.just(0), st.sampled_from(ODD_HITS)))
        good = st.sampled_from([20_000.0, 5_000.0])
        row["uplift_value_score"] = data.draw(st.one_of(good, st.sampled_from(ODD_VALUES),
                                                        st.just(row["uplift_value_score"])))
        mine = [m for m in messages if m["player_id"] == pid]
        d = decide(row, "any", intent, catalogue, channel=channel, brand_id="A", at=at,
                   history=history[history["player_id"] == pid], max_cost_cents=max_cost, rg_safe=rg_safe,
                   budget_left_cents=budget_left)
        if rg_safe and _independent_markers(row):
            event("rg")
            assert d.chosen is None and d.reason == "rg_marker", (row, d)
            continue
        for c in d.candidates:  # the generator's own verdict agrees with the oracle, offer by offer
            spec = offer_spec("any", intent, c.offer, channel, "A", at)
            expected = oracle_reasons(row, spec, mine, None, as_of=at.date())
            assert (c.refused is None or c.refused in ("over_max_cost", "intent_budget", "no_value_prediction",
                                                       "not_worth_its_cost")) == (not expected), (row, c, expected)
        event(f"offer: {d.chosen is not None} {d.reason}")
        if d.chosen is None:
            assert d.reason is not None
            continue
        c = d.chosen
        spec = offer_spec("any", intent, c.offer, channel, "A", at)
        assert oracle_reasons(row, spec, mine, None, as_of=at.date()) == [], (row, c)
        assert c.offer.template != "none"
        assert max_cost is None or c.cost_cents <= max_cost
        assert budget_left is None or c.cost_cents <= budget_left
        law_cap = {"UK": 10}.get(str(row.get("country")), None if row.get("country") in ("MT", "NL", "SE", "DE")
                                 else 10)
        assert law_cap is None or c.offer.wagering <= law_cap
        value = float(row["uplift_value_score"])
        assert math.isfinite(value) and c.value_cents == pytest.approx(
            value * catalogue.offers[c.name].relative_effect)
        assert c.value_cents - c.cost_cents > intent.min_net_value_eur * 100
        allowed = [x for x in d.candidates if x.refused is None]
        assert all(c.per_euro >= x.per_euro for x in allowed)


def test_harm_markers_fail_closed():
    clean = clean_profile("p") | {"rg_limit_hits_30d": 0}
    assert harm_markers(clean) == []
    assert harm_markers(clean | {"rg_limit_hits_30d": 1}) == ["rg_limit_hits_30d"]
    assert harm_markers(clean | {"rg_limit_hits_30d": float("nan")}) == ["rg_limit_hits_30d"]
    assert harm_markers(clean | {"rg_limit_hits_30d": "x"}) == ["rg_limit_hits_30d"]
    assert harm_markers({k: v for k, v in clean.items() if k != "ever_self_excluded"}) == ["ever_self_excluded"]
    assert harm_markers(clean | {"harm_risk_flag": None}) == ["harm_risk_flag"]
    assert harm_markers(clean | {"cooling_off_now": "false"}) == ["cooling_off_now"]  # a string is not False


def test_an_issued_offer_counts_as_the_days_bonus_not_as_a_message():
    """An issued offer in the ledger: the next bonus that day is refused (one a day), but a plain
    message is not held by caps or cooldown because of it."""
    catalogue = Catalogue.model_validate({"offers": {"t": {"offer": {"template": "tournament", "value_eur": 2}}},
                                          "intents": {"any": {"offers": ["t"]}, "other": {"offers": ["t"]}}})
    row = clean_profile("p1") | {"rg_limit_hits_30d": 0, "uplift_value_score": 5000.0}
    first = decide(row, "any", catalogue.intents["any"], catalogue, channel="email", brand_id="A", at=AT,
                   history=empty_history())
    assert first.chosen is not None and first.chosen.name == "t"
    from crm.campaigns.history import offer_messages
    from crm.campaigns.online import BUILT_IN, check_send, send_spec

    ledger = offer_messages([{"player_id": "p1", "channel": "email", "intent": "any", "issued_at": AT,
                              "cost_cents": 200, "expires_at": AT + dt.timedelta(days=7)}])
    again = decide(row, "other", catalogue.intents["other"], catalogue, channel="email", brand_id="A",
                   at=AT + dt.timedelta(minutes=5), history=ledger)
    assert again.chosen is None and again.reason == "bonus_already_today"
    same = decide(row, "any", catalogue.intents["any"], catalogue, channel="email", brand_id="A",
                  at=AT + dt.timedelta(minutes=5), history=ledger)
    assert same.chosen is None and same.reason == "duplicate"
    msg = send_spec("default", BUILT_IN["default"], "email", "news", "A", AT + dt.timedelta(minutes=5))
    assert check_send(row, msg, ledger, AT + dt.timedelta(minutes=5)).eligible  # no cooldown / cap from an offer


def test_broken_catalogues_are_named(tmp_path):
    assert load_catalogue(tmp_path).intents == {}
    (tmp_path / "_offers.yaml").write_text(yaml.safe_dump({"offers": {}, "intents": {"x": {"offers": ["nope"]}}}))
    with pytest.raises(OfferCatalogueError, match="intents.x.offers names nope"):
        load_catalogue(tmp_path)
    (tmp_path / "_offers.yaml").write_text(yaml.safe_dump({"offers": {"a": {"offer": {"template": "none"}}}}))
    with pytest.raises(OfferCatalogueError, match="offers.a"):
        load_catalogue(tmp_path)
    (tmp_path / "_offers.yaml").write_text(yaml.safe_dump({"offers": {"a": {"offer": {"template": "bonus",
                                                                                      "value_eur": 150}}}}))
    with pytest.raises(OfferCatalogueError, match="exceeds the policy's maximum cost per player per day"):
        load_catalogue(tmp_path)
    (tmp_path / "_offers.yaml").write_text("offers: [1, 2\n")
    with pytest.raises(OfferCatalogueError):
        load_catalogue(tmp_path)
    assert load_catalogue(CAMPAIGNS_DIR).intents  # the shipped catalogue loads


def test_the_catalogue_command_names_what_is_broken(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from crm.cli import main

    monkeypatch.setenv("CRM_CAMPAIGNS_DIR", str(CAMPAIGNS_DIR))
    ok = CliRunner().invoke(main, ["offers", "catalogue"])
    assert ok.exit_code == 0 and "winback" in ok.output and "Deposit match of 50%" in ok.output
    monkeypatch.setenv("CRM_CAMPAIGNS_DIR", str(tmp_path))
    (tmp_path / "_offers.yaml").write_text(yaml.safe_dump({"offers": {"a": {"offer": {"template": "bonux"}}}}))
    bad = CliRunner().invoke(main, ["offers", "catalogue"])
    assert bad.exit_code == 1 and "offers.a.offer.template" in bad.output, bad.output


# --------------------------------------------------------------------------- the API

CATALOGUE = {
    "offers": {
        "cash": {"offer": {"template": "cashback", "percent": 10, "cap_eur": 20, "wagering": 1}},
        "match35": {"offer": {"template": "deposit_match", "percent": 50, "cap_eur": 25, "wagering": 35},
                    "relative_effect": 3},
        "tour": {"offer": {"template": "tournament", "value_eur": 2}, "relative_effect": 0.5},
    },
    "intents": {
        "winback": {"offers": ["cash", "match35"]},
        "small": {"offers": ["tour"], "budget_eur_per_day": 3},
        "tour_only": {"offers": ["tour"]},
    },
}


@pytest.fixture(scope="module")
def svc(tmp_path_factory, module_store_url):
    home = tmp_path_factory.mktemp("offers")
    with own_campaigns(home) as campaigns:
        (campaigns / "_offers.yaml").write_text(yaml.safe_dump(CATALOGUE))
        paths = Paths(home).ensure()
        engine = make_engine(paths, module_store_url)
        upgrade_to_head(engine)
        keys = {"a": create_key(engine, "offers-a", "A", ["offers:generate"])[1],
                "b": create_key(engine, "offers-b", "B", ["offers:generate"])[1],
                "send": create_key(engine, "send-a", "A", ["messaging:send"])[1]}
        with running_server(paths, engine=engine, clock=lambda: AT) as url:
            yield url, keys, engine, paths


def generate(url, key, idem, player, intent="winback", channel="email", **constraints):
    body = {"player_id": player, "context": {"intent": intent, "channel": channel}}
    if constraints:
        body["constraints"] = constraints
    return call(f"{url}/v1/offers/generate", "POST", body, key=key, headers={"X-Idempotency-Key": idem})


def _player(engine, pid, brand="A", **over):
    put_profiles(engine, [clean_profile(pid, brand) | {"rg_limit_hits_30d": 0, "uplift_value_score": 6000.0,
                                                       "net_loss_eur_7d": 10_000} | over])


def test_an_offer_is_issued_recorded_and_idempotent(svc):
    url, keys, engine, _ = svc
    _player(engine, "o1")
    status, body = generate(url, keys["a"], "k-o1", "o1")
    assert status == 200 and body["status"] == "OFFER", body
    # cash: 10% of EUR 100 = 1,000 cents for 6,000 of value; match35: 2,500 for 18,000: 500 vs 620 net per euro
    assert body["offer"] == "match35" and body["template"] == "deposit_match"
    assert body["cost_minor"] == 2500 and body["predicted_value_minor"] == 18000
    assert body["params"]["percent"] == 50 and body["expires_at"].startswith("2025-10-08T12:00")
    assert [c["offer"] for c in body["considered"]] == ["cash", "match35"]
    again = generate(url, keys["a"], "k-o1", "o1")
    assert again == (200, body)  # the same answer, no second offer
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(offers).where(offers.c.player_id == "o1")
                            ).scalar_one() == 1
        env = json.loads(conn.execute(sa.select(accepted_events.c.envelope).where(
            accepted_events.c.event_id == f"ev_{body['offer_id']}")).scalar_one())
    assert env["event_type"] == "offer.issued" and env["payload"]["offer_id"] == body["offer_id"]
    assert env["payload"]["cost"] == 2500 and env["payload"]["intent"] == "winback"
    status, got = call(f"{url}/v1/offers/{body['offer_id']}", key=keys["a"])
    assert status == 200 and got["offer"] == "match35" and got["cost_minor"] == 2500
    assert call(f"{url}/v1/offers/{body['offer_id']}", key=keys["b"])[0] == 404  # another brand's
    # the same key with another body
    assert generate(url, keys["a"], "k-o1", "o1", intent="small")[0] == 409
    # one bonus a day: another intent the same day gets none, and says why
    status, later = generate(url, keys["a"], "k-o1-2", "o1", intent="tour_only")
    assert status == 200 and later["status"] == "NO_OFFER" and later["reason"] == "bonus_already_today", later


def test_jurisdiction_and_rg_rules_in_the_api(svc):
    url, keys, engine, _ = svc
    _player(engine, "uk1", country="UK", timezone="Europe/London")
    status, body = generate(url, keys["a"], "k-uk1", "uk1")
    assert body["status"] == "OFFER" and body["offer"] == "cash", body  # wagering 35x is over the UK cap
    assert [c["refused"] for c in body["considered"]] == [None, "wagering_over_cap"]
    _player(engine, "nl1", country="NL", timezone="Europe/Amsterdam", age_years=22)
    _, body = generate(url, keys["a"], "k-nl1", "nl1")
    assert body["status"] == "NO_OFFER" and body["reason"] == "bonus_under_jurisdiction_age"
    _player(engine, "se1", country="SE", timezone="Europe/Stockholm", bonuses_received=1)
    _, body = generate(url, keys["a"], "k-se1", "se1")
    assert body["status"] == "NO_OFFER" and body["reason"] == "bonus_not_first_occasion"
    _player(engine, "rg1", rg_limit_hits_30d=2)
    _, body = generate(url, keys["a"], "k-rg1", "rg1")
    assert body["status"] == "NO_OFFER" and body["reason"] == "rg_marker" and body["markers"] == ["rg_limit_hits_30d"]
    _, body = generate(url, keys["a"], "k-rg1b", "rg1", rg_safe=False)  # a limit hit alone is no rule's refusal
    assert body["status"] == "OFFER"
    _player(engine, "se2", self_excluded_now=True)
    _, body = generate(url, keys["a"], "k-se2", "se2", rg_safe=False)  # the rule table refuses whatever rg_safe
    assert body["status"] == "NO_OFFER" and body["reason"] == "self_excluded"
    _player(engine, "ns1", uplift_value_score=None)
    _, body = generate(url, keys["a"], "k-ns1", "ns1")
    assert body["status"] == "NO_OFFER" and body["reason"] == "no_value_prediction"
    _player(engine, "mc1")
    _, body = generate(url, keys["a"], "k-mc1", "mc1", max_cost_minor=1500)
    assert body["status"] == "OFFER" and body["offer"] == "cash" and body["cost_minor"] <= 1500


def test_the_intents_budget_of_the_day_holds(svc):
    url, keys, engine, _ = svc
    for pid in ("b1", "b2"):
        _player(engine, pid)
    assert generate(url, keys["a"], "k-b1", "b1", intent="small")[1]["status"] == "OFFER"  # 200 of 300
    _, body = generate(url, keys["a"], "k-b2", "b2", intent="small")
    assert body["status"] == "NO_OFFER" and body["reason"] == "intent_budget", body
    with engine.connect() as conn:
        assert conn.execute(sa.select(offer_spend.c.spent_cents).where(offer_spend.c.intent == "small")
                            ).scalar_one() == 200
    # brand B has its own budget and sees none of brand A's players
    _player(engine, "b1", brand="B")
    assert generate(url, keys["b"], "k-bb1", "b1", intent="small")[1]["status"] == "OFFER"
    _, body = generate(url, keys["b"], "k-bb2", "o1", intent="small")
    assert body["status"] == "NO_OFFER" and body["reason"] == "unknown_player"


def test_bad_requests_and_access(svc):
    url, keys, engine, _ = svc
    _player(engine, "x1")
    assert generate(url, None, "k-x", "x1")[0] == 401
    assert generate(url, keys["send"], "k-x", "x1")[0] == 403
    status, body = generate(url, keys["a"], "k-x", "x1", intent="nope")
    assert status == 422 and "not an intent" in body["detail"] and "winback" in body["detail"]
    assert generate(url, keys["a"], "k-x2", "x1", channel="fax")[0] == 422
    assert generate(url, keys["a"], "k-x3", "x1", max_cost_minor=-1)[0] == 422
    assert generate(url, keys["a"], "k-x4", "x1", surprise=True)[0] == 422
    assert call(f"{url}/v1/offers/generate", "POST", {"player_id": "x1", "context": {"intent": "winback",
                                                                                     "channel": "email"}},
                key=keys["a"])[0] == 422  # no idempotency key


def test_lists_count_issued_offers(svc, monkeypatch):
    url, keys, engine, paths = svc
    _player(engine, "l1")
    assert generate(url, keys["a"], "k-l1", "l1", intent="tour_only")[1]["status"] == "OFFER"
    monkeypatch.setenv("CRM_DATABASE_URL", engine.url.render_as_string(hide_password=False))  # the lists' store
    got = api_messages(paths, AT - dt.timedelta(days=1), AT + dt.timedelta(days=1))
    mine = got[got["player_id"] == "l1"]
    assert list(mine.columns) == list(MESSAGE_COLUMNS)
    assert mine["source"].tolist() == ["offer"] and mine["is_bonus_offer"].all() and mine["cost_cents"].sum() == 200


def test_the_try_command_decides_like_the_api_and_issues_nothing(svc, monkeypatch):
    from click.testing import CliRunner

    from crm.cli import main

    url, keys, engine, paths = svc
    _player(engine, "t1")
    _player(engine, "t2", country="NL", timezone="Europe/Amsterdam", age_years=22)
    monkeypatch.setenv("CRM_HOME", str(paths.home))
    monkeypatch.setenv("CRM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    with engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(offers)).scalar_one()
    res = CliRunner().invoke(main, ["offers", "try", "--brand", "A", "--player", "t1", "--player", "t2",
                                    "--intent", "tour_only", "--at", AT.isoformat() + "Z", "--json"])
    assert res.exit_code == 0, res.output
    got = {r["player_id"]: r for r in json.loads(res.output)}
    assert got["t1"]["offer"] == "tour" and got["t1"]["cost_minor"] == 200
    assert got["t2"]["offer"] is None and got["t2"]["reason"] == "bonus_under_jurisdiction_age"
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(offers)).scalar_one() == before
    # the API then issues exactly what the dry run said
    assert generate(url, keys["a"], "k-t1", "t1", intent="tour_only")[1]["offer"] == "tour"
    bad = CliRunner().invoke(main, ["offers", "try", "--brand", "A", "--player", "t1", "--intent", "nope"])
    assert bad.exit_code == 2 and "not an intent" in bad.output
