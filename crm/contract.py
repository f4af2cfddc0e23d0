"""The event contract (DESIGN.md): one envelope, a payload schema per event type.

This module is the single source of truth for what a valid event is. Landing
(:mod:`crm.landing`) turns it into SQL checks; the simulator writes events that obey it.

Money is in minor units (integers) with a currency; times are UTC ISO-8601.
"""

from __future__ import annotations

from dataclasses import dataclass

# JSON types as DuckDB's json_type() reports them, per logical type we accept.
JSON_TYPES: dict[str, tuple[str, ...]] = {
    "string": ("VARCHAR",),
    "integer": ("BIGINT", "UBIGINT"),
    "number": ("BIGINT", "UBIGINT", "DOUBLE"),
    "boolean": ("BOOLEAN",),
    "date": ("VARCHAR",),  # YYYY-MM-DD, checked with try_strptime
    "timestamp": ("VARCHAR",),  # ISO-8601 UTC, checked with try_cast
}

ENVELOPE_REQUIRED = ("event_id", "event_type", "player_id", "brand_id", "occurred_at")
ENVELOPE_OPTIONAL = ("trace_id",)

CHANNELS = ("email", "push", "sms", "in_app")
CONSENT_CHANNELS = CHANNELS + ("profiling",)
JURISDICTIONS = ("UK", "MT", "NL", "SE", "DE")
SELF_EXCLUSION_SCOPES = ("brand", "operator", "cooling_off")


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
    "rg.self_exclusion.started": _f("scope:string until:timestamp?"),
    "rg.self_exclusion.ended": _f("scope:string?"),
    "consent.granted": _CONSENT,
    "consent.revoked": _CONSENT,
    "crm.delivery": _CRM,
    "crm.open": _CRM,
    "crm.click": _CRM,
    "crm.unsubscribe": _CRM,
    "crm.complaint": _CRM,
    "crm.bounce": _CRM,
}

EVENT_TYPES: tuple[str, ...] = tuple(PAYLOADS)
