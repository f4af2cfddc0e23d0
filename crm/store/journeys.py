"""Journey runs: a player's way through a journey, durable across restarts.

* :func:`enter` creates runs (one per journey, player and entry: a replayed entry is a no-op; at
  most one *active* run per journey and player, a partial unique index; the re-entry rule is
  the caller's, :func:`recent_runs`).
* :func:`claim_runs` takes due active runs for one worker, as :mod:`crm.store.triggers` takes
  firings (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, one writing statement on SQLite); a run's
  ``due_at`` is its timer (a wait's end, a held send, the next step). :func:`own` re-checks the
  lease as the first statement of the step's transaction; :func:`advance` / :func:`end` write
  the step's outcome in that transaction, with the log entry.
* :func:`react` runs in the transaction that accepts events: a player's stop (opt-out,
  complaint, self-exclusion) or any RG event ends every active run of theirs at once
  (``exited``); a goal event of a journey ends its runs as ``converted``; an open or click of a
  journey's message wakes the run waiting on it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence

import sqlalchemy as sa

from crm.contract import WITHDRAWALS
from crm.store.db import claim_rows
from crm.store.deliveries import now as store_now
from crm.store.profile import stop_of
from crm.store.queue import naive_utc
from crm.store.schema import REASON_CHARS, accepted_events, journey_log, journey_runs

ACTIVE, COMPLETED, CONVERTED, EXITED, HOLDOUT = "active", "completed", "converted", "exited", "holdout"
ENDED = (COMPLETED, CONVERTED, EXITED, HOLDOUT)
DEFAULT_LEASE = dt.timedelta(seconds=60)
ENGAGED = ("crm.open", "crm.click")

# event type -> journeys it is a goal of
Goals = Mapping[str, Sequence[str]]


def _log(conn: sa.Connection, run: dict, what: str, at: dt.datetime, *, step: int | None = None,
         rule: str | None = None, delivery_id: str | None = None, detail: str = "") -> None:
    conn.execute(journey_log.insert().values(
        run_id=run["id"], journey_id=run["journey_id"], step=run["step"] if step is None else step, what=what,
        rule=rule and rule[:60], delivery_id=delivery_id, at=at, detail=detail[:REASON_CHARS]))


def enter(conn: sa.Connection, journey_id: str, players: Iterable[tuple[str, str, str]], entry_key: str,
          at: dt.datetime, version: str) -> dict[str, int]:
    """Enter ``players`` ((brand, player, arm): arm ``holdout`` is recorded as ended at once) with
    ``entry_key``. A player with an active run of the journey, or already entered with this key,
    is skipped. Returns counts: entered, holdout, skipped."""
    c = journey_runs.c
    rows = list(players)
    out = {"entered": 0, "holdout": 0, "skipped": 0}
    if not rows:
        return out
    busy = set()
    for i in range(0, len(rows), 500):
        chunk = rows[i:i + 500]
        busy |= {(r.brand_id, r.player_id) for r in conn.execute(
            sa.select(c.brand_id, c.player_id).where(
                c.journey_id == journey_id, sa.tuple_(c.brand_id, c.player_id).in_([(b, p) for b, p, _ in chunk]),
                sa.or_(c.status == ACTIVE, c.entry_key == entry_key)))}
    new = []
    for brand, player, arm in rows:
        if (brand, player) in busy:
            out["skipped"] += 1
            continue
        busy.add((brand, player))
        held = arm == HOLDOUT
        new.append({"journey_id": journey_id, "brand_id": brand, "player_id": player, "entry_key": entry_key[:128],
                    "status": HOLDOUT if held else ACTIVE, "step": 0, "due_at": at, "entered_at": at,
                    "ended_at": at if held else None, "attempts": 0, "version": version, "arm": arm,
                    "outcome": "holdout" if held else None, "updated_at": at})
        out["holdout" if held else "entered"] += 1
    for i in range(0, len(new), 5000):
        ids = conn.execute(journey_runs.insert().returning(journey_runs.c.id, journey_runs.c.status),
                           new[i:i + 5000]).all()
        conn.execute(journey_log.insert(), [
            {"run_id": rid, "journey_id": journey_id, "step": 0, "what": "entered" if st == ACTIVE else "holdout",
             "rule": None, "delivery_id": None, "at": at, "detail": f"entry {entry_key}"[:REASON_CHARS]}
            for rid, st in ids])
    return out


def recent_runs(conn: sa.Connection, journey_id: str, since: dt.datetime) -> set[tuple[str, str]]:
    """(brand, player) with a run of the journey that is active, or entered or ended since ``since``."""
    c = journey_runs.c
    return {(r.brand_id, r.player_id) for r in conn.execute(sa.select(c.brand_id, c.player_id).where(
        c.journey_id == journey_id, sa.or_(c.status == ACTIVE, c.entered_at >= since, c.ended_at >= since)))}


def ends_runs(envelope: dict) -> bool:
    """Does this accepted event end the player's active runs (a stop or any RG event)?"""
    return stop_of(envelope) is not None or str(envelope.get("event_type")).startswith("rg.")


def recently_stopped(conn: sa.Connection, since: dt.datetime) -> set[tuple[str, str]]:
    """(brand, player) with an accepted event received since ``since`` that :func:`ends_runs`. Such an
    event ends a run the player is in; the scan does not enter them for the same window either, as a
    run ended by it would keep them out (``re_entry_days``). The envelopes are stored as compact JSON,
    so a LIKE on the event type narrows the rows read; :func:`ends_runs` decides."""
    kinds = [f'%"event_type":"{k}"%' for k in WITHDRAWALS] + ['%"event_type":"rg.%']
    env = accepted_events.c.envelope
    rows = conn.execute(sa.select(env).where(accepted_events.c.received_at >= since,
                                             sa.or_(*[env.like(k) for k in kinds])))
    return {(e.get("brand_id"), e.get("player_id")) for e in (json.loads(r.envelope) for r in rows) if ends_runs(e)}


def _due(now: dt.datetime):
    c = journey_runs.c
    return sa.and_(c.status == ACTIVE, c.due_at <= now, sa.or_(c.lease_until.is_(None), c.lease_until < now))


def claim_runs(engine: sa.Engine, limit: int, lease: dt.timedelta = DEFAULT_LEASE,
               now: dt.datetime | None = None) -> list[dict]:
    now = naive_utc(now) if now is not None else store_now()
    c = journey_runs.c
    rows = claim_rows(engine, journey_runs, _due(now), (c.due_at, c.id), limit,
                      {"lease_until": now + lease, "attempts": c.attempts + 1, "updated_at": now})
    return sorted(rows, key=lambda r: (r["due_at"], r["id"]))


def own(conn: sa.Connection, run: dict, now: dt.datetime) -> bool:
    """First statement of a step's transaction: True while this attempt still holds the run."""
    c = journey_runs.c
    return conn.execute(journey_runs.update().where(c.id == run["id"], c.status == ACTIVE,
                                                    c.attempts == run["attempts"]).values(updated_at=now)).rowcount == 1


def advance(conn: sa.Connection, run: dict, now: dt.datetime, *, step: int, due_at: dt.datetime,
            what: str | None = None, waiting_since: dt.datetime | None = None, delivery_id: str | None = None,
            rule: str | None = None, detail: str = "") -> None:
    """Move the run to ``step``, due at ``due_at`` (its timer), logging ``what`` the current step did."""
    values: dict = {"step": step, "due_at": due_at, "lease_until": None, "waiting_since": waiting_since,
                    "updated_at": now}
    if delivery_id is not None:
        values |= {"last_delivery_id": delivery_id, "last_sent_at": now}
    conn.execute(journey_runs.update().where(journey_runs.c.id == run["id"]).values(**values))
    if what is not None:
        _log(conn, run, what, now, rule=rule, delivery_id=delivery_id, detail=detail)


def end(conn: sa.Connection, run: dict, status: str, outcome: str, now: dt.datetime, *, rule: str | None = None,
        detail: str = "") -> None:
    conn.execute(journey_runs.update().where(journey_runs.c.id == run["id"]).values(
        status=status, outcome=outcome[:80], detail=detail[:REASON_CHARS], lease_until=None, ended_at=now,
        updated_at=now))
    _log(conn, run, status, now, rule=rule, detail=f"{outcome}: {detail}" if detail else outcome)


def react(conn: sa.Connection, envelopes: Iterable[dict], goals: Goals | None, at: dt.datetime) -> dict[str, int]:
    """In the transaction accepting ``envelopes`` (new ones only): stops and RG events end the
    player's active runs (``exited``), goal events convert them, an open or click wakes the run
    whose message it was. Returns counts."""
    c = journey_runs.c
    out = {"exited": 0, "converted": 0, "woken": 0}
    for env in envelopes:
        kind, brand, player = env.get("event_type"), env.get("brand_id"), env.get("player_id")
        mine = sa.and_(c.brand_id == brand, c.player_id == player, c.status == ACTIVE)
        ending: list[tuple[str, sa.ColumnElement[bool]]] = []
        if ends_runs(env):
            ending.append((EXITED, mine))
        elif goals and kind in goals:
            ending.append((CONVERTED, sa.and_(mine, c.journey_id.in_(list(goals[kind])))))
        for status, where in ending:
            runs = conn.execute(journey_runs.update().where(where).values(
                status=status, outcome=f"{'goal' if status == CONVERTED else 'exit'}: {kind}"[:80],
                detail=f"event {env.get('event_id')}"[:REASON_CHARS], lease_until=None, ended_at=at, updated_at=at)
                .returning(journey_runs.c.id, journey_runs.c.journey_id, journey_runs.c.step)).all()
            if runs:
                conn.execute(journey_log.insert(), [
                    {"run_id": r.id, "journey_id": r.journey_id, "step": r.step, "what": status, "rule": None,
                     "delivery_id": None, "at": at, "detail": f"{kind} {env.get('event_id')}"[:REASON_CHARS]}
                    for r in runs])
            out[status] += len(runs)
        delivery = (env.get("payload") or {}).get("delivery_id") if kind in ENGAGED else None
        if delivery:
            out["woken"] += conn.execute(journey_runs.update().where(
                mine, c.last_delivery_id == delivery, c.waiting_since.is_not(None)).values(due_at=at)).rowcount
    return out


def runs_of(bind, **where) -> list[dict]:
    c = journey_runs.c
    q = sa.select(journey_runs).order_by(c.id)
    for k, v in where.items():
        q = q.where(c[k] == v)
    with bind.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def log_of(bind, run_id: int) -> list[dict]:
    with bind.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            sa.select(journey_log).where(journey_log.c.run_id == run_id).order_by(journey_log.c.id))]


def journey_counts(engine: sa.Engine, since: dt.datetime | None = None, until: dt.datetime | None = None
                   ) -> list[dict]:
    """Per journey, what (entered, sent, suppressed, exited, converted, ...) and rule: how many (in [since, until))."""
    c = journey_log.c
    q = sa.select(c.journey_id, c.what, c.rule, sa.func.count().label("n")).group_by(c.journey_id, c.what, c.rule)
    if since is not None:
        q = q.where(c.at >= since)
    if until is not None:
        q = q.where(c.at < until)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q.order_by(c.journey_id, c.what, c.rule))]
