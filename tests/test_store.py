"""The store: migrations on a fresh SQLite file (idempotent, in step with the schema), API keys and
their CLI, and the records check shared with file landing."""

from __future__ import annotations

import hashlib
import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from crm.cli import main
from crm.config import Paths
from crm.ingest.landing import reason_field, validate_records
from crm.store.db import current_revision, head_revision, make_engine, upgrade_to_head
from crm.store.keys import ApiKeyError, authenticate, create_key, hash_key, list_keys, revoke_key
from crm.store.schema import metadata


def test_migrations_fresh_file_idempotent_and_match_schema(tmp_path):
    paths = Paths(tmp_path)
    engine = make_engine(paths)
    assert current_revision(engine) is None
    assert upgrade_to_head(engine) == head_revision() == upgrade_to_head(engine)
    assert paths.service_db.exists()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    insp = sa.inspect(engine)
    for table in metadata.tables.values():
        assert {c["name"] for c in insp.get_columns(table.name)} == {c.name for c in table.columns}, table.name
    # a second engine on the same file (the CLI beside the service) finds it migrated
    assert current_revision(make_engine(paths)) == head_revision()


def test_database_url_overrides_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    engine = make_engine(Paths(tmp_path / "home"))
    upgrade_to_head(engine)
    assert (tmp_path / "other.db").exists() and not (tmp_path / "home").exists()


def test_keys_hashed_scoped_revocable(tmp_path):
    engine = make_engine(Paths(tmp_path))
    upgrade_to_head(engine)
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
    revoke_key(engine, str(record.id))
    assert authenticate(engine, key) is None and list_keys(engine)[0].revoked_at is not None
    with pytest.raises(ApiKeyError):
        revoke_key(engine, "nobody")


def test_api_keys_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_HOME", str(tmp_path))
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
