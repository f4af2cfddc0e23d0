"""Deliverability and the delivery queue, from the store: what ``GET /v1/metrics`` exposes and the
SLO alerts watch (:func:`slo_breaches`).

Rates are per send: of the deliveries handed to the channel (status ``sent`` or any later
feedback), the share that came back delivered, opened, clicked, bounced (hard), complained or
unsubscribed, per brand, source (``api`` / ``batch``), campaign (``api_<template>`` for API sends)
and channel. Event-to-send latency is from the moment a delivery was queued (the request that
asked for it was answered) to the channel's acceptance.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from crm.store.deliveries import (
    BOUNCED,
    CLICKED,
    COMPLAINED,
    DEAD_LETTER,
    DELIVERED,
    OPENED,
    QUEUED,
    SENDING,
    SENT,
    UNSUBSCRIBED,
)
from crm.store.schema import deliveries, delivery_events

OUTCOMES = (DELIVERED, OPENED, CLICKED, BOUNCED, COMPLAINED, UNSUBSCRIBED)
HANDED_OVER = (SENT, *OUTCOMES)  # reached the channel



def _env(name: str, default: str) -> float:
    return float(os.environ.get(name) or default)


def slo_limits() -> dict[str, float]:
    """The CRM stack's SLOs, each overridable in the environment (read at each evaluation)."""
    return {"complaint_rate": _env("CRM_SLO_COMPLAINT_RATE", "0.001"),  # 0.1 % of a send
            "unsubscribe_rate": _env("CRM_SLO_UNSUBSCRIBE_RATE", "0.01"),  # 1 % of a send
            "min_sent": _env("CRM_SLO_MIN_SENT", "100"),  # fewer sent: a rate says nothing yet
            "queue_depth": _env("CRM_SLO_QUEUE_DEPTH", "10000"),
            "retrying": _env("CRM_SLO_RETRYING", "100"),
            "p95_send_seconds": _env("CRM_SLO_P95_SEND_SECONDS", "1.0")}


@dataclass(frozen=True)
class Rates:
    brand_id: str
    source: str
    campaign_id: str
    channel: str
    sent: int
    counts: dict[str, int]  # outcome -> deliveries that reached it

    def rate(self, outcome: str) -> float:
        return self.counts.get(outcome, 0) / self.sent if self.sent else 0.0


def deliverability(engine: sa.Engine, since: dt.datetime, brand_id: str | None = None) -> list[Rates]:
    """Per brand, source, campaign and channel: deliveries created since ``since`` that reached the
    channel, and how many of them reached each outcome (each delivery counted once per outcome)."""
    d, e = deliveries.c, delivery_events.c
    group = (d.brand_id, d.source, d.campaign_id, d.channel)
    where = [d.created_at >= since] + ([d.brand_id == brand_id] if brand_id is not None else [])
    out: dict[tuple, dict] = {}
    with engine.connect() as conn:
        for *k, n in conn.execute(sa.select(*group, sa.func.count(sa.distinct(e.delivery_id)))
                                  .select_from(deliveries.join(delivery_events, e.delivery_id == d.delivery_id))
                                  .where(*where, e.status.in_(HANDED_OVER)).group_by(*group)):
            out[tuple(k)] = {"sent": n}
        for *k, status, n in conn.execute(
                sa.select(*group, e.status, sa.func.count(sa.distinct(e.delivery_id)))
                .select_from(deliveries.join(delivery_events, e.delivery_id == d.delivery_id))
                .where(*where, e.status.in_(OUTCOMES)).group_by(*group, e.status)):
            out.setdefault(tuple(k), {"sent": 0})[status] = n
    return [Rates(*k, sent=v.pop("sent"), counts=v) for k, v in sorted(out.items())]


@dataclass(frozen=True)
class QueueState:
    depth: dict[tuple[str, str], int]  # (channel, status) -> deliveries waiting (queued or sending)
    retrying: int  # queued again after a temporary failure
    dead_letters: int
    oldest_due_seconds: float  # how long the oldest due delivery has waited (0: none)


def queue_state(engine: sa.Engine, now: dt.datetime, brand_id: str | None = None) -> QueueState:
    d = deliveries.c
    scope = [d.brand_id == brand_id] if brand_id is not None else []
    with engine.connect() as conn:
        depth = {(ch, st): n for ch, st, n in conn.execute(
            sa.select(d.channel, d.status, sa.func.count()).where(*scope, d.status.in_((QUEUED, SENDING)))
            .group_by(d.channel, d.status))}
        retrying = conn.execute(sa.select(sa.func.count()).select_from(deliveries).where(
            *scope, d.status == QUEUED, d.attempts > 0)).scalar_one()
        dead = conn.execute(sa.select(sa.func.count()).select_from(deliveries).where(
            *scope, d.status == DEAD_LETTER)).scalar_one()
        oldest = conn.execute(sa.select(sa.func.min(d.next_attempt_at)).where(
            *scope, d.status == QUEUED, d.next_attempt_at <= now)).scalar_one()
    return QueueState(depth, retrying, dead, max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)


def send_latencies(engine: sa.Engine, since: dt.datetime, brand_id: str | None = None) -> dict[str, np.ndarray]:
    """Per channel: seconds from queued to sent, of the deliveries sent since ``since``."""
    d, e = deliveries.c, delivery_events.c
    scope = [d.brand_id == brand_id] if brand_id is not None else []
    out: dict[str, list[float]] = {}
    with engine.connect() as conn:
        for ch, created, sent in conn.execute(
                sa.select(d.channel, d.created_at, sa.func.min(e.at))
                .select_from(deliveries.join(delivery_events, e.delivery_id == d.delivery_id))
                .where(*scope, e.status == SENT, e.at >= since).group_by(d.delivery_id, d.channel, d.created_at)):
            out.setdefault(ch, []).append(max(0.0, (sent - created).total_seconds()))
    return {ch: np.asarray(v) for ch, v in out.items()}


def slo_breaches(rates: list[Rates], queue: QueueState, latencies: dict[str, np.ndarray]) -> list[dict]:
    """The SLOs broken now, each a notification event (kind ``slo``, a stable ``key`` to notify once)."""
    lim = slo_limits()
    out = []
    for r in rates:
        if r.sent < lim["min_sent"]:
            continue
        where = f"{r.campaign_id} by {r.channel} (brand {r.brand_id}, {r.sent:,} sent)"
        for outcome, limit in ((COMPLAINED, lim["complaint_rate"]), (UNSUBSCRIBED, lim["unsubscribe_rate"])):
            if r.rate(outcome) >= limit:
                out.append({"kind": "slo", "severity": "warning", "key": f"{outcome}:{r.brand_id}:{r.campaign_id}:"
                                                                         f"{r.channel}",
                            "summary": f"{outcome} rate {r.rate(outcome):.2%} of {where}: at or above "
                                       f"{limit:.2%}"})
    depth = sum(queue.depth.values())
    if depth > lim["queue_depth"]:
        out.append({"kind": "slo", "severity": "warning", "key": "queue_depth",
                    "summary": f"{depth:,} deliveries waiting: above {lim['queue_depth']:,.0f}"})
    if queue.retrying > lim["retrying"]:
        out.append({"kind": "slo", "severity": "warning", "key": "retrying",
                    "summary": f"{queue.retrying:,} deliveries retrying after temporary failures: above "
                               f"{lim['retrying']:,.0f}"})
    for ch, v in latencies.items():
        if len(v) and float(np.percentile(v, 95)) > lim["p95_send_seconds"]:
            out.append({"kind": "slo", "severity": "warning", "key": f"p95:{ch}",
                        "summary": f"p95 event-to-send on {ch} {np.percentile(v, 95):.2f} s: above "
                                   f"{lim['p95_send_seconds']:g} s"})
    return out


def campaign_deliverability(engine: sa.Engine, campaign_id: str, since: dt.datetime) -> dict[str, float]:
    """One campaign's sends since ``since``, every channel and brand together: deliveries sent, and
    the share of them delivered, opened, clicked, bounced, complained and unsubscribed."""
    rows = [r for r in deliverability(engine, since) if r.campaign_id == campaign_id]
    sent = sum(r.sent for r in rows)
    out: dict[str, float] = {"sent": sent}
    for outcome in OUTCOMES:
        n = sum(r.counts.get(outcome, 0) for r in rows)
        out[f"{outcome}_rate"] = round(n / sent, 4) if sent else 0.0
    return out
