"""Shared hypothesis strategies for the compliance property tests: random player profiles
(with missing values), random campaigns, and the plain-written eligibility oracle.

Used by test_eligibility.py and test_targeting.py.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
from hypothesis import strategies as st

from crm.campaign_spec import CampaignSpec

AS_OF = dt.date(2025, 10, 1)
CHANNELS = ["email", "push", "sms", "in_app"]
MAYBE_BOOL = st.one_of(st.none(), st.booleans())
# Predicted incremental NGR if treated, EUR cents: negative, zero, ties, a value that rounds to zero.
UPLIFT_CENTS = st.one_of(st.none(), st.sampled_from([-2500.0, -1.0, 0.0, 1e-7, 50.0, 500.0, 1000.0, 2500.0]),
                         st.floats(-5000, 5000))


@st.composite
def profiles(draw) -> pd.DataFrame:
    n = draw(st.integers(1, 40))
    rows = []
    for i in range(n):
        row = {
            "player_id": f"p_{i:03d}",
            "brand_id": draw(st.sampled_from(["A", "B"])),
            "country": draw(st.sampled_from(["UK", "MT", "NL", "SE", "DE", "XX", None])),
            "locale": "en-GB", "timezone": "Europe/London",
            "age_years": draw(st.one_of(st.none(), st.integers(10, 80))),
            "age_verified": draw(MAYBE_BOOL),
            "self_excluded_now": draw(MAYBE_BOOL),
            "ever_self_excluded": draw(MAYBE_BOOL),
            "returned_after_exclusion": draw(MAYBE_BOOL),
            "cooling_off_now": draw(MAYBE_BOOL),
            "harm_risk_flag": draw(MAYBE_BOOL),
            "consent_profiling": draw(MAYBE_BOOL),
            "churn_score": draw(st.one_of(st.none(), st.floats(0, 1))),
            "churn_model_version": "1",
            "uplift_ngr_score": draw(UPLIFT_CENTS),
            "uplift_ngr_model_version": "2",
            "net_loss_eur_7d": draw(st.integers(-5000, 50000)),
            "days_since_last_active": draw(st.integers(0, 120)),
        }
        for ch in CHANNELS:
            row[f"consent_{ch}"] = draw(MAYBE_BOOL)
        rows.append(row)
    return pd.DataFrame(rows)


@st.composite
def campaigns(draw, uplift: bool | None = None) -> CampaignSpec:
    """A random campaign; ``uplift`` True / False forces ``target: by: uplift`` on / off (None: drawn)."""
    template = draw(st.sampled_from(["none", "bonus", "cashback", "free_spins"]))
    data = {
        "id": "prop_test", "name": "property test", "channel": draw(st.sampled_from(CHANNELS)),
        "offer": {"template": template, "value_eur": 10, "percent": 10, "cap_eur": 50,
                  "wagering": draw(st.sampled_from([0, 5, 10, 10.5, 35]))},
        "experiment": {"holdout": draw(st.sampled_from([0.0, 0.1, 0.5])), "variants": {"A": 1, "B": 2}},
    }
    if draw(st.booleans()):
        data["segment"] = {"scores": {"churn_score": {"min": draw(st.sampled_from([0.0, 0.3]))}}}
    if uplift if uplift is not None else draw(st.booleans()):
        target = {"by": "uplift", "min_uplift_eur": draw(st.sampled_from([0, 0.5, 5]))}
        budget = draw(st.sampled_from([None, 0.01, 10, 25, 60, 100, 1000])) if template != "none" else None
        if budget is not None:
            target["budget_eur"] = budget
        data["target"] = target
        if draw(st.booleans()):
            data["max_list_size"] = draw(st.integers(1, 10))
    return CampaignSpec.model_validate(data)


def _true(v) -> bool:
    return v is True or (v is not None and not (isinstance(v, float) and math.isnan(v)) and bool(v) is True)


def oracle_eligible(row: dict, c: CampaignSpec) -> bool:
    """DESIGN.md's rules, one by one; anything unknown fails."""
    country = row["country"]
    age = row["age_years"]
    if age is None or (isinstance(age, float) and math.isnan(age)) or age < 18:
        return False
    if country not in ("MT",) and not _true(row["age_verified"]):  # unknown jurisdictions: strictest
        return False
    if row["self_excluded_now"] is not False:
        return False
    if not (row["ever_self_excluded"] is False or _true(row["returned_after_exclusion"])):
        return False
    if row["cooling_off_now"] is not False or row["harm_risk_flag"] is not False:
        return False
    if not _true(row[f"consent_{c.channel}"]):
        return False
    if (c.segment.scores or c.target.by == "uplift") and not _true(row["consent_profiling"]):  # ML targeting
        return False
    if c.offer.is_bonus:
        if country in ("NL", "XX", None) and age < 24:
            return False
        if country in ("UK", "XX", None) and c.offer.wagering > 10:
            return False
    return True


def profile_rows(profile: pd.DataFrame) -> pd.DataFrame:
    """The profile by player id with missing values as None (what the oracle reads)."""
    rows = profile.set_index("player_id")
    return rows.astype(object).where(rows.notna(), None)
