"""Campaign lists whose offer is chosen per player (``offer: {intent: ...}`` or ``offer.choices``).

The builder checks every choice through the whole rule table and gives each player the allowed
choice with the best predicted value net of its cost per cent of cost (the rule of
``POST /v1/offers/generate``). Here the independent oracle of tests/_compliance.py checks every
listed row against its own offer, the choice's optimality is recomputed from the choices' terms,
and the gate (its own SQL and arithmetic) must agree; a tampered row must fail it. Then the
campaign YAML (intent resolved from the folder's catalogue, into the approved version), the
explanation, and the outbox → delivery queue with each player's own template, terms and expiry.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os

import numpy as np
import pandas as pd
import pytest
from _compliance import (
    AS_OF,
    campaigns,
    chooser_campaigns,
    history_messages,
    offer_cost,
    oracle_reasons,
    planned,
    profile_rows,
    profiles,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.campaigns.day import explain_player, format_explanation
from crm.campaigns.eligibility import Context
from crm.campaigns.enqueue import enqueue_outbox, message_offer, message_template
from crm.campaigns.history import empty_history, planned_messages
from crm.campaigns.lists import VALUE_COLUMN, build_day, build_list, publish
from crm.campaigns.spec import CampaignSpec, Offer, load_campaign, load_campaigns
from crm.config import CAMPAIGNS_DIR, Paths
from crm.store import deliveries as dl
from crm.store.db import make_engine, upgrade_to_head
from expectations.campaign_list import GateContext, GatedList, gate_list, offer_choice_terms, recompute_violations

SCORE_DECIMALS = 6  # the list rounds scores so (crm.campaigns.lists.SCORE_DECIMALS)


def _key(net: float, cost: int) -> tuple[float, float]:
    """The ranking key, recomputed: net value per cent of cost (free: +inf if worth anything, else -inf)."""
    ratio = net / cost if cost > 0 else (math.inf if net > 0 else -math.inf)
    return ratio, net


def _gross(r: dict) -> float | None:
    v = r.get("uplift_value_score")
    if r.get("consent_profiling") is not True or v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return round(float(v), SCORE_DECIMALS)


def _check_rows(rows: pd.DataFrame, profile: pd.DataFrame, c: CampaignSpec, messages: list[dict]) -> None:
    """Every listed row against the oracle, with its own offer, and the choice against every other."""
    by_id = profile_rows(profile)
    for r in rows.itertuples():
        p = by_id.loc[r.player_id].to_dict()
        mine = [m for m in messages if m["player_id"] == r.player_id]
        assert r.offer_name in c.offer.choices, r.offer_name
        choice = c.offer.choices[r.offer_name]
        o = choice.offer
        assert (r.offer_template, r.offer_wagering, r.offer_expiry_days) == (o.template, o.wagering, o.expiry_days)
        fixed = c.with_offer(o)
        reasons = oracle_reasons(p, fixed, mine)
        assert not reasons, f"{r.player_id} listed with {r.offer_name} but fails {reasons}: {p}"
        cost = offer_cost(p, fixed)
        assert r.offer_cost_eur_cents == cost
        gross = _gross(p)
        assert gross is not None, "listed without a predicted value"
        net = gross * choice.relative_effect - cost
        assert math.isclose(getattr(r, VALUE_COLUMN), net, rel_tol=0, abs_tol=1e-6)
        assert net > c.target.min_uplift_cents
        # no allowed choice above the minimum is better by the ranking rule
        for name, other in c.offer.choices.items():
            if name == r.offer_name or oracle_reasons(p, c.with_offer(other.offer), mine):
                continue
            their_cost = offer_cost(p, c.with_offer(other.offer))
            their_net = gross * other.relative_effect - their_cost
            if their_net > c.target.min_uplift_cents:
                assert _key(their_net, their_cost) <= _key(net, cost), (r.player_id, r.offer_name, name)


@settings(max_examples=int(os.environ.get("CRM_CHOICE_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(profile=profiles(clean_share=0.5), campaign=chooser_campaigns())
def test_every_listed_player_gets_the_best_offer_every_rule_allows(profile, campaign):
    built = build_list(campaign, profile, AS_OF)
    rows = built.rows
    _check_rows(rows, profile, campaign, [])
    # within the budget and the list size; nobody worth an allowed offer is left out otherwise
    treated = rows[rows["variant"] != "holdout"]
    if campaign.target.budget_cents is not None:
        assert treated["offer_cost_eur_cents"].sum() <= campaign.target.budget_cents
    if campaign.max_list_size is not None:
        assert len(rows) <= campaign.max_list_size
    if campaign.target.budget_cents is None and campaign.max_list_size is None:
        by_id = profile_rows(profile)
        for pid, p in by_id.iterrows():
            p = {"player_id": pid, **p.to_dict()}
            gross = _gross(p)
            worth = gross is not None and any(
                not oracle_reasons(p, campaign.with_offer(ch.offer))
                and gross * ch.relative_effect - offer_cost(p, campaign.with_offer(ch.offer))
                > campaign.target.min_uplift_cents
                for ch in campaign.offer.choices.values())
            assert worth == (pid in set(rows["player_id"])), pid
    # the funnel and the suppression report add up as for a fixed offer
    f = built.funnel
    assert f["listed"] == len(rows) and sum(built.suppression["first_failing_rule"].values()) == \
        f["in_segment"] - f["eligible"]
    # the gate's own recomputation agrees; a row whose offer is not its choice fails it
    assert recompute_violations(rows, profile).isna().all()
    ctx = GateContext(budget_cents=campaign.target.budget_cents, min_uplift_cents=campaign.target.min_uplift_cents,
                      offer_choices=offer_choice_terms(campaign.offer.choices))
    gated = GatedList(rows, profile, campaign.experiment.holdout, list(campaign.experiment.variants))
    result = gate_list(gated, ctx)
    failed = {o.column for o in result.failed}
    assert failed <= {"is_holdout"}, result.summary()  # a tiny list's holdout share is noise
    if len(rows):
        bad = rows.copy()
        bad.loc[bad.index[0], "offer_wagering"] = 35.0
        bad.loc[bad.index[0], "offer_name"] = "not_a_choice"
        assert "offer_is_a_choice" in {o.column for o in gate_list(GatedList(bad, profile, 0.5, ["A"]), ctx).failed}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=profiles(clean_share=0.7), first=campaigns(), chooser=chooser_campaigns(), data=st.data())
def test_a_day_with_a_fixed_offer_first_never_doubles_a_bonus_or_the_daily_cost(profile, first, chooser, data):
    """A higher-priority campaign's messages are history for the chooser: one bonus a day, the cost
    per player per day, caps and cooldown hold for the offer each player is given."""
    first = first.model_copy(update={"id": "first_prio", "priority": 1})
    chooser = chooser.model_copy(update={"priority": data.draw(st.sampled_from([2, 100]))})
    day = build_day([chooser, first], profile, AS_OF, Context(AS_OF, history=empty_history()))
    assert [b.campaign.id for b in day] == ["first_prio", chooser.id]
    before = planned(day[0].rows, first)
    _check_rows(day[1].rows, profile, chooser, before)
    # what the day's history records for the chooser's messages: each row's own offer and expiry
    msgs = planned_messages(day[1].rows, chooser, AS_OF)
    oracle = planned(day[1].rows, chooser)
    assert len(msgs) == len(oracle)
    for got, want in zip(history_messages(msgs), oracle, strict=True):
        assert (got["is_bonus_offer"], got["offer_ends_at"]) == (want["is_bonus_offer"], want["offer_ends_at"])


# ---- the campaign YAML

CATALOGUE = """
offers:
  cheap: {offer: {template: free_spins, value_eur: 2, wagering: 0, expiry_days: 3}, relative_effect: 0.5}
  rich: {offer: {template: deposit_match, percent: 50, cap_eur: 25, wagering: 35, expiry_days: 7}, relative_effect: 2}
intents:
  winback: {offers: [cheap, rich]}
"""


def _folder(tmp_path, catalogue: str = CATALOGUE, offer: str = "{intent: winback}", target: str = "{by: uplift}"):
    (tmp_path / "_offers.yaml").write_text(catalogue)
    (tmp_path / "choice.yaml").write_text(f"id: choice\nname: c\nowner: Ana Lopez\nchannel: email\noffer: {offer}\n"
                                          f"target: {target}\n")
    (tmp_path / "fixed.yaml").write_text("id: fixed\nname: f\nchannel: email\noffer: {template: bonus, value_eur: 5}\n")
    return tmp_path


def test_an_intent_is_resolved_from_the_folders_catalogue_into_the_approved_version(tmp_path):
    folder = _folder(tmp_path)
    specs, errors = load_campaigns(folder)
    assert errors == []
    c = {s.id: s for s in specs}["choice"]
    assert c.offer.intent == "winback" and list(c.offer.choices) == ["cheap", "rich"]
    assert c.offer.is_bonus and c.offer.max_cost_cents == 2500 and c.offer.max_expiry_days == 7
    assert c.uses_ml and c.offer.label == "choice of 2 (winback)"
    # the version (what is approved) holds the choices: a catalogue change is a new version
    dumped = c.model_dump(mode="json")["offer"]
    assert set(dumped) == {"intent", "choices"} and CampaignSpec.model_validate(c.model_dump()).spec_hash() == \
        c.spec_hash()
    before = c.spec_hash()
    (folder / "_offers.yaml").write_text(CATALOGUE.replace("value_eur: 2,", "value_eur: 3,"))
    assert load_campaign(folder / "choice.yaml").spec_hash() != before
    # a fixed offer's version is what it was before choices existed (no new keys in its hash)
    fixed = {s.id: s for s in specs}["fixed"]
    assert set(fixed.model_dump()["offer"]) == {"template", "value_eur", "percent", "cap_eur", "wager_eur",
                                                "wagering", "expiry_days"}
    # the campaign's own choices work without a catalogue
    (tmp_path / "own").mkdir()
    own = _folder(tmp_path / "own", "", "{choices: {x: {offer: {template: bonus, value_eur: 5}}}}")
    c = load_campaign(own / "choice.yaml")
    assert list(c.offer.choices) == ["x"] and c.offer.intent is None


@pytest.mark.parametrize("offer, target, catalogue, expected", [
    ("{intent: nope}", "{by: uplift}", CATALOGUE, "offer.intent 'nope' is not an intent of campaigns/_offers.yaml "
                                                  "(known: winback)"),
    ("{intent: winback, value_eur: 5}", "{by: uplift}", CATALOGUE, "offer.value_eur is set beside offer.intent"),
    ("{intent: winback, choices: {}}", "{by: uplift}", CATALOGUE, "give offer.intent"),
    ("{intent: winback}", "{by: all}", CATALOGUE, "needs 'target: {by: uplift}'"),
    ("{intent: winback}", "{by: uplift}", "offers: [1, 2]", "offer.intent needs the offer catalogue, which cannot be "
                                                            "read"),
    ("{intent: 'Win Back'}", "{by: uplift}", CATALOGUE, "offer.intent 'Win Back' is not an intent"),
    ("{choices: {x: {offer: {template: none}}}}", "{by: uplift}", CATALOGUE, "must be one of the offer templates"),
    ("{choices: {x: {offer: {template: bonus, value_eur: 500}}}}", "{by: uplift}", CATALOGUE,
     "exceeds the policy's maximum cost per player per day"),
])
def test_a_broken_offer_choice_names_the_file_and_field(tmp_path, offer, target, catalogue, expected):
    folder = _folder(tmp_path, catalogue, offer, target)
    specs, errors = load_campaigns(folder)
    assert [s.id for s in specs] == ["fixed"]  # a broken catalogue stops only the campaigns that use it
    assert len(errors) == 1 and "choice.yaml" in errors[0] and expected in errors[0], errors


def test_transactional_and_trigger_offers_cannot_be_chosen():
    with pytest.raises(ValueError, match="transactional message cannot carry an offer"):
        CampaignSpec.model_validate({"id": "abc", "name": "x", "channel": "email", "transactional": True,
                                     "target": {"by": "uplift"},
                                     "offer": {"choices": {"x": {"offer": {"template": "bonus", "value_eur": 5}}}}})
    # triggers and journeys carry a fixed offer (crm.campaigns.spec.Offer): an intent is an unknown field
    with pytest.raises(ValueError, match="intent"):
        Offer.model_validate({"intent": "winback"})


def test_the_rule_table_refuses_a_campaign_whose_offer_is_chosen_per_player():
    """Checking the campaign itself would read no offer terms (a UK wagering cap passed on 0x)."""
    from crm.campaigns.eligibility import evaluate
    c = CampaignSpec.model_validate({"id": "abc", "name": "x", "channel": "email", "target": {"by": "uplift"},
                                     "offer": {"choices": {"x": {"offer": {"template": "bonus", "wagering": 35}}}}})
    with pytest.raises(ValueError, match="check each choice"):
        evaluate(pd.DataFrame({"player_id": ["p"], "country": ["UK"]}), c, Context(AS_OF))


def test_the_shipped_demo_campaign_chooses_from_the_shipped_catalogue():
    specs, errors = load_campaigns(CAMPAIGNS_DIR)
    assert errors == []
    chooser = [s for s in specs if s.offer.choices]
    assert chooser and all(s.offer.intent for s in chooser)


# ---- explanation, dispatch and the delivery queue

def _players() -> pd.DataFrame:
    """Four clean players: a UK one (no 35x wagering), a big loser (cashback costs its cap), a player
    without profiling consent, and one whose best offer is worth nothing."""
    base = {"brand_id": "A", "locale": "en-GB", "timezone": "Europe/London", "age_years": 40, "age_verified": True,
            "self_excluded_now": False, "ever_self_excluded": False, "returned_after_exclusion": False,
            "cooling_off_now": False, "harm_risk_flag": False, "consent_profiling": True, "bonuses_received": 0,
            "consent_email": True, "consent_email_products": "casino", "consent_email_products_withdrawn": None,
            "uplift_value_model_version": "3", "churn_score": 0.5, "churn_model_version": "1"}
    return pd.DataFrame([
        base | {"player_id": "p_uk", "country": "UK", "uplift_value_score": 30000.0, "net_loss_eur_7d": 0},
        base | {"player_id": "p_mt", "country": "MT", "timezone": "Europe/Malta", "uplift_value_score": 3000.0,
                "net_loss_eur_7d": 90_000},
        base | {"player_id": "p_noprof", "country": "MT", "timezone": "Europe/Malta", "consent_profiling": False,
                "uplift_value_score": 3000.0, "net_loss_eur_7d": 0},
        base | {"player_id": "p_low", "country": "MT", "timezone": "Europe/Malta", "uplift_value_score": 10.0,
                "net_loss_eur_7d": 0},
    ])


def _chooser() -> CampaignSpec:
    return CampaignSpec.model_validate({
        "id": "choice_demo", "name": "choice", "channel": "email", "target": {"by": "uplift"},
        "experiment": {"holdout": 0.0, "variants": {"A": 1}},
        "offer": {"choices": {
            "match": {"offer": {"template": "deposit_match", "percent": 50, "cap_eur": 25, "wagering": 35,
                                "expiry_days": 7}, "relative_effect": 2.0},
            "spins": {"offer": {"template": "free_spins", "value_eur": 4, "wagering": 0, "expiry_days": 3},
                      "relative_effect": 0.1}}}})


def test_each_player_gets_their_own_offer_and_the_explanation_shows_every_choice(tmp_path):
    spec, aud = _chooser(), _players()
    built = build_list(spec, aud, AS_OF)
    got = dict(zip(built.rows["player_id"], built.rows["offer_name"], strict=True))
    # MT: the match (2 x 3000 - 2500 = 3500 net, 1.4 per cent) beats the spins (0.1 x 3000 - 400 < 0);
    # UK: the 35x match is not allowed, the spins are (0.1 x 30000 - 400 = 2600 net)
    assert got == {"p_uk": "spins", "p_mt": "match"}
    assert built.rows.set_index("player_id")["offer_cost_eur_cents"].to_dict() == {"p_uk": 400, "p_mt": 2500}
    assert built.targeting["eligible"] == 4 - 1 and built.suppression["first_failing_rule"] == \
        {"no_profiling_consent": 1}
    paths = Paths(tmp_path / "home").ensure()
    manifest = publish(built, paths)
    assert manifest["to_contact"] == 2 and manifest["total_offer_cost_eur_cents"] == 2900
    assert manifest["offers_chosen"] == {"match": {"players": 1, "cost_eur_cents": 2500},
                                         "spins": {"players": 1, "cost_eur_cents": 400}}
    e = explain_player(paths, "p_uk", spec, [spec], AS_OF, aud)
    offers = {o["offer"]: o for o in e["offers"]}
    assert offers["spins"]["chosen"] and not offers["match"]["eligible"]
    assert offers["match"]["failed"] == ["wagering_over_cap"]
    text = format_explanation(e)
    assert "offer chosen per player" in text and "refused: wagering_over_cap" in text and "CHOSEN" in text
    low = explain_player(paths, "p_low", spec, [spec], AS_OF, aud)
    assert not low["listed"] and low["predicted_value_eur_cents"] < 0


def test_the_queue_gets_each_messages_own_template_terms_and_expiry(tmp_path):
    spec = _chooser()
    paths = Paths(tmp_path / "home").ensure()
    at = "2025-10-01T10:00:00Z"
    messages = [
        {"idempotency_key": "k1", "campaign_id": spec.id, "channel": "email", "player_id": "p1", "as_of_date":
         AS_OF.isoformat(), "offer_name": "match", "offer_template": "deposit_match", "offer_cost_eur_cents": 2500,
         "sent_at": at, "locale": "en"},
        {"idempotency_key": "k2", "campaign_id": spec.id, "channel": "email", "player_id": "p2", "as_of_date":
         AS_OF.isoformat(), "offer_name": "spins", "offer_template": "free_spins", "offer_cost_eur_cents": 400,
         "sent_at": at, "locale": "en"},
    ]
    engine = make_engine(paths)
    upgrade_to_head(engine)
    try:
        assert enqueue_outbox(paths, spec, messages, {"p1": "A", "p2": "A"}, engine=engine) == 2
        with engine.connect() as conn:
            rows = {r["player_id"]: r for r in (dict(x._mapping) for x in conn.execute(dl.deliveries.select()))}
    finally:
        engine.dispose()
    assert rows["p1"]["template_id"] == "deposit_match" and rows["p2"]["template_id"] == "free_spins"
    p1, p2 = (json.loads(rows[p]["params"]) if isinstance(rows[p]["params"], str) else rows[p]["params"]
              for p in ("p1", "p2"))
    assert (p1["match_percent"], p1["cap_eur"], p1["wagering"], p1["expiry_days"]) == (50, 25, 35, 7)
    assert (p2["value_eur"], p2["wagering"], p2["expiry_days"]) == (4, 0, 3)
    sent = dt.datetime(2025, 10, 1, 10)
    assert rows["p1"]["offer_ends_at"].replace(tzinfo=None) == sent + dt.timedelta(days=7)
    assert rows["p2"]["offer_ends_at"].replace(tzinfo=None) == sent + dt.timedelta(days=3)
    # a message naming an offer the campaign does not have is refused, never guessed
    with pytest.raises(ValueError, match="not one of its choices"):
        message_offer(spec, {"offer_name": "free_money", "player_id": "p3"})
    assert message_template(spec, offer=spec.offer.choices["spins"].offer) == "free_spins"


def test_a_choice_the_list_does_not_know_costs_the_most_and_gets_the_strictest_terms():
    from crm.campaigns.offers import offer_cost_cents, offer_effects, offer_fields
    spec = _chooser()
    df = pd.DataFrame({"player_id": ["a", "b", "c"], "offer_name": ["spins", "bogus", None],
                       "net_loss_eur_7d": [0, 0, 0]})
    assert offer_cost_cents(df, spec).tolist() == [400, 2500, 2500]
    assert np.isnan(offer_effects(df, spec)[1:]).all()
    f = offer_fields(df, spec)
    assert f["offer_template"].tolist() == ["free_spins", "bonus", "bonus"]
    assert f["offer_wagering"].tolist() == [0, 35, 35] and f["offer_expiry_days"].tolist() == [3, 7, 7]
