"""The store: migrations on a fresh store (idempotent, in step with the schema), API keys and their CLI,
on SQLite and on PostgreSQL (the ``store_url`` / ``engine`` fixtures), and the records check shared with
file landing."""

from __future__ import annotations

import hashlib
import json

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from crm.cli import main
from crm.config import Paths
from crm.ingest.landing import reason_field, validate_records
from crm.store import events as store_events
from crm.store.db import current_revision, database_url, head_revision, make_engine, upgrade_to_head
from crm.store.keys import ApiKeyError, authenticate, create_key, hash_key, list_keys, revoke_key
from crm.store.schema import accepted_events, metadata, quarantined_events


def test_migrations_fresh_store_idempotent_and_match_schema(tmp_path, store_url):
    paths = Paths(tmp_path)
    engine = make_engine(paths, store_url)
    assert current_revision(engine) is None
    assert upgrade_to_head(engine) == head_revision() == upgrade_to_head(engine)
    if engine.dialect.name == "sqlite":
        assert paths.service_db.exists()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    insp = sa.inspect(engine)
    for table in metadata.tables.values():
        assert {c["name"] for c in insp.get_columns(table.name)} == {c.name for c in table.columns}, table.name
    # what the migrations made is what the code reads and writes through: types, nullability,
    # indexes and unique constraints too (Alembic's autogenerate comparison finds nothing to do)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == [], diff
    # a second engine on the same store (the CLI beside the service) finds it migrated
    other = make_engine(paths, store_url)
    assert current_revision(other) == head_revision()
    other.dispose()
    engine.dispose()


def test_default_store_is_sqlite_in_the_home(tmp_path, monkeypatch):
    monkeypatch.delenv("CRM_DATABASE_URL", raising=False)
    paths = Paths(tmp_path)
    assert database_url(paths) == f"sqlite:///{paths.service_db}"
    upgrade_to_head(make_engine(paths))
    assert paths.service_db.exists()


def test_database_url_overrides_the_default(tmp_path, monkeypatch, store_url):
    monkeypatch.setenv("CRM_DATABASE_URL", store_url)
    home = tmp_path / "home"
    engine = make_engine(Paths(home))
    assert engine.url.render_as_string(hide_password=False) == store_url
    assert upgrade_to_head(engine) == head_revision()
    assert not home.exists()
    engine.dispose()


def test_keys_hashed_scoped_revocable(engine):
    record, key = create_key(engine, "k", "A", ["events:write", "events:write"])
    assert record.scopes == ("events:write",) and len(key) > 40
    with engine.connect() as conn:
        (stored,) = conn.exec_driver_sql("SELECT key_hash FROM api_keys").scalars()
    assert stored == hash_key(key) == hashlib.sha256(key.encode()).hexdigest() and key not in stored
    assert authenticate(engine, key).name == "k"
    assert authenticate(engine, key + "x") is None and authenticate(engine, "") is None
    with pytest.raises(ApiKeyError):
        create_key(engine, "k", "A", ["events:write"])  # the name is taken
    with pytest.raises(ApiKeyError):
        create_key(engine, "k2", "A", ["admin"])
    with pytest.raises(ApiKeyError):
        create_key(engine, "k3", "A b", ["events:write"])
    with pytest.raises(ApiKeyError):
        create_key(engine, "123", "A", ["events:write"])
    second, _ = create_key(engine, "k4", "B", ["feedback:write", "events:write"])
    assert second.id != record.id and second.scopes == ("events:write", "feedback:write")
    revoke_key(engine, str(record.id))
    assert authenticate(engine, key) is None and list_keys(engine)[0].revoked_at is not None
    assert [k.name for k in list_keys(engine)] == ["k", "k4"]
    with pytest.raises(ApiKeyError):
        revoke_key(engine, "nobody")


def test_store_records_dedupes_and_keeps_any_text(engine):
    """Accepted envelopes are stored once per event_id (ON CONFLICT DO NOTHING on both dialects);
    quarantined text is kept whatever it holds: NUL (which PostgreSQL's text refuses) as U+FFFD, with
    the size and sha256 of the record as received."""
    env = {"event_id": "ev_1", "brand_id": "A", "payload": {"note": "caf\u00e9 \x00"}}
    raw = '{"event_id": "ev_\x00", "x": "\u00e9"}'
    assert store_events.store_records(engine, 1, [env, env], [(raw, "reason \x00 here")]) == [True, False]
    assert store_events.store_records(engine, 1, [env], []) == [False]
    with engine.connect() as conn:
        (row,) = conn.execute(sa.select(accepted_events)).all()
        (q,) = conn.execute(sa.select(quarantined_events)).all()
    assert json.loads(row.envelope) == env
    assert q.raw == raw.replace("\x00", "\ufffd") and q.reason == "reason \ufffd here"
    assert q.raw_size == len(raw.encode()) and q.raw_sha256 == hashlib.sha256(raw.encode()).hexdigest()
    assert store_events.counts(engine) == {"accepted": 1, "pending_hand_off": 1, "quarantined": 1}
    cut, size, _ = store_events.bounded_raw("\x00" * 10, limit=7)
    assert cut == "\ufffd\ufffd" and size == 10  # cut in bytes after the replacement: never over the limit


def test_api_keys_cli(tmp_path, monkeypatch, store_url):
    monkeypatch.setenv("CRM_HOME", str(tmp_path))
    monkeypatch.setenv("CRM_DATABASE_URL", store_url)  # SQLite: the home's default file all the same
    runner = CliRunner()
    for cmd in (["serve"], ["api-keys"], ["api-keys", "create"], ["api-keys", "list"], ["api-keys", "revoke"],
                ["api-events", "hand-off"], ["api-events", "status"]):
        assert runner.invoke(main, [*cmd, "--help"]).exit_code == 0, cmd
    out = runner.invoke(main, ["api-keys", "create", "crm-a", "--brand", "A", "--scope", "events:write",
                               "--scope", "feedback:write", "--json"])
    assert out.exit_code == 0, out.output
    created = json.loads(out.output)
    assert created["scopes"] == ["events:write", "feedback:write"] and created["key"].startswith("crm_")
    listed = runner.invoke(main, ["api-keys", "list", "--json"])
    assert created["key"] not in listed.output and json.loads(listed.output)[0]["name"] == "crm-a"
    assert created["key"] not in runner.invoke(main, ["api-keys", "list"]).output
    bad = runner.invoke(main, ["api-keys", "create", "x", "--brand", "A", "--scope", "root"])
    assert bad.exit_code != 0
    assert runner.invoke(main, ["api-keys", "revoke", "crm-a"]).exit_code == 0
    assert json.loads(runner.invoke(main, ["api-keys", "list", "--json"]).output)[0]["revoked_at"]
    assert runner.invoke(main, ["api-keys", "revoke", "nobody"]).exit_code != 0
    status = json.loads(runner.invoke(main, ["api-events", "status", "--json"]).output)
    assert status == {"accepted": 0, "pending_hand_off": 0, "quarantined": 0}


def _rec(**over) -> str:
    e = {"event_id": "ev_1", "event_type": "consent.granted", "player_id": "p", "brand_id": "A",
         "occurred_at": "2025-01-01T10:00:00+01:00", "payload": {"channel": "E-Mail", "product": "Sportsbook"}}
    e.update(over)
    return json.dumps(e)


def test_records_check_is_landings_and_is_stable(tmp_path):
    """validate_records gives landing's verdicts; an accepted envelope checked again (what the
    hand-off file is landed as) comes out the same: normalizing twice changes nothing."""
    paths = Paths(tmp_path)
    texts = [_rec(), _rec(event_type="crm.unsubscribe", payload={"delivery_id": "d", "campaign_id": "c"},
                         occurred_at=None),
             _rec(event_type=" Consent.Revoked", payload={"channel": "carrier pigeon"})]
    first = validate_records(texts, paths)
    assert all(c.reason is None for c in first)
    assert first[0].envelope["payload"]["channel"] == "email"
    assert first[0].envelope["occurred_at"] == "2025-01-01T09:00:00.000000Z"
    again = validate_records([json.dumps(c.envelope) for c in first], paths)
    assert [c.envelope for c in again] == [c.envelope for c in first]


@pytest.mark.parametrize("record, field", [
    ("{", "record"), ("[]", "record"), (_rec(event_id=None), "event_id"), (_rec(event_id=5), "event_id"),
    (_rec(event_id=" "), "event_id"), (_rec(event_id="e" * 200), "event_id"), (_rec(player_id="p\x01"), "player_id"),
    (_rec(trace_id=3), "trace_id"), (_rec(event_type="nope"), "event_type"),
    (_rec(occurred_at="yesterday"), "occurred_at"), (_rec(occurred_at="1970-01-01T00:00:00Z"), "occurred_at"),
    (_rec(payload=None), "payload"), (_rec(payload={}), "payload.channel"),
    (_rec(payload={"channel": 1}), "payload.channel"), (_rec(payload={"channel": "owl"}), "payload.channel"),
    (_rec(event_type="player.registered", payload={"country": "DE", "locale": "de", "timezone": "UTC",
                                                    "currency": "EUR", "birth_date": "soon"}), "payload.birth_date"),
    (_rec(event_type="player.registered", payload={"country": "DE", "locale": "de", "timezone": "UTC",
                                                    "currency": "EUR", "birth_date": "1800-01-01"}),
     "payload.birth_date"),
    (_rec(event_type="rg.self_exclusion.ended", payload={"scope": "brand", "x": 1}, occurred_at="bad"),
     "occurred_at"),
])
def test_every_reason_names_its_field(tmp_path, record, field):
    (check,) = validate_records([record], Paths(tmp_path))
    assert check.reason is not None and check.envelope is None
    assert check.field == field == reason_field(check.reason), check.reason


def test_insert_many_stores_what_sqlalchemy_stores(engine):
    """``insert_many`` (the DBAPI's executemany on SQLite) reads back as SQLAlchemy's own insert:
    dates, datetimes with and without microseconds, NULLs, odd text; on both dialects."""
    import datetime as dt

    from crm.store.db import insert_many
    from crm.store.schema import profiles

    at = dt.datetime(2025, 9, 29, 1, 2, 3, 456789)
    rows = [{"brand_id": "A", "player_id": f"p{i}", "profile": text, "as_of_date": day, "synced_at": when,
             "cluster_id": "A:p0" if i < 2 else None}
            for i, (text, day, when) in enumerate([
                ('{"x": 1}', dt.date(2025, 9, 29), at), ("caf\u00e9 \u200b 'quoted' \"x\"", dt.date(1, 1, 1), at),
                ("", dt.date(9999, 12, 31), dt.datetime(2000, 2, 29)), ("?", dt.date(2025, 9, 29), at)])]
    with engine.begin() as conn:
        insert_many(conn, profiles, rows[:2], chunk=1)
        conn.execute(profiles.insert(), rows[2:])
    with engine.connect() as conn:
        got = [dict(r._mapping) for r in conn.execute(sa.select(profiles).order_by(profiles.c.player_id))]
    assert got == rows
    with engine.begin() as conn:  # the other way round: what each wrote, the other reads alike
        conn.execute(profiles.delete())
        insert_many(conn, profiles, rows[2:])
        conn.execute(profiles.insert(), rows[:2])
    with engine.connect() as conn:
        again = [dict(r._mapping) for r in conn.execute(sa.select(profiles).order_by(profiles.c.player_id))]
    assert again == rows
    with engine.begin() as conn:
        insert_many(conn, profiles, [])  # nothing to write
        with pytest.raises(sa.exc.IntegrityError):  # the table's constraints hold as before
            insert_many(conn, profiles, rows[:1])
