"""The trigger worker: decides each firing the API queued with an accepted event.

For a claimed firing, in one transaction that starts by re-checking its lease
(:func:`crm.store.triggers.own`):

1. the trigger as its file says now (removed or disabled: ``dropped``); one that carries a cost
   fires only once a second person approved its current version (``dropped``, rule ``not_approved``);
2. an event older than ``max_age_minutes`` when first decided: ``expired``;
3. the conditions over the event and the player's online profile (snapshot + stops since): ``no_match``;
4. the trigger's dedup window (a message or holdout of this trigger to the player within
   ``dedup_minutes``): ``deduped``;
5. the lists' rule table through the one send path (:func:`crm.campaigns.online.check_and_queue`):
   ``refused`` with the rule; a ``quiet_hours`` refusal of a ``hold`` trigger waits, durably, until
   the player's quiet hours end and is decided again then;
6. the holdout (a salted hash of trigger and player, among the eligible only, as campaign lists
   assign it): ``holdout``; else the message is queued as a delivery (``queued``; id ``t_`` + a
   hash of trigger and event, so it exists once) and the delivery worker sends it.

Wake-ups: ``LISTEN crm_triggers`` on PostgreSQL (the API notifies at commit), a short poll on
SQLite; timers (held firings) are found by the same claim when due.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import logging
import select
import threading
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from crm.campaigns import approvals, audit
from crm.campaigns.eligibility import quiet_hours_end
from crm.campaigns.enqueue import message_params
from crm.campaigns.online import OutboxHistory, SendAsk, SendConfig, check_and_queue
from crm.campaigns.spec import CampaignSpec
from crm.channels import TemplateStore
from crm.config import Paths, campaigns_dir
from crm.store import journeys as jr
from crm.store import triggers as tq
from crm.store.db import key_chunks
from crm.store.deliveries import now as store_now
from crm.store.profile import effective_profiles
from crm.store.schema import REASON_CHARS, accepted_events, trigger_firings
from crm.triggers.journeys import JourneySet
from crm.triggers.journeys import step as journey_step
from crm.triggers.spec import TriggerSet, TriggerSpec, derived, matches, params_for, with_derived

log = logging.getLogger("crm.triggers")
NOT_APPROVED = "not_approved"
HOLDOUT_ARM, TREATED_ARM = "holdout", "A"


def delivery_id_of(trigger_id: str, event_id: str) -> str:
    """The one delivery a firing may create: ``t_`` + 40 hex of sha256(trigger:event)."""
    return "t_" + hashlib.sha256(f"{trigger_id}:{event_id}".encode()).hexdigest()[:40]


def offer_cost_cents(trigger: TriggerSpec, envelope: dict) -> int:
    """What the trigger's offer costs for this event: cashback = percent of the bet's loss, up to
    the cap (the cap when the event has no loss we can read); any other offer: its cost model
    (:attr:`crm.campaigns.spec.Offer.max_cost_cents`)."""
    o = trigger.offer
    if o.template == "cashback":
        loss = derived(str(envelope.get("event_type")), envelope.get("payload") or {}, "loss_eur")
        try:
            return round(min(max(float(loss), 0.0) * o.percent / 100, o.cap_eur) * 100)
        except (TypeError, ValueError, OverflowError):
            return o.max_cost_cents
    return o.max_cost_cents


class TriggerWorker:
    """Decides due firings: :meth:`run_once` one batch, :meth:`run_forever` until told to stop.
    ``clock``: the store's time (naive UTC)."""

    def __init__(self, paths: Paths, engine: sa.Engine, campaigns: str | Path | None = None,
                 clock: Callable[[], dt.datetime] = store_now, lease: dt.timedelta = tq.DEFAULT_LEASE,
                 templates: TemplateStore | None = None):
        folder = Path(campaigns) if campaigns is not None else campaigns_dir()
        self.paths, self.engine, self.clock, self.lease = paths, engine, clock, lease
        self.triggers = TriggerSet(folder)
        self.journeys = JourneySet(folder)
        self.send_config = SendConfig(folder)
        self.outbox = OutboxHistory(paths, folder)
        self.templates = templates or TemplateStore()
        self.counts: collections.Counter[str] = collections.Counter()
        self._approved: dict[tuple, tuple[bool, str]] = {}
        self._recorded: tuple | None = None

    # ------------------------------------------------------------------ loop
    def run_once(self, limit: int = 50) -> dict[str, int]:
        """Decide one batch of due firings, then step one batch of due journey runs. Counts by
        outcome; ``claimed`` firings and ``runs`` claimed."""
        self._record_versions()
        claimed = tq.claim_firings(self.engine, limit, self.lease, now=self.clock())
        out: collections.Counter[str] = collections.Counter(claimed=len(claimed))
        try:
            rest = self._no_matches(claimed, out)
        except Exception:  # noqa: BLE001 - the one-by-one path decides them all then
            log.exception("the batch pass over %d firings failed; deciding them one by one", len(claimed))
            rest = claimed
        for firing in rest:
            try:
                out[self.decide(firing)] += 1
            except Exception:  # noqa: BLE001 - one bad firing must not stop the others; its lease returns it
                log.exception("firing %s (trigger %s, event %s) failed; it is tried again when its lease ends",
                              firing["id"], firing["trigger_id"], firing["event_id"])
                out["failed"] += 1
        runs = jr.claim_runs(self.engine, limit, self.lease, now=self.clock())
        if runs:
            out["runs"] = len(runs)
            journeys = self.journeys.get()[0]
            for run in runs:
                try:
                    out["journey_" + journey_step(self, run, journeys.get(run["journey_id"]),
                                                  self.clock().replace(microsecond=0))] += 1
                except Exception:  # noqa: BLE001 - as for firings
                    log.exception("journey run %s (%s) failed; it is tried again when its lease ends",
                                  run["id"], run["journey_id"])
                    out["journey_failed"] += 1
        self.counts.update(out)
        return dict(out)

    def _record_versions(self) -> None:
        """Every version of a trigger or journey the worker acts on is in the audit log (as its
        campaign, with the version in its name), logged when first seen (idempotent)."""
        specs = [*self.triggers.get()[0].values(), *self.journeys.get()[0].values()]
        hashes = tuple(sorted(s.spec_hash() for s in specs))
        if hashes != self._recorded:
            approvals.record_spec_changes(self.paths, [s.as_campaign() for s in specs])
            self._recorded = hashes

    def run_forever(self, stop_event: threading.Event, idle_sleep: float = 0.05, limit: int = 50,
                    timer_poll: float = 1.0) -> None:
        """Until ``stop_event`` is set. PostgreSQL: wait on ``LISTEN crm_triggers`` (at most
        ``timer_poll`` seconds, for held firings coming due); SQLite: poll every ``idle_sleep``."""
        listener = self._listen() if self.engine.dialect.name == "postgresql" else None
        try:
            while not stop_event.is_set():
                done = self.run_once(limit)
                if done.get("claimed", 0) or done.get("runs", 0):
                    continue
                if listener is None:
                    stop_event.wait(idle_sleep)
                    continue
                if select.select([listener], [], [], timer_poll) != ([], [], []):
                    listener.poll()
                    listener.notifies.clear()
        finally:
            if listener is not None:
                self._listen_proxy.invalidate()

    def _listen(self):
        self._listen_proxy = self.engine.raw_connection()  # a connection of its own, given back invalidated
        raw = self._listen_proxy.driver_connection  # psycopg2
        raw.autocommit = True
        with raw.cursor() as cur:
            cur.execute(f"LISTEN {tq.CHANNEL}")  # a constant of ours, not input
        return raw

    # ------------------------------------------------------------------ one firing
    def approval(self, spec: CampaignSpec) -> tuple[bool, str]:
        """May this version run (not rejected; approved where approval is required)? The audit log
        is read again only when it changed (size, mtime: a stat per firing)."""
        try:
            st = audit.log_file(self.paths).stat()
            log_key: tuple = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            log_key = ()
        key = (spec.id, spec.spec_hash(), log_key)
        if key not in self._approved:
            status = approvals.status(self.paths, spec)
            self._approved = {key: (status.dispatchable, f"approval {status.state}: {status.why}")}
        return self._approved[key]

    def _no_matches(self, claimed: list[dict], out: collections.Counter) -> list[dict]:
        """Most firings do not match (a bet without a heavy loss): their conditions are read for the
        whole batch in two reads (the events, the profiles with their stops) and their outcome
        written in one transaction, each guarded on its attempt, instead of one write transaction
        each (on SQLite those held the one writer lock the API needs). No message is decided
        here: what may match goes to :meth:`decide`, one by one, under the player's lock."""
        if not claimed:
            return []
        now = self.clock().replace(microsecond=0)
        triggers = self.triggers.get()[0]
        with self.engine.connect() as conn:
            envs = {}
            for chunk in key_chunks([f["event_id"] for f in claimed]):
                envs |= {e: json.loads(v) for e, v in conn.execute(
                    sa.select(accepted_events.c.event_id, accepted_events.c.envelope)
                    .where(accepted_events.c.event_id.in_(chunk)))}
            profiles = effective_profiles(conn, [(f["brand_id"], f["player_id"]) for f in claimed])
        rest, quick = [], []
        for f in claimed:
            t, env = triggers.get(f["trigger_id"]), envs.get(f["event_id"])
            if t is None or env is None or not t.applies_to(f["brand_id"]) or not self.approval(t.as_campaign())[0]:
                rest.append(f)  # decide() says why
                continue
            ok, why = matches(t, env, with_derived(profiles[(f["brand_id"], f["player_id"])][0], now))
            if ok:
                rest.append(f)
            else:
                quick.append({"fid": f["id"], "attempt": f["attempts"], "detail": why[:REASON_CHARS],
                              "version": t.spec_hash()})
        if quick:
            c = trigger_firings.c
            with self.engine.begin() as conn:
                conn.execute(trigger_firings.update().where(
                    c.id == sa.bindparam("fid"), c.status == tq.PROCESSING, c.attempts == sa.bindparam("attempt"))
                    .values(status=tq.NO_MATCH, lease_until=None, rule=None, detail=sa.bindparam("detail"),
                            delivery_id=None, arm=None, trigger_version=sa.bindparam("version"), updated_at=now),
                    quick)
            out[tq.NO_MATCH] += len(quick)
        return rest

    def decide(self, firing: dict) -> str:
        now = self.clock().replace(microsecond=0)
        brand, player = firing["brand_id"], firing["player_id"]
        trigger = self.triggers.get()[0].get(firing["trigger_id"])
        _, calendar = self.send_config.get()
        with self.engine.begin() as conn:
            if not tq.own(conn, firing, now):
                return "lost"
            if trigger is None or not trigger.applies_to(brand):
                tq.decide(conn, firing, tq.DROPPED, now, detail="the trigger was removed or disabled since")
                return tq.DROPPED
            version = trigger.spec_hash()
            approved_as = trigger.as_campaign()

            def done(status: str, **kw) -> str:
                tq.decide(conn, firing, status, now, version=version, **kw)
                return status

            ok, why = self.approval(approved_as)  # required (a cost) and not approved, or rejected
            if not ok:
                return done(tq.DROPPED, rule=NOT_APPROVED, detail=f"this version may not fire ({why}); a trigger "
                            "with a cost needs a second person's approval: crm triggers approve")
            age = now - firing["occurred_at"]
            if not firing["held"] and age > dt.timedelta(minutes=trigger.max_age_minutes):
                return done(tq.EXPIRED, detail=f"the event happened {age} before it was decided (max_age_minutes "
                                              f"{trigger.max_age_minutes})")
            raw = conn.execute(sa.select(accepted_events.c.envelope)
                               .where(accepted_events.c.event_id == firing["event_id"])).scalar_one_or_none()
            if raw is None:
                return done(tq.DROPPED, detail="the event is no longer in the store")
            envelope = json.loads(raw)
            # PostgreSQL: the player's profile row locked until the end: the dedup count below and the
            # send are decided by one worker at a time per player
            profile = effective_profiles(conn, [(brand, player)], for_update=True)[(brand, player)][0]
            ok, why = matches(trigger, envelope, with_derived(profile, now))
            if not ok:
                return done(tq.NO_MATCH, detail=why)
            if trigger.dedup_minutes and tq.recent_firings(conn, brand, player, trigger.id,
                                                           now - dt.timedelta(minutes=trigger.dedup_minutes)):
                return done(tq.DEDUPED, rule="trigger_dedup",
                            detail=f"a message of this trigger within {trigger.dedup_minutes} minutes")
            spec = trigger.as_campaign(at=now)
            ask = SendAsk(brand_id=brand, player_id=player, spec=spec, template_id=trigger.template,
                          params=params_for(trigger, envelope, message_params(spec, brand)), source="trigger",
                          delivery_id=delivery_id_of(trigger.id, firing["event_id"]),
                          cost_cents=offer_cost_cents(trigger, envelope), holdout=trigger.in_holdout(brand, player))
            out = check_and_queue(conn, [ask], now, calendar, self.outbox, self.templates)[0]
            if out.error is not None:
                return done(tq.DROPPED, rule="template", detail=out.error)
            if out.held_out:
                return done(tq.HOLDOUT, arm=HOLDOUT_ARM, detail="eligible; in the trigger's holdout")
            if out.queued:
                return done(tq.QUEUED, arm=TREATED_ARM, delivery_id=out.delivery_id)
            v = out.verdict
            if v is not None and v.rule == "quiet_hours" and trigger.quiet_hours == "hold" and profile is not None:
                until = quiet_hours_end(profile, now)
                if until is not None:
                    tq.hold(conn, firing, until, now,
                            f"held until the player's quiet hours end ({until:%Y-%m-%d %H:%M} UTC)", version)
                    return "held"
            return done(tq.REFUSED, rule=v.rule if v else "unknown", detail=(v.reason or "") if v else "")
