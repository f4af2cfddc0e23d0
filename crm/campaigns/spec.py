"""Campaign definitions: the YAML a marketer edits, validated on load.

A broken file gets an error naming the file, the field and what was expected; one
broken campaign does not stop the others (:func:`load_campaigns` returns both).

Every file is read as hostile input (:mod:`crm.safe_yaml`: size, alias expansion and nesting
bounded; not UTF-8, binary or empty is an error, never a crash). Every number in a spec must be
finite and within :data:`MAX_NUMBER` (money within :data:`MAX_EUR`), ``-0.0`` reads as ``0.0``,
and error messages are cut (at most :data:`MAX_ERRORS` problems in about
:data:`crm.safe_yaml.MAX_ERROR_CHARS` characters, each value echoed at most :data:`MAX_ECHO_CHARS`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from crm import safe_yaml
from crm.campaigns.policy import POLICY, PRODUCTS
from crm.campaigns.segments import NAMED_SEGMENTS
from crm.contract import CHANNELS, JURISDICTIONS, PROBABILITY_SCORE_FIELDS
from ml.features import CATEGORICAL_FEATURES, FEATURE_NAMES

# Fields a segment rule may test: model features plus profile fields.
PROFILE_FIELDS = ("age_years", "tenure_days", "brand_id", "country")
# Probability scores a segment may bound (the vocabulary: ml.models.PROBABILITY_SCORE_FIELDS).
SCORE_FIELDS: tuple[str, ...] = PROBABILITY_SCORE_FIELDS
RULE_FIELDS = tuple(FEATURE_NAMES) + PROFILE_FIELDS
# compared as text (==, !=, in); every other rule field is a number
TEXT_RULE_FIELDS = ("brand_id", "country", *CATEGORICAL_FEATURES)

# Bounds of every number in a spec: beyond them a value is a typo or an attack (EUR 1e308
# overflows the conversion to cents). Money in EUR; anything else (rule thresholds in cents,
# weights, counts) within MAX_NUMBER.
MAX_EUR = 1_000_000_000.0
MAX_NUMBER = 1e12
# Error messages echo what was written: at most this many problems, each value cut to this.
MAX_ERRORS = 20
MAX_ECHO_CHARS = 200
MAX_MESSAGE_CHARS = 1_500  # a message may list what is expected (every rule field)
# Ids are file and folder names: never a name Windows reserves for a device.
_DEVICE_NAMES = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
                           *(f"lpt{i}" for i in range(10))})


class CampaignError(ValueError):
    """A campaign file that cannot be used, with the file and field named."""


def _sane_numbers(value: object, at: str = "") -> object:
    """``value`` with every number in it checked finite and within :data:`MAX_NUMBER` (``-0.0`` becomes 0).

    A backstop for every field, also in lists and mappings (``at`` names the item): the fields
    have their own, tighter bounds, so a field added later cannot be left unbounded.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        # an int is compared exactly (float(10**400) would overflow); -0.0 + 0.0 is +0.0
        if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > MAX_NUMBER:
            raise ValueError(f"expected a finite number between -{MAX_NUMBER:g} and {MAX_NUMBER:g}"
                             + (f" (item {at[1:]})" if at else ""))
        return value if isinstance(value, int) else value + 0.0
    if isinstance(value, list):
        return [_sane_numbers(v, f"{at}.{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _sane_numbers(v, f"{at}.{k}") for k, v in value.items()}
    return value


# A number in a rule or a weight: finite (the models refuse inf and nan) and bounded.
Number = Annotated[float, Field(ge=-MAX_NUMBER, le=MAX_NUMBER)]


class _Strict(BaseModel):
    # inf / nan are refused for every float (also written as the strings "inf", "nan")
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _bounded(cls, v: object) -> object:
        """Every number of every field, also in lists and mappings (a new field needs no extra code)."""
        return _sane_numbers(v)


class Rule(_Strict):
    field: str
    op: Literal[">=", ">", "<=", "<", "==", "!=", "between", "in"]
    value: Number | str | list[Number] | list[str]

    @field_validator("field")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in RULE_FIELDS:
            raise ValueError(f"unknown field {v!r}; expected one of: {', '.join(RULE_FIELDS)}")
        return v

    @model_validator(mode="after")
    def _value_shape(self) -> Rule:
        if self.op == "between" and not (isinstance(self.value, list) and len(self.value) == 2):
            raise ValueError("'between' needs a value of two numbers [low, high]")
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError("'in' needs a list value")
        values = self.value if isinstance(self.value, list) else [self.value]
        if self.field in TEXT_RULE_FIELDS:
            if self.op not in ("==", "!=", "in"):
                raise ValueError(f"{self.field} is text: expected op ==, != or in, got {self.op!r}")
            if not all(isinstance(v, str) for v in values):
                raise ValueError(f"{self.field} is text: expected a text value (in quotes)")
        elif not all(isinstance(v, float | int) for v in values):
            raise ValueError(f"{self.field} is a number: expected a number, not text")
        if self.op == "between" and values[0] > values[1]:
            raise ValueError(f"'between' needs [low, high] with low <= high, got {values}")
        return self


class ScoreBound(_Strict):
    min: float | None = Field(default=None, ge=0, le=1)
    max: float | None = Field(default=None, ge=0, le=1)


class Segment(_Strict):
    """Who a campaign is for: named segments (:mod:`crm.campaigns.segments`), narrowed by rules and scores."""

    named: list[str] = []  # a name or a list of names; a player must be in every one
    rules: list[Rule] = []
    scores: dict[Literal[SCORE_FIELDS], ScoreBound] = {}  # type: ignore[valid-type]

    @field_validator("named", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @field_validator("named")
    @classmethod
    def _known_segment(cls, v: list[str]) -> list[str]:
        for name in v:
            if name not in NAMED_SEGMENTS:
                raise ValueError(f"unknown named segment {name!r}; expected one of: {', '.join(NAMED_SEGMENTS)}")
        return v

    @property
    def all_rules(self) -> list[Rule]:
        """The named segments' rules, then the campaign's own (all must hold)."""
        return [r for n in self.named for r in _NAMED[n].rules] + list(self.rules)

    @property
    def all_scores(self) -> dict[str, ScoreBound]:
        """Score bounds of the named segments and the campaign, intersected per score."""
        out: dict[str, ScoreBound] = {}
        for bounds in [*(_NAMED[n].scores for n in self.named), self.scores]:
            for score, b in bounds.items():
                old = out.get(score, ScoreBound())
                lo = [x for x in (old.min, b.min) if x is not None]
                hi = [x for x in (old.max, b.max) if x is not None]
                out[score] = ScoreBound(min=max(lo) if lo else None, max=min(hi) if hi else None)
        return out


class _NamedSegment(_Strict):
    description: str
    rules: list[Rule] = []
    scores: dict[Literal[SCORE_FIELDS], ScoreBound] = {}  # type: ignore[valid-type]


# Validated once at import: a typo in crm/campaigns/segments.py fails loudly, never silently matches nobody.
_NAMED: dict[str, _NamedSegment] = {n: _NamedSegment.model_validate(d) for n, d in NAMED_SEGMENTS.items()}


# The offer templates and how each costs (EUR cents per player), in one place (README "Offers"):
# * bonus, free_spins, mission, tournament: a fixed value (``value_eur``: the bonus, the spins'
#   stake, the mission's reward, the entry's value), what it costs if the player takes it all;
# * cashback: ``percent`` of the player's net loss of the last 7 days, at most ``cap_eur`` (the
#   cap when the loss is unknown: fail closed);
# * deposit_match: ``percent`` of the player's next deposit, at most ``cap_eur``: the cap (the
#   deposit is not known when the offer is made).
OFFER_TEMPLATES = ("none", "bonus", "cashback", "free_spins", "deposit_match", "mission", "tournament")
BONUS_TEMPLATES = OFFER_TEMPLATES[1:]  # every offer but none is a bonus for the rules (fail closed)
FIXED_VALUE_TEMPLATES = ("bonus", "free_spins", "mission", "tournament")
CAPPED_TEMPLATES = ("cashback", "deposit_match")


class Offer(_Strict):
    template: Literal[OFFER_TEMPLATES] = "none"  # type: ignore[valid-type]
    value_eur: float = Field(default=0, ge=0, le=MAX_EUR,
                             description="bonus, free spins, mission reward or tournament entry value, EUR")
    percent: float = Field(default=0, ge=0, le=100,
                           description="cashback percent of 7-day net loss; deposit match percent of the deposit")
    cap_eur: float = Field(default=0, ge=0, le=MAX_EUR, description="cashback or deposit match cap per player, EUR")
    wager_eur: float = Field(default=0, ge=0, le=MAX_EUR,
                             description="a mission's target: what the player wagers to earn the reward, EUR")
    wagering: float = Field(default=0, ge=0, le=100)
    expiry_days: int = Field(default=7, ge=1, le=90)

    @property
    def is_bonus(self) -> bool:
        return self.template != "none"

    @property
    def fixed_cost_cents(self) -> int | None:
        """What the offer costs any player, EUR cents; None when it depends on the player (cashback)."""
        if self.template in FIXED_VALUE_TEMPLATES:
            return round(self.value_eur * 100)
        if self.template == "deposit_match":
            return round(self.cap_eur * 100)
        return 0 if self.template == "none" else None

    @property
    def max_cost_cents(self) -> int:
        """The most the offer can cost one player, EUR cents."""
        fixed = self.fixed_cost_cents
        return round(self.cap_eur * 100) if fixed is None else fixed

    @property
    def can_cost(self) -> bool:
        """Whether any player could cost something (a budget can bind)."""
        if self.template in CAPPED_TEMPLATES:
            return self.percent > 0 and self.cap_eur > 0
        return self.max_cost_cents > 0


OFFER_NAME = r"^[a-z0-9][a-z0-9_]{0,47}$"  # an offer of the catalogue, an intent
MAX_CHOICES = 20
CATALOGUE_CONTEXT = "offer_catalogue"  # validation context: the campaign folder's offer catalogue


class OfferChoice(_Strict):
    """An offer a player may be given: its terms and how its effect compares with the bonuses the
    uplift model learned from (the catalogue's offers, a campaign's ``offer.choices``)."""

    offer: Offer
    relative_effect: float = Field(default=1.0, ge=0, le=10, description=(
        "its effect relative to the bonuses the uplift model learned from (1: the same)"))
    description: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _is_an_offer(self) -> OfferChoice:
        if not self.offer.is_bonus:
            raise ValueError("offer.template is 'none': an offer to choose must be one of the offer templates")
        try:  # what a campaign with this offer would be refused for (e.g. a value above the policy's daily cap)
            CampaignSpec(id="offer_check", name="offer check", channel="email", offer=self.offer,
                         target=Target(by="uplift"))
        except ValidationError as e:
            raise ValueError("; ".join(str(x.get("msg", "")) for x in e.errors(include_url=False))[:500]) from None
        return self


class CampaignOffer(Offer):
    """A campaign's offer: fixed terms (:class:`Offer`), or a choice per player.

    ``intent: winback`` gives each player the best of the catalogue intent's offers for them
    (``campaigns/_offers.yaml``): the one every rule allows with the highest predicted value net
    of its cost per euro (:func:`crm.campaigns.offer_generation.choose_offers`, the rule of
    ``POST /v1/offers/generate``). Loading the campaign copies the intent's offers into
    ``choices``, so the campaign's version (its spec hash, what is approved) changes whenever the
    catalogue changes them. ``choices`` may also be written in the campaign itself instead of an
    intent. A campaign with choices targets by uplift (the choice is by predicted value).
    """

    intent: Annotated[str, Field(pattern=OFFER_NAME)] | None = None
    choices: dict[Annotated[str, Field(pattern=OFFER_NAME)], OfferChoice] = Field(default={}, max_length=MAX_CHOICES)

    @model_validator(mode="before")
    @classmethod
    def _resolve_intent(cls, data: object, info: ValidationInfo) -> object:
        if isinstance(data, Offer) and not isinstance(data, CampaignOffer):  # a fixed offer given as a model
            return data.model_dump()
        if not isinstance(data, dict) or data.get("intent") is None:
            return data
        context = info.context or {}
        if CATALOGUE_CONTEXT not in context:
            if data.get("choices"):  # a loaded campaign's dump: the intent already resolved
                return data
            raise ValueError("offer.intent names an intent of the offer catalogue (campaigns/_offers.yaml), which "
                             "is read when the campaign is loaded from its folder (crm.campaigns.spec.load_campaign)")
        catalogue = context[CATALOGUE_CONTEXT]
        if isinstance(catalogue, Exception):
            raise ValueError(f"offer.intent needs the offer catalogue, which cannot be read: {catalogue}")
        if "choices" in data:
            raise ValueError("give offer.intent (the catalogue's offers) or offer.choices (the campaign's own), "
                             "not both")
        name = data["intent"]
        intent = catalogue.intents.get(name) if isinstance(name, str) else None
        if intent is None:
            known = ", ".join(sorted(catalogue.intents)) or "none: the catalogue has no intents"
            raise ValueError(f"offer.intent {safe_yaml.short(repr(name), MAX_ECHO_CHARS)} is not an intent of "
                             f"campaigns/_offers.yaml (known: {known})")
        return {**data, "choices": {o: catalogue.offers[o].model_dump() for o in intent.offers}}

    @model_validator(mode="after")
    def _choice_or_terms(self) -> CampaignOffer:
        if not self.choices:
            return self
        terms = sorted(self.model_fields_set - {"intent", "choices"})
        if terms:
            raise ValueError(f"offer.{terms[0]} is set beside offer.{'intent' if self.intent else 'choices'}: an "
                             "offer chosen per player takes its terms from its choices; remove "
                             f"{', '.join('offer.' + t for t in terms)}")
        return self

    @model_serializer(mode="wrap")
    def _without_unset_choice(self, handler):
        """A fixed offer serialises as before choices existed (its campaign's spec hash, and so its
        approval, does not change); an offer chosen per player as its intent and choices only."""
        out = handler(self)
        if isinstance(out, dict) and self.chosen_per_player:
            return {k: out[k] for k in ("intent", "choices") if k in out and (k != "intent" or self.intent)}
        if isinstance(out, dict):
            if self.intent is None:
                out.pop("intent", None)
            if not self.choices:
                out.pop("choices", None)
        return out

    @property
    def chosen_per_player(self) -> bool:
        return bool(self.choices) or self.intent is not None

    @property
    def options(self) -> list[Offer]:
        """The offers a player may get: the choices, or the one fixed offer."""
        return [c.offer for c in self.choices.values()] if self.choices else [self]

    @property
    def is_bonus(self) -> bool:
        return self.chosen_per_player or super().is_bonus  # fail closed: an unresolved intent is a bonus

    @property
    def fixed_cost_cents(self) -> int | None:
        return None if self.chosen_per_player else super().fixed_cost_cents

    @property
    def max_cost_cents(self) -> int:
        return max(o.max_cost_cents for o in self.options) if self.choices else super().max_cost_cents

    @property
    def can_cost(self) -> bool:
        return any(o.can_cost for o in self.options) if self.choices else (
            self.intent is not None or super().can_cost)

    @property
    def max_expiry_days(self) -> int:
        """The longest any of its offers runs (how far back a running offer is looked for)."""
        return max(o.expiry_days for o in self.options)

    @property
    def label(self) -> str:
        """Short: the template, or ``choice of N (intent)``."""
        if not self.chosen_per_player:
            return self.template
        return f"choice of {len(self.choices)}" + (f" ({self.intent})" if self.intent else "")


class Target(_Strict):
    """Who among the eligible players gets the campaign.

    ``by: all`` (default): everyone eligible in the segment. ``by: uplift``: the players
    with the highest predicted value of the offer net of its cost (the ``uplift_deposit``
    champion's predicted deposit uplift x the player's expected theoretical win, less the
    offer's cost: the list's ``predicted_value_eur_cents``, EUR cents) per cent of offer cost,
    leaving out those predicted at or below
    ``min_uplift_eur``, while the offer cost of the treated (non-holdout) players stays
    within ``budget_eur`` (no budget: every player above the minimum). See
    :func:`ml.policy.select_by_value_per_cost` for the exact rule.
    """

    by: Literal["all", "uplift"] = "all"
    budget_eur: float | None = Field(default=None, gt=0, le=MAX_EUR, description="total offer cost of the treated, EUR")
    min_uplift_eur: float = Field(default=0, ge=0, le=MAX_EUR,
                                  description="leave out players predicted at or below this, EUR")

    @model_validator(mode="after")
    def _uplift_only(self) -> Target:
        if self.by != "uplift":
            given = [f for f in ("budget_eur", "min_uplift_eur") if f in self.model_fields_set]
            if given:
                raise ValueError(f"target.{given[0]} applies only with 'by: uplift' ('by: all' lists everyone "
                                 "eligible in the segment, so a budget would cut the list arbitrarily)")
        return self

    @property
    def budget_cents(self) -> int | None:
        return None if self.budget_eur is None or self.by != "uplift" else round(self.budget_eur * 100)

    @property
    def min_uplift_cents(self) -> int | None:
        return round(self.min_uplift_eur * 100) if self.by == "uplift" else None


class Experiment(_Strict):
    salt: str = "v1"
    holdout: float = Field(default=0.1, ge=0, lt=1)
    variants: dict[str, Annotated[float, Field(gt=0, le=MAX_NUMBER)]] = {"A": 1.0}

    @field_validator("variants")
    @classmethod
    def _no_holdout_name(cls, v: dict[str, float]) -> dict[str, float]:
        if "holdout" in v:
            raise ValueError("'holdout' is reserved for the holdout group; rename the variant")
        if not v:
            raise ValueError("at least one variant is needed")
        return v


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Schedule(_Strict):
    """When the campaign runs: as-of dates [start, end] (inclusive; open when omitted), on
    ``weekdays`` (empty: every day), sent at ``send_time_utc`` on the as-of date. Quiet
    hours and blackouts are checked at that instant in each player's local time."""

    start: dt.date | None = None
    end: dt.date | None = None
    weekdays: list[Literal[WEEKDAYS]] = []  # type: ignore[valid-type]
    send_time_utc: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = "10:00"

    @field_validator("send_time_utc", mode="before")
    @classmethod
    def _quoted_time(cls, v: object) -> object:
        if not isinstance(v, str):  # YAML reads an unquoted 10:00 as the number 600
            raise ValueError('expected a time "HH:MM" in quotes, e.g. send_time_utc: "10:00"')
        return v

    @model_validator(mode="after")
    def _ordered(self) -> Schedule:
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"schedule.end {self.end} is before schedule.start {self.start}")
        return self

    @property
    def send_time(self) -> dt.time:
        return dt.time.fromisoformat(self.send_time_utc)

    def send_at(self, as_of: dt.date) -> dt.datetime:
        """The send instant of the list of ``as_of`` (naive UTC)."""
        return dt.datetime.combine(as_of, self.send_time)

    def active_on(self, as_of: dt.date) -> bool:
        return ((self.start is None or as_of >= self.start) and (self.end is None or as_of <= self.end)
                and (not self.weekdays or WEEKDAYS[as_of.weekday()] in self.weekdays))


class Budget(_Strict):
    """Offer cost limits: ``total_eur`` over the campaign's life (offers already dispatched
    count), ``per_player_per_day_eur`` for a player's offers of one day across all campaigns
    (this one included; the policy's own cap holds as well)."""

    total_eur: float | None = Field(default=None, gt=0, le=MAX_EUR)
    per_player_per_day_eur: float | None = Field(default=None, gt=0, le=MAX_EUR)

    @property
    def total_cents(self) -> int | None:
        return None if self.total_eur is None else round(self.total_eur * 100)

    @property
    def per_player_per_day_cents(self) -> int | None:
        return None if self.per_player_per_day_eur is None else round(self.per_player_per_day_eur * 100)


class Frequency(_Strict):
    """How often a player may hear from us: each limit tightens the house policy
    (:data:`crm.campaigns.policy.POLICY`) for this campaign; none can loosen it."""

    max_per_day: int | None = Field(default=None, ge=1, le=1000,
                                    description="messages on this channel per player per day")
    max_per_week: int | None = Field(default=None, ge=1, le=7000,
                                     description="messages on this channel per player per 7 days")
    cooldown_hours: float | None = Field(default=None, ge=0, le=720, description="hours since the nearest message")
    dedup_days: int | None = Field(default=None, ge=0, le=365, description="no repeat of the dedup key within N days")
    dedup_key: Annotated[str, Field(pattern=r"^[a-z0-9_]{3,64}$")] | None = None  # default: the campaign id


class Approval(_Strict):
    """Four-eyes approval (crm.campaigns.approvals): always when ``required``, else above the cost threshold."""

    required: bool = False


class CampaignSpec(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9_]{3,64}$")]  # ASCII only: it names files and folders
    name: str
    owner: str = "unknown"  # a person's name (crm.campaigns.approvals.person_name): the author, who cannot approve
    channel: Literal[CHANNELS]  # type: ignore[valid-type]
    brands: list[str] = []  # empty = all brands
    jurisdictions: list[Literal[JURISDICTIONS]] = []  # type: ignore[valid-type]
    segment: Segment = Segment()
    offer: CampaignOffer = CampaignOffer()
    target: Target = Target()
    experiment: Experiment = Experiment()
    # 1 = highest: the lists of a day are built in priority order (ties by id), each seeing
    # what the higher-priority lists took (caps, the one-bonus-per-day rule, costs).
    priority: int = Field(default=100, ge=1, le=1000)
    transactional: bool = False  # may bypass frequency caps, cooldown and quiet hours; never consent or RG
    product: Literal[PRODUCTS] = "casino"  # type: ignore[valid-type]  # consent per product where required
    schedule: Schedule = Schedule()
    budget: Budget = Field(default_factory=Budget, validate_default=True)  # also checks the offer vs the policy
    frequency: Frequency = Frequency()
    max_list_size: int | None = Field(default=None, gt=0, le=1_000_000_000)
    approval: Approval = Approval()

    @field_validator("id")
    @classmethod
    def _not_a_device(cls, v: str) -> str:
        if v in _DEVICE_NAMES:
            raise ValueError(f"{v!r} is a device name on Windows and cannot name a file; choose another id")
        return v

    @field_validator("owner")
    @classmethod
    def _a_person(cls, v: str) -> str:
        return owner_name(v)

    @field_validator("target")
    @classmethod
    def _budget_needs_a_cost(cls, v: Target, info: ValidationInfo) -> Target:
        offer = info.data.get("offer")
        if v.budget_eur is not None and offer is not None and not offer.can_cost:
            raise ValueError(f"target.budget_eur is set but the offer ({offer.template}) costs nothing, so a budget "
                             "cannot bind; remove budget_eur to rank by predicted uplift alone, or give the offer "
                             "a value")
        return v

    @model_validator(mode="after")
    def _choice_by_value(self) -> CampaignSpec:
        if self.offer.chosen_per_player and self.target.by != "uplift":
            raise ValueError("the offer is chosen per player by its predicted value (offer.intent or offer.choices), "
                             "which needs 'target: {by: uplift}'")
        return self

    @field_validator("transactional")
    @classmethod
    def _transactional_carries_no_offer(cls, v: bool, info: ValidationInfo) -> bool:
        offer = info.data.get("offer")
        if v and offer is not None and offer.is_bonus:
            raise ValueError(f"a transactional message cannot carry an offer (the offer is {offer.label!r}); "
                             "expected offer.template: none, or transactional: false")
        return v

    @field_validator("budget")
    @classmethod
    def _budget_fits_the_offer(cls, v: Budget, info: ValidationInfo) -> Budget:
        offer = info.data.get("offer")
        if offer is None:
            return v
        if (v.total_eur is not None or v.per_player_per_day_eur is not None) and not offer.can_cost:
            raise ValueError(f"a budget is set but the offer ({offer.template}) costs nothing, so it cannot bind; "
                             "remove the budget block or give the offer a value")
        names = list(offer.choices) if offer.choices else [None]
        for name, o in zip(names, offer.options, strict=True):
            which = "the offer's" if name is None else f"offer choice {name}'s"
            fixed = o.fixed_cost_cents if o.template in FIXED_VALUE_TEMPLATES else None
            per_player = v.per_player_per_day_cents
            if fixed is not None and per_player is not None and fixed > per_player:
                raise ValueError(f"per_player_per_day_eur {v.per_player_per_day_eur} is below {which} value "
                                 f"{o.value_eur}: no player could ever get it; expected at least {o.value_eur}")
            if fixed is not None and fixed > POLICY.max_cost_per_player_per_day_cents:
                raise ValueError(f"{which} value (value_eur) {o.value_eur} EUR exceeds the policy's maximum cost per "
                                 f"player per day ({POLICY.max_cost_per_player_per_day_cents / 100:g} EUR)")
            if v.total_cents is not None and fixed is not None and fixed > v.total_cents:
                raise ValueError(f"total_eur {v.total_eur} is below one offer ({which} {o.value_eur} EUR); expected "
                                 f"at least {o.value_eur}")
        return v

    @field_validator("frequency")
    @classmethod
    def _frequency_only_tightens(cls, v: Frequency, info: ValidationInfo) -> Frequency:
        channel = info.data.get("channel")
        if channel is None:
            return v
        day, week = POLICY.channel_cap(channel)
        problems = []
        if v.max_per_day is not None and v.max_per_day > day:
            problems.append(f"max_per_day {v.max_per_day} exceeds the policy's {channel} cap of {day} per day")
        if v.max_per_week is not None and v.max_per_week > week:
            problems.append(f"max_per_week {v.max_per_week} exceeds the policy's {channel} cap of {week} per week")
        if v.cooldown_hours is not None and v.cooldown_hours < POLICY.cooldown_hours:
            problems.append(f"cooldown_hours {v.cooldown_hours:g} is below the policy's {POLICY.cooldown_hours:g}")
        if v.dedup_days is not None and v.dedup_days < POLICY.dedup_days:
            problems.append(f"dedup_days {v.dedup_days} is below the policy's {POLICY.dedup_days}")
        if problems:
            raise ValueError(
                "; ".join(problems) + " (a campaign can only tighten the contact policy, crm/campaigns/policy.py)"
            )
        return v

    @property
    def uses_ml(self) -> bool:
        """Targeting by a model (score thresholds, also a named segment's, or uplift): needs profiling consent."""
        return bool(self.segment.all_scores) or self.target.by == "uplift"

    @property
    def dedup_key(self) -> str:
        """Messages with the same key are duplicates within the dedup window (default: the campaign id)."""
        return self.frequency.dedup_key or self.id

    @property
    def order_key(self) -> tuple[int, str]:
        """Build order of a day's lists: priority (1 first), then id."""
        return (self.priority, self.id)

    def with_offer(self, offer: Offer) -> CampaignSpec:
        """This campaign with the fixed ``offer`` (one of its choices: what the rule table checks)."""
        return self.model_copy(update={"offer": CampaignOffer.model_validate(offer.model_dump())})

    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def owner_name(v: str) -> str:
    """An ``owner`` as :func:`crm.campaigns.approvals.person_name` writes it; ValueError when it is
    not a person's name (campaigns and triggers: the author, who cannot approve)."""
    from crm.campaigns.approvals import name_problem, person_name  # crm.campaigns.approvals imports this module

    problem = name_problem(v)
    if problem:
        raise ValueError(problem)
    return person_name(v)


def format_validation_error(where: str | Path, what: str, err: ValidationError) -> str:
    """``err`` as lines naming each field, for people: at most :data:`MAX_ERRORS` problems, every
    message and echoed value cut, so a huge value in the input never makes a huge message."""
    problems = err.errors(include_url=False)
    lines = [f"{where}: invalid {what}"]
    size, seen = len(lines[0]), set()
    for e in problems[:MAX_ERRORS]:
        loc = safe_yaml.short(".".join(str(x) for x in e["loc"]) or "(top level)", MAX_ECHO_CHARS)
        got = safe_yaml.short(repr(e.get("input")), MAX_ECHO_CHARS)
        msg = "the same as above" if e["msg"] in seen else safe_yaml.short(e["msg"], MAX_MESSAGE_CHARS)
        seen.add(e["msg"])
        line = f"  - field '{loc}': {msg} (got {got})"
        if len(lines) > 1 and size + len(line) > safe_yaml.MAX_ERROR_CHARS:
            break
        lines.append(line)
        size += len(line) + 1
    if len(problems) >= len(lines):
        lines.append(f"  ... and {len(problems) - len(lines) + 1} more problems")
    return "\n".join(lines)


def load_config_file(path: str | Path, model: type, what: str, error: type[Exception]):
    """The ``model`` in the optional configuration file ``path`` (the frequency policies, the
    calendar, the offer catalogue): absent or empty, the model's defaults; anything else that is
    not a regular file holding a mapping valid for ``model`` is an ``error`` naming the file, the
    field and what was expected (fail closed). The file is hostile input (:mod:`crm.safe_yaml`)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return model()
    if not path.is_file():  # a folder, a device, a dangling link
        raise error(f"{path}: not a regular file")
    try:
        data = safe_yaml.load(path)
    except safe_yaml.YamlInputError as e:  # too big, an alias bomb, not UTF-8, not YAML, a value like 2025-13-01
        raise error(safe_yaml.short(str(e))) from None
    if data is None:
        return model()
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping of {what} at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise error(format_validation_error(path, what, e)) from None


def load_spec_file(path: str | Path, model: type, what: str, error: type[Exception], context: dict | None = None):
    """The ``model`` in YAML file ``path`` (a campaign, a trigger, a journey); any problem with the
    file is an ``error`` naming it, the field and what was expected. The file is hostile input
    (:mod:`crm.safe_yaml`), and its name must be its ``id``. ``context``: pydantic's validation
    context (a campaign's: the offer catalogue)."""
    path = Path(path)
    if not path.is_file():  # a folder, a device, a pipe (e.g. a link to /dev/zero): not a spec
        raise error(f"{path}: not a regular file")
    try:
        data = safe_yaml.load(path)
    except safe_yaml.YamlInputError as e:  # too big, an alias bomb, not UTF-8, not YAML, a value like 2025-13-01
        raise error(safe_yaml.short(str(e))) from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping of {what} fields at the top level, "
                    f"got {'nothing (an empty file)' if data is None else type(data).__name__}")
    try:
        spec = model.model_validate(data, context=context)
    except ValidationError as e:
        raise error(format_validation_error(path, what, e)) from None
    except (ArithmeticError, TypeError, RecursionError) as e:  # a validator's bug must not stop the other files
        raise error(f"{path}: cannot be validated ({type(e).__name__}: "
                    f"{safe_yaml.short(str(e), MAX_ECHO_CHARS)})") from e
    if spec.id != path.stem:
        raise error(f"{path}: field 'id' is {spec.id!r} but the file is named {path.stem!r}; they must match")
    return spec


def offer_catalogue(directory: str | Path) -> object:
    """The offer catalogue of a campaign folder (``_offers.yaml``) as a campaign's ``offer.intent``
    reads it, or the error that says why it cannot be read (only a campaign with an intent fails)."""
    from crm.campaigns.offer_generation import OfferCatalogueError, load_catalogue  # it imports this module

    try:
        return load_catalogue(directory)
    except OfferCatalogueError as e:
        return e


def load_campaign(path: str | Path, catalogue: object = None) -> CampaignSpec:
    """The campaign in ``path``; any problem with the file is a :class:`CampaignError` naming it.
    An ``offer.intent`` is resolved with ``catalogue`` (default: the folder's, :func:`offer_catalogue`)."""
    catalogue = offer_catalogue(Path(path).parent) if catalogue is None else catalogue
    return load_spec_file(path, CampaignSpec, "campaign", CampaignError, {CATALOGUE_CONTEXT: catalogue})


def load_campaigns(directory: str | Path) -> tuple[list[CampaignSpec], list[str]]:
    """All campaigns in a folder: the valid specs and an error message per broken file."""
    specs, errors = [], []
    catalogue = None
    for path in sorted(Path(directory).glob("*.y*ml")):
        if path.name.startswith("_"):  # _calendar.yaml and other shared files are not campaigns
            continue
        catalogue = offer_catalogue(directory) if catalogue is None else catalogue
        try:
            specs.append(load_campaign(path, catalogue))
        except CampaignError as e:
            errors.append(str(e))
    return specs, errors
