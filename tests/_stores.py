"""The store's backends for tests: SQLite (always) and PostgreSQL (when ``$CRM_TEST_DATABASE_URL`` names a
server that answers; ``.ci/postgres`` starts one and prints its URL). Each use gets a fresh empty database:
a SQLite file in the test's home, or a PostgreSQL database of its own, created from ``template1`` (tens of
milliseconds) and dropped after, open connections and all."""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from crm.config import Paths

ENV = "CRM_TEST_DATABASE_URL"
BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql)]

_server: dict[str, object] = {}  # once per process: the admin engine, or why there is none
_serial = itertools.count()


def _admin() -> sa.Engine:
    """An engine on ``$CRM_TEST_DATABASE_URL`` (AUTOCOMMIT: CREATE/DROP DATABASE), or pytest.skip."""
    if not _server:
        raw = os.environ.get(ENV, "").strip()
        if not raw:
            _server["skip"] = (f"{ENV} is not set: no PostgreSQL to run the store's tests on "
                               "(export CRM_TEST_DATABASE_URL=\"$(bash .ci/postgres)\")")
        else:
            try:
                engine = sa.create_engine(raw, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool,
                                          connect_args={"connect_timeout": 5})
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
                _server["engine"] = engine
            except Exception as e:  # no driver, refused, bad password: the PostgreSQL runs skip, with why
                _server["skip"] = (f"PostgreSQL at {ENV}={sa.make_url(raw).render_as_string(hide_password=True)} "
                                   f"is unreachable: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}")
    if "skip" in _server:
        pytest.skip(str(_server["skip"]))
    return _server["engine"]  # type: ignore[return-value]


@contextlib.contextmanager
def fresh_store_url(backend: str, paths: Paths) -> Iterator[str]:
    """The URL of a new empty store on ``backend``: for SQLite the default file of ``paths``
    (what ``make_engine(paths)`` opens without ``$CRM_DATABASE_URL``), for PostgreSQL a new database."""
    if backend == "sqlite":
        yield f"sqlite:///{paths.service_db}"
        return
    if backend != "postgresql":
        raise ValueError(backend)
    admin = _admin()
    name = f"crm_test_{os.getpid()}_{next(_serial)}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:  # FORCE: a server thread's pooled connection does not keep it alive
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
