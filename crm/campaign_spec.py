"""Campaign definitions: the YAML a marketer edits, validated on load.

A broken file gets an error naming the file, the field and what was expected; one
broken campaign does not stop the others (:func:`load_campaigns` returns both).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from crm.contract import CHANNELS, JURISDICTIONS
from ml.features import FEATURE_NAMES

# Fields a segment rule may test: model features plus profile fields.
PROFILE_FIELDS = ("age_years", "tenure_days", "brand_id", "country")
SCORE_FIELDS = ("churn_score", "deposit_intent_score")
RULE_FIELDS = tuple(FEATURE_NAMES) + PROFILE_FIELDS


class CampaignError(ValueError):
    """A campaign file that cannot be used, with the file and field named."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Strict):
    field: str
    op: Literal[">=", ">", "<=", "<", "==", "!=", "between", "in"]
    value: float | str | list[float] | list[str]

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
        return self


class ScoreBound(_Strict):
    min: float | None = Field(default=None, ge=0, le=1)
    max: float | None = Field(default=None, ge=0, le=1)


class Segment(_Strict):
    rules: list[Rule] = []
    scores: dict[Literal["churn_score", "deposit_intent_score"], ScoreBound] = {}


class Offer(_Strict):
    template: Literal["none", "bonus", "cashback", "free_spins"] = "none"
    value_eur: float = Field(default=0, ge=0, description="bonus value or free-spins value, EUR")
    percent: float = Field(default=0, ge=0, le=100, description="cashback percent of 7-day net loss")
    cap_eur: float = Field(default=0, ge=0, description="cashback cap per player, EUR")
    wagering: float = Field(default=0, ge=0, le=100)
    expiry_days: int = Field(default=7, ge=1, le=90)

    @property
    def is_bonus(self) -> bool:
        return self.template != "none"

    @property
    def can_cost(self) -> bool:
        """Whether any player could cost something (a budget can bind)."""
        if self.template in ("bonus", "free_spins"):
            return self.value_eur > 0
        if self.template == "cashback":
            return self.percent > 0 and self.cap_eur > 0
        return False


class Target(_Strict):
    """Who among the eligible players gets the campaign.

    ``by: all`` (default): everyone eligible in the segment. ``by: uplift``: the players
    with the highest predicted incremental NGR (model ``uplift_ngr``, EUR cents, net of
    the bonus cost) per cent of offer cost, leaving out those predicted at or below
    ``min_uplift_eur``, while the offer cost of the treated (non-holdout) players stays
    within ``budget_eur`` (no budget: every player above the minimum). See
    :func:`ml.policy.select_by_value_per_cost` for the exact rule.
    """

    by: Literal["all", "uplift"] = "all"
    budget_eur: float | None = Field(default=None, gt=0, description="total offer cost of the treated, EUR")
    min_uplift_eur: float = Field(default=0, ge=0, description="leave out players predicted at or below this, EUR")

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
    variants: dict[str, Annotated[float, Field(gt=0)]] = {"A": 1.0}

    @field_validator("variants")
    @classmethod
    def _no_holdout_name(cls, v: dict[str, float]) -> dict[str, float]:
        if "holdout" in v:
            raise ValueError("'holdout' is reserved for the holdout group; rename the variant")
        if not v:
            raise ValueError("at least one variant is needed")
        return v


class CampaignSpec(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9_]{3,64}$")]
    name: str
    owner: str = "unknown"
    channel: Literal[CHANNELS]  # type: ignore[valid-type]
    brands: list[str] = []  # empty = all brands
    jurisdictions: list[Literal[JURISDICTIONS]] = []  # type: ignore[valid-type]
    segment: Segment = Segment()
    offer: Offer = Offer()
    target: Target = Target()
    experiment: Experiment = Experiment()
    max_list_size: int | None = Field(default=None, gt=0)

    @field_validator("target")
    @classmethod
    def _budget_needs_a_cost(cls, v: Target, info: ValidationInfo) -> Target:
        offer = info.data.get("offer")
        if v.budget_eur is not None and offer is not None and not offer.can_cost:
            raise ValueError(f"target.budget_eur is set but the offer ({offer.template}) costs nothing, so a budget "
                             "cannot bind; remove budget_eur to rank by predicted uplift alone, or give the offer "
                             "a value")
        return v

    @property
    def uses_ml(self) -> bool:
        """Targeting by a model (score thresholds or uplift): needs profiling consent."""
        return bool(self.segment.scores) or self.target.by == "uplift"

    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def _format_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid campaign"]
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        lines.append(f"  - field '{loc}': {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_campaign(path: str | Path) -> CampaignSpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise CampaignError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise CampaignError(f"{path}: expected a mapping of campaign fields at the top level")
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as e:
        raise CampaignError(_format_error(path, e)) from e
    if spec.id != path.stem:
        raise CampaignError(f"{path}: field 'id' is {spec.id!r} but the file is named {path.stem!r}; "
                            "they must match")
    return spec


def load_campaigns(directory: str | Path) -> tuple[list[CampaignSpec], list[str]]:
    """All campaigns in a folder: the valid specs and an error message per broken file."""
    specs, errors = [], []
    for path in sorted(Path(directory).glob("*.y*ml")):
        try:
            specs.append(load_campaign(path))
        except CampaignError as e:
            errors.append(str(e))
    return specs, errors
