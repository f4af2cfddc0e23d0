"""The PII vault (crm/store/vault.py), the split at landing, and the right to be forgotten
(crm/privacy.py, ``crm privacy forget``): no identifier lands, and a forgotten player's are gone
from every byte under the data home."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.campaigns.audit import read_entries
from crm.cli import main
from crm.config import Paths
from crm.ingest.landing import already_ingested, ingest_file, pending_files
from crm.store.db import make_engine, upgrade_to_head
from crm.store.events import store_records
from crm.store.schema import contacts
from crm.store.vault import Identifier, Vault, VaultError, is_pseudonym, vault_keys, vault_values
from tests._pii_search import occurrences

T0 = dt.datetime(2025, 9, 1, 12, 0)


def reg(event_id: str, player: str, brand: str = "A", at: str = "2025-09-01T12:00:00Z", **payload) -> dict:
    body = {"country": "MT", "locale": "en-MT", "timezone": "Europe/Malta", "birth_date": "1990-01-01",
            "currency": "EUR", **payload}
    return {"event_id": event_id, "event_type": "player.registered", "player_id": player, "brand_id": brand,
            "occurred_at": at, "payload": body}


def landed_text(paths: Paths) -> str:
    files = sorted(paths.events.glob("*.parquet"))
    if not files:
        return ""
    rows = duckdb.connect().execute("SELECT to_json(t)::VARCHAR FROM read_parquet(?) t",
                                    [[str(f) for f in files]]).fetchall()
    return "\n".join(r[0] for r in rows)


def test_sealed_per_player_newest_wins_and_bound_to_its_row(tmp_path):
    paths = Paths(tmp_path)
    vault = Vault(paths)
    counts = vault.put([Identifier("A", "p1", "email", "old@x.example", T0),
                        Identifier("A", "p1", "email", "new@x.example", T0 + dt.timedelta(hours=1)),
                        Identifier("A", "p2", "email", "two@x.example", T0)])
    assert counts == {"stored": 2, "older": 0, "forgotten": 0}
    # an older value arriving later does not replace the newer one
    assert vault.put([Identifier("A", "p1", "email", "older@x.example", T0 - dt.timedelta(days=1))])["older"] == 1
    assert vault.contact("A", "p1", "email") == "new@x.example"
    assert vault.contact("A", "p1", "sms") is None and vault.contact("A", "p1", "push") is None
    assert vault.values("B", "p1") == {}  # the same id in another brand is another player
    eng = vault.engine(vault.default_url)
    with eng.begin() as conn:
        keys = {r.player_id: r.wrapped_key for r in conn.execute(sa.select(vault_keys))}
        assert len(keys) == 2 and keys["p1"] != keys["p2"]
        sealed = {r.player_id: r.sealed for r in conn.execute(sa.select(vault_values))}
        assert all(b"@x.example" not in s for s in sealed.values())
        # a sealed value moved to another player's row does not open (bound to brand, player, field)
        conn.execute(vault_values.update().where(vault_values.c.player_id == "p2").values(sealed=sealed["p1"]))
    with pytest.raises(VaultError, match="does not open"):
        vault.values("A", "p2")
    vault.dispose()
    # another master key cannot open the data keys
    other = Vault(paths, {"CRM_VAULT_MASTER_KEY": "A" * 43})
    with pytest.raises(VaultError, match="master key"):
        other.values("A", "p1")
    other.dispose()
    with pytest.raises(VaultError, match="32 bytes"):
        Vault(paths, {"CRM_VAULT_MASTER_KEY": "c2hvcnQ"})
    with pytest.raises(VaultError, match="base64"):
        Vault(paths, {"CRM_PII_HASH_KEY": "not base64 at all!"})
    assert oct((tmp_path / "vault" / "master.key").stat().st_mode & 0o777) == "0o600"


def test_pseudonyms_are_keyed_and_link_the_same_identifier(tmp_path):
    a, b = Vault(Paths(tmp_path / "a")), Vault(Paths(tmp_path / "b"))
    p = a.pseudonym("email", " Jo.Doe@Example.COM ")
    assert is_pseudonym(p) and p == a.pseudonym("email", "jo.doe@example.com")
    assert a.pseudonym("phone", "+44 7700 900123") == a.pseudonym("phone", "+447700900123")
    assert p != b.pseudonym("email", "jo.doe@example.com")  # another home's key: unlinkable
    assert a.pseudonym("ip", "10.0.0.1") != a.pseudonym("device_id", "10.0.0.1")
    assert a.pseudonym("email", p) == p  # already a pseudonym: kept


def test_residency_by_country(tmp_path):
    """A UK player's identifiers live in the UK vault only; a later event without a country stays
    there; a Maltese player's in the default vault."""
    uk_db = tmp_path / "uk" / "vault.sqlite"
    paths = Paths(tmp_path / "home")
    env = {"CRM_VAULT_URL_UK": f"sqlite:///{uk_db}"}
    vault = Vault(paths, env)
    vault.put([Identifier("A", "uk1", "email", "uk1@x.example", T0, "uk"),
               Identifier("A", "mt1", "email", "mt1@x.example", T0, "MT")])
    vault.put([Identifier("A", "uk1", "phone", "+447700900001", T0 + dt.timedelta(days=1))])
    with vault.engine(f"sqlite:///{uk_db}").connect() as conn:
        assert {(r.player_id, r.region) for r in conn.execute(sa.select(vault_keys))} == {("uk1", "UK")}
        assert {(r.player_id, r.field) for r in conn.execute(sa.select(vault_values))} == {
            ("uk1", "email"), ("uk1", "phone")}
    with vault.engine(vault.default_url).connect() as conn:
        assert {r.player_id for r in conn.execute(sa.select(vault_keys))} == {"mt1"}
    assert vault.values("A", "uk1") == {"email": "uk1@x.example", "phone": "+447700900001"}
    vault.forget("A", "uk1")
    assert vault.values("A", "uk1") == {}
    assert vault.put([Identifier("A", "uk1", "email", "back@x.example", T0 + dt.timedelta(days=2), "UK")]) == {
        "stored": 0, "older": 0, "forgotten": 1}
    vault.dispose()


# Identifier values the contract does not expect: odd case and spaces, unicode, digits, very long.
values = st.one_of(
    st.emails().map(lambda e: e.upper() if len(e) % 2 else f"  {e} "),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=6, max_size=60)
      .filter(lambda s: s.strip() and len(s.strip()) >= 6 and not s.strip().startswith("pii1:")),
    st.text(alphabet="abcdef0123456789", min_size=1100, max_size=1500),
)
strings = values  # the contract's identifiers are strings (a number there is quarantined: wrong type)
values = st.one_of(values, st.integers(min_value=100_000, max_value=10**15))  # a field of the casino's own


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(email=strings, phone=strings, ip=strings, device=strings, name=values,
       event_type=st.sampled_from(["player.registered", "player.updated", "session.started", "bet.placed"]))
def test_no_identifier_is_ever_landed(tmp_path_factory, email, phone, ip, device, name, event_type):
    paths = Paths(tmp_path_factory.mktemp("land")).ensure()
    body = {"email": email, "phone": phone, "ip": ip, "device_id": device, "first_name": name}
    records = [reg("r1", "p1", **body)]
    other = {"event_id": "x1", "event_type": event_type, "player_id": "p1", "brand_id": "A",
             "occurred_at": "2025-09-02T12:00:00Z", "payload": {**body, "session_id": "s1", "device": "mobile",
                                                                   "channel": "web", "stake": 100, "currency": "EUR",
                                                                   "game": "g", "provider": "p"}}
    records.append(other)
    src = paths.incoming / "a.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    report = ingest_file(src, paths)
    assert report.loaded >= 1
    text = landed_text(paths)
    vault = Vault(paths)
    held = vault.values("A", "p1")
    for field, v in body.items():
        clear = str(v).strip()[:1000]
        if len(clear) >= 4:
            assert clear not in text and json.dumps(clear)[1:-1] not in text, field
        assert held[field] == clear
        assert vault.pseudonym(field, str(v)) in text
    vault.dispose()


def _home_with_a_player_to_forget(tmp_path):
    """A data home holding player p1's identifiers everywhere raw data can hold them: an incoming
    file (landed), a later incoming file with a changed email, a malformed line and a quarantined
    record naming them, an incoming Parquet file not landed yet, a batch landed before the vault
    (clear values), the store's quarantined API records and contacts. p2 is another player."""
    paths = Paths(tmp_path).ensure()
    engine = make_engine(paths)
    upgrade_to_head(engine)
    p1 = {"email": "Forget.Me@Example.org", "phone": "+356 7912 3456", "ip": "203.0.113.77",
          "device_id": "device-forget-1"}
    old_email = "forget.me.old@example.org"
    first = paths.incoming / "day1.jsonl"
    first.write_text("\n".join([
        json.dumps(reg("e1", "p1", email=old_email, phone=p1["phone"], ip=p1["ip"], device_id=p1["device_id"])),
        json.dumps(reg("e2", "p2", email="keep.me@example.org", phone="+356 7900 0002", ip="198.51.100.2")),
        '{"event_id": "bad1", "player_id": "p1", "payload": {"email": "Forget.Me@Example.org"',  # malformed
        json.dumps({**reg("bad2", "p1", phone=p1["phone"]), "occurred_at": "not a time"}),  # quarantined
    ]) + "\n")
    assert ingest_file(first, paths).quarantined == 2
    second = paths.incoming / "day2.jsonl"
    second.write_text(json.dumps({"event_id": "e3", "event_type": "player.updated", "player_id": "p1",
                                  "brand_id": "A", "occurred_at": "2025-09-05T10:00:00Z",
                                  "payload": {"email": p1["email"]}}) + "\n")
    assert ingest_file(second, paths).loaded == 1
    # a file the casino dropped that is not landed yet, in Parquet
    pq.write_table(pa.table({"event_id": ["e4"], "event_type": ["player.updated"], "player_id": ["p1"],
                             "brand_id": ["A"], "occurred_at": ["2025-09-06T10:00:00Z"],
                             "payload": [json.dumps({"ip": p1["ip"]})]}), paths.incoming / "later.parquet")
    # a batch landed before the vault existed: identifiers in clear
    pq.write_table(pa.table({"event_id": ["legacy1"], "event_type": ["player.updated"], "player_id": ["p1"],
                             "brand_id": ["A"], "occurred_at": [dt.datetime(2025, 8, 1)],
                             "payload": [json.dumps({"email": old_email, "phone": p1["phone"]})]}),
                   paths.events / "batch_legacy.parquet")
    store_records(engine, 1, [], [(json.dumps(reg("api1", "p1", email=p1["email"])) + "}", "malformed JSON"),
                                  (f"garbage {p1['ip']} {p1['device_id']}", "malformed JSON")])
    return paths, engine, p1, old_email


def test_forget_clears_every_byte_and_keeps_the_rest(tmp_path):
    paths, engine, p1, old_email = _home_with_a_player_to_forget(tmp_path)
    needles = [*p1.values(), old_email]
    assert {n for _, n in occurrences(tmp_path, needles)} == {n.lower() for n in needles}  # there to find
    # the contact sync (crm profiles sync, without its warehouse part): the legacy batch's clear
    # addresses move into the vault, the store keeps pseudonyms
    from crm.store.profile import _landed_contacts, _sync_contacts
    landed, _ = _landed_contacts(paths, set())
    assert all(is_pseudonym(a) for *_, a, _ in landed)
    with engine.begin() as conn:
        _sync_contacts(conn, landed)
    with engine.connect() as conn:
        assert {r.player_id for r in conn.execute(sa.select(contacts))} >= {"p1", "p2"}

    out = CliRunner().invoke(main, ["privacy", "forget", "p1", "--brand", "A", "--by", "Dana DPO",
                                    "--reason", "GDPR art. 17 request #4411", "--json"],
                             env={"CRM_HOME": str(tmp_path)}, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["fields_shredded"] == ["device_id", "email", "ip", "phone"]
    assert {"landing/incoming/day1.jsonl", "landing/incoming/day2.jsonl", "landing/incoming/later.parquet",
            "landing/events/batch_legacy.parquet"} <= set(report["files_rewritten"])
    assert report["store_rows_cleared"] >= 3

    assert occurrences(tmp_path, needles) == []
    # the other player and the forgotten one's pseudonymous events are still there
    assert Vault(paths).contact("A", "p2", "email") == "keep.me@example.org"
    assert "keep.me@example.org" in (paths.incoming / "day1.jsonl").read_text()
    landed = duckdb.connect().execute("SELECT event_id FROM read_parquet(?)",
                                      [str(paths.events / "*.parquet")]).fetchall()
    assert {"e1", "e2", "e3", "legacy1"} <= {r[0] for r in landed}
    with engine.connect() as conn:
        assert {r.player_id for r in conn.execute(sa.select(contacts))} == {"p2"}
    # the rewritten landed files are not landed again (their quarantined records would count twice)
    assert [p.name for p in pending_files(paths)] == ["later.parquet"]
    logged = len(already_ingested(paths))
    # what arrives later for the forgotten player holds no identifier, nor a pseudonym of one
    (paths.incoming / "day3.jsonl").write_text(json.dumps(reg("e5", "p1", email="back.again@example.org")) + "\n")
    ingest_file(paths.incoming / "day3.jsonl", paths)
    ingest_file(paths.incoming / "later.parquet", paths)
    assert len(already_ingested(paths)) > logged
    assert Vault(paths).values("A", "p1") == {}
    e5 = duckdb.connect().execute("SELECT payload FROM read_parquet(?) WHERE event_id = 'e5'",
                        [str(paths.events / "*.parquet")]).fetchone()[0]
    assert json.loads(e5)["email"] is None
    # the request is in the audit log, without the values
    [entry] = [e for e in read_entries(paths) if e["kind"] == "player_forgotten"]
    assert entry["by"] == "Dana DPO" and entry["details"]["player_id"] == "p1"
    assert not any(n.lower() in json.dumps(entry).lower() for n in needles)
    # forgetting again finds nothing left and says so
    again = CliRunner().invoke(main, ["privacy", "forget", "p1", "--brand", "A", "--by", "Dana DPO",
                                      "--reason", "repeat"], env={"CRM_HOME": str(tmp_path)})
    assert again.exit_code == 0 and "vault held nothing" in again.output
    engine.dispose()


def test_forget_refuses_without_who_and_why(tmp_path):
    out = CliRunner().invoke(main, ["privacy", "forget", "p1", "--brand", "A", "--by", " ", "--reason", "x"],
                             env={"CRM_HOME": str(tmp_path)})
    assert out.exit_code != 0 and "--by" in out.output
    out = CliRunner().invoke(main, ["privacy", "forget", "p1", "--brand", "A"], env={"CRM_HOME": str(tmp_path)})
    assert out.exit_code != 0 and "--reason" in out.output


@pytest.mark.parametrize("bulk", [100, 20_000])
def test_vault_on_each_backend(tmp_path, store_url, monkeypatch, bulk):
    """The vault on SQLite and PostgreSQL (CRM_VAULT_URL): put, read, newest wins, forget; batches
    looked up by key and (past BULK_PLAYERS) by one scan."""
    monkeypatch.setattr("crm.store.vault.BULK_PLAYERS", bulk)
    vault = Vault(Paths(tmp_path), {"CRM_VAULT_URL": store_url})
    ids = [Identifier("A", f"p{i}", "email", f"p{i}@x.example", T0) for i in range(1200)]  # > one IN chunk
    assert vault.put(ids)["stored"] == 1200
    assert vault.put(ids) == {"stored": 1200, "older": 0, "forgotten": 0}  # the same again: same keys
    assert vault.put([Identifier("A", "p7", "email", "new7@x.example", T0 + dt.timedelta(1))])["stored"] == 1
    assert vault.contact("A", "p7", "email") == "new7@x.example" and vault.contact("A", "p1199", "email")
    assert vault.forget("A", "p7") == {"email": "new7@x.example"}
    assert vault.values("A", "p7") == {} and vault.forgotten([("A", "p7"), ("A", "p8")]) == {("A", "p7")}
    vault.dispose()


def test_two_writers_making_the_same_new_key(tmp_path, monkeypatch):
    """The API and a landing seal a new player's first identifiers at once: the loser of the race
    on the player's key stores again under the winner's key, and both values open."""
    paths = Paths(tmp_path)
    first, second = Vault(paths), Vault(paths)
    seen = second._located
    calls = []

    def stale(players):  # what the second writer saw before the first committed
        calls.append(1)
        return {} if len(calls) == 1 else seen(players)

    monkeypatch.setattr(second, "_located", stale)
    first.put([Identifier("A", "p1", "email", "p1@x.example", T0)])
    second.put([Identifier("A", "p1", "phone", "+35699000001", T0)])
    assert len(calls) == 2
    assert first.values("A", "p1") == {"email": "p1@x.example", "phone": "+35699000001"}
    first.dispose()
    second.dispose()
