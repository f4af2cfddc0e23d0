"""Jurisdiction rules, held in one table so compliance can read them in one place.

One row per licence jurisdiction; :mod:`crm.campaigns.eligibility` reads these fields and nothing
else decides what a jurisdiction allows. The table states our reading of each regime;
compliance signs it off (see docs/compliance_rules.md for the sources and open questions).

| field | meaning |
| --- | --- |
| ``min_age`` | no marketing below this age |
| ``age_verification_required`` | the age must be verified (KYC) before any marketing |
| ``min_age_targeted_bonus`` | no targeted bonus (bonus, cashback, free spins) below this age |
| ``max_wagering`` | largest wagering requirement a bonus may carry (None: no cap) |
| ``bonus_first_occasion_only`` | a bonus only on the first occasion: never to a player who already had one |
| ``product_consent_required`` | marketing consent must name the product promoted (per channel and product) |
| ``quiet_hours`` | local hours [start, end) in which no marketing message is sent |
| ``timezone`` | used when a player's own time zone is unknown or invalid |

* UK (UKGC): wagering at most 10x on any bonus (LCCP SR 5.1.1, from 19 January 2026);
  direct marketing consent per product and channel (SR 5.1.11 as amended, same date).
* MT (MGA): age verification may follow registration (the operator's KYC window), so the
  age rule reads the declared age.
* NL (KSA, Wet Koa / Werving- en reclamebesluit): no targeted bonus or promotion to players
  under 24.
* SE (Spelinspektionen, Spellagen 14 kap. 9 §): a bonus may be offered only on the first
  gaming occasion: a player who already received any bonus (from the operator or from one
  of our offers) gets none.
* DE (GGL, GlüStV 2021; UWG § 7): 18+, verified age, and consent per product: sports betting,
  virtual slot machines, online poker and online casino games are licensed separately, and
  advertising consent by e-mail / SMS must name what it covers, so we read a consent for one
  product as no consent for another (fail closed). Open for compliance: whether the
  ban on internet advertising for virtual slots / online poker / online casino between 06:00
  and 21:00 (§ 5 (3)) covers direct messages to existing customers; if so, DE needs a send
  window, not only quiet hours.

Everywhere, whatever ``product_consent_required`` says, a product whose latest consent change on
a channel is a withdrawal is never promoted on that channel until the player says yes to it (or
to the whole channel) again: ``product_consent_required`` only decides whether a consent must
*name* the product.

An unknown jurisdiction gets :data:`STRICTEST`, every restriction at once, so an unmapped
country is never laxer than a mapped one.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_QUIET_HOURS = (21, 9)  # 21:00 - 09:00 local: no marketing messages


@dataclass(frozen=True)
class JurisdictionRules:
    code: str
    min_age: int = 18
    age_verification_required: bool = True
    min_age_targeted_bonus: int = 18  # NL: no targeted bonus to players under 24
    max_wagering: float | None = None  # UK: wagering requirement at most 10x
    bonus_first_occasion_only: bool = False  # SE: a bonus only on the first occasion
    product_consent_required: bool = False  # UK, DE: consent per channel and product
    quiet_hours: tuple[int, int] = DEFAULT_QUIET_HOURS  # local [start, end) hours, wrapping midnight
    timezone: str = "UTC"  # when the player's own time zone is unknown


RULES: dict[str, JurisdictionRules] = {
    "UK": JurisdictionRules("UK", max_wagering=10.0, product_consent_required=True, timezone="Europe/London"),
    "MT": JurisdictionRules("MT", age_verification_required=False, timezone="Europe/Malta"),
    "NL": JurisdictionRules("NL", min_age_targeted_bonus=24, timezone="Europe/Amsterdam"),
    "SE": JurisdictionRules("SE", bonus_first_occasion_only=True, timezone="Europe/Stockholm"),
    "DE": JurisdictionRules("DE", product_consent_required=True, timezone="Europe/Berlin"),
}

# Unknown jurisdiction: the strictest combination, so an unmapped country is never laxer.
# Its time zone is unknown too: quiet hours cannot be checked, so such a player fails them.
STRICTEST = JurisdictionRules("??", min_age=18, age_verification_required=True, min_age_targeted_bonus=24,
                              max_wagering=10.0, bonus_first_occasion_only=True, product_consent_required=True,
                              timezone="")


def rules_for(code: str | None) -> JurisdictionRules:
    return RULES.get(code or "", STRICTEST)
