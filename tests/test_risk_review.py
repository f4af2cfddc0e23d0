"""The review queue of abuse risk flags, the bonus rule they feed and ``crm risk explain`` (issue 19),
over a real landing, dbt build (profile, identifiers, links), the linking step and a risk scores
table with the interface :mod:`crm.risk.score` writes: flags wait for review and keep their player
out of bonus offers (not out of other messages); a clear holds for the same evidence only; a
confirm holds; every decision is an audit entry; explain shows the cluster, the shared identifiers
as pseudonyms and the score's reasons, for the player's brand only."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
from _dbt import dbt_build
from click.testing import CliRunner
from test_linking import land, pay, person
from test_vault import reg

from crm.campaigns import audit
from crm.campaigns.lists import build_list
from crm.campaigns.spec import CampaignSpec
from crm.cli.root import main
from crm.config import Paths
from crm.risk.linking import build_clusters
from crm.risk.review import (
    CLEARED,
    CONFIRMED,
    PENDING,
    ReviewError,
    decide,
    queue,
    write_flags,
)
from crm.warehouse import connect, read_audience

AS_OF = dt.date(2025, 10, 1)
BONUS = CampaignSpec.model_validate({"id": "reload", "name": "reload", "channel": "email",
                                     "offer": {"template": "bonus", "value_eur": 10, "wagering": 10}})
NEWS = CampaignSpec.model_validate({"id": "news", "name": "news", "channel": "email"})


def consent(pid: str, brand: str = "A") -> dict:
    return {"event_id": f"c-{brand}-{pid}", "event_type": "consent.granted", "player_id": pid, "brand_id": brand,
            "occurred_at": "2025-09-01T12:01:00Z", "payload": {"channel": "email", "source": "signup"}}


def session(pid: str, brand: str = "A") -> dict:
    return {"event_id": f"s-{brand}-{pid}", "event_type": "session.started", "player_id": pid, "brand_id": brand,
            "occurred_at": "2025-09-30T20:00:00Z", "payload": {"session_id": f"s-{pid}"}}


def put_scores(paths: Paths, rows: list[tuple[str, str, float, bool, str]]) -> None:
    """player_risk_scores as crm.risk.score writes it (brand, player, score, above threshold, evidence)."""
    df = pd.DataFrame([{"brand_id": b, "player_id": p, "as_of_date": AS_OF, "risk_score": s, "above_threshold": a,
                        "reasons": json.dumps([{"feature": "bonus_stake_share", "value": 0.94, "contribution": 1.2,
                                                "text": "bonus share of stake 0.94 (median 0.05)"}]),
                        "evidence_key": e, "model_name": "abuse_risk", "model_version": "1"}
                       for b, p, s, a, e in rows])
    with connect(paths, read_only=False) as con:
        con.register("_s", df)
        con.execute("CREATE OR REPLACE TABLE player_risk_scores AS SELECT * FROM _s")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Paths:
    paths = Paths(tmp_path_factory.mktemp("risk")).ensure()
    players = ["p1", "p2", "q1", "q2"]
    records = [reg("a1", "p1", **person(1, device_id="dev-shared")), pay("a1p", "p1", payment_instrument="card-s"),
               reg("a2", "p2", **person(2, device_id="dev-shared")), pay("a2p", "p2", payment_instrument="card-s"),
               reg("a3", "q1", **person(3)), reg("a4", "q2", **person(4)),
               reg("b1", "z1", brand="B", **person(9))]
    records += [consent(p) for p in players] + [session(p) for p in players]
    land(paths, records)
    dbt_build(paths.home, AS_OF, "--select", "+dim_player", "+player_features", "+fct_identity_links",
              "--exclude", "test_type:unit", "--indirect-selection", "cautious")
    build_clusters(paths)
    return paths


def listed(paths: Paths, spec: CampaignSpec) -> set[str]:
    built = build_list(spec, read_audience(paths, AS_OF), AS_OF)
    return set(built.rows["player_id"])


def test_flags_wait_for_review_keep_bonuses_away_and_follow_the_decisions(home):
    assert {"p1", "q1"} <= listed(home, BONUS)  # nothing scored: nobody flagged
    put_scores(home, [("A", "p1", 0.97, True, "ev-p1"), ("A", "q1", 0.91, True, "ev-q1"),
                      ("A", "q2", 0.10, False, "ev-q2"), ("B", "z1", 0.99, True, "ev-z1")])
    q = queue(home, ["A"])
    assert list(q["player_id"]) == ["p1", "q1"] and set(q["review"]) == {PENDING}  # highest score first
    assert write_flags(home) == {"scored": 4, "flagged": 3, PENDING: 3, CONFIRMED: 0, CLEARED: 0}
    bonus, news = listed(home, BONUS), listed(home, NEWS)
    assert "p1" not in bonus and "q1" not in bonus and "q2" in bonus  # flagged: no bonus
    assert "p2" not in bonus  # p1's other account: the cluster's first account (p1) is the one offered it
    assert {"p1", "q1", "p2"} <= news  # a flag never stops a message without a bonus
    built = build_list(BONUS, read_audience(home, AS_OF), AS_OF)
    assert built.suppression["first_failing_rule"]["bonus_risk_flagged"] == 2
    assert built.suppression["first_failing_rule"]["cluster_took_offer"] == 1

    before = len(audit.read_entries(home))
    decide(home, "A", "q1", "clear", by="Rita Reviewer", reason="a family, checked the documents")
    decide(home, "A", "p1", "confirm", by="Rita Reviewer", reason="two accounts, one card")
    entries = audit.read_entries(home)[before:]
    assert [(e["kind"], e["details"]["player_id"], e["details"]["decision"], e["details"]["evidence_key"])
            for e in entries] == [("risk_reviewed", "q1", "clear", "ev-q1"),
                                  ("risk_reviewed", "p1", "confirm", "ev-p1")]
    assert audit.verify(home).ok
    assert queue(home, ["A"]).empty
    write_flags(home)
    bonus = listed(home, BONUS)
    assert "q1" in bonus and "p1" not in bonus and "p2" not in bonus

    # new evidence for q1: flagged and waiting again; p1's score falls: still confirmed
    put_scores(home, [("A", "p1", 0.20, False, "ev-p1b"), ("A", "q1", 0.93, True, "ev-q1-new")])
    assert list(queue(home, ["A"])["player_id"]) == ["q1"]
    write_flags(home)
    bonus = listed(home, BONUS)
    assert "q1" not in bonus and "p1" not in bonus
    decided = queue(home, ["A"], include_decided=True).set_index("player_id")["review"].to_dict()
    assert decided == {"q1": PENDING, "p1": CONFIRMED}


def test_decisions_need_a_scored_player_of_the_brand_and_a_reason(home):
    put_scores(home, [("A", "p1", 0.97, True, "ev-p1")])
    with pytest.raises(ReviewError, match="no current risk score"):
        decide(home, "B", "p1", "clear", by="Rita Reviewer", reason="x")  # another brand's id
    with pytest.raises(ReviewError, match="no current risk score"):
        decide(home, "A", "nobody", "clear", by="Rita Reviewer", reason="x")
    with pytest.raises(ReviewError, match="one of"):
        decide(home, "A", "p1", "approve", by="Rita Reviewer", reason="x")
    with pytest.raises(ReviewError, match="reason"):
        decide(home, "A", "p1", "clear", by="Rita Reviewer", reason="  ")
    r = CliRunner().invoke(main, ["risk", "review", "p1", "--brand", "A", "--by", "Rita Reviewer", "--reason", "x"])
    assert r.exit_code != 0 and "--confirm or --clear" in r.output


def test_explain_shows_cluster_pseudonyms_score_and_review_for_the_brand_only(home, monkeypatch):
    monkeypatch.setenv("CRM_HOME", str(home.home))
    put_scores(home, [("A", "p1", 0.97, True, "ev-p1")])
    r = CliRunner().invoke(main, ["risk", "explain", "--player", "p1", "--brand", "A", "--json"])
    assert r.exit_code == 0, r.output
    e = json.loads(r.output)
    assert e["cluster"]["members"] == ["p1", "p2"] and e["cluster"]["size"] == 2
    assert [(x["other_player"], x["linked_by"]) for x in e["links"]] == [("p2", "device,payment")]
    shared = {x["attribute"]: x for x in e["shared_identifiers"]}
    assert {"device_id", "payment_instrument"} <= set(shared)
    assert all(x["pseudonym"].startswith("pii1:") and x["other_accounts"] == 1 for x in shared.values())
    assert "dev-shared" not in r.output and "card-s" not in r.output  # the values stay in the vault
    assert e["score"]["risk_score"] == 0.97 and e["score"]["reasons"][0]["feature"] == "bonus_stake_share"
    assert e["flagged"] is True
    text = CliRunner().invoke(main, ["risk", "explain", "--player", "p1", "--brand", "A"])
    assert "FLAGGED" in text.output and "bonus share of stake 0.94" in text.output and "p2" in text.output
    other = CliRunner().invoke(main, ["risk", "explain", "--player", "p1", "--brand", "B"])
    assert other.exit_code != 0 and "no player 'p1' of brand 'B'" in other.output
    q = CliRunner().invoke(main, ["risk", "queue", "--brand", "A", "--all"])
    assert q.exit_code == 0 and "A/p1" in q.output


def test_a_bonus_goes_to_one_account_of_a_person_once(home):
    """Bonus offers: one account of a cluster (the first by id) in a list, and none once another account
    of the cluster got this campaign's bonus before; a message without a bonus reaches every account."""
    from crm.campaigns.eligibility import Context, explain
    from crm.campaigns.history import empty_history

    with connect(home, read_only=False) as con:
        con.execute("DROP TABLE IF EXISTS player_risk_flags")  # nobody flagged here
    audience = read_audience(home, AS_OF)
    assert audience.set_index("player_id").loc[["p1", "p2"], "cluster_id"].tolist() == ["A:p1", "A:p1"]
    assert pd.isna(audience.set_index("player_id").loc["q1", "cluster_id"])
    assert {"p1", "q1", "q2"} <= set(build_list(BONUS, audience, AS_OF).rows["player_id"])
    assert "p2" not in set(build_list(BONUS, audience, AS_OF).rows["player_id"])
    assert {"p1", "p2"} <= set(build_list(NEWS, audience, AS_OF).rows["player_id"])
    # p2 got this campaign's bonus last week: p1 does not get it now; another campaign's bonus does not count
    history = empty_history()
    for cid in ("reload", "welcome"):
        history.loc[len(history)] = {"player_id": "p2", "channel": "email", "campaign_id": cid, "dedup_key": cid,
                                     "sent_at": pd.Timestamp("2025-09-24 10:00"), "is_bonus_offer": True,
                                     "cost_cents": 1000, "offer_ends_at": pd.Timestamp("2025-09-25 10:00"),
                                     "source": "outbox"}
    ctx = Context(AS_OF, history=history[history["campaign_id"] == "reload"])
    built = build_list(BONUS, audience, AS_OF, ctx)
    assert not {"p1", "p2"} & set(built.rows["player_id"])
    [rows] = explain(audience[audience["player_id"] == "p1"], BONUS, Context(AS_OF, history=history[
        history["campaign_id"] == "reload"], clusters={"p1": "A:p1", "p2": "A:p1"}))
    verdict = next(r for r in rows if r["rule"] == "cluster_took_offer")
    assert verdict["verdict"] == "FAIL" and verdict["observed"] == "taken by linked account p2"
    other = Context(AS_OF, history=history[history["campaign_id"] == "welcome"])
    assert "p1" in set(build_list(BONUS, audience, AS_OF, other).rows["player_id"])


def test_the_profile_copy_carries_clusters_and_flags(home, monkeypatch):
    """The service's copy names each account's cluster (a stop over the API reaches its other accounts:
    test_service_messaging) and carries the linked exclusion and risk flag the lists read."""
    import sqlalchemy as sa

    from crm.campaigns.online import sync_online_profiles
    from crm.config import CAMPAIGNS_DIR
    from crm.store.db import make_engine, upgrade_to_head
    from crm.store.profile import effective_profile
    from crm.store.schema import profiles

    monkeypatch.setenv("CRM_CAMPAIGNS_DIR", str(CAMPAIGNS_DIR))
    put_scores(home, [("A", "q1", 0.97, True, "ev-q1x")])
    write_flags(home)
    engine = make_engine(home)
    upgrade_to_head(engine)
    try:
        sync_online_profiles(home, engine)
        with engine.connect() as conn:
            clusters = dict(conn.execute(sa.select(profiles.c.player_id, profiles.c.cluster_id)
                                         .where(profiles.c.brand_id == "A")).all())
            q1, _ = effective_profile(conn, "A", "q1")
        assert clusters["p1"] == clusters["p2"] == "A:p1" and clusters["q1"] is None
        assert q1["risk_flagged"] is True and q1["risk_review"] == "pending"
    finally:
        engine.dispose()
