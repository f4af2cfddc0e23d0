"""Events accepted over the API, records quarantined there, and the hand-off to landing.

The hand-off (:func:`hand_off`) writes the accepted events not yet handed off to
``landing/incoming/api_<batch>.jsonl`` (a temporary file renamed into place), then marks
them handed off in one transaction. A crash between the rename and the mark hands the same
events off again in a later file; landing de-duplicates by ``event_id`` (and skips a file whose
bytes it has landed), so the warehouse sees each event once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from crm.config import Paths
from crm.contract import MAX_RECORD_BYTES
from crm.store.journeys import Goals, react
from crm.store.profile import record_accepted
from crm.store.schema import REASON_CHARS, accepted_events, quarantined_events
from crm.store.triggers import Subscriptions, queue_firings

HAND_OFF_LIMIT = 50_000  # events per hand-off file
_CHUNK = 500  # ids per bound IN list (SQLite's limit on variables is far above it)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _insert_new(conn: sa.Connection):
    """INSERT ... ON CONFLICT (event_id) DO NOTHING for the store's dialect."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(accepted_events).on_conflict_do_nothing(index_elements=["event_id"])


_NUL, _REPLACEMENT = "\x00", "\ufffd"


def _no_nul(text: str) -> str:
    """``text`` with each NUL as U+FFFD: PostgreSQL's text cannot hold NUL (psycopg2 refuses the
    string), so the store keeps the same text on every backend."""
    return text.replace(_NUL, _REPLACEMENT)


def bounded_raw(text: str, limit: int = MAX_RECORD_BYTES) -> tuple[str, int, str]:
    """(the record cut to ``limit`` bytes, its size in bytes, its sha256) for quarantine. Size and sha256
    are of the record as received; the text kept has each NUL as U+FFFD (:func:`_no_nul`)."""
    data = text.encode("utf-8", errors="replace")
    kept = _no_nul(data.decode("utf-8")).encode("utf-8")
    return kept[:limit].decode("utf-8", errors="ignore"), len(data), hashlib.sha256(data).hexdigest()


def store_records(engine: sa.Engine, key_id: int, accepted: list[dict], quarantined: list[tuple[str, str]],
                  now: dt.datetime | None = None, subscriptions: Subscriptions | None = None,
                  goals: Goals | None = None) -> list[bool]:
    """Store in one transaction, committed on return: ``accepted`` envelopes (a known event_id is
    left alone) and ``quarantined`` (raw text, reason) records. Returns, per accepted envelope,
    True when it was new, False when it was a duplicate (stored before, or earlier in the list).
    ``subscriptions``: the triggers to queue a firing for (:func:`crm.store.triggers.queue_firings`)."""
    now = now or _now()
    with engine.begin() as conn:
        new = store_in(conn, key_id, accepted, now, subscriptions, goals)
        rows = []
        for text, reason in quarantined:
            raw, size, sha = bounded_raw(text)
            rows.append({"received_at": now, "key_id": key_id, "raw": raw, "raw_size": size, "raw_sha256": sha,
                         "reason": _no_nul(reason[:REASON_CHARS])})
        if rows:
            conn.execute(quarantined_events.insert(), rows)
    return new


def store_in(conn: sa.Connection, key_id: int, accepted: list[dict], now: dt.datetime,
             subscriptions: Subscriptions | None = None, goals: Goals | None = None) -> list[bool]:
    """Store ``accepted`` envelopes in the caller's transaction, with what they change in the online
    profile at once (stops, contact details: :func:`crm.store.profile.record_accepted`) and the
    trigger firings they start (:func:`crm.store.triggers.queue_firings`) and what they do to
    journey runs (:func:`crm.store.journeys.react`: stops end them, goals convert them), for the
    new ones only.
    Returns, per envelope, True when it was new."""
    stmt = _insert_new(conn)
    new: list[bool] = []
    for env in accepted:
        res = conn.execute(stmt, {"event_id": env["event_id"], "brand_id": env["brand_id"],
                                  "envelope": json.dumps(env, ensure_ascii=False, separators=(",", ":")),
                                  "key_id": key_id, "received_at": now})
        new.append(res.rowcount == 1)
    fresh = [e for e, n in zip(accepted, new, strict=True) if n]
    record_accepted(conn, fresh, now)
    if subscriptions:
        queue_firings(conn, fresh, subscriptions, now)
    react(conn, fresh, goals, now)
    return new


@dataclass
class HandOff:
    files: list[str] = field(default_factory=list)
    events: int = 0

    def to_dict(self) -> dict:
        return {"files": self.files, "events": self.events}


def _write_atomic(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")  # not a suffix landing reads
    with tmp.open("w", encoding="utf-8") as f:
        f.writelines(lines)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself is on disk before the events are marked handed off
    finally:
        os.close(fd)


def mark_handed_off(engine: sa.Engine, event_ids: list[str], batch: str, at: dt.datetime) -> None:
    """Mark ``event_ids`` handed off in ``batch``, all in one transaction."""
    with engine.begin() as conn:
        for i in range(0, len(event_ids), _CHUNK):
            conn.execute(accepted_events.update()
                         .where(accepted_events.c.event_id.in_(event_ids[i:i + _CHUNK]))
                         .values(handed_off_at=at, handoff_batch=batch))


def hand_off(paths: Paths, engine: sa.Engine | None = None, limit: int = HAND_OFF_LIMIT) -> HandOff:
    """Write every accepted event not yet handed off to ``landing/incoming/api_<batch>.jsonl``
    (``limit`` events a file, oldest first), each file renamed into place before its events are marked.
    ``engine``: the store (default: the one of ``paths``, migrated)."""
    if engine is None:
        from crm.store.db import make_engine, upgrade_to_head

        engine = make_engine(paths)
        upgrade_to_head(engine)
    out = HandOff()
    paths.incoming.mkdir(parents=True, exist_ok=True)
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(accepted_events.c.event_id, accepted_events.c.envelope)
                .where(accepted_events.c.handed_off_at.is_(None))
                .order_by(accepted_events.c.received_at, accepted_events.c.event_id).limit(limit)).all()
        if not rows:
            return out
        at = _now()
        ids = [r.event_id for r in rows]
        digest = hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:12]
        batch = f"{at:%Y%m%dT%H%M%S%f}_{digest}"
        path = paths.incoming / f"api_{batch}.jsonl"
        _write_atomic(path, [r.envelope + "\n" for r in rows])
        mark_handed_off(engine, ids, batch, at)
        out.files.append(str(path))
        out.events += len(rows)


def counts(engine: sa.Engine) -> dict[str, int]:
    """Events accepted, of which still waiting for the hand-off, and records quarantined."""
    with engine.connect() as conn:
        accepted = conn.execute(sa.select(sa.func.count()).select_from(accepted_events)).scalar_one()
        pending = conn.execute(sa.select(sa.func.count()).select_from(accepted_events)
                               .where(accepted_events.c.handed_off_at.is_(None))).scalar_one()
        quarantined = conn.execute(sa.select(sa.func.count()).select_from(quarantined_events)).scalar_one()
    return {"accepted": accepted, "pending_hand_off": pending, "quarantined": quarantined}
