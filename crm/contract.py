"""The event contract (DESIGN.md): one envelope, a payload schema per event type; and the vocabulary.

This module is the single source of truth for what a valid event is. Landing
(:mod:`crm.ingest.landing`) turns it into SQL checks; the simulator writes events that obey it.

Money is in minor units (integers) with a currency; times are UTC ISO-8601.

The vocabulary: where each name lives, and what derives from it
----------------------------------------------------------------

* Message channels (:data:`MESSAGE_CHANNELS`: name, default caps per day and per week, consent
  columns) and :data:`CHANNELS` / :data:`CONSENT_CHANNELS`, jurisdictions (:data:`JURISDICTIONS`),
  products (:data:`PRODUCTS`), PII payload keys (:data:`PII_FIELDS`) and event types
  (:data:`EVENT_TYPES`, the keys of :data:`PAYLOADS`) live here. Derived from them: the house
  policy's caps (:data:`crm.campaigns.policy.POLICY`), the campaign spec's and calendar's
  ``Literal`` types (:mod:`crm.campaigns.spec`, :mod:`crm.campaigns.policy`), the consent columns
  eligibility reads (:func:`consent_column` and its siblings), landing's vocabularies
  (:data:`VOCABULARIES`), the simulator's channels and event types and the landing gate's event
  types. Checked by a test rather than derived: the keys of
  :data:`crm.campaigns.jurisdictions.RULES` (each jurisdiction has its own rules) and the event
  types named in the dbt models' SQL.
* Score models live in :mod:`ml.models` (ml is the lowest layer; crm may import it, not the
  other way round): :data:`ml.models.MODELS` (``churn``, ``deposit_intent``, with their
  registered names), :data:`ml.models.UPLIFT_MODELS` (``uplift_deposit``, ``uplift_ngr``),
  :data:`ml.models.SCORE_MODELS` (the scores a campaign list carries) and
  :data:`ml.models.UPLIFT_SCORE_MODEL`, :data:`ml.models.PROBABILITY_SCORE_FIELDS` (the
  scores a segment may bound); re-exported here. Derived from them:
  :data:`crm.warehouse.SCORE_MODELS`, the list columns (:mod:`crm.campaigns.lists`), the spec's
  score-bound ``Literal`` (:data:`crm.campaigns.spec.SCORE_FIELDS`), :mod:`ml.uplift_train`.
* dbt cannot import Python: ``python -m crm.contract --write-dbt-vars`` writes the lists dbt
  needs as ``vocab_*`` vars into ``dbt_project/dbt_project.yml`` (between marker comments), read
  by the macros of ``macros/helpers.sql`` (``channels()``, ``consent_channels()``, ``products()``,
  ``pii_fields()``, ``jurisdictions()``, ``event_types()``); ``--check-dbt-vars`` fails when
  they are stale (run by tests/test_vocabulary.py).
* The quality gates keep their own copies on purpose (a gate that trusted this module would pass
  its bugs): ``expectations/marts.py`` (``CHANNELS``), ``expectations/campaign_list.py``
  (``CHANNELS``, ``JURISDICTIONS``, ``UPLIFT_SCORE_COLUMN``), the accepted countries of
  ``dim_player`` (its dbt model yml); tests/test_vocabulary.py asserts they agree.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from crm.config import DBT_PROJECT_DIR

# The score-model vocabulary lives in ml.models (the lowest layer); re-exported here (see above).
from ml.models import PROBABILITY_SCORE_FIELDS as PROBABILITY_SCORE_FIELDS
from ml.models import REGISTERED_NAMES as REGISTERED_NAMES
from ml.models import SCORE_MODELS as SCORE_MODELS
from ml.models import UPLIFT_MODELS as UPLIFT_MODELS
from ml.models import UPLIFT_SCORE_MODEL as UPLIFT_SCORE_MODEL

# JSON types as DuckDB's json_type() reports them, per logical type we accept.
JSON_TYPES: dict[str, tuple[str, ...]] = {
    "string": ("VARCHAR",),
    "integer": ("BIGINT", "UBIGINT"),
    "number": ("BIGINT", "UBIGINT", "DOUBLE"),
    "boolean": ("BOOLEAN",),
    "date": ("VARCHAR",),  # YYYY-MM-DD, checked with try_strptime
    "timestamp": ("VARCHAR",),  # ISO-8601 UTC, checked with try_cast
}

# Payload keys with direct identifiers (contact details, device and network identity, names, the
# payment instrument): split off into the PII vault at landing and replaced by a keyed pseudonym
# (crm.store.vault); no relation of the warehouse shows them (dbt macro pii_fields(), the same list).
# The last four are derived at the split (crm.store.vault.derived_forms), never sent: keyed hashes of
# the IP's network (/24, /64), of a name's variant-free form and of the normalized address + postcode,
# so "J. Smith" and "John Smith" or "12 High St" and "12 high street" link without a clear value.
DERIVED_PII_FIELDS = ("ip_net", "name_key", "name_key_swapped", "address_key")
PII_FIELDS = ("email", "phone", "device_id", "ip", "first_name", "last_name", "full_name", "name",
              "address", "postcode", "card_number", "iban", "payment_instrument", *DERIVED_PII_FIELDS)

ENVELOPE_REQUIRED = ("event_id", "event_type", "player_id", "brand_id", "occurred_at")
ENVELOPE_OPTIONAL = ("trace_id",)



@dataclass(frozen=True)
class Channel:
    """A channel we send messages on: its name, the house policy's default caps and its consent columns."""

    name: str
    per_day: int  # default cap: messages per player per day on this channel (crm.campaigns.policy)
    per_week: int  # ... and per week (the send's UTC date and the six days before)

    @property
    def caps(self) -> tuple[int, int]:
        return (self.per_day, self.per_week)

    @property
    def consent_column(self) -> str:
        return consent_column(self.name)


MESSAGE_CHANNELS: tuple[Channel, ...] = (
    Channel("email", 1, 3),
    Channel("push", 1, 3),
    Channel("sms", 1, 2),
    Channel("in_app", 2, 7),
)
CHANNELS: tuple[str, ...] = tuple(c.name for c in MESSAGE_CHANNELS)
PROFILING = "profiling"  # a consent without a channel: to model-based targeting (scores)
CONSENT_CHANNELS: tuple[str, ...] = CHANNELS + (PROFILING,)


def consent_column(channel: str) -> str:
    """dim_player's current consent state of ``channel`` (a message channel or ``profiling``)."""
    return f"consent_{channel}"


def consent_products_column(channel: str) -> str:
    """dim_player's products with a current consent on ``channel`` (comma-separated)."""
    return f"consent_{channel}_products"


def consent_withdrawn_column(channel: str) -> str:
    """dim_player's products whose consent on ``channel`` was withdrawn (comma-separated)."""
    return f"consent_{channel}_products_withdrawn"


def consent_version_column(channel: str) -> str:
    """dim_player's number of consent changes on ``channel``."""
    return f"consent_{channel}_version"


JURISDICTIONS = ("UK", "MT", "NL", "SE", "DE")
SELF_EXCLUSION_SCOPES = ("brand", "operator", "cooling_off")
# Products a campaign can promote and a consent can name (consent.* payload `product`).
PRODUCTS = ("casino", "sports", "poker", "bingo", "lottery")
PURPOSES = ("marketing", "profiling")
LIMIT_KINDS = ("deposit", "loss", "wager", "session", "time")
# Currencies with an EUR rate: the fx_rates seed is the single source (the warehouse converts
# every amount with it and stops on a currency it lacks, so landing refuses those first).
FX_RATES_CSV = DBT_PROJECT_DIR / "seeds" / "fx_rates.csv"
with FX_RATES_CSV.open(newline="") as _f:
    # XXX (ISO 4217: no currency) has a rate of 0 for bonus events whose currency has none
    CURRENCIES: tuple[str, ...] = tuple(r["currency"] for r in csv.DictReader(_f) if r["currency"] != "XXX")

# The players' own stop events: a withdrawal of consent or a self-exclusion. A record of one of
# these that names a player is never quarantined for its payload or its time (a quarantined stop
# would leave the player contactable): landing reads it the safe way instead: no or an unknown
# channel withdraws every channel, no or an unknown scope excludes operator-wide, an unreadable
# `until` is indefinite, an unusable time is the landing time (see VOCABULARIES, EARLIEST_EVENT_TIME).
WITHDRAWALS = ("consent.revoked", "crm.unsubscribe", "crm.complaint")
SELF_EXCLUSION_START = "rg.self_exclusion.started"
STOP_EVENTS = (*WITHDRAWALS, SELF_EXCLUSION_START)
ALL_CHANNELS = "*"  # the channel of a withdrawal that names none of ours: it withdraws every channel

# Event times we accept: from 1990 (before any online casino) to a day after landing (clock
# skew); other records are quarantined. A stop event outside them (or with no readable time)
# lands at the time it was landed, the moment we learned of it, with the value sent kept as
# payload.occurred_at_received.
EARLIEST_EVENT_TIME = dt.datetime(1990, 1, 1)
MAX_FUTURE_SKEW = dt.timedelta(days=1)
# Limits on one record (bytes of its JSON text) and on an id; larger ones are quarantined.
MAX_RECORD_BYTES = 64 * 1024
MAX_ID_CHARS = 128


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # a key of JSON_TYPES
    required: bool = True


def _f(spec: str) -> tuple[Field, ...]:
    """'stake:integer win:integer provider:string?' -> Fields ('?' = optional)."""
    out = []
    for tok in spec.split():
        name, typ = tok.split(":")
        out.append(Field(name, typ.rstrip("?"), required=not typ.endswith("?")))
    return tuple(out)


_MONEY_EVENT = _f("amount:integer currency:string psp:string? method:string? reason_code:string?")
_BONUS = _f("offer_id:string template:string cost:integer currency:string "
            "campaign_id:string? wagering:number?")
_CRM = _f("delivery_id:string campaign_id:string channel:string")
_CONSENT = _f("channel:string product:string? purpose:string? source:string?")
_SESSION = _f("session_id:string device:string? channel:string?")
_BET = _f("stake:integer win:integer currency:string in_bonus:boolean? provider:string? "
          "game:string? game_category:string? rounds:integer? session_id:string?")

PAYLOADS: dict[str, tuple[Field, ...]] = {
    "player.registered": _f(
        "country:string region:string? locale:string timezone:string birth_date:date "
        "currency:string email:string? phone:string? device_id:string? ip:string? "
        "age_verified:boolean?"
    ),
    "player.updated": _f("country:string? region:string? locale:string? timezone:string? "
                         "email:string? phone:string? age_verified:boolean?"),
    "session.started": _SESSION,
    "session.ended": _SESSION + _f("duration_s:integer?"),
    "bet.placed": _BET,
    "bet.settled": _BET,
    "wallet.debit": _f("amount:integer currency:string reason:string?"),
    "wallet.credit": _f("amount:integer currency:string reason:string?"),
    "payment.intent": _MONEY_EVENT,
    "payment.authorized": _MONEY_EVENT,
    "payment.captured": _MONEY_EVENT,
    "payment.failed": _MONEY_EVENT,
    "payment.refund": _MONEY_EVENT,
    "payment.withdraw": _MONEY_EVENT,
    "bonus.issued": _BONUS,
    "bonus.consumed": _BONUS,
    "bonus.expired": _BONUS,
    "rg.limit.set": _f("kind:string value:integer"),
    "rg.limit.hit": _f("kind:string value:integer?"),
    "rg.reality_check": _f("session_minutes:integer?"),
    # scope: absent or unknown on a start is operator-wide; an end must name it (VOCABULARIES)
    "rg.self_exclusion.started": _f("scope:string? until:timestamp?"),
    "rg.self_exclusion.ended": _f("scope:string"),
    "consent.granted": _CONSENT,
    "consent.revoked": _CONSENT,
    "crm.delivery": _CRM,
    "crm.open": _CRM,
    "crm.click": _CRM,
    "crm.unsubscribe": _CRM,
    "crm.complaint": _CRM,
    "crm.bounce": _CRM,
    # an offer POST /v1/offers/generate issued: the casino's bonus.* events carry its offer_id back
    "offer.issued": _f("offer_id:string template:string cost:integer currency:string campaign_id:string? "
                       "intent:string? offer_name:string? channel:string? expires_at:timestamp?"),
}

EVENT_TYPES: tuple[str, ...] = tuple(PAYLOADS)
# Written by our own service, never by a casino (the simulator does not emit them).
SERVICE_EVENT_TYPES: tuple[str, ...] = ("offer.issued",)


# --------------------------------------------------------------------------- enumerated values
# Every enumerated payload value is normalized once, at landing, by these rules (SQL in
# crm.ingest.landing, Python in normalize() for single records; tests keep the two in step). The key of
# a value drops invisible characters (zero-width space, BOM ...), then for lower-case vocabularies
# lower-cases it and turns runs of spaces, dots, hyphens and underscores into one underscore
# ("In-App " -> "in_app"); for upper-case ones it upper-cases and drops all white space. A key in
# ``values`` or ``aliases`` (or matching ``pattern``) gives the canonical value; any other is
# *unknown*: quarantined with a reason (``on_unknown`` None) or replaced by ``on_unknown``, the
# fail-closed reading ("" drops the field: e.g. an unknown product on a withdrawal withdraws all
# products of the channel). A changed value keeps what was sent as payload.<field>_received.

# Characters a value may carry around or inside it without meaning anything: invisible ones
# (dropped) and white space (a separator). Both lists are spelled out so that the SQL (RE2) and
# Python regular expressions agree exactly; a key with any other non-ASCII character is unknown.
INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
WHITESPACE = " \t\n\r\f\v\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
             "\u2028\u2029\u202f\u205f\u3000"


@dataclass(frozen=True)
class Vocabulary:
    field: str
    event_types: tuple[str, ...]
    values: tuple[str, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)
    case: str = "lower"  # lower | upper
    on_unknown: str | None = None  # None: quarantine the record; "": drop the field; else this value
    pattern: str | None = None  # a key matching this (full match) is accepted as it is
    when_missing: str | None = None  # the value of an absent field (None: it stays absent)

    def key(self, value: str) -> str | None:
        """The comparable form of ``value`` (see above); None if it holds other non-ASCII characters."""
        v = "".join(ch for ch in value if ch not in INVISIBLE)
        ws = re.escape(WHITESPACE)
        v = re.sub(f"[{ws}]+", "", v) if self.case == "upper" else re.sub(f"[{ws}._-]+", "_", v)
        if not v.isascii():
            return None
        return v.upper() if self.case == "upper" else v.lower().strip("_")

    def canonical(self, value: str) -> str | None:
        """The canonical value of ``value``, or None when it is unknown."""
        k = self.key(value)
        if k is None:
            return None
        if k in self.values:
            return k
        if k in self.aliases:
            return self.aliases[k]
        if self.pattern and re.fullmatch(self.pattern, k):
            return k
        return None


_CHANNEL_ALIASES = {"e_mail": "email", "mail": "email", "text": "sms", "txt": "sms", "text_message": "sms",
                    "inapp": "in_app", "push_notification": "push", "push_notifications": "push",
                    "mobile_push": "push"}
_PRODUCT_ALIASES = {"sport": "sports", "sportsbook": "sports", "sports_betting": "sports", "betting": "sports",
                    "slots": "casino", "live_casino": "casino", "lotto": "lottery"}
_SCOPE_ALIASES = {"cooling": "cooling_off", "cool_off": "cooling_off", "cooloff": "cooling_off",
                  "coolingoff": "cooling_off", "time_out": "cooling_off", "timeout": "cooling_off",
                  "operator_wide": "operator", "operatorwide": "operator", "global": "operator", "all": "operator",
                  "all_brands": "operator", "site": "brand", "brand_only": "brand"}
_BONUS = ("bonus.issued", "bonus.consumed", "bonus.expired")
_MONEY = ("player.registered", "bet.placed", "bet.settled", "wallet.debit", "wallet.credit", "payment.intent",
          "payment.authorized", "payment.captured", "payment.failed", "payment.refund", "payment.withdraw")

VOCABULARIES: tuple[Vocabulary, ...] = (
    # a grant or a message event must name one of our channels; a withdrawal that does not
    # withdraws them all (and profiling: it may have meant it)
    Vocabulary("channel", ("consent.granted",), CONSENT_CHANNELS, _CHANNEL_ALIASES),
    Vocabulary("channel", ("consent.revoked",), CONSENT_CHANNELS, _CHANNEL_ALIASES, on_unknown=ALL_CHANNELS,
               when_missing=ALL_CHANNELS),
    Vocabulary("channel", ("crm.unsubscribe", "crm.complaint"), CHANNELS, _CHANNEL_ALIASES, on_unknown=ALL_CHANNELS,
               when_missing=ALL_CHANNELS),
    Vocabulary("channel", ("crm.delivery", "crm.open", "crm.click", "crm.bounce"), CHANNELS, _CHANNEL_ALIASES),
    Vocabulary("product", ("consent.granted",), PRODUCTS, _PRODUCT_ALIASES),
    Vocabulary("product", ("consent.revoked",), PRODUCTS, _PRODUCT_ALIASES, on_unknown=""),
    Vocabulary("purpose", ("consent.granted",), PURPOSES),
    Vocabulary("purpose", ("consent.revoked",), PURPOSES, on_unknown=""),
    # an exclusion of unknown (or no) scope is operator-wide, the widest; an end must say which
    # exclusion it ends (one of another scope never ends an exclusion)
    Vocabulary("scope", (SELF_EXCLUSION_START,), SELF_EXCLUSION_SCOPES, _SCOPE_ALIASES, on_unknown="operator",
               when_missing="operator"),
    Vocabulary("scope", ("rg.self_exclusion.ended",), SELF_EXCLUSION_SCOPES, _SCOPE_ALIASES),
    # a limit or a limit hit of a kind we do not know still counts (harm indicators)
    Vocabulary("kind", ("rg.limit.set", "rg.limit.hit"), LIMIT_KINDS, on_unknown="other"),
    Vocabulary("currency", _MONEY, CURRENCIES, case="upper"),
    # a bonus in a currency without a rate still counts as a bonus received (SE: first occasion only)
    Vocabulary("currency", _BONUS, CURRENCIES, case="upper", on_unknown="XXX"),
    # ISO 3166 alpha-2, but the United Kingdom is UK here (the licence), GB accepted
    Vocabulary("country", ("player.registered", "player.updated"), (), {"GB": "UK"}, case="upper",
               pattern="[A-Z]{2}"),
)


def vocabulary(field_name: str, event_type: str) -> Vocabulary | None:
    """The vocabulary of ``field_name`` on ``event_type``, if that value is enumerated."""
    for v in VOCABULARIES:
        if v.field == field_name and event_type in v.event_types:
            return v
    return None



# --------------------------------------------------------------------------- the vocabulary in dbt
# dbt cannot import this module: the lists its macros need are written into dbt_project.yml as
# vars, between these two lines (macros/helpers.sql reads them). A test fails when they are stale.
DBT_PROJECT_FILE = DBT_PROJECT_DIR / "dbt_project.yml"
DBT_VARS_BEGIN = "  # BEGIN vocabulary: written by `python -m crm.contract --write-dbt-vars` from crm/contract.py"
DBT_VARS_END = "  # END vocabulary"


def dbt_vars() -> dict[str, tuple[str, ...]]:
    """The vocabulary as dbt vars (macros/helpers.sql: one macro per var)."""
    return {
        "vocab_channels": CHANNELS,
        "vocab_consent_channels": CONSENT_CHANNELS,
        "vocab_products": PRODUCTS,
        "vocab_pii_fields": PII_FIELDS,
        "vocab_jurisdictions": JURISDICTIONS,
        "vocab_event_types": EVENT_TYPES,
    }


def _yaml_list(name: str, values: tuple[str, ...], width: int = 110) -> list[str]:
    """``name: [a, b, ...]`` as YAML flow-sequence lines (JSON strings), wrapped at ``width``."""
    lines, line = [], f"  {name}: ["
    for i, v in enumerate(values):
        item = json.dumps(v) + ("," if i < len(values) - 1 else "]")
        if len(line) + 1 + len(item) > width and not line.endswith("["):
            lines.append(line)
            line = "    " + item
        else:
            line += ("" if line.endswith("[") else " ") + item
    lines.append(line if values else line + "]")
    return lines


def render_dbt_vars(text: str) -> str:
    """``text`` (dbt_project.yml) with the vocabulary block between the markers rewritten."""
    lines = text.split("\n")
    try:
        begin, end = lines.index(DBT_VARS_BEGIN), lines.index(DBT_VARS_END)
    except ValueError:
        raise ValueError(f"{DBT_PROJECT_FILE}: the vocabulary markers are missing under vars: "
                         f"add the lines {DBT_VARS_BEGIN.strip()!r} and {DBT_VARS_END.strip()!r}") from None
    if end < begin:
        raise ValueError(f"{DBT_PROJECT_FILE}: the vocabulary markers are out of order")
    block = [line for name, values in dbt_vars().items() for line in _yaml_list(name, values)]
    return "\n".join([*lines[: begin + 1], *block, *lines[end:]])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crm.contract",
                                 description="Keep dbt's copy of the vocabulary (dbt_project.yml vars) in step.")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write-dbt-vars", action="store_true", help="rewrite the vocabulary vars in dbt_project.yml")
    mode.add_argument("--check-dbt-vars", action="store_true", help="exit 1 if they differ from crm/contract.py")
    args = ap.parse_args(argv)
    text = DBT_PROJECT_FILE.read_text()
    want = render_dbt_vars(text)
    if args.write_dbt_vars:
        if want != text:
            DBT_PROJECT_FILE.write_text(want)
        print(f"{DBT_PROJECT_FILE}: vocabulary vars {'written' if want != text else 'already up to date'}")
        return 0
    if want != text:
        print(f"{DBT_PROJECT_FILE}: the vocabulary vars are stale; run `python -m crm.contract --write-dbt-vars`",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
