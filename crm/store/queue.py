"""The delivery queue: claiming due deliveries, recording what their attempts came to, its depth.

The queue is the ``deliveries`` table itself (a transactional outbox): a delivery is created
``queued`` in the transaction that accepted the request for it (:mod:`crm.store.deliveries`), and
workers (:class:`crm.service.worker.DeliveryWorker`) move it on:

* :func:`claim_due` takes up to ``limit`` due rows (``queued`` with ``next_attempt_at <= now``, or
  ``sending`` whose ``lease_until`` has passed: a crashed worker's) for one worker: status
  ``sending``, a lease, ``attempts + 1``, and a ``delivery_events`` row each, in one transaction.
  Transactional rows first, then the earliest due, then the delivery id (the order of
  :func:`crm.channels.delivery.priority_key`).
* :func:`record_result` writes what an attempt came to (``sent``, ``queued`` again for a retry,
  ``dead_letter``, ``refused``, ``bounced`` with the address suppressed), guarded on the lease:
  only while the row is still ``sending`` with this attempt's number, so a worker that comes back
  after its lease expired and the row was claimed again cannot overwrite the newer attempt.
* :func:`release` hands a claimed row back untried (rate limit, lease running out).
* :func:`queue_depth` counts rows by status and channel, and how late the oldest due row is.

Concurrency. On PostgreSQL the candidates are locked with ``SELECT ... FOR UPDATE SKIP LOCKED``
(two workers never wait on each other and never take the same row), then updated. On SQLite
(one writer at a time) the claim is one ``UPDATE ... WHERE delivery_id IN (SELECT ... LIMIT n)
RETURNING``: its first statement writes, so the transaction takes the write lock before it reads
(no stale-snapshot upgrade, ``busy_timeout`` applies) and the candidate query runs under that lock;
the outer ``WHERE`` repeats the due condition as a guard on every dialect.

Why a hand-written outbox and not DBOS (STACK.md weighs it): the deliveries table must exist anyway
(the API's idempotent answers, ``GET /v1/deliveries/{id}`` history, caps and dedup read it), sends
are single steps (no multi-step workflow to resume), and this needs nothing but SQLAlchemy on the
store the service already has (SQLite or Postgres through psycopg2, no psycopg 3 beside Dagster's).

This module knows no channel: results and decisions are read by attribute (``status``,
``detail``, ``provider_id``; ``action``, ``attempt``, ``next_attempt_at``, ``reason``), the shapes of
:class:`crm.channels.DeliveryResult` and :class:`crm.channels.RetryDecision` (store and channels
are sibling layers that do not import each other).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Protocol

import sqlalchemy as sa

from crm.contract import ALL_CHANNELS
from crm.store.db import transaction
from crm.store.deliveries import BOUNCED, DEAD_LETTER, QUEUED, REFUSED, SENDING, SENT, STATUSES
from crm.store.deliveries import now as store_now
from crm.store.profile import COOLING_OFF, LIMIT_HIT, SELF_EXCLUSION, WITHDRAWAL, suppress_address
from crm.store.schema import REASON_CHARS, deliveries, delivery_events, profile_stops

DEFAULT_LEASE = dt.timedelta(seconds=60)
# channel results (crm.channels.base) -> delivery statuses, for final results
_FINAL = {"delivered": SENT, "permanent_failure": BOUNCED, "refused": REFUSED, "temporary_failure": DEAD_LETTER}


class ResultLike(Protocol):  # crm.channels.DeliveryResult
    status: str
    detail: str
    provider_id: str | None


class DecisionLike(Protocol):  # crm.channels.RetryDecision
    action: str  # done | retry | dead_letter
    attempt: int
    next_attempt_at: dt.datetime | None
    reason: str


def naive_utc(t: dt.datetime) -> dt.datetime:
    """``t`` as naive UTC, the way the store keeps times."""
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo is not None else t


def _due(now: dt.datetime):
    c = deliveries.c
    return sa.or_(sa.and_(c.status == QUEUED, c.next_attempt_at <= now),
                  sa.and_(c.status == SENDING, c.lease_until < now))


def _order():
    c = deliveries.c
    return (c.transactional.desc(), c.next_attempt_at, c.delivery_id)


def _row(row) -> dict:
    out = dict(row._mapping)
    for k in ("params", "basis"):
        if isinstance(out.get(k), str):
            out[k] = json.loads(out[k])
    return out


def sort_key(row: dict) -> tuple:
    """Transactional first, then the earliest due, then the id (``priority_key`` on a row)."""
    return (0 if row["transactional"] else 1, row["next_attempt_at"] or dt.datetime.min, row["delivery_id"])


def claim_due(engine: sa.Engine, limit: int, worker_id: str, lease: dt.timedelta = DEFAULT_LEASE,
              now: dt.datetime | None = None, max_attempts: int | None = None) -> list[dict]:
    """Claim up to ``limit`` due deliveries for ``worker_id`` until ``now + lease``; returns the
    claimed rows (``params`` and ``basis`` decoded, ``attempts`` already counting this attempt), in
    send order. ``max_attempts``: a row whose lease expired on its last allowed attempt (a worker
    that crashed on it, maybe because of it) is dead-lettered instead of claimed again, so a
    message that kills workers cannot loop forever."""
    if limit < 1:
        return []
    now = naive_utc(now) if now is not None else store_now()
    until = now + lease
    c = deliveries.c
    with engine.connect() as conn:  # a read first: an idle worker polls; on SQLite the claim takes the write lock
        if conn.execute(sa.select(c.delivery_id).where(_due(now)).limit(1)).first() is None:
            return []
    with engine.begin() as conn:
        dead: list[str] = []
        if max_attempts is not None:
            dead = list(conn.execute(
                deliveries.update()
                .where(c.status == SENDING, c.lease_until < now, c.attempts >= max_attempts)
                .values(status=DEAD_LETTER, lease_until=None, updated_at=now)
                .returning(c.delivery_id)).scalars())
        candidates = sa.select(c.delivery_id).where(_due(now)).order_by(*_order()).limit(limit)
        if engine.dialect.name == "postgresql":
            ids = list(conn.execute(candidates.with_for_update(skip_locked=True)).scalars())
            target = c.delivery_id.in_(ids) if ids else sa.false()
        else:  # one statement that writes first: the candidates are read under the write lock
            target = c.delivery_id.in_(candidates.scalar_subquery())
        claimed = [_row(r) for r in conn.execute(
            deliveries.update().where(target, _due(now))  # the guard: still due when updated
            .values(status=SENDING, lease_until=until, attempts=c.attempts + 1, updated_at=now)
            .returning(*deliveries.c)).all()]
        crashed = _last_event_sending(conn, [r["delivery_id"] for r in claimed if r["attempts"] > 1])
        events = [{"delivery_id": d, "status": DEAD_LETTER, "at": now,
                   "detail": f"lease expired on the last allowed attempt ({max_attempts}): "
                             "the worker stopped while sending it"} for d in dead]
        for r in claimed:
            how = "the previous attempt's lease expired; " if r["delivery_id"] in crashed else ""
            events.append({"delivery_id": r["delivery_id"], "status": SENDING, "at": now,
                           "detail": (f"{how}attempt {r['attempts']} claimed by {worker_id} until "
                                      f"{until.isoformat(timespec='seconds')}")[:REASON_CHARS]})
        if events:
            conn.execute(delivery_events.insert(), events)
    return sorted(claimed, key=sort_key)


def _last_event_sending(conn: sa.Connection, ids: list[str]) -> set[str]:
    """Of ``ids``, those whose latest history entry is ``sending``: an attempt that never recorded
    its result (:func:`record_result` and :func:`release` always add one), i.e. a crashed worker's."""
    if not ids:
        return set()
    e = delivery_events.c
    last = sa.select(sa.func.max(e.id)).where(e.delivery_id.in_(ids)).group_by(e.delivery_id)
    return set(conn.execute(sa.select(e.delivery_id).where(e.id.in_(last), e.status == SENDING)).scalars())


def record_result(bind: sa.Engine | sa.Connection, delivery_id: str, result: ResultLike, decision: DecisionLike,
                  now: dt.datetime | None = None) -> str | None:
    """Record what attempt ``decision.attempt`` of ``delivery_id`` came to; returns the new status,
    or None when the row is no longer leased by that attempt (its lease expired and another worker
    claimed it, or it was recorded already): then nothing is written. (When provider feedback moved
    this attempt on first, e.g. to ``delivered``, the outcome is added to the history, the status
    left as the feedback set it, and that status returned.)

    ``delivered`` -> ``sent`` (with the provider's id); a temporary failure -> ``queued`` at
    ``decision.next_attempt_at`` (retry) or ``dead_letter``; ``refused`` -> ``refused``;
    ``permanent_failure`` -> ``bounced``, and the player's address on the channel is suppressed in
    the same transaction (no message goes to it until a new address arrives)."""
    now = naive_utc(now) if now is not None else store_now()
    c = deliveries.c
    values: dict = {"lease_until": None, "updated_at": now}
    if decision.action == "retry":
        if decision.next_attempt_at is None:
            raise ValueError("a retry decision without next_attempt_at")
        status = QUEUED
        at = naive_utc(decision.next_attempt_at)
        values["next_attempt_at"] = at
        detail = (f"attempt {decision.attempt}: {result.status}: {result.detail}; "
                  f"next attempt at {at.isoformat(timespec='seconds')}")
    elif decision.action == "dead_letter":
        status, detail = DEAD_LETTER, decision.reason or f"attempt {decision.attempt}: {result.detail}"
    else:
        if result.status not in _FINAL:
            raise ValueError(f"result status {result.status!r}: not a channel status")
        status = _FINAL[result.status]
        detail = f"attempt {decision.attempt}: {result.detail}"
    if status == SENT and result.provider_id:
        values["provider_id"] = str(result.provider_id)[:REASON_CHARS]
    with transaction(bind) as conn:
        guarded = conn.execute(deliveries.update().where(
            c.delivery_id == delivery_id, c.status == SENDING, c.attempts == decision.attempt)
            .values(status=status, **values).returning(c.brand_id, c.player_id, c.channel)).first()
        if guarded is None:
            return _late_record(conn, delivery_id, result, decision, status, detail, now, values)
        conn.execute(delivery_events.insert().values(delivery_id=delivery_id, status=status, at=now,
                                                     detail=detail[:REASON_CHARS]))
        if status == BOUNCED:
            suppress_address(conn, guarded.brand_id, guarded.player_id, guarded.channel,
                             f"hard bounce: {result.detail}", delivery_id)
    return status


# feedback (POST /v1/messaging/feedback) may move a row past 'sending' before its attempt is recorded
# (a fast webhook gateway calls back first); the attempt's outcome then joins the history only
_FEEDBACK = ("delivered", "opened", "clicked", "bounced", "complained", "unsubscribed")


def _late_record(conn: sa.Connection, delivery_id: str, result: ResultLike, decision: DecisionLike, status: str,
                 detail: str, now: dt.datetime, values: dict) -> str | None:
    """The guard failed. If feedback moved this very attempt on already, add the attempt's outcome
    to the history (and the provider id, and a bounce's suppression) without touching the status;
    returns the row's status then. None otherwise (the row is another attempt's)."""
    c = deliveries.c
    row = conn.execute(sa.select(c.status, c.attempts, c.brand_id, c.player_id, c.channel)
                       .where(c.delivery_id == delivery_id)).first()
    if row is None or row.attempts != decision.attempt or row.status not in _FEEDBACK:
        return None
    if "provider_id" in values:
        conn.execute(deliveries.update().where(c.delivery_id == delivery_id, c.provider_id.is_(None))
                     .values(provider_id=values["provider_id"]))
    conn.execute(delivery_events.insert().values(
        delivery_id=delivery_id, status=status, at=now,
        detail=f"{detail} (recorded after feedback: status stays {row.status})"[:REASON_CHARS]))
    if status == BOUNCED:
        suppress_address(conn, row.brand_id, row.player_id, row.channel, f"hard bounce: {result.detail}",
                         delivery_id)
    return row.status


def release(bind: sa.Engine | sa.Connection, delivery_id: str, attempt: int, not_before: dt.datetime, reason: str,
            now: dt.datetime | None = None) -> bool:
    """Hand claimed attempt ``attempt`` back untried: ``queued`` at ``not_before``, the attempt not
    counted (a rate limit, a lease too close to its end to start a send). Guarded like
    :func:`record_result`; returns False when the row was no longer this attempt's."""
    now = naive_utc(now) if now is not None else store_now()
    c = deliveries.c
    with transaction(bind) as conn:
        n = conn.execute(deliveries.update().where(
            c.delivery_id == delivery_id, c.status == SENDING, c.attempts == attempt)
            .values(status=QUEUED, attempts=c.attempts - 1, lease_until=None,
                    next_attempt_at=naive_utc(not_before), updated_at=now)).rowcount
        if n != 1:
            return False
        conn.execute(delivery_events.insert().values(
            delivery_id=delivery_id, status=QUEUED, at=now,
            detail=f"attempt {attempt} released untried: {reason}"[:REASON_CHARS]))
    return True


def holding_stop(conn: sa.Connection, delivery: dict) -> dict | None:
    """A live stop (``profile_stops``, not yet retired) that holds ``delivery`` back, or None.

    Only stops the check at creation could not have seen count: those that occurred, or were
    received, at or after the delivery was created (earlier ones were the creator's to weigh).
    A self-exclusion or a cooling-off holds every message, an RG limit hit every bonus offer; a
    withdrawal holds the delivery's channel (or every channel: ``*``), for its product or all products. Fail closed: a
    withdrawal holds transactional messages too (a player who just said stop gets nothing until
    the warehouse has seen it, even if a transactional message could be argued for)."""
    row = conn.execute(_holding_stops(delivery).limit(1)).first()
    return dict(row._mapping) if row is not None else None


def holding_stop_id(delivery: dict) -> sa.ScalarSelect:
    """The id of the first stop :func:`holding_stop` would return (NULL when none), as a scalar
    subquery: one column of a statement that checks several things in one round trip."""
    return _holding_stops(delivery).with_only_columns(profile_stops.c.id).limit(1).scalar_subquery()


def _holding_stops(delivery: dict) -> sa.Select:
    s = profile_stops.c
    created = delivery["created_at"]
    channel_match = sa.and_(s.kind == WITHDRAWAL, s.channel.in_((delivery["channel"], ALL_CHANNELS)),
                            sa.or_(s.product.is_(None), s.product == delivery.get("product")))
    holds_all = (SELF_EXCLUSION, COOLING_OFF, LIMIT_HIT) if delivery.get("is_bonus") else (SELF_EXCLUSION, COOLING_OFF)
    return sa.select(profile_stops).where(
        s.brand_id == delivery["brand_id"], s.player_id == delivery["player_id"], s.retired_at.is_(None),
        sa.or_(s.occurred_at >= created, s.received_at >= created),
        sa.or_(s.kind.in_(holds_all), channel_match)).order_by(s.occurred_at, s.id)


def queue_depth(engine: sa.Engine, now: dt.datetime | None = None) -> dict:
    """Counts by status (every status, zeros included) and by channel and status; rows due now
    (``queued`` and due, or a lease expired) and the age in seconds of the oldest of them."""
    now = naive_utc(now) if now is not None else store_now()
    c = deliveries.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(c.channel, c.status, sa.func.count()).group_by(c.channel, c.status)).all()
        due, oldest = conn.execute(sa.select(sa.func.count(), sa.func.min(c.next_attempt_at))
                                   .where(_due(now))).one()
        expired = conn.execute(sa.select(sa.func.count()).where(c.status == SENDING, c.lease_until < now)).scalar()
    by_status = dict.fromkeys(STATUSES, 0)
    by_channel: dict[str, dict[str, int]] = {}
    for channel, status, n in rows:
        by_status[status] = by_status.get(status, 0) + n
        by_channel.setdefault(channel, {})[status] = n
    return {
        "as_of": now.isoformat(timespec="seconds"),
        "by_status": by_status,
        "by_channel": dict(sorted(by_channel.items())),
        "due": due,
        "leases_expired": expired,
        "oldest_due_at": oldest.isoformat(timespec="seconds") if oldest else None,
        "oldest_due_age_seconds": round((now - oldest).total_seconds(), 3) if oldest else None,
    }
