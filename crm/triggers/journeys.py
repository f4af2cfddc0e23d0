"""Journeys: ``campaigns/journeys/<id>.yaml``, a small state graph run per player, durably.

A journey is entered by players whose online profile meets ``entry`` (the daily scan after the
profile sync: :func:`enter_from_profiles`, e.g. churn score above 0.7 and not seen for 14 days),
then walks its ``steps`` in order:

* ``send``: one message, checked at that instant by the lists' rule table through the one send
  path (:func:`crm.campaigns.online.check_and_queue`), counted in the one ledger. A refusal ends
  the run (``exited``, with the rule), except quiet hours with ``quiet_hours: hold``: the step
  waits until they end. Two sends of a run are at least ``step_cooldown_hours`` apart.
* ``wait``: ``hours`` at most; with ``until: opened`` (or ``clicked``) the wait ends as soon as
  the journey's last message is opened (feedback wakes the run), and the run then ends as
  ``converted`` (``on_until: exit``) or goes on (``on_until: next``).

Exits: a player's opt-out, complaint, self-exclusion or any RG event ends every journey at once
(in the transaction that accepts the event, :func:`crm.store.journeys.react`); a ``goal_events``
event ends the run as ``converted``. One player is in a journey at most once at a time (a partial
unique index); ``re_entry_days``: not entered again within that many days of the last entry or
end. Waits and held sends are timers in the store (``due_at``): a restart loses none, and a step
is decided once (the run's lease and attempt guard its transaction).

A ``holdout`` share of entrants (salted hash of journey and player) is recorded and gets nothing,
so the journey is measured like a campaign. Conditions on a model's score are model-based
targeting: every send of such a journey needs the player's profiling consent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from pathlib import Path
from typing import Annotated, Literal

import sqlalchemy as sa
from pydantic import Field, model_validator

from crm.campaigns.eligibility import quiet_hours_end
from crm.campaigns.enqueue import message_params
from crm.campaigns.online import SendAsk, check_and_queue
from crm.campaigns.spec import (
    Approval,
    CampaignSpec,
    Offer,
    Schedule,
    ScoreBound,
    Segment,
    _Strict,
)
from crm.contract import CHANNELS, PAYLOADS
from crm.store import journeys as jr
from crm.store.profile import effective_profiles, load_profile
from crm.store.schema import deliveries, profiles
from crm.triggers.spec import (
    Condition,
    RealtimeSpec,
    SpecFolder,
    check_condition,
    field_type,
    holds,
    load_folder,
    load_spec,
    spec_ids,
    uses_scores,
    with_derived,
)

log = logging.getLogger("crm.journeys")
JOURNEYS_DIR = "journeys"  # under the campaigns folder
PROFILE_ENTRY = "player.updated"  # entry conditions are profile.* fields: checked as for this event type
ENGAGEMENT = {"opened": ("opened", "clicked"), "clicked": ("clicked",)}


class SendStep(_Strict):
    channel: Literal[CHANNELS]  # type: ignore[valid-type]
    template: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")]
    params: dict[Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,63}$")], str | int | float | bool] = Field(
        default={}, max_length=50)
    offer: Offer = Offer()


class WaitStep(_Strict):
    hours: float = Field(gt=0, le=720)
    until: Literal["opened", "clicked"] | None = None  # the journey's last message
    on_until: Literal["exit", "next"] = "exit"  # exit: the run ends as converted


class Step(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,32}$")]
    send: SendStep | None = None
    wait: WaitStep | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        if (self.send is None) == (self.wait is None):
            raise ValueError(f"step {self.id!r}: exactly one of send or wait")
        return self


class JourneySpec(RealtimeSpec):
    id: Annotated[str, Field(pattern=r"^[a-z0-9_]{3,48}$")]
    entry: Annotated[list[Condition], Field(min_length=1, max_length=20)]
    goal_events: list[Literal[tuple(PAYLOADS)]] = []  # type: ignore[valid-type]
    re_entry_days: int = Field(default=30, ge=0, le=365)
    step_cooldown_hours: float = Field(default=24, ge=0, le=720)
    steps: Annotated[list[Step], Field(min_length=1, max_length=20)]

    @model_validator(mode="after")
    def _consistent(self) -> JourneySpec:
        for i, c in enumerate(self.entry):
            if not c.field.startswith("profile."):
                raise ValueError(f"entry[{i}]: {c.field}: a journey is entered on the profile: profile.<field>")
            check_condition(c, field_type(PROFILE_ENTRY, c.field), f"entry[{i}]")
        ids = [s.id for s in self.steps]
        if len(set(ids)) != len(ids):
            raise ValueError(f"step ids must be unique: {ids}")
        if not any(s.send for s in self.steps):
            raise ValueError("a journey needs at least one send step")
        for s in self.steps:
            if s.send is not None:
                self.as_campaign(s)  # the campaign rules hold for every send (frequency only tightens, ...)
        return self

    @property
    def carries_cost(self) -> bool:
        return any(s.send and s.send.offer.template != "none" for s in self.steps)

    def as_campaign(self, step: Step | None = None, at: dt.datetime | None = None) -> CampaignSpec:
        """The one-player campaign a send step is checked as (its own dedup key: the journey's
        steps are not duplicates of each other), and the journey is approved as (``step`` None)."""
        send = (step.send if step is not None else None) or next(s.send for s in self.steps if s.send)
        dedup = f"{self.id}_{step.id}"[:64] if step is not None else None
        spec = CampaignSpec(
            id=self.id, name=f"journey {self.id} v{self.spec_hash()[:12]}: {self.name}", owner=self.owner,
            channel=send.channel, brands=list(self.brands), product=self.product, offer=send.offer,
            frequency=self.frequency.model_copy(update={"dedup_key": dedup}) if dedup else self.frequency,
            segment=Segment(scores={f: ScoreBound() for f in uses_scores(self.entry)}), schedule=Schedule(),
            approval=Approval(required=self.approval.required or self.carries_cost))
        return spec if at is None else spec.model_copy(update={"schedule": Schedule(send_time_utc=f"{at:%H:%M}")})

    def arm(self, brand_id: str, player_id: str) -> str:
        return jr.HOLDOUT if self.in_holdout(brand_id, player_id) else "A"

    def enters(self, profile: dict) -> bool:
        return all(holds(c, {}, profile, field_type(PROFILE_ENTRY, c.field)) for c in self.entry)


def load_journey(path: str | Path) -> JourneySpec:
    return load_spec(path, JourneySpec, "journey")


def load_journeys(campaigns: str | Path) -> tuple[list[JourneySpec], list[str]]:
    """The journeys of ``<campaigns>/journeys/``: the valid ones and an error per broken file (a
    journey may not share its id with a campaign or a trigger)."""
    root = Path(campaigns)
    return load_folder(root / JOURNEYS_DIR, load_journey, spec_ids(root) | spec_ids(root / "triggers"),
                       "a campaign's or a trigger's")


class JourneySet(SpecFolder):
    """The journeys of a campaigns folder (:class:`crm.triggers.spec.SpecFolder`)."""

    def __init__(self, campaigns: str | Path):
        super().__init__(campaigns, load_journeys, ("", JOURNEYS_DIR))

    def goals(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for j in self.get()[0].values():
            for e in j.goal_events:
                out.setdefault(e, []).append(j.id)
        return out


# --------------------------------------------------------------------------- entry

def enter_from_profiles(engine: sa.Engine, journeys: list[JourneySpec], at: dt.datetime,
                        approved: dict[str, bool] | None = None) -> dict[str, dict[str, int]]:
    """Enter every player whose online profile (the copy with its stops) meets a journey's entry
    conditions at ``at``: not one with an active run, nor one entered or ended within
    ``re_entry_days``; a holdout share is recorded and ends at once. ``approved``: journey id ->
    whether it may run (a journey with a cost needs approval; an unapproved one enters nobody).
    Entry key ``scan:<date>``: a second scan the same day enters nobody twice."""
    out: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        rows = [(r.brand_id, r.player_id, load_profile(r.profile)) for r in conn.execute(
            sa.select(profiles.c.brand_id, profiles.c.player_id, profiles.c.profile))]
    for j in journeys:
        counts = {"matched": 0, "entered": 0, "holdout": 0, "skipped": 0, "stopped": 0}
        out[j.id] = counts
        if not j.enabled or (approved is not None and not approved.get(j.id, False)):
            continue
        candidates = [(b, p) for b, p, prof in rows if j.applies_to(b) and j.enters(with_derived(prof, at))]
        counts["matched"] = len(candidates)
        with engine.begin() as conn:
            since = at - dt.timedelta(days=j.re_entry_days)
            recent = jr.recent_runs(conn, j.id, since)
            # an RG event or a stop in the window keeps a player out, as the run it would have ended would
            blocked = jr.recently_stopped(conn, since)
            todo = [c for c in candidates if c not in recent]
            counts["skipped"] = len(candidates) - len(todo)
            # a stop since the copy (it would end the run at once, as it ends every journey): not entered
            live = effective_profiles(conn, todo)
            players = []
            for b, p in todo:
                prof, stops = live[(b, p)]
                if prof is None or stops or (b, p) in blocked or not j.enters(with_derived(prof, at)):
                    counts["stopped"] += 1
                    continue
                players.append((b, p, j.arm(b, p)))
            got = jr.enter(conn, j.id, players, f"scan:{at.date().isoformat()}", at, j.spec_hash())
        counts["entered"], counts["holdout"] = got["entered"], got["holdout"]
        counts["skipped"] += got["skipped"]
    return out


# --------------------------------------------------------------------------- steps

def delivery_id_of(run_id: int, step_id: str) -> str:
    return "j_" + hashlib.sha256(f"{run_id}:{step_id}".encode()).hexdigest()[:40]


def step(worker, run: dict, journey: JourneySpec | None, now: dt.datetime) -> str:
    """Decide the run's current step (``worker``: a :class:`crm.triggers.worker.TriggerWorker`,
    for its send configuration, outbox ledger and templates). Returns what happened."""
    with worker.engine.begin() as conn:
        if not jr.own(conn, run, now):
            return "lost"
        if journey is None or not journey.applies_to(run["brand_id"]):
            jr.end(conn, run, jr.EXITED, "journey removed or disabled", now)
            return "exited"
        if run["step"] >= len(journey.steps):
            jr.end(conn, run, jr.COMPLETED, "completed", now)
            return "completed"
        current = journey.steps[run["step"]]
        approved_as = journey.as_campaign()
        if current.send is not None:
            ok, why = worker.approval(approved_as)
            if not ok:
                jr.end(conn, run, jr.EXITED, "not approved", now, rule="not_approved", detail=why)
                return "exited"
        if current.wait is not None:
            return _wait(conn, run, journey, current, now)
        return _send(worker, conn, run, journey, current, now)


def _wait(conn: sa.Connection, run: dict, journey: JourneySpec, current: Step, now: dt.datetime) -> str:
    w = current.wait
    assert w is not None
    if run["waiting_since"] is None:  # arrived: the timer starts
        jr.advance(conn, run, now, step=run["step"], due_at=now + dt.timedelta(hours=w.hours), waiting_since=now,
                   what="waiting", detail=f"{w.hours:g} h" + (f" or until {w.until}" if w.until else ""))
        return "waiting"
    if w.until and run["last_delivery_id"]:
        status = conn.execute(sa.select(deliveries.c.status).where(
            deliveries.c.delivery_id == run["last_delivery_id"])).scalar_one_or_none()
        if status in ENGAGEMENT[w.until]:
            if w.on_until == "exit":
                jr.end(conn, run, jr.CONVERTED, f"{w.until}: the message was {status}", now)
                return "converted"
            jr.advance(conn, run, now, step=run["step"] + 1, due_at=now, what=w.until)
            return "next"
    if now < run["waiting_since"] + dt.timedelta(hours=w.hours):
        jr.advance(conn, run, now, step=run["step"], due_at=run["waiting_since"] + dt.timedelta(hours=w.hours),
                   waiting_since=run["waiting_since"])  # woken early by feedback that did not end the wait
        return "waiting"
    jr.advance(conn, run, now, step=run["step"] + 1, due_at=now, what="waited", detail=f"{w.hours:g} h passed")
    return "next"


def _send(worker, conn: sa.Connection, run: dict, journey: JourneySpec, current: Step, now: dt.datetime) -> str:
    send = current.send
    assert send is not None
    brand, player = run["brand_id"], run["player_id"]
    if run["last_sent_at"] is not None and journey.step_cooldown_hours:
        ready = run["last_sent_at"] + dt.timedelta(hours=journey.step_cooldown_hours)
        if now < ready:
            jr.advance(conn, run, now, step=run["step"], due_at=ready)
            return "cooldown"
    spec = journey.as_campaign(current, at=now)
    _, calendar = worker.send_config.get()
    ask = SendAsk(brand_id=brand, player_id=player, spec=spec, template_id=send.template,
                  params=message_params(spec, brand) | send.params, source="journey",
                  delivery_id=delivery_id_of(run["id"], current.id),
                  cost_cents=send.offer.max_cost_cents)  # cashback: the cap (no 7-day loss online)
    out = check_and_queue(conn, [ask], now, calendar, worker.outbox, worker.templates)[0]
    if out.queued:
        jr.advance(conn, run, now, step=run["step"] + 1, due_at=now, what="sent", delivery_id=out.delivery_id,
                   detail=f"{current.id}: {send.channel} {send.template}")
        return "sent"
    if out.error is not None:
        jr.end(conn, run, jr.EXITED, "template", now, detail=out.error)
        return "exited"
    v = out.verdict
    assert v is not None
    if v.rule == "quiet_hours" and journey.quiet_hours == "hold":
        profile = effective_profiles(conn, [(brand, player)])[(brand, player)][0]
        until = quiet_hours_end(profile, now) if profile else None
        if until is not None:
            jr.advance(conn, run, now, step=run["step"], due_at=until, what="held", rule=v.rule,
                       detail=f"until {until:%Y-%m-%d %H:%M} UTC")
            return "held"
    jr.end(conn, run, jr.EXITED, f"suppressed: {v.rule}", now, rule=v.rule, detail=v.reason or "")
    return "suppressed"
