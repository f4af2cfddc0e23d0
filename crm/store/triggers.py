"""Trigger firings: queued with each accepted event, claimed by trigger workers, decided once.

* :func:`queue_firings` runs in the transaction that accepts events (``POST /v1/events``): one
  ``pending`` row per (trigger, event) for the triggers subscribed to the event's type and brand.
  The unique key (trigger, event) makes a replayed event a no-op here too. On PostgreSQL the
  transaction also sends ``NOTIFY crm_triggers`` (delivered at commit), which wakes the workers.
* :func:`claim_firings` takes due rows for one worker (``processing``, a lease, ``attempts + 1``),
  as :func:`crm.store.queue.claim_due` takes deliveries: ``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL, one writing statement on SQLite. A crashed worker's rows come back when the lease ends.
* :func:`own` is the first statement of the transaction that decides a firing: it re-checks the
  lease (still ``processing`` with this attempt) and, on SQLite, takes the write lock before any
  read. :func:`decide` writes the outcome in that same transaction, with the delivery it queued:
  a firing is decided once, and its message (a delivery id derived from trigger and event) exists
  at most once, whatever crashes and how many workers.
* :func:`hold` puts a firing back to ``pending`` at a later time (a durable timer: a restart does not
  lose it, and it fires once).

This module knows no trigger definitions (:mod:`crm.triggers` does): subscriptions come in as
plain data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

import sqlalchemy as sa

from crm.store.db import claim_rows, transaction
from crm.store.deliveries import now as store_now
from crm.store.profile import parse_time
from crm.store.queue import naive_utc
from crm.store.schema import REASON_CHARS, trigger_firings

PENDING, PROCESSING = "pending", "processing"
# what became of a firing (final)
QUEUED, REFUSED, HOLDOUT, NO_MATCH, DEDUPED, EXPIRED, DROPPED = (
    "queued", "refused", "holdout", "no_match", "deduped", "expired", "dropped")
OUTCOMES = (QUEUED, REFUSED, HOLDOUT, NO_MATCH, DEDUPED, EXPIRED, DROPPED)
CHANNEL = "crm_triggers"  # PostgreSQL LISTEN/NOTIFY channel
DEFAULT_LEASE = dt.timedelta(seconds=60)

# event type -> [(trigger id, brands it applies to: () = all)]
Subscriptions = Mapping[str, Sequence[tuple[str, tuple[str, ...]]]]


def queue_firings(conn: sa.Connection, envelopes: Iterable[dict], subscriptions: Subscriptions,
                  received_at: dt.datetime) -> int:
    """In the transaction accepting ``envelopes`` (new ones only): a pending firing per subscribed
    trigger. Returns how many were queued."""
    rows = []
    for env in envelopes:
        for trigger_id, brands in subscriptions.get(env.get("event_type"), ()):
            if brands and env["brand_id"] not in brands:
                continue
            rows.append({"trigger_id": trigger_id, "event_id": env["event_id"], "event_type": env["event_type"],
                         "brand_id": env["brand_id"], "player_id": env["player_id"],
                         "occurred_at": parse_time(env.get("occurred_at")) or received_at,
                         "received_at": received_at, "due_at": received_at, "status": PENDING, "held": False,
                         "attempts": 0, "updated_at": received_at})
    if rows:
        conn.execute(trigger_firings.insert(), rows)
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
    return len(rows)


def _due(now: dt.datetime):
    c = trigger_firings.c
    return sa.or_(sa.and_(c.status == PENDING, c.due_at <= now), sa.and_(c.status == PROCESSING, c.lease_until < now))


def claim_firings(engine: sa.Engine, limit: int, lease: dt.timedelta = DEFAULT_LEASE,
                  now: dt.datetime | None = None) -> list[dict]:
    """Claim up to ``limit`` due firings (earliest due first); returns their rows (``attempts``
    counting this attempt)."""
    now = naive_utc(now) if now is not None else store_now()
    c = trigger_firings.c
    rows = claim_rows(engine, trigger_firings, _due(now), (c.due_at, c.id), limit,
                      {"status": PROCESSING, "lease_until": now + lease, "attempts": c.attempts + 1, "updated_at": now})
    return sorted(rows, key=lambda r: (r["due_at"], r["id"]))


def own(conn: sa.Connection, firing: dict, now: dt.datetime) -> bool:
    """First statement of a firing's decision: True while this attempt still holds it."""
    c = trigger_firings.c
    res = conn.execute(trigger_firings.update()
                       .where(c.id == firing["id"], c.status == PROCESSING, c.attempts == firing["attempts"])
                       .values(updated_at=now))
    return res.rowcount == 1


def decide(conn: sa.Connection, firing: dict, status: str, now: dt.datetime, *, rule: str | None = None,
           detail: str = "", delivery_id: str | None = None, arm: str | None = None,
           version: str | None = None) -> None:
    if status not in OUTCOMES:
        raise ValueError(f"firing outcome {status!r}: not one of {OUTCOMES}")
    c = trigger_firings.c
    conn.execute(trigger_firings.update().where(c.id == firing["id"]).values(
        status=status, lease_until=None, rule=rule and rule[:60], detail=detail[:REASON_CHARS],
        delivery_id=delivery_id, arm=arm, trigger_version=version, updated_at=now))


def hold(conn: sa.Connection, firing: dict, until: dt.datetime, now: dt.datetime, detail: str,
         version: str | None = None) -> None:
    c = trigger_firings.c
    conn.execute(trigger_firings.update().where(c.id == firing["id"]).values(
        status=PENDING, due_at=until, held=True, lease_until=None, detail=detail[:REASON_CHARS],
        trigger_version=version, updated_at=now))


def recent_firings(conn: sa.Connection, brand_id: str, player_id: str, trigger_id: str, since: dt.datetime,
                   statuses: Sequence[str] = (QUEUED, HOLDOUT)) -> int:
    """How many firings of ``trigger_id`` to the player were decided as ``statuses`` since ``since``
    (the trigger's dedup window)."""
    c = trigger_firings.c
    return conn.execute(sa.select(sa.func.count()).select_from(trigger_firings).where(
        c.brand_id == brand_id, c.player_id == player_id, c.trigger_id == trigger_id,
        c.status.in_(statuses), c.updated_at >= since)).scalar_one()


def firing_counts(engine: sa.Engine, since: dt.datetime | None = None) -> list[dict]:
    """Per trigger, status and rule: how many firings (those updated since ``since``)."""
    c = trigger_firings.c
    q = sa.select(c.trigger_id, c.status, c.rule, sa.func.count().label("n")).group_by(c.trigger_id, c.status, c.rule)
    if since is not None:
        q = q.where(c.updated_at >= since)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q.order_by(c.trigger_id, c.status, c.rule))]


def firings_of(bind, **where) -> list[dict]:
    c = trigger_firings.c
    q = sa.select(trigger_firings).order_by(c.id)
    for k, v in where.items():
        q = q.where(c[k] == v)
    with transaction(bind) as conn:
        return [dict(r._mapping) for r in conn.execute(q)]
