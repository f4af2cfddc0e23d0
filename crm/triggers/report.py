"""What triggers and journeys did: counts per day (entered, sent, suppressed by rule, exited,
converted) and a readout per trigger (treated vs holdout), for the Dagster assets and the CLI.

A trigger's readout compares the players its firings reached (arm ``A``: the message was queued)
with its holdout (eligible, recorded, not sent): the share that reached the trigger's goal
(``goal_event``, default ``payment.captured``) within ``goal_window_hours`` after the firing,
with the difference and its interval (:func:`crm.measurement.readout.diff_in_means`, binary:
Agresti-Caffo). Goal events are read from the events the service accepted.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict

import sqlalchemy as sa

from crm.measurement.readout import diff_in_means
from crm.store.journeys import journey_counts
from crm.store.profile import parse_time
from crm.store.schema import accepted_events, trigger_firings
from crm.store.triggers import HOLDOUT, QUEUED
from crm.triggers.spec import TriggerSpec

GOAL_EVENT, GOAL_WINDOW_HOURS = "payment.captured", 24


def day_counts(engine: sa.Engine, day: dt.date) -> dict[str, list[dict]]:
    """The triggers' firings and the journeys' steps decided on ``day`` (UTC), by outcome and rule."""
    start = dt.datetime.combine(day, dt.time())
    end = start + dt.timedelta(days=1)
    c = trigger_firings.c
    with engine.connect() as conn:
        firings = [dict(r._mapping) for r in conn.execute(
            sa.select(c.trigger_id, c.status, c.rule, sa.func.count().label("n"))
            .where(c.updated_at >= start, c.updated_at < end)
            .group_by(c.trigger_id, c.status, c.rule).order_by(c.trigger_id, c.status, c.rule))]
    steps = journey_counts(engine, since=start, until=end)
    return {"triggers": firings, "journeys": steps}


def trigger_readout(engine: sa.Engine, trigger: TriggerSpec, until: dt.datetime, days: int = 28,
                    goal_event: str = GOAL_EVENT, window_hours: float = GOAL_WINDOW_HOURS) -> dict:
    """Treated vs holdout over the firings of the ``days`` before ``until`` whose goal window has ended."""
    c = trigger_firings.c
    since = until - dt.timedelta(days=days)
    closed = until - dt.timedelta(hours=window_hours)
    with engine.connect() as conn:
        firings = conn.execute(sa.select(c.brand_id, c.player_id, c.arm, c.status, c.updated_at).where(
            c.trigger_id == trigger.id, c.status.in_([QUEUED, HOLDOUT]), c.updated_at >= since,
            c.updated_at <= closed)).all()
        goals: dict[tuple[str, str], list[dt.datetime]] = defaultdict(list)
        if firings:
            brands = sorted({f.brand_id for f in firings})
            for (env,) in conn.execute(sa.select(accepted_events.c.envelope).where(
                    accepted_events.c.brand_id.in_(brands), accepted_events.c.received_at >= since)):
                e = json.loads(env)
                if e.get("event_type") == goal_event:
                    t = parse_time(e.get("occurred_at"))
                    if t is not None:
                        goals[(e["brand_id"], e["player_id"])].append(t)
    window = dt.timedelta(hours=window_hours)
    reached = {"A": [], "holdout": []}
    for f in firings:
        hit = any(f.updated_at <= t <= f.updated_at + window for t in goals.get((f.brand_id, f.player_id), ()))
        reached["holdout" if f.status == HOLDOUT else "A"].append(1.0 if hit else 0.0)
    effect = diff_in_means(reached["A"], reached["holdout"], binary=True)
    return {"trigger_id": trigger.id, "goal_event": goal_event, "window_hours": window_hours,
            "firings": len(firings), "holdout_share": trigger.holdout, **effect}
