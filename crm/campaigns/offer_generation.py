"""Per-player offer generation (``POST /v1/offers/generate``): the offer of an intent's catalogue
with the highest predicted incremental value per euro of cost that every rule allows.

The catalogue is ``campaigns/_offers.yaml`` (:func:`load_catalogue`)::

    offers:                 # name -> the offer's terms (crm.campaigns.spec.Offer) and its effect
      cashback_10: {offer: {template: cashback, percent: 10, cap_eur: 20, wagering: 1}, relative_effect: 1.0}
      match_50:    {offer: {template: deposit_match, percent: 50, cap_eur: 25, wagering: 10}, relative_effect: 1.3}
    intents:                # what the casino asks for -> the offers it may get, and a daily budget
      winback: {offers: [cashback_10, match_50], product: casino, budget_eur_per_day: 500}

How one player's offer is decided (:func:`decide`), each step fail closed:

1. RG (``rg_safe``, the default): no offer to a player with any harm marker (:func:`harm_markers`:
   a harm-risk flag, a self-exclusion now or ever, a cooling-off, a limit hit in 30 days; an
   unknown one counts as present).
2. Each offer of the intent is checked as a one-player campaign of the intent's product, on the
   asked channel, sent now, targeted by a model: the rule table of the lists
   (:func:`crm.campaigns.online.check_sends`: consent, profiling consent, RG, age, the
   jurisdiction's bonus rules (UK wagering at most 10x, NL no bonus under 24, SE first occasion
   only), one bonus a day, the cost per player per day, a running offer, dedup, caps, quiet
   hours). Its cost is the template's cost model (:func:`crm.campaigns.offers.cost_cents`);
   it must be within the request's ``max_cost_cents`` and what is left of the intent's budget
   of the day.
3. Its predicted incremental value is the player's ``uplift_value_score`` (the ``uplift_deposit``
   champion's deposit uplift x the player's expected theoretical win, EUR cents: what ``target:
   by: uplift`` ranks lists by) x the offer's ``relative_effect`` (how its effect compares with
   the bonuses the uplift model learned from: a prior the catalogue states, to be replaced by the
   readouts' measured effects). No score: no prediction, no offer.
4. Of the offers left whose value exceeds their cost by more than the intent's
   ``min_net_value_eur``, the one with the highest net value per euro of cost wins (ties: the
   higher net value, then the catalogue's order).

Nothing here writes: :mod:`crm.service.offers` records the decision in the store.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from crm.campaigns.eligibility import Context, evaluate, reason_text
from crm.campaigns.history import offer_campaign_id
from crm.campaigns.offers import cost_cents
from crm.campaigns.online import check_sends
from crm.campaigns.policy import Calendar
from crm.campaigns.spec import (
    MAX_EUR,
    OFFER_NAME,
    CampaignSpec,
    Offer,
    OfferChoice,
    Schedule,
    Target,
    load_config_file,
)
from crm.contract import PRODUCTS
from ml.policy import value_per_cost

CATALOGUE_FILE = "_offers.yaml"
VALUE_FIELD = "uplift_value_score"  # the online profile's predicted value of a bonus (EUR cents)
NAME = OFFER_NAME

# why no offer (besides the rule table's own rule names)
UNKNOWN_PLAYER, RG_MARKER = "unknown_player", "rg_marker"
OVER_MAX_COST, INTENT_BUDGET = "over_max_cost", "intent_budget"
NO_PREDICTION, NOT_WORTH_ITS_COST, NO_OFFER_FITS = "no_value_prediction", "not_worth_its_cost", "no_offer_fits"
REASONS = {
    UNKNOWN_PLAYER: "Not in the player profile of this brand",
    RG_MARKER: "Shows a responsible-gambling marker, and the request asks for RG-safe offers only",
    OVER_MAX_COST: "The offer costs more than the request's max_cost_minor",
    INTENT_BUDGET: "The intent's budget of the day is spent",
    NO_PREDICTION: "No predicted value for this player (no uplift score yet)",
    NOT_WORTH_ITS_COST: "Its predicted incremental value does not exceed its cost (by the intent's minimum)",
    NO_OFFER_FITS: "None of the intent's offers is allowed and worth its cost",
}


class OfferCatalogueError(ValueError):
    """``_offers.yaml`` cannot be used (the file and field are named)."""


CatalogueOffer = OfferChoice  # a catalogue's offer: its terms, relative effect and description


class Intent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    offers: list[Annotated[str, Field(pattern=NAME)]] = Field(min_length=1, max_length=50)
    product: Literal[PRODUCTS] = "casino"  # type: ignore[valid-type]
    budget_eur_per_day: float | None = Field(default=None, gt=0, le=MAX_EUR)
    min_net_value_eur: float = Field(default=0, ge=0, le=MAX_EUR)
    description: str = Field(default="", max_length=500)


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    offers: dict[Annotated[str, Field(pattern=NAME)], CatalogueOffer] = Field(default={}, max_length=200)
    intents: dict[Annotated[str, Field(pattern=NAME)], Intent] = Field(default={}, max_length=200)

    @model_validator(mode="after")
    def _offers_exist(self) -> Catalogue:
        for name, intent in self.intents.items():
            unknown = [o for o in intent.offers if o not in self.offers]
            if unknown:
                raise ValueError(f"intents.{name}.offers names {', '.join(unknown)}, not in offers "
                                 f"(known: {', '.join(sorted(self.offers)) or 'none'})")
        return self


def load_catalogue(directory: str | Path) -> Catalogue:
    """The offer catalogue of ``<directory>/_offers.yaml`` (none there: an empty one, so every
    intent is unknown). A broken file raises :class:`OfferCatalogueError` (fail closed)."""
    return load_config_file(Path(directory) / CATALOGUE_FILE, Catalogue, "offer catalogue", OfferCatalogueError)


def _known_true(profile: dict, col: str) -> bool:
    """True unless the profile says False for certain (a bool False; anything else, missing or
    unreadable, is True: fail closed)."""
    v = profile.get(col)
    return not (v is False or (isinstance(v, np.bool_) and not v))


HARM_FLAGS = ("harm_risk_flag", "self_excluded_now", "cooling_off_now", "ever_self_excluded")


def harm_markers(profile: dict) -> list[str]:
    """The player's responsible-gambling markers (an unknown one counts as present): a flag of
    :data:`HARM_FLAGS` that is not False, a limit hit in 30 days (``rg_limit_hits_30d``)."""
    out = [col for col in HARM_FLAGS if _known_true(profile, col)]
    hits = profile.get("rg_limit_hits_30d")
    if isinstance(hits, bool) or not isinstance(hits, numbers.Real) or not hits <= 0:  # None, NaN, text: a marker
        out.append("rg_limit_hits_30d")
    return out


def offer_spec(intent_name: str, intent: Intent, offer: Offer, channel: str, brand_id: str,
               at: dt.datetime) -> CampaignSpec:
    """The one-player campaign an offer of ``intent`` on ``channel`` at ``at`` (naive UTC) is checked
    as: the intent's product, model-targeted (profiling consent needed), its id (and dedup key)
    ``offer_<intent>``: the same intent's offer twice within the dedup window is a duplicate."""
    return CampaignSpec(id=offer_campaign_id(intent_name), name=f"offer generation ({intent_name})",
                        channel=channel, brands=[brand_id], product=intent.product, offer=offer,
                        target=Target(by="uplift"), schedule=Schedule(send_time_utc=f"{at:%H:%M}"))


def predicted_value_cents(profile: dict) -> float | None:
    """The player's predicted incremental value of a bonus (EUR cents), None when unknown."""
    v = profile.get(VALUE_FIELD)
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class Candidate:
    name: str
    offer: Offer
    cost_cents: int
    value_cents: float | None  # gross predicted incremental value
    refused: str | None  # why it cannot be offered (a rule-table rule or one of REASONS); None: allowed
    failed: tuple[str, ...] = ()

    @property
    def net_cents(self) -> float | None:
        return None if self.value_cents is None else self.value_cents - self.cost_cents

    @property
    def per_euro(self) -> float:
        """Net predicted value per euro of cost (:func:`ml.policy.value_per_cost`: a free offer worth
        something is infinite)."""
        return float(value_per_cost([self.net_cents or 0.0], [self.cost_cents])[0]) * 100

    def as_dict(self) -> dict:
        return {"offer": self.name, "template": self.offer.template, "cost_minor": self.cost_cents,
                "predicted_value_minor": None if self.value_cents is None else round(self.value_cents),
                "refused": self.refused, "reason": reason_of(self.refused) if self.refused else None,
                "failed": list(self.failed)}


@dataclass(frozen=True)
class Decision:
    chosen: Candidate | None
    reason: str | None  # why no offer (None when chosen)
    candidates: list[Candidate] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)

    def reason_text(self) -> str | None:
        return reason_of(self.reason) if self.reason else None


def reason_of(code: str) -> str:
    return REASONS.get(code) or reason_text(code)


def decide(profile: dict | None, intent_name: str, intent: Intent, catalogue: Catalogue, *, channel: str,
           brand_id: str, at: dt.datetime, history: pd.DataFrame, calendar: Calendar | None = None,
           max_cost_cents: int | None = None, rg_safe: bool = True, budget_left_cents: int | None = None
           ) -> Decision:
    """The offer for one player now (see the module's docstring). ``profile``: the online profile
    with stops applied (None: unknown player); ``history``: their messages and issued offers
    (:mod:`crm.campaigns.history` rows); ``budget_left_cents``: what is left of the intent's
    budget of the day (None: no budget)."""
    if profile is None:
        return Decision(None, UNKNOWN_PLAYER)
    markers = harm_markers(profile) if rg_safe else []
    if markers:
        return Decision(None, RG_MARKER, markers=markers)
    value = predicted_value_cents(profile)
    frame = pd.DataFrame([profile])
    out: list[Candidate] = []
    for name in intent.offers:
        item = catalogue.offers[name]
        spec = offer_spec(intent_name, intent, item.offer, channel, brand_id, at)
        cost = int(cost_cents(frame, item.offer)[0])
        gross = None if value is None else value * item.relative_effect
        verdict = check_sends([profile], spec, history, at, calendar)[0]
        refused = verdict.rule if not verdict.eligible else None
        if refused is None and max_cost_cents is not None and cost > max_cost_cents:
            refused = OVER_MAX_COST
        if refused is None and budget_left_cents is not None and cost > budget_left_cents:
            refused = INTENT_BUDGET
        if refused is None and gross is None:
            refused = NO_PREDICTION
        if refused is None and not gross - cost > intent.min_net_value_eur * 100:
            refused = NOT_WORTH_ITS_COST
        out.append(Candidate(name, item.offer, cost, gross, refused, verdict.failed))
    allowed = [c for c in out if c.refused is None]
    if allowed:
        best = max(allowed, key=lambda c: (c.per_euro, c.net_cents, -out.index(c)))
        return Decision(best, None, out)
    reasons = {c.refused for c in out}
    return Decision(None, reasons.pop() if len(reasons) == 1 else NO_OFFER_FITS, out)


@dataclass(frozen=True)
class Choices:
    """Per row of a frame, a campaign's offer chosen per player (:func:`choose_offers`)."""

    names: np.ndarray  # the chosen choice's name (None: no choice may be sent)
    shown: np.ndarray  # the choice whose verdicts are shown: the chosen one, else the nearest to allowed
    verdicts: pd.DataFrame  # the rule table's verdicts of the offer shown
    per_offer: dict[str, pd.DataFrame]  # every choice's verdicts (eligibility.evaluate)
    cost_cents: dict[str, np.ndarray]  # every choice's cost
    net_cents: dict[str, np.ndarray]  # every choice's predicted value net of its cost (NaN: unknown)

    @property
    def eligible(self) -> np.ndarray:
        return self.verdicts["eligible"].to_numpy(dtype=bool)


def choose_offers(frame: pd.DataFrame, spec: CampaignSpec, context: Context, value_cents: np.ndarray,
                  min_value_cents: float = 0.0) -> Choices:
    """Each player's offer of a campaign whose offer is chosen per player (``offer.intent`` or
    ``offer.choices``): the batch lists' side of :func:`decide`, vectorised.

    Every choice goes through the lists' whole rule table as the campaign with that fixed offer
    (:func:`crm.campaigns.eligibility.evaluate`: consent, RG, age, the jurisdiction's bonus rules,
    one bonus a day, cost per player per day, caps, dedup, quiet hours...). Of the choices a player
    may get whose predicted value net of its cost (``value_cents`` x its ``relative_effect`` - its
    cost) is above ``min_value_cents`` (the campaign's ``target.min_uplift_eur``), the one with the
    highest net value per cent of cost wins (:func:`ml.policy.value_per_cost`; ties: the higher net
    value, then the choices' order), as :func:`decide` ranks; when none is above the minimum, the
    best of the allowed ones all the same (targeting leaves the player out: below the minimum);
    without a predicted value (``value_cents`` NaN), the first allowed choice (targeting by uplift
    never lists such a player). Whether the chosen offer fits the budget is targeting's decision
    (:func:`crm.campaigns.lists.target_by_uplift`). A player no choice is allowed for is shown with
    the verdicts of the choice that fails the fewest rules (ties: the first).
    """
    names = list(spec.offer.choices)
    if not names:
        raise ValueError(f"campaign {spec.id}: its offer is not chosen per player (no offer.choices)")
    n = len(frame)
    value = np.asarray(value_cents, dtype=float).reshape(n)
    best = np.full(n, -1)
    best_above = np.zeros(n, dtype=bool)
    best_ratio, best_net = np.full(n, -np.inf), np.full(n, -np.inf)
    first_ok, nearest, fewest = np.full(n, -1), np.full(n, -1), np.full(n, np.iinfo(np.int64).max)
    per_offer: dict[str, pd.DataFrame] = {}
    costs: dict[str, np.ndarray] = {}
    nets: dict[str, np.ndarray] = {}
    for k, name in enumerate(names):
        choice = spec.offer.choices[name]
        verdicts = evaluate(frame, spec.with_offer(choice.offer), context)
        per_offer[name] = verdicts
        ok = verdicts["eligible"].to_numpy(dtype=bool)
        cost = cost_cents(frame, choice.offer)
        net = value * choice.relative_effect - cost
        costs[name], nets[name] = cost, net
        ratio = value_per_cost(net, cost)
        known = ok & ~np.isnan(net)
        above = known & (net > min_value_cents)
        better = known & ((best < 0) | (above & ~best_above) | ((above == best_above) & (
            (ratio > best_ratio) | ((ratio == best_ratio) & (net > best_net)))))
        best = np.where(better, k, best)
        best_above = np.where(better, above, best_above)
        best_ratio, best_net = np.where(better, ratio, best_ratio), np.where(better, net, best_net)
        first_ok = np.where((first_ok < 0) & ok, k, first_ok)
        failing = (~verdicts[[c for c in verdicts if c.startswith("pass__")]].to_numpy(dtype=bool)).sum(axis=1)
        fewer = failing < fewest
        nearest, fewest = np.where(fewer, k, nearest), np.where(fewer, failing, fewest)
    chosen = np.where(best >= 0, best, first_ok)
    shown = np.where(chosen >= 0, chosen, nearest)
    out = per_offer[names[0]].copy()
    for k, name in enumerate(names[1:], start=1):
        here = shown == k
        if here.any():
            other = per_offer[name]
            for col in out.columns:
                out[col] = np.where(here, other[col].to_numpy(), out[col].to_numpy())
    labels = np.asarray(names, dtype=object)
    picked = np.where(chosen >= 0, labels[np.maximum(chosen, 0)], None)
    return Choices(picked.astype(object), labels[shown], out, per_offer, costs, nets)
