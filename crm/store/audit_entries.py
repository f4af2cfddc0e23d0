"""The audit log's copy in the store (``audit_entries``), append-only at the storage level.

:mod:`crm.campaigns.audit` writes each entry to ``audit/audit.jsonl`` and then here; the database
refuses to change or delete a row (triggers of migration 0010; on PostgreSQL the privileges too).
:func:`crm.campaigns.audit.verify` compares the file with this copy: an entry rewritten in the file
(even with every hash recomputed, which the chain alone cannot see) or removed from its end is found.
What it cannot see: a SQLite store deleted or replaced as a whole (a file, like the log), or a
PostgreSQL role that owns the table dropping the trigger; run the service as a role that does not.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import sqlalchemy as sa

from crm.config import Paths
from crm.store.db import database_url, make_engine, upgrade_to_head
from crm.store.schema import audit_entries

log = logging.getLogger(__name__)


def _engine(paths: Paths, create: bool) -> sa.Engine | None:
    """The store of the home; None when it is a SQLite file that does not exist and ``create`` is off
    (a check never makes a store)."""
    url = database_url(paths)
    if url.startswith("sqlite") and not create:
        db = sa.make_url(url).database
        if not db or not Path(db).exists():
            return None
    engine = make_engine(paths, url)
    if not sa.inspect(engine).has_table(audit_entries.name):
        if not create:
            engine.dispose()
            return None
        upgrade_to_head(engine)
    return engine


def _log_key(paths: Paths) -> str:
    """Which log the rows copy: the data home's audit folder (a store may serve several homes)."""
    return str(paths.audit.resolve())[-500:]


def witnessed(paths: Paths) -> dict[int, str] | None:
    """seq -> hash of every entry in the store's copy; None when the home has no store yet or the
    store cannot be reached (logged)."""
    try:
        engine = _engine(paths, create=False)
        if engine is None:
            return None
        try:
            with engine.connect() as conn:
                return dict(conn.execute(sa.select(audit_entries.c.seq, audit_entries.c.hash)
                                         .where(audit_entries.c.log == _log_key(paths))).all())
        finally:
            engine.dispose()
    except sa.exc.SQLAlchemyError as e:
        log.warning("the store's copy of the audit log cannot be read: %s", str(e).splitlines()[0][:300])
        return None


def witness(paths: Paths, entries: list[tuple[dict, str]]) -> int:
    """Copy ``(entry, canonical line)`` pairs into the store (those it has already are skipped).
    Returns how many were written. A store that cannot be reached is logged, not raised: the entry is
    in the file, and the next append copies what is missing (verify warns meanwhile)."""
    if not entries:
        return 0
    try:
        engine = _engine(paths, create=True)
        try:
            with engine.begin() as conn:
                have = set(conn.execute(sa.select(audit_entries.c.seq).where(
                    audit_entries.c.log == _log_key(paths),
                    audit_entries.c.seq >= min(e["seq"] for e, _ in entries))).scalars())
                rows = [{"log": _log_key(paths), "seq": e["seq"], "hash": e["hash"], "prev_hash": e["prev_hash"],
                         "entry": line, "recorded_at": dt.datetime.now(dt.UTC).replace(tzinfo=None)}
                        for e, line in entries if e["seq"] not in have]
                for i in range(0, len(rows), 1000):
                    conn.execute(audit_entries.insert(), rows[i:i + 1000])
            return len(rows)
        finally:
            engine.dispose()
    except sa.exc.SQLAlchemyError as e:
        log.warning("the audit entries were written to the log file but not to the store's append-only "
                    "copy (%s); the next append copies them", str(e).splitlines()[0][:300])
        return 0
