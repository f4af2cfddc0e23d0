"""One message now, to one player, under the batch's own rules (``POST /v1/messaging/send``).

A send is checked as a one-player campaign sent at this instant: :func:`send_spec` makes the
:class:`~crm.campaigns.spec.CampaignSpec` (channel, product, the frequency policy's limits,
``transactional``), and :func:`check_send` runs the very rule table lists run
(:func:`crm.campaigns.eligibility.evaluate`: consent, RG, age, jurisdiction, caps, cooldown, quiet
hours, blackouts, dedup) over the player's online profile (:mod:`crm.store.profile`) and their
message history (our dispatched lists' outbox + the store's deliveries). Nothing here is new
policy: a rule changed for lists is changed for sends.

Frequency policies (``frequency_policy_id``) name the limits a send is checked with: the
built-in ``default`` (the house policy) and ``transactional`` (service messages: no caps,
cooldown or quiet hours; consent, RG and age still hold, as for transactional campaigns),
plus those of ``campaigns/_frequency_policies.yaml``::

    policies:
      gentle: {description: "at most one a week", frequency: {max_per_week: 1, cooldown_hours: 48}}
      sports_news: {product: sports, frequency: {dedup_days: 1}}

Each can only tighten the house policy, as a campaign's ``frequency`` block can.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from crm.campaigns.eligibility import Context, evaluate, reason_text
from crm.campaigns.history import (
    concat_history,
    empty_history,
    lookback_days,
    outbox_messages,
    reported_messages,
    reported_rows,
    store_messages,
)
from crm.campaigns.policy import CALENDAR_FILE, POLICY, Calendar, load_calendar
from crm.campaigns.spec import CampaignSpec, Frequency, Schedule, load_campaigns, load_config_file
from crm.config import Paths, campaigns_dir
from crm.contract import PRODUCTS, consent_column
from crm.store import deliveries as dl
from crm.store.profile import addresses_suppressed, effective_profiles, reported_of, sync_profiles
from crm.store.schema import ID_CHARS

POLICIES_FILE = "_frequency_policies.yaml"
UNKNOWN_PLAYER = "unknown_player"
ADDRESS_BOUNCED = "address_bounced"
REASONS_ONLINE = {UNKNOWN_PLAYER: "Not in the player profile of this brand (not yet synced from the warehouse, "
                                  "or another brand's player)"}


class FrequencyPolicyError(ValueError):
    """``_frequency_policies.yaml`` cannot be used (the file and field are named)."""


class FrequencyPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    description: str = ""
    transactional: bool = False
    product: Literal[PRODUCTS] = "casino"  # type: ignore[valid-type]
    frequency: Frequency = Frequency()


class _PoliciesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    policies: dict[Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")], FrequencyPolicy] = {}


BUILT_IN: dict[str, FrequencyPolicy] = {
    "default": FrequencyPolicy(description="the house contact policy (caps, cooldown, quiet hours, dedup)"),
    "transactional": FrequencyPolicy(description="service messages: no caps, cooldown or quiet hours; consent, "
                                                 "RG, age and dedup still hold", transactional=True),
}


def load_frequency_policies(directory: str | Path) -> dict[str, FrequencyPolicy]:
    """The built-in policies and those of ``<directory>/_frequency_policies.yaml`` (which may not
    redefine a built-in one). A broken file raises :class:`FrequencyPolicyError` (fail closed)."""
    path = Path(directory) / POLICIES_FILE
    parsed = load_config_file(path, _PoliciesFile, "frequency policies", FrequencyPolicyError)
    clash = sorted(set(parsed.policies) & set(BUILT_IN))
    if clash:
        raise FrequencyPolicyError(f"{path}: {', '.join(clash)} is built in and cannot be redefined")
    return {**BUILT_IN, **parsed.policies}


def _campaign_id(template_id: str) -> str:
    return ("api_" + re.sub(r"[^a-z0-9_]", "_", template_id.lower()))[:64]


def send_spec(policy_id: str, policy: FrequencyPolicy, channel: str, template_id: str, brand_id: str,
              at: dt.datetime) -> CampaignSpec:
    """The one-player campaign a send at ``at`` (naive UTC) is checked as. Its id (and default
    dedup key) is ``api_<template>``: the same template to the same player within the dedup
    window is a duplicate, whichever system asked for it."""
    cid = _campaign_id(template_id)
    return CampaignSpec(
        id=cid if len(cid) >= 3 else f"{cid}___"[:3], name=f"API send of {template_id} ({policy_id})",
        channel=channel, brands=[brand_id], product=policy.product, transactional=policy.transactional,
        schedule=Schedule(send_time_utc=f"{at:%H:%M}"), frequency=policy.frequency)


@dataclass(frozen=True)
class SendVerdict:
    eligible: bool
    rule: str | None  # the first rule that refused it
    reason: str | None  # in plain words
    failed: tuple[str, ...] = ()
    basis: dict = field(default_factory=dict)  # what the send is allowed on (when eligible)


def basis_of(profile: dict, spec: CampaignSpec) -> dict:
    """On what basis a message to this player may be sent: the channel's consent (version, source,
    time) and the product, or the transactional reason."""
    col = consent_column(spec.channel)
    out = {"channel": spec.channel, "product": spec.product, "consent": bool(profile.get(col)),
           "consent_version": profile.get(f"{col}_version"), "consent_source": profile.get(f"{col}_source"),
           "consent_changed_at": profile.get(f"{col}_changed_at"), "profile_as_of": profile.get("as_of_date")}
    if spec.transactional:
        out["transactional"] = "a service message (frequency policy transactional): caps, cooldown and quiet " \
                               "hours do not apply; consent, RG and age do"
    return out


def check_send(profile: dict | None, spec: CampaignSpec, history: pd.DataFrame, at: dt.datetime,
               calendar: Calendar | None = None) -> SendVerdict:
    """The batch's rule table over one player at instant ``at`` (naive UTC). ``profile``: the
    online profile (stops applied), None when unknown (refused: fail closed)."""
    return check_sends([profile], spec, history, at, calendar)[0]


def check_sends(profiles: list[dict | None], spec: CampaignSpec, history: pd.DataFrame, at: dt.datetime,
                calendar: Calendar | None = None) -> list[SendVerdict]:
    """:func:`check_send` for several players at once, each verdict the one it would get alone:
    the rule table is vectorised, so one call over many players costs about what one player
    does (the service checks concurrent sends together). The players must be distinct: two
    sends to one player are checked one after the other (the second counts the first)."""
    known = [p for p in profiles if p is not None]
    verdicts: list[SendVerdict] = []
    if known:
        df = pd.DataFrame(known)
        ctx = Context(as_of=at.date(), history=history if len(history) else empty_history(),
                      calendar=calendar or Calendar(), policy=POLICY)
        v = evaluate(df, spec, ctx)
        for profile, eligible, rule, failed in zip(known, v["eligible"].tolist(), v["reason"].tolist(),
                                                   v["failed"].tolist(), strict=True):
            if eligible:
                verdicts.append(SendVerdict(True, None, None, (), basis_of(profile, spec)))
            else:
                verdicts.append(SendVerdict(False, str(rule), reason_text(str(rule)),
                                            tuple(x for x in str(failed).split(",") if x)))
    found = iter(verdicts)
    unknown = SendVerdict(False, UNKNOWN_PLAYER, REASONS_ONLINE[UNKNOWN_PLAYER], (UNKNOWN_PLAYER,))
    return [unknown if p is None else next(found) for p in profiles]


@dataclass(frozen=True)
class SendAsk:
    """One message to check now and queue if the rules allow it: an API send or a trigger's."""
    brand_id: str
    player_id: str
    spec: CampaignSpec  # the one-player campaign it is checked as (channel, product, limits, offer)
    template_id: str
    params: dict
    source: str  # api | trigger (the deliveries' ``source``)
    locale: str | None = None  # None: the player's own locale, else "en"
    frequency_policy_id: str | None = None
    delivery_id: str | None = None  # None: a new random id
    cost_cents: int = 0  # the offer's cost to this player (a bonus when > 0 or the spec has an offer)
    holdout: bool = False  # allowed or not, nothing is queued: a holdout (recorded by the caller)


@dataclass(frozen=True)
class SendOutcome:
    """What became of a :class:`SendAsk`: queued (``delivery_id``), refused by a rule (``verdict``
    names it), or not checkable (``error``: the template cannot be rendered for it)."""
    delivery_id: str | None = None
    verdict: SendVerdict | None = None
    error: str | None = None
    held_out: bool = False  # eligible, and not queued because the ask was a holdout

    @property
    def queued(self) -> bool:
        return self.delivery_id is not None


def check_and_queue(conn: sa.Connection, asks: list[SendAsk], at: dt.datetime, calendar: Calendar,
                    outbox: OutboxHistory, templates) -> list[SendOutcome]:
    """Check ``asks`` at instant ``at`` (naive UTC) with the rule table and queue the allowed ones
    (but holdouts) as deliveries, in the caller's transaction: the one path of every message that is not a
    batch list (``POST /v1/messaging/send``, triggers, journey steps). The asks must name distinct
    players (a second message to a player is checked after the first is written, so it counts it).

    A few statements for all asks, not a few per ask: the players' online profiles (PostgreSQL:
    their rows locked in one order until the transaction ends, so two processes never check
    messages to one player at once), their bounced addresses, their messages in the ledger (our
    lists' outbox, the store's deliveries, messages the casino reported), then one rule-table
    call per kind of message."""
    results: list[SendOutcome | None] = [None] * len(asks)
    found = effective_profiles(conn, [(a.brand_id, a.player_id) for a in asks], for_update=True)
    bounces = addresses_suppressed(conn, [(a.brand_id, a.player_id, a.spec.channel) for a in asks
                                          if found[(a.brand_id, a.player_id)][0] is not None])
    groups: dict[tuple, list[tuple[int, dict | None, str]]] = {}
    for i, ask in enumerate(asks):
        profile, _ = found[(ask.brand_id, ask.player_id)]
        locale = ask.locale or (profile or {}).get("locale") or "en"
        try:
            templates.render(ask.template_id, locale, ask.params)
        except ValueError as e:  # crm.channels.TemplateError / TemplateRenderError
            results[i] = SendOutcome(error=f"template {ask.template_id!r}: {e}")
            continue
        bounced = bounces.get((ask.brand_id, ask.player_id, ask.spec.channel))
        if bounced:
            results[i] = SendOutcome(verdict=SendVerdict(False, ADDRESS_BOUNCED,
                                                         f"The player's {ask.spec.channel} address bounced: {bounced}",
                                                         (ADDRESS_BOUNCED,)))
            continue
        kind = (ask.brand_id, ask.spec.id, ask.frequency_policy_id, ask.spec.channel, ask.template_id)
        groups.setdefault(kind, []).append((i, profile, locale))
    new: list[dl.NewDelivery] = []
    for (brand, *_), members in groups.items():
        spec = asks[members[0][0]].spec
        lookback = at - dt.timedelta(days=lookback_days([spec], POLICY.dedup_days))
        players = [asks[i].player_id for i, _, _ in members]
        mine = store_messages(dl.player_messages(conn, brand, players, lookback))
        reported = reported_rows(reported_of(conn, brand, players, lookback))
        ours = outbox.for_players([asks[i].player_id for i, p, _ in members if p], at.date())
        verdicts = check_sends([p for _, p, _ in members], spec, concat_history(ours, mine, reported), at, calendar)
        for (i, _, locale), verdict in zip(members, verdicts, strict=True):
            ask = asks[i]
            if not verdict.eligible or ask.holdout:
                results[i] = SendOutcome(verdict=verdict, held_out=verdict.eligible)
                continue
            offer = spec.offer.template != "none"
            new.append(dl.new_delivery(
                brand_id=brand, player_id=ask.player_id, channel=spec.channel, template_id=ask.template_id,
                params=ask.params, transactional=spec.transactional, campaign_id=spec.id,
                dedup_key=spec.dedup_key, product=spec.product, basis=verdict.basis, source=ask.source,
                locale=locale, frequency_policy_id=ask.frequency_policy_id, delivery_id=ask.delivery_id,
                is_bonus=offer or ask.cost_cents > 0, cost_cents=ask.cost_cents,
                offer_ends_at=at + dt.timedelta(days=spec.offer.expiry_days) if offer else None, at=at))
            results[i] = SendOutcome(delivery_id=new[-1].delivery_id, verdict=verdict)
    dl.insert_deliveries(conn, new)
    return results  # type: ignore[return-value]


class SendConfig:
    """The frequency policies and the blackout calendar of a campaign folder, for sends: read
    again only when either file changes (size, mtime or inode), not on every send. A broken
    file raises (:class:`FrequencyPolicyError`, :class:`~crm.campaigns.policy.CalendarError`)
    on every send until it is fixed: nothing is checked against a configuration we cannot read."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._value: tuple[dict[str, FrequencyPolicy], Calendar] | None = None

    def _signature(self) -> tuple:
        out = []
        for name in (POLICIES_FILE, CALENDAR_FILE):
            try:
                st = (self.directory / name).stat()
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append(None)
        return tuple(out)

    def get(self) -> tuple[dict[str, FrequencyPolicy], Calendar]:
        key = self._signature()
        with self._lock:
            if key != self._key or self._value is None:
                self._value = (load_frequency_policies(self.directory), load_calendar(self.directory))
                self._key = key
            return self._value


class OutboxHistory:
    """Our dispatched lists' messages (the outbox) for the online check, read once and again only
    when the outbox files or the date change: a send costs a filter, not a scan of the files."""

    def __init__(self, paths: Paths, campaigns: Path):
        self.paths, self.campaigns = paths, campaigns
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._frame = empty_history()

    def _signature(self, day: dt.date) -> tuple:
        files = sorted(self.paths.outbox.glob("*/*/*.jsonl"))
        return (day, tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.exists()))

    def for_players(self, player_ids: list[str], day: dt.date) -> pd.DataFrame:
        if not player_ids:
            return empty_history()
        key = self._signature(day)
        with self._lock:
            if key != self._key:
                specs, _ = load_campaigns(self.campaigns)
                days = lookback_days(specs, POLICY.dedup_days)
                frame = outbox_messages(self.paths, day - dt.timedelta(days=days), day, {s.id: s for s in specs})
                self._frame, self._key = frame, key
            frame = self._frame
        return frame[frame["player_id"].isin(player_ids)] if len(frame) else frame


def reported_rows_for(paths: Paths, as_of: dt.date, at: dt.datetime) -> list[dict]:
    """Rows of the store's ``reported_messages`` for a profile copy of ``as_of`` made at ``at``:
    the messages the casino reported sending (:func:`crm.campaigns.history.reported_messages`,
    the lists' own definition) over the caps' look-back window before the copy's date, and all
    reported since (the warehouse may hold events past its as-of date; a message is a message)."""
    specs, _ = load_campaigns(campaigns_dir())
    since = as_of - dt.timedelta(days=lookback_days(specs, POLICY.dedup_days))
    until = max(as_of, at.date()) + dt.timedelta(days=2)
    df = reported_messages(paths, since, until, {s.id: s for s in specs})

    def text(v, size: int) -> str | None:  # the store's column size: a long payload value still counts
        return None if v is None or pd.isna(v) else str(v)[:size]

    return [{"brand_id": str(b), "player_id": str(p), "channel": text(ch, 40), "campaign_id": text(c, ID_CHARS),
             "dedup_key": text(k, ID_CHARS), "sent_at": pd.Timestamp(t).to_pydatetime().replace(tzinfo=None),
             "synced_at": at}
            for b, p, ch, c, k, t in zip(df["brand_id"], df["player_id"], df["channel"].astype(object),
                                         df["campaign_id"].astype(object), df["dedup_key"].astype(object),
                                         df["sent_at"], strict=True)
            if pd.notna(t) and len(str(b)) <= ID_CHARS and len(str(p)) <= ID_CHARS]  # longer: no profile has it


def sync_online_profiles(paths: Paths, engine: sa.Engine) -> dict:
    """:func:`crm.store.profile.sync_profiles` with the reported messages of :func:`reported_rows_for`
    (the ``online_profiles`` asset and ``crm profiles sync``)."""
    return sync_profiles(paths, engine, lambda as_of, at: reported_rows_for(paths, as_of, at))
