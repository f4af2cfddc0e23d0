"""Jurisdiction rules, held in one table so compliance can read them in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JurisdictionRules:
    code: str
    min_age: int = 18
    age_verification_required: bool = True
    min_age_targeted_bonus: int = 18  # NL: no targeted bonus to players under 24
    max_wagering: float | None = None  # UK: wagering requirement at most 10x
    bonus_first_occasion_only: bool = False  # SE: a bonus only on the first occasion


RULES: dict[str, JurisdictionRules] = {
    "UK": JurisdictionRules("UK", max_wagering=10.0),
    "MT": JurisdictionRules("MT", age_verification_required=False),
    "NL": JurisdictionRules("NL", min_age_targeted_bonus=24),
    "SE": JurisdictionRules("SE", bonus_first_occasion_only=True),
    "DE": JurisdictionRules("DE"),
}

# Unknown jurisdiction: the strictest combination, so an unmapped country is never laxer.
STRICTEST = JurisdictionRules("??", min_age=18, age_verification_required=True, min_age_targeted_bonus=24,
                              max_wagering=10.0, bonus_first_occasion_only=True)


def rules_for(code: str | None) -> JurisdictionRules:
    return RULES.get(code or "", STRICTEST)
