"""The store's engine and its migrations."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Hashable, Iterable, Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from crm.config import Paths

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def database_url(paths: Paths) -> str:
    """``$CRM_DATABASE_URL``, or SQLite at ``$CRM_HOME/service/service.db``."""
    return os.environ.get("CRM_DATABASE_URL") or f"sqlite:///{paths.service_db}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    # WAL: readers never block the writer; the service and the CLI share the file.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # accepted means on disk (the 202 promises it)
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(paths: Paths, url: str | None = None) -> sa.Engine:
    """An engine on the store; for SQLite the folder is made and WAL mode set on every connection."""
    url = url or database_url(paths)
    if url.startswith("sqlite"):
        db = sa.make_url(url).database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        # the API's threads share the pool; SQLite serialises writers itself (busy_timeout)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


@contextlib.contextmanager
def transaction(bind: sa.Engine | sa.Connection) -> Iterator[sa.Connection]:
    """One transaction on ``bind``: an engine's new connection, or a connection the caller keeps
    for many short transactions (one pool checkout for a worker's whole batch; it must have no
    transaction open). Committed at the end of the block, rolled back on an exception."""
    if isinstance(bind, sa.Engine):
        with bind.begin() as conn:
            yield conn
    else:
        with bind.begin():
            yield bind


def key_chunks(keys: Iterable[Hashable], size: int = 500) -> list[list]:
    """The distinct ``keys`` (in first-seen order) in chunks of ``size``: for ``IN`` lists of bound
    values, so one statement's parameters stay well under SQLite's limit however many keys."""
    distinct = list(dict.fromkeys(keys))
    return [distinct[i:i + size] for i in range(0, len(distinct), size)]


def insert_many(conn: sa.Connection, table: sa.Table, rows: list[dict], chunk: int = 5000) -> None:
    """INSERT ``rows`` (dicts with the same keys). On SQLite through the DBAPI's ``executemany`` on
    tuples, each distinct value passed through its column's SQLAlchemy bind processor once:
    SQLAlchemy's per-row parameter handling was 2/3 of a 100,000-profile insert (the daily sync
    writes a million). Elsewhere SQLAlchemy's own executemany (batched VALUES on PostgreSQL)."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        for i in range(0, len(rows), chunk):
            conn.execute(table.insert(), rows[i:i + chunk])
        return
    keys = list(rows[0])
    columns = []
    for k in keys:
        values = [r[k] for r in rows]
        proc = table.c[k].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        if proc is not None:
            try:
                done = {v: proc(v) for v in set(values)}
                values = [done[v] for v in values]
            except TypeError:  # an unhashable value
                values = [proc(v) for v in values]
        columns.append(values)
    prep = conn.dialect.identifier_preparer
    sql = (f"INSERT INTO {prep.format_table(table)} ({', '.join(prep.quote(k) for k in keys)}) "
           f"VALUES ({', '.join('?' for _ in keys)})")
    tuples = list(zip(*columns, strict=True))
    for i in range(0, len(tuples), chunk):
        conn.exec_driver_sql(sql, tuples[i:i + chunk])


def _config(connection: sa.Connection) -> Config:
    cfg = Config()  # no alembic.ini: everything is set here
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade_to_head(engine: sa.Engine) -> str | None:
    """Apply every migration not yet applied (idempotent); returns the revision now current."""
    with engine.begin() as conn:
        command.upgrade(_config(conn), "head")
    return current_revision(engine)


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def claim_rows(engine: sa.Engine, table: sa.Table, due: sa.ColumnElement[bool], order: tuple, limit: int,
               values: dict) -> list[dict]:
    """Claim up to ``limit`` rows of ``table`` that are ``due`` (in ``order``) for one worker:
    ``values`` (a lease, an attempt count) set on them, the claimed rows returned. A read first,
    so an idle worker's poll takes no write lock. PostgreSQL: the candidates are locked with
    ``FOR UPDATE SKIP LOCKED`` (two workers never wait on each other nor take the same row);
    SQLite (one writer): one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING``, whose
    candidates are read under the write lock. ``due`` is repeated in the update as a guard."""
    key = table.c.id
    with engine.connect() as conn:
        if conn.execute(sa.select(key).where(due).limit(1)).first() is None:
            return []
    with engine.begin() as conn:
        candidates = sa.select(key).where(due).order_by(*order).limit(limit)
        if engine.dialect.name == "postgresql":
            ids = list(conn.execute(candidates.with_for_update(skip_locked=True)).scalars())
            target = key.in_(ids) if ids else sa.false()
        else:
            target = key.in_(candidates.scalar_subquery())
        return [dict(r._mapping) for r in conn.execute(table.update().where(target, due).values(**values)
                                                        .returning(*table.c)).all()]
