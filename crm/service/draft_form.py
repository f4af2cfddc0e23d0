"""The web page's campaign form (``/ui/campaigns/new``): its fields, the choices a user is offered,
and the hostile form turned into a campaign's data and validated by the pipeline's own model.

The form keeps to the fields campaigns commonly set (see ``campaigns/*.yaml``): id, name, brands,
jurisdictions, channel, product, priority, named segments and up to :data:`MAX_RULES` segment rules,
the offer (a template with its terms, or an intent of the offer catalogue), targeting (everyone or by
uplift within a budget), budgets, the list size cap, the holdout share, the schedule and the dedup
window. Everything else keeps its default, or, when an existing campaign is edited, its value in
that campaign (its salt, variants, score bounds, other frequency limits). Every draft is written
with ``approval: {required: true}`` (a second person approves it before anything is sent) and the
author's person name as ``owner`` (four-eyes).

Field names are the spec's paths (``offer.value_eur``); a rule row is ``rule<N>.field|op|value``.
Pydantic's errors are mapped back to the field they are about (:func:`field_of`), so each is shown
next to its field. Values go to the model as the text typed (pydantic reads numbers and dates
from it); only rule values are split and read as numbers here, since a rule's value may be text
or a number. Each value is bounded (:data:`MAX_VALUE_CHARS`, no control characters) and each
multiple choice checked against the user's choices (a brand or region the user may not see is an
error, never silently dropped).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

from pydantic import ValidationError

from crm.campaigns.segments import NAMED_SEGMENTS
from crm.campaigns.spec import (
    CAPPED_TEMPLATES,
    CATALOGUE_CONTEXT,
    FIXED_VALUE_TEMPLATES,
    MAX_ECHO_CHARS,
    OFFER_TEMPLATES,
    RULE_FIELDS,
    TEXT_RULE_FIELDS,
    WEEKDAYS,
    CampaignSpec,
    Rule,
)
from crm.contract import CHANNELS, JURISDICTIONS, PRODUCTS
from crm.safe_yaml import short
from crm.store.users import ALL

MAX_RULES = 4
MAX_VALUE_CHARS = 200
MAX_CHOSEN = 50  # values of one multiple choice
MAX_FORM_BYTES = 16_384
MAX_FORM_FIELDS = 120
OPS = Rule.model_fields["op"].annotation.__args__  # type: ignore[union-attr]
OFFER_TERMS = ("value_eur", "percent", "cap_eur", "wager_eur", "wagering", "expiry_days")
SINGLE = ("id", "name", "channel", "product", "priority", "max_list_size", "offer.template", "offer.intent",
          *(f"offer.{t}" for t in OFFER_TERMS), "target.by", "target.budget_eur", "budget.total_eur",
          "budget.per_player_per_day_eur", "experiment.holdout", "schedule.start", "schedule.end",
          "schedule.send_time_utc", "frequency.dedup_days",
          *(f"rule{i}.{p}" for i in range(1, MAX_RULES + 1) for p in ("field", "op", "value")))
MULTIPLE = ("brands", "jurisdictions", "segment.named", "schedule.weekdays")
FIELDS = SINGLE + MULTIPLE
# an error about a whole block is shown beside its first field
_BLOCK_FIELD = {"offer": "offer.template", "target": "target.by", "budget": "budget.total_eur",
                "schedule": "schedule.start", "segment": "segment.named", "experiment": "experiment.holdout",
                "frequency": "frequency.dedup_days", "owner": "form", "approval": "form"}
FORM = "form"  # errors about the whole form
RESERVED_IDS = frozenset({"new"})  # /ui/campaigns/new is the form: a campaign of that id could not be opened


@dataclass(frozen=True)
class Choices:
    """What a user may pick: their brands and regions (all of them for ``*``), and the vocabularies."""

    brands: tuple[str, ...]
    all_brands: bool  # may leave brands empty (a campaign for every brand)
    jurisdictions: tuple[str, ...]
    all_jurisdictions: bool
    intents: tuple[str, ...]
    channels: tuple[str, ...] = CHANNELS
    products: tuple[str, ...] = PRODUCTS
    segments: tuple[str, ...] = tuple(NAMED_SEGMENTS)
    rule_fields: tuple[str, ...] = RULE_FIELDS
    ops: tuple[str, ...] = OPS
    templates: tuple[str, ...] = OFFER_TEMPLATES
    weekdays: tuple[str, ...] = WEEKDAYS
    rules: int = MAX_RULES  # rule rows


def choices_for(user, known_brands: list[str], intents: list[str]) -> Choices:
    """The choices of ``user``: their own brands (a user of every brand: the brands the copy and
    the campaigns know), their regions (every jurisdiction for ``*``)."""
    every_brand, every_region = ALL in user.brands, ALL in user.regions
    brands = sorted(set(known_brands)) if every_brand else [b for b in user.brands if b != ALL]
    regions = [j for j in JURISDICTIONS if every_region or j in user.regions]
    return Choices(tuple(brands), every_brand, tuple(regions), every_region, tuple(intents))


def _number(v: object) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


def editable(spec: CampaignSpec) -> bool:
    """Whether the form can show ``spec`` without losing anything it cannot hold: an offer with its
    own choices (not a catalogue intent) or more rules than the form's rows is edited in its file."""
    return not (spec.offer.choices and spec.offer.intent is None) and len(spec.segment.rules) <= MAX_RULES


def values_of(spec: CampaignSpec | None) -> dict[str, list[str]]:
    """The form's values showing ``spec`` (None: a new campaign's defaults)."""
    if spec is None:
        return {"channel": ["email"], "experiment.holdout": ["0.1"], "schedule.send_time_utc": ["10:00"],
                "offer.template": ["none"], "target.by": ["all"]}
    out: dict[str, list[str]] = {
        "id": [spec.id], "name": [spec.name], "channel": [spec.channel], "product": [spec.product],
        "priority": [str(spec.priority)], "brands": list(spec.brands), "jurisdictions": list(spec.jurisdictions),
        "segment.named": list(spec.segment.named), "target.by": [spec.target.by],
        "experiment.holdout": [_number(spec.experiment.holdout)], "schedule.weekdays": list(spec.schedule.weekdays),
        "schedule.send_time_utc": [spec.schedule.send_time_utc],
    }
    if spec.max_list_size is not None:
        out["max_list_size"] = [str(spec.max_list_size)]
    for i, rule in enumerate(spec.segment.rules, 1):
        value = ", ".join(map(_number, rule.value)) if isinstance(rule.value, list) else _number(rule.value)
        out |= {f"rule{i}.field": [rule.field], f"rule{i}.op": [rule.op], f"rule{i}.value": [value]}
    if spec.offer.intent is not None:
        out |= {"offer.intent": [spec.offer.intent], "offer.template": ["none"]}
    else:
        out["offer.template"] = [spec.offer.template]
        out |= {f"offer.{t}": [_number(getattr(spec.offer, t))] for t in OFFER_TERMS
                if t in spec.offer.model_fields_set}
    if spec.target.budget_eur is not None:
        out["target.budget_eur"] = [_number(spec.target.budget_eur)]
    for name in ("total_eur", "per_player_per_day_eur"):
        if getattr(spec.budget, name) is not None:
            out[f"budget.{name}"] = [_number(getattr(spec.budget, name))]
    for name in ("start", "end"):
        if getattr(spec.schedule, name) is not None:
            out[f"schedule.{name}"] = [getattr(spec.schedule, name).isoformat()]
    if spec.frequency.dedup_days is not None:
        out["frequency.dedup_days"] = [str(spec.frequency.dedup_days)]
    return out


class _Reader:
    """The submitted values, bounded and checked, with the errors found on the way."""

    def __init__(self, form: dict[str, list[str]]):
        self.form, self.errors = form, {}

    def error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def one(self, name: str) -> str:
        """A single value, stripped ("" when absent)."""
        values = self.form.get(name) or [""]
        if len(values) > 1:
            self.error(name, "one value is expected")
        text = values[0].strip()
        if len(text) > MAX_VALUE_CHARS:
            self.error(name, f"at most {MAX_VALUE_CHARS} characters")
            return ""
        if any(unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn") for c in text):
            self.error(name, "control or unassigned characters are not allowed")
            return ""
        return text

    def many(self, name: str, allowed: tuple[str, ...]) -> list[str]:
        """The values of a multiple choice, each one of ``allowed``."""
        values = list(dict.fromkeys(v.strip() for v in self.form.get(name, []) if v.strip()))
        if len(values) > MAX_CHOSEN:
            self.error(name, f"at most {MAX_CHOSEN} values")
            return []
        wrong = [v for v in values if v not in allowed]
        if wrong:
            self.error(name, f"not one of the choices: {short(', '.join(wrong), MAX_ECHO_CHARS)}")
        return [v for v in values if v in allowed]


def _rule_value(field: str, op: str, text: str) -> object:
    """A rule's value from its text: a list for ``between`` / ``in`` (comma-separated), numbers for a
    numeric field (text the model then refuses, naming the problem, when one is not a number)."""
    parts = [p.strip() for p in text.split(",")] if op in ("between", "in") else [text]

    def read(p: str) -> object:
        if field in TEXT_RULE_FIELDS:
            return p
        try:
            x = float(p)
        except ValueError:
            return p
        return int(x) if math.isfinite(x) and x.is_integer() and abs(x) < 1e15 else x

    values = [read(p) for p in parts]
    return values if op in ("between", "in") else values[0]


def campaign_data(form: dict[str, list[str]], choices: Choices, person: str, base: dict | None = None
                  ) -> tuple[dict, dict[str, list[str]], list[int]]:
    """(the campaign's data, errors by field, the form row of each rule) from a submitted form.
    ``base``: the data of the campaign being edited (what the form does not show is kept)."""
    r = _Reader(form)
    base = base or {}
    data: dict = {}
    for name in ("id", "name", "channel", "product", "priority", "max_list_size"):
        text = r.one(name)
        if text:
            data[name] = text
    if data.get("id") in RESERVED_IDS:
        r.error("id", f"{data['id']!r} is the web page's own path: choose another id")
    data["brands"] = r.many("brands", choices.brands)
    if not data["brands"] and not choices.all_brands:
        r.error("brands", "choose at least one of your brands")
    data["jurisdictions"] = r.many("jurisdictions", choices.jurisdictions)
    if not data["jurisdictions"] and not choices.all_jurisdictions:
        r.error("jurisdictions", "choose at least one of your regions")

    segment = {k: v for k, v in (base.get("segment") or {}).items() if k == "scores"}
    segment["named"] = r.many("segment.named", choices.segments)
    rules, rows = [], []
    for i in range(1, MAX_RULES + 1):
        field, op, value = (r.one(f"rule{i}.{p}") for p in ("field", "op", "value"))
        if not (field or op or value):
            continue
        rules.append({"field": field, "op": op, "value": _rule_value(field, op, value)})
        rows.append(i)
    segment["rules"] = rules
    data["segment"] = {k: v for k, v in segment.items() if v}

    template, intent = r.one("offer.template") or "none", r.one("offer.intent")
    if intent and template != "none":
        r.error("offer.intent", "choose a fixed offer (a template) or an intent of the catalogue, not both")
    if intent:
        data["offer"] = {"intent": intent}
    elif template != "none":
        wanted = {"wagering", "expiry_days"} | ({"value_eur"} if template in FIXED_VALUE_TEMPLATES else set()) | (
            {"percent", "cap_eur"} if template in CAPPED_TEMPLATES else set()) | (
            {"wager_eur"} if template == "mission" else set())
        terms = {t: r.one(f"offer.{t}") for t in OFFER_TERMS if t in wanted}
        data["offer"] = {"template": template} | {t: v for t, v in terms.items() if v}

    by = r.one("target.by") or "all"
    target = {k: v for k, v in (base.get("target") or {}).items() if k == "min_uplift_eur"} if by == "uplift" else {}
    if by != "all":
        target["by"] = by
        budget_eur = r.one("target.budget_eur")
        if budget_eur:
            target["budget_eur"] = budget_eur
    data["target"] = target
    data["budget"] = {n: v for n in ("total_eur", "per_player_per_day_eur") if (v := r.one(f"budget.{n}"))}
    experiment = {k: v for k, v in (base.get("experiment") or {}).items() if k != "holdout"}
    holdout = r.one("experiment.holdout")
    data["experiment"] = experiment | ({"holdout": holdout} if holdout else {})
    schedule = {n: v for n in ("start", "end", "send_time_utc") if (v := r.one(f"schedule.{n}"))}
    weekdays = r.many("schedule.weekdays", choices.weekdays)
    data["schedule"] = schedule | ({"weekdays": weekdays} if weekdays else {})
    frequency = {k: v for k, v in (base.get("frequency") or {}).items() if k != "dedup_days"}
    dedup = r.one("frequency.dedup_days")
    data["frequency"] = frequency | ({"dedup_days": dedup} if dedup else {})
    data["owner"], data["approval"] = person, {"required": True}
    # the blocks the form does not show, kept from the campaign edited
    data |= {k: v for k, v in base.items() if k in ("transactional",)}
    return {k: v for k, v in data.items() if v not in ({}, [])}, r.errors, rows


def field_of(loc: tuple, rule_rows: list[int], message: str = "") -> str:
    """The form field a pydantic error is about: its location's, or, for an error about a whole
    block or the whole campaign (a check across fields), the first field its message names
    (``value_eur`` in "the offer's value (value_eur) ... exceeds the policy's maximum")."""
    parts = [str(p) for p in loc]
    if parts[:2] == ["segment", "rules"] and len(parts) > 2 and parts[2].isdigit():
        i = int(parts[2])
        row = rule_rows[i] if i < len(rule_rows) else 1
        return f"rule{row}.{parts[3] if len(parts) > 3 and parts[3] in ('field', 'op', 'value') else 'value'}"
    if len(parts) <= 1 and ".".join(parts) not in FIELDS:
        named = [f for f in SINGLE if not f.startswith("rule") and any(  # a dotted path, or a name with a _
            re.search(rf"(?<![a-z_.]){re.escape(w)}(?![a-z_])", message)
            for w in {f, *([f.rpartition(".")[2]] if "_" in f.rpartition(".")[2] else [])})]
        if named:
            return named[0]
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in FIELDS:
            return name
        if name in _BLOCK_FIELD:
            return _BLOCK_FIELD[name]
    return FORM


def validate(data: dict, catalogue: object, rule_rows: list[int]) -> tuple[CampaignSpec | None, dict[str, list[str]]]:
    """The campaign (the pipeline's model, the folder's offer catalogue) or the errors by field."""
    try:
        return CampaignSpec.model_validate(data, context={CATALOGUE_CONTEXT: catalogue}), {}
    except ValidationError as e:
        errors: dict[str, list[str]] = {}
        for x in e.errors(include_url=False)[:40]:
            msg = short(str(x.get("msg", "")).removeprefix("Value error, "), 600)
            errors.setdefault(field_of(tuple(x.get("loc", ())), rule_rows, msg), []).append(msg)
        return None, errors
    except (ArithmeticError, TypeError, ValueError, RecursionError) as e:  # a validator's bug: an error, not a 500
        return None, {FORM: [f"cannot be validated ({type(e).__name__})"]}


def merge(*errors: dict[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in errors:
        for k, v in e.items():
            out.setdefault(k, []).extend(m for m in v if m not in out.get(k, []))
    return out
