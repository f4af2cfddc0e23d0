"""Who may be contacted: every compliance rule of DESIGN.md, in one place.

Each rule is a vectorised predicate over the player profile (``dim_player``) that says
whether the player *passes*. Missing data fails closed: an unknown age, consent or RG
state never makes a player eligible. A player is eligible only if every rule passes;
the first failing rule (in the order below) is the reason counted in the suppression
report, and every failing rule is kept for ``crm explain``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crm.campaign_spec import CampaignSpec
from crm.jurisdictions import rules_for


def _flag(df: pd.DataFrame, col: str, missing: bool) -> pd.Series:
    """A boolean column with NULLs (or an absent column) replaced by ``missing``."""
    if col not in df:
        return pd.Series(missing, index=df.index)
    return df[col].astype("boolean").fillna(missing).astype(bool)


def _jurisdiction(df: pd.DataFrame, attr: str) -> pd.Series:
    values = [getattr(rules_for(c if isinstance(c, str) else None), attr) for c in df["country"]]
    return pd.Series(values, index=df.index, dtype=object)


def _age(df: pd.DataFrame) -> pd.Series:
    return pd.to_numeric(df.get("age_years"), errors="coerce")


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    passes: Callable[[pd.DataFrame, CampaignSpec], pd.Series]


RULES: tuple[Rule, ...] = (
    Rule("under_age", "player is at least the jurisdiction's minimum age",
         lambda df, c: (_age(df) >= _jurisdiction(df, "min_age").astype(float)).fillna(False).astype(bool)),
    Rule("age_not_verified", "age verified where the jurisdiction requires it",
         lambda df, c: _flag(df, "age_verified", False) | ~_jurisdiction(df, "age_verification_required").astype(bool)),
    Rule("self_excluded", "not self-excluded now",
         lambda df, c: ~_flag(df, "self_excluded_now", True)),
    Rule("excluded_not_returned", "an ended self-exclusion stays suppressed until the player returns",
         lambda df, c: ~_flag(df, "ever_self_excluded", True) | _flag(df, "returned_after_exclusion", False)),
    Rule("cooling_off", "not in a cooling-off period",
         lambda df, c: ~_flag(df, "cooling_off_now", True)),
    Rule("harm_risk", "no strong harm indicators",
         lambda df, c: ~_flag(df, "harm_risk_flag", True)),
    Rule("no_channel_consent", "valid opt-in for the campaign's channel, not revoked, unsubscribed or complained",
         lambda df, c: _flag(df, f"consent_{c.channel}", False)),
    Rule("no_profiling_consent", "ML targeting only with profiling consent",
         lambda df, c: _flag(df, "consent_profiling", False) if c.uses_ml else pd.Series(True, index=df.index)),
    Rule("bonus_under_jurisdiction_age", "no targeted bonus below the jurisdiction's bonus age (NL: 24)",
         lambda df, c: ((_age(df) >= _jurisdiction(df, "min_age_targeted_bonus").astype(float))
                        .fillna(False).astype(bool)
                        if c.offer.is_bonus else pd.Series(True, index=df.index))),
    Rule("wagering_over_cap", "offer wagering within the jurisdiction's cap (UK: 10x)",
         lambda df, c: pd.Series([cap is None or c.offer.wagering <= cap for cap in _jurisdiction(df, "max_wagering")],
                                 index=df.index, dtype=bool) if c.offer.is_bonus else pd.Series(True, index=df.index)),
)

RULE_NAMES: tuple[str, ...] = tuple(r.name for r in RULES)


def evaluate(profile: pd.DataFrame, campaign: CampaignSpec) -> pd.DataFrame:
    """One row per profile row: ``pass__<rule>`` columns, ``eligible`` and ``reason``.

    ``reason`` is the first failing rule (None when eligible); ``failed`` lists them all.
    """
    out = pd.DataFrame(index=profile.index)
    for rule in RULES:
        out[f"pass__{rule.name}"] = rule.passes(profile, campaign).astype(bool).to_numpy()
    passes = out[[f"pass__{n}" for n in RULE_NAMES]].to_numpy()
    out["eligible"] = passes.all(axis=1)
    first_fail = np.argmin(passes, axis=1)
    names = np.asarray(RULE_NAMES, dtype=object)
    out["reason"] = np.where(out["eligible"], None, names[first_fail])
    out["failed"] = [",".join(names[~row]) for row in passes]
    return out


def suppression_counts(verdicts: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Counts by first failing rule and by every failing rule."""
    first = verdicts["reason"].dropna().value_counts()
    every = {n: int((~verdicts[f"pass__{n}"]).sum()) for n in RULE_NAMES}
    return {"first_failing_rule": {k: int(v) for k, v in first.items()},
            "every_failing_rule": {k: v for k, v in every.items() if v}}
