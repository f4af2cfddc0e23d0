"""Trigger definitions: ``campaigns/triggers/<id>.yaml``, beside the campaigns and validated like them.

A trigger answers one event type (``event``) when its conditions (``when``) hold over the event
and the player's online profile, with one message (``channel``, ``template``, an optional
``offer``). What may be sent is decided by the lists' rule table, with the trigger checked as a
one-player campaign (:meth:`TriggerSpec.as_campaign`): consent, RG, age, jurisdiction, caps and
cooldown counted in the one ledger, quiet hours, the one-bonus-a-day rule. On top of it:

* ``dedup_minutes``: never two messages of this trigger to a player within that many minutes
  (three failed payments in a minute get one help message);
* ``holdout``: a share of players (a salted hash of trigger and player, stable) gets nothing and
  is recorded as such, so a readout can measure the trigger as it measures a campaign;
* ``quiet_hours``: ``hold`` keeps the message until the player's quiet hours end (checked again
  then), ``drop`` forgets it;
* ``max_age_minutes``: an event that happened longer ago than this (a replay, a late feed) fires
  nothing: it is no longer an occasion for a real-time message.

A condition reads ``payload.<field>`` (the contract's payload fields of the event type),
``event.<derived>`` (:data:`EVENT_FIELDS`: money in EUR by the warehouse's FX seed) or
``profile.<field>`` (:data:`PROFILE_FIELDS`, the online profile). Text is compared as people
read it (case, spaces and invisible characters ignored); a value the event or profile lacks, or
one of another type, makes the condition false: no message (fail closed).

A trigger with an offer (a cost) needs a second person's approval of its current version
(:mod:`crm.campaigns.approvals`, four eyes) before it fires; every version is in the audit log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from crm import safe_yaml
from crm.campaigns.experiments import hash_unit
from crm.campaigns.spec import (
    MAX_ECHO_CHARS,
    Approval,
    CampaignSpec,
    Frequency,
    Number,
    Offer,
    Schedule,
    ScoreBound,
    Segment,
    _Strict,
    load_spec_file,
    owner_name,
)
from crm.contract import CHANNELS, INVISIBLE, PAYLOADS, PROBABILITY_SCORE_FIELDS, PRODUCTS

TRIGGERS_DIR = "triggers"  # under the campaigns folder
TEXT, NUMBER, BOOL = "text", "number", "bool"
_CONTRACT_TYPES = {"integer": NUMBER, "number": NUMBER, "boolean": BOOL}  # anything else is text
# derived from the event: name -> (type, event types it exists for)
_BETS = ("bet.settled",)
_MONEY = ("payment.intent", "payment.authorized", "payment.captured", "payment.failed", "payment.refund",
          "payment.withdraw", "wallet.debit", "wallet.credit")
EVENT_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "loss_eur": (NUMBER, _BETS),  # stake - win in EUR, 0 on a win
    "stake_eur": (NUMBER, _BETS + ("bet.placed",)),
    "amount_eur": (NUMBER, _MONEY),
}
PROFILE_FIELDS: dict[str, str] = {
    "country": TEXT, "region": TEXT, "locale": TEXT, "currency": TEXT, "age_years": NUMBER, "tenure_days": NUMBER,
    "rg_limits_set": NUMBER, "rg_limit_hits_30d": NUMBER, "bonuses_received": NUMBER, "harm_risk_flag": BOOL,
    "age_verified": BOOL,
    "days_since_last_active": NUMBER,  # derived: from last_active_at to the instant of the decision
    # the models' latest scores, copied with the profile: targeting by them needs profiling consent
    **dict.fromkeys(PROBABILITY_SCORE_FIELDS, NUMBER),
}
OPS = ("==", "!=", ">=", ">", "<=", "<", "between", "in", "not_in")
MAX_CONDITIONS = 20


class TriggerError(ValueError):
    """A trigger file that cannot be used (the file and field are named)."""


def field_type(event: str, name: str) -> str:
    """The type of condition field ``name`` for event type ``event``; ValueError naming what exists."""
    source, _, key = name.partition(".")
    if source == "payload":
        types = {f.name: _CONTRACT_TYPES.get(f.type, TEXT) for f in PAYLOADS.get(event, ())}
        if key not in types:
            raise ValueError(f"{event} has no payload field {key!r}; its fields: {', '.join(types) or 'none'}")
        return types[key]
    if source == "event":
        known = [k for k, (_, events) in EVENT_FIELDS.items() if event in events]
        if key not in known:
            raise ValueError(f"{event} has no derived field {key!r}; it has: {', '.join(known) or 'none'}")
        return EVENT_FIELDS[key][0]
    if source == "profile":
        if key not in PROFILE_FIELDS:
            raise ValueError(f"no profile field {key!r}; expected one of: {', '.join(PROFILE_FIELDS)}")
        return PROFILE_FIELDS[key]
    raise ValueError(f"field {name!r}: expected payload.<field>, event.<field> or profile.<field>")


class Condition(_Strict):
    field: Annotated[str, Field(max_length=80)]
    op: Literal[OPS]  # type: ignore[valid-type]
    value: bool | Number | str | list[Number] | list[str]

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        if self.op == "between" and not (isinstance(self.value, list) and len(self.value) == 2):
            raise ValueError("'between' needs a value of two numbers [low, high]")
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"'{self.op}' needs a list value")
        if isinstance(self.value, list) and len(self.value) > 100:
            raise ValueError("at most 100 values in a list")
        return self


def check_condition(c: Condition, kind: str, where: str) -> None:
    """ValueError naming ``where`` when condition ``c`` does not fit a field of type ``kind``."""
    values = c.value if isinstance(c.value, list) else [c.value]
    if kind == TEXT and (c.op not in ("==", "!=", "in", "not_in") or not all(isinstance(v, str) for v in values)):
        raise ValueError(f"{where}: {c.field} is text: use ==, !=, in or not_in with text values")
    if kind == BOOL and (c.op not in ("==", "!=") or not isinstance(c.value, bool)):
        raise ValueError(f"{where}: {c.field} is true or false: use == or != with true or false")
    if kind == NUMBER and not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{where}: {c.field} is a number: expected a number, not {c.value!r}")
    if c.op == "between" and values[0] > values[1]:
        raise ValueError(f"{where}: 'between' needs [low, high] with low <= high")


class RealtimeSpec(_Strict):
    """What triggers and journeys share: who wrote it, where it applies, its holdout, its
    handling of quiet hours, its approval, its version."""
    name: Annotated[str, Field(min_length=1, max_length=200)]
    owner: str = "unknown"  # the author: cannot approve it
    enabled: bool = True
    brands: list[Annotated[str, Field(max_length=128)]] = []  # empty = all brands
    product: Literal[PRODUCTS] = "casino"  # type: ignore[valid-type]
    frequency: Frequency = Frequency()
    holdout: float = Field(default=0.1, ge=0, lt=1)
    salt: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")] = "v1"
    quiet_hours: Literal["hold", "drop"] = "hold"
    approval: Approval = Approval()

    @field_validator("owner")
    @classmethod
    def _a_person(cls, v: str) -> str:
        return owner_name(v)

    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()

    def applies_to(self, brand_id: str) -> bool:
        return self.enabled and (not self.brands or brand_id in self.brands)

    def in_holdout(self, brand_id: str, player_id: str) -> bool:
        """A salted hash of the spec and the player: stable, independent across specs."""
        u = float(hash_unit(self.id, self.salt, [f"{brand_id}:{player_id}"])[0])  # type: ignore[attr-defined]
        return bool(self.holdout) and u < self.holdout


class TriggerSpec(RealtimeSpec):
    id: Annotated[str, Field(pattern=r"^[a-z0-9_]{3,64}$")]
    event: Literal[tuple(PAYLOADS)]  # type: ignore[valid-type]
    when: Annotated[list[Condition], Field(max_length=MAX_CONDITIONS)] = []
    channel: Literal[CHANNELS]  # type: ignore[valid-type]
    template: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")]
    params: dict[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,63}$")], str | int | float | bool] = Field(
        default={}, max_length=50)  # fixed template parameters (the offer's terms and the brand's are added)
    params_from: dict[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,63}$")],
                      Annotated[str, Field(max_length=80)]] = Field(default={}, max_length=20)  # param: payload.<f>
    transactional: bool = False
    offer: Offer = Offer()
    dedup_minutes: int = Field(default=60, ge=0, le=525_600)
    max_age_minutes: int = Field(default=60, ge=1, le=10_080)

    @model_validator(mode="after")
    def _fields_exist(self) -> TriggerSpec:
        for i, c in enumerate(self.when):
            try:
                kind = field_type(self.event, c.field)
            except ValueError as e:
                raise ValueError(f"when[{i}]: {e}") from None
            check_condition(c, kind, f"when[{i}]")
        for param, source in self.params_from.items():
            if not source.startswith("payload."):
                raise ValueError(f"params_from.{param}: expected payload.<field>, got {source!r}")
            try:
                field_type(self.event, source)
            except ValueError as e:
                raise ValueError(f"params_from.{param}: {e}") from None
        self.as_campaign()  # the campaign rules (offer vs transactional, frequency only tightens)
        return self

    @property
    def carries_cost(self) -> bool:
        return self.offer.template != "none"

    def as_campaign(self, at: dt.datetime | None = None) -> CampaignSpec:
        """The one-player campaign a firing is approved as and, sent at ``at`` (naive UTC), checked
        as by the lists' rule table (its send time is ``at``: quiet hours, blackouts and caps are of
        that instant). Its name carries this trigger's version, so a changed trigger is a new
        version to approve; approval is required whenever the trigger carries a cost."""
        spec = CampaignSpec(
            id=self.id, name=f"trigger {self.id} v{self.spec_hash()[:12]}: {self.name}", owner=self.owner,
            channel=self.channel, brands=list(self.brands), product=self.product, transactional=self.transactional,
            offer=self.offer, frequency=self.frequency, schedule=Schedule(),
            # conditions on a model's score are targeting by a model: the rule table then asks for profiling consent
            segment=Segment(scores={f: ScoreBound() for f in uses_scores(self.when)}),
            approval=Approval(required=self.approval.required or self.carries_cost))
        return spec if at is None else spec.model_copy(update={"schedule": Schedule(send_time_utc=f"{at:%H:%M}")})



# --------------------------------------------------------------------------- conditions

def _text(v: object) -> str:
    return " ".join(str(v).translate({ord(c): None for c in INVISIBLE}).split()).casefold()


@lru_cache(maxsize=1)
def _eur_rates() -> dict[str, Decimal]:
    from crm.ingest.daily_mapping import read_fx_rates

    return read_fx_rates()


def _eur(minor: object, currency: object) -> float | None:
    rate = _eur_rates().get(str(currency).strip().upper()) if isinstance(currency, str) else None
    if rate is None or not isinstance(minor, int) or isinstance(minor, bool):
        return None
    return float(Decimal(minor) * rate / 100)


def derived(event: str, payload: dict, name: str) -> object:
    if name == "loss_eur":
        stake, win = payload.get("stake"), payload.get("win")
        if not isinstance(stake, int) or not isinstance(win, int) or isinstance(stake, bool) or isinstance(win, bool):
            return None
        return _eur(max(stake - win, 0), payload.get("currency"))
    if name == "stake_eur":
        return _eur(payload.get("stake"), payload.get("currency"))
    if name == "amount_eur":
        return _eur(payload.get("amount"), payload.get("currency"))
    return None


def value_of(name: str, envelope: dict, profile: dict | None) -> object:
    source, _, key = name.partition(".")
    payload = envelope.get("payload") if isinstance(envelope.get("payload"), dict) else {}
    if source == "payload":
        return payload.get(key)
    if source == "event":
        return derived(str(envelope.get("event_type")), payload, key)
    return (profile or {}).get(key)


def with_derived(profile: dict | None, at: dt.datetime) -> dict | None:
    """``profile`` with the fields derived at instant ``at`` (naive UTC): ``days_since_last_active``."""
    if profile is None:
        return None
    from crm.store.profile import parse_time

    last = parse_time(profile.get("last_active_at")) if isinstance(profile.get("last_active_at"), str) else None
    return profile | {"days_since_last_active": (at - last).total_seconds() / 86400 if last else None}


def uses_scores(conditions: list[Condition]) -> list[str]:
    """The model scores ``conditions`` read (targeting by them needs profiling consent)."""
    return [c.field.partition(".")[2] for c in conditions if c.field.partition(".")[2] in PROBABILITY_SCORE_FIELDS]


def _number(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def holds(c: Condition, envelope: dict, profile: dict | None, kind: str) -> bool:
    """Whether one condition holds; a missing value or one of another type: False."""
    v = value_of(c.field, envelope, profile)
    if v is None:
        return False
    if kind == BOOL:
        return isinstance(v, bool) and (v == c.value) == (c.op == "==")
    if kind == TEXT:
        if isinstance(v, dict | list):
            return False
        got = _text(v)
        wanted = [_text(x) for x in (c.value if isinstance(c.value, list) else [c.value])]
        return (got in wanted) == (c.op in ("==", "in"))
    x = _number(v)
    if x is None:
        return False
    if c.op in ("in", "not_in"):
        return (x in [float(w) for w in c.value]) == (c.op == "in")  # type: ignore[union-attr]
    if c.op == "between":
        lo, hi = c.value  # type: ignore[misc]
        return lo <= x <= hi
    w = float(c.value)  # type: ignore[arg-type]
    return {"==": x == w, "!=": x != w, ">=": x >= w, ">": x > w, "<=": x <= w, "<": x < w}[c.op]


def matches(trigger: TriggerSpec, envelope: dict, profile: dict | None) -> tuple[bool, str]:
    """Whether every condition holds; the first that does not, in words."""
    for i, c in enumerate(trigger.when):
        if not holds(c, envelope, profile, field_type(trigger.event, c.field)):
            got = safe_yaml.short(repr(value_of(c.field, envelope, profile)), MAX_ECHO_CHARS)
            return False, f"when[{i}]: {c.field} {c.op} {c.value!r} does not hold (got {got})"
    return True, ""


def params_for(trigger: TriggerSpec, envelope: dict, base: dict) -> dict:
    """The template parameters: ``base`` (the brand's and the offer's terms), the trigger's fixed
    ``params``, then ``params_from`` payload values (text cut to 200 characters)."""
    out = {**base, **trigger.params}
    payload = envelope.get("payload") if isinstance(envelope.get("payload"), dict) else {}
    for param, source in trigger.params_from.items():
        v = payload.get(source.partition(".")[2])
        if isinstance(v, str):
            out[param] = v[:200]
        elif isinstance(v, bool | int | float) and (not isinstance(v, float) or math.isfinite(v)):
            out[param] = v
    return out


# --------------------------------------------------------------------------- files

def load_spec(path: str | Path, model: type, what: str):
    """The ``model`` (a trigger or a journey) in YAML file ``path``, read as campaigns are
    (:func:`crm.campaigns.spec.load_spec_file`); any problem is a :class:`TriggerError` naming it."""
    return load_spec_file(path, model, what, TriggerError)


def load_trigger(path: str | Path) -> TriggerSpec:
    return load_spec(path, TriggerSpec, "trigger")


def load_triggers(campaigns: str | Path) -> tuple[list[TriggerSpec], list[str]]:
    """The triggers of ``<campaigns>/triggers/``: the valid ones and an error per broken file. A
    trigger may not share its id with a campaign (both are ids in the ledger and the audit log)."""
    return load_folder(Path(campaigns) / TRIGGERS_DIR, load_trigger, spec_ids(Path(campaigns)), "a campaign's")


def spec_ids(folder: Path) -> set[str]:
    """The ids (file names) of the specs in ``folder``."""
    return {p.stem for p in folder.glob("*.y*ml") if not p.name.startswith("_")} if folder.is_dir() else set()


def load_folder(folder: Path, load, taken: set[str], whose: str) -> tuple[list, list[str]]:
    """Every spec of ``folder`` (``load`` per file; files starting with _ are not specs): the valid
    ones and an error per broken file, or per id already ``taken`` (``whose``: by what)."""
    specs, errors = [], []
    for path in sorted(folder.glob("*.y*ml")) if folder.is_dir() else []:
        if path.name.startswith("_"):
            continue
        try:
            spec = load(path)
        except TriggerError as e:
            errors.append(str(e))
            continue
        if spec.id in taken:
            errors.append(f"{path}: id {spec.id!r} is {whose} id too; it needs an id of its own")
            continue
        specs.append(spec)
    return specs, errors


def signature(campaigns: str | Path) -> tuple:
    """What changes when a trigger file (or a campaign id) changes: size, mtime, inode of each."""
    out = []
    for folder in (Path(campaigns), Path(campaigns) / TRIGGERS_DIR):
        for p in sorted(folder.glob("*.y*ml")) if folder.is_dir() else []:
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((str(p), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class SpecFolder:
    """The specs ``load(campaigns)`` reads from a campaigns folder, read again only when a file
    there changes (the API reads them on every accepted batch; the worker before every claim).
    Broken files are left out and reported in ``errors`` (``crm triggers validate`` prints them)."""

    def __init__(self, campaigns: str | Path, load, folders: tuple[str, ...]):
        import threading

        self.campaigns, self._load, self._folders = Path(campaigns), load, folders
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._value: tuple[dict, list[str]] = ({}, [])

    def get(self) -> tuple[dict, list[str]]:
        key = tuple(signature(self.campaigns / f) for f in self._folders)
        with self._lock:
            if key != self._key:
                specs, errors = self._load(self.campaigns)
                self._value, self._key = ({s.id: s for s in specs}, errors), key
            return self._value


class TriggerSet(SpecFolder):
    """The triggers of a campaigns folder (:class:`SpecFolder`)."""

    def __init__(self, campaigns: str | Path):
        super().__init__(campaigns, load_triggers, ("",))

    def subscriptions(self) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
        """event type -> [(trigger id, brands)] of the enabled triggers (for ``queue_firings``)."""
        out: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        for t in self.get()[0].values():
            if t.enabled:
                out.setdefault(t.event, []).append((t.id, tuple(t.brands)))
        return out
