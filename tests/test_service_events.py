"""The integration API against a real uvicorn server: keys, POST /v1/events, quarantine, replay,
limits, hostile input, and the hand-off to landing (exactly once, also across a crash); every test once
on a SQLite store and once on PostgreSQL (``module_store_url`` / ``store_url`` in conftest.py)."""

from __future__ import annotations

import json

import duckdb
import pytest
import sqlalchemy as sa

from crm.config import Paths
from crm.ingest.landing import ingest_pending
from crm.store import events as store_events
from crm.store.db import make_engine, upgrade_to_head
from crm.store.keys import create_key, revoke_key
from crm.store.schema import accepted_events, quarantined_events
from tests._service import call, running_server


def event(i: int | str, brand: str = "A", **over) -> dict:
    e = {"event_id": f"ev_{i}", "event_type": "payment.captured", "trace_id": f"tr_{i}", "player_id": f"p_{i}",
         "brand_id": brand, "occurred_at": "2025-10-23T11:21:05Z",
         "payload": {"amount": 2500, "currency": "EUR", "psp": "X"}}
    e.update(over)
    return e


@pytest.fixture(scope="module")
def api(tmp_path_factory, module_store_url):
    paths = Paths(tmp_path_factory.mktemp("svc")).ensure()
    engine = make_engine(paths, module_store_url)
    upgrade_to_head(engine)
    keys = {
        "a": create_key(engine, "writer-a", "A", ["events:write"])[1],
        "b": create_key(engine, "writer-b", "B", ["events:write"])[1],
        "feedback": create_key(engine, "feedback-a", "A", ["feedback:write"])[1],
        "revoked": create_key(engine, "old-a", "A", ["events:write"])[1],
    }
    revoke_key(engine, "old-a")
    with running_server(paths, engine=engine) as url:
        yield url, keys, engine, paths
    engine.dispose()


def stored(engine, table, **where) -> list:
    q = sa.select(table)
    for k, v in where.items():
        q = q.where(table.c[k] == v)
    with engine.connect() as conn:
        return conn.execute(q).all()


def test_health_and_docs_need_no_key(api):
    url, *_ = api
    assert call(url + "/healthz")[0] == 200
    status, spec = call(url + "/openapi.json")
    assert status == 200 and "/v1/events" in spec["paths"]
    assert call(url + "/docs")[0] == 200


def test_auth(api):
    url, keys, *_ = api
    body = [event("auth")]
    assert call(url + "/v1/events", "POST", body)[0] == 401
    assert call(url + "/v1/events", "POST", body, key="crm_not_a_key")[0] == 401
    assert call(url + "/v1/events", "POST", body, key="x" * 5000)[0] == 401
    assert call(url + "/v1/events", "POST", body, key=keys["revoked"])[0] == 401
    assert call(url + "/v1/events", "POST", body, headers={"Authorization": f"Basic {keys['a']}"})[0] == 401
    assert call(url + "/v1/events", "POST", body, key=keys["feedback"])[0] == 403
    assert call(url + "/v1/events", "POST", body, key=keys["a"])[0] == 202


def test_a_revocation_takes_effect_within_the_key_ttl(api):
    """The service remembers a live key for KEY_TTL_S (no store read per request); a key revoked
    from another process stops working once that time is over, and a revoked or unknown key is
    never remembered."""
    import asyncio

    from crm.service.auth import KEY_TTL_S, LiveKeys

    _, _, engine, _ = api
    now = [100.0]
    live = LiveKeys(clock=lambda: now[0])
    key = create_key(engine, "soon-revoked", "A", ["events:write"])[1]
    find = lambda k: asyncio.run(live.find(engine, k))  # noqa: E731
    assert find(key).name == "soon-revoked"
    revoke_key(engine, "soon-revoked")
    now[0] += KEY_TTL_S / 2
    assert find(key) is not None  # remembered
    now[0] += KEY_TTL_S / 2
    assert find(key) is None  # read again: revoked
    now[0] += 0.01
    assert find(key) is None and len(live._keys) == 0
    assert find("crm_" + "x" * 5000) is None


def test_good_batch_then_replay(api):
    url, keys, engine, _ = api
    batch = [event(f"good{i}") for i in range(5)]
    status, out = call(url + "/v1/events", "POST", batch, key=keys["a"])
    assert status == 202, out
    assert (out["accepted"], out["duplicates"], out["quarantined"]) == (5, 0, 0)
    assert [r["status"] for r in out["results"]] == ["accepted"] * 5
    assert len([r for r in stored(engine, accepted_events) if r.event_id.startswith("ev_good")]) == 5
    # a replay (and a repeat inside one batch) is a no-op, counted as a duplicate
    status, out = call(url + "/v1/events", "POST", batch + [event("good0")], key=keys["a"])
    assert status == 202 and (out["accepted"], out["duplicates"]) == (0, 6)
    assert len([r for r in stored(engine, accepted_events) if r.event_id.startswith("ev_good")]) == 5
    # one object (not an array) is one record
    status, out = call(url + "/v1/events", "POST", event("single"), key=keys["a"])
    assert status == 202 and out["accepted"] == 1


def test_bad_record_is_quarantined_the_good_ones_accepted(api):
    url, keys, engine, _ = api
    bad = event("bad1")
    del bad["payload"]["amount"]
    status, out = call(url + "/v1/events", "POST", [event("mixed1"), bad, event("mixed2")], key=keys["a"])
    assert status == 422, out
    assert (out["accepted"], out["quarantined"]) == (2, 1)
    assert "accepted" in out["detail"]
    (err,) = out["errors"]
    assert err["index"] == 1 and err["field"] == "payload.amount"
    assert err["reason"] == "missing field payload.amount for payment.captured"
    assert stored(engine, accepted_events, event_id="ev_mixed2")
    assert not stored(engine, accepted_events, event_id="ev_bad1")
    (q,) = [r for r in stored(engine, quarantined_events) if "ev_bad1" in r.raw]
    assert q.reason == err["reason"] and json.loads(q.raw)["event_id"] == "ev_bad1"


def test_other_brand_is_refused_and_not_stored(api):
    url, keys, engine, _ = api
    status, out = call(url + "/v1/events", "POST", [event("brandB", brand="B"), event("brandA")], key=keys["a"])
    assert status == 422
    assert out["results"][0] == {"index": 0, "event_id": "ev_brandB", "status": "refused", "field": "brand_id",
                                 "reason": "brand"}
    assert out["accepted"] == 1 and out["refused"] == 1
    assert not stored(engine, accepted_events, event_id="ev_brandB")
    assert not [r for r in stored(engine, quarantined_events) if "ev_brandB" in r.raw]
    # the same event with B's key is B's to send
    assert call(url + "/v1/events", "POST", [event("brandB", brand="B")], key=keys["b"])[0] == 202


def test_size_limits(api, monkeypatch):
    url, keys, *_ = api
    monkeypatch.setenv("CRM_API_MAX_BATCH", "3")
    status, out = call(url + "/v1/events", "POST", [event(f"lim{i}") for i in range(4)], key=keys["a"])
    assert status == 413 and "batch too large" in out["detail"]
    monkeypatch.setenv("CRM_API_MAX_BODY_BYTES", "1000")
    status, out = call(url + "/v1/events", "POST", [event("big", trace_id="t" * 2000)], key=keys["a"])
    assert status == 413 and "body too large" in out["detail"]


def test_record_limit_and_field_limits(api):
    url, keys, engine, _ = api
    huge = event("huge", payload={"amount": 1, "currency": "EUR", "psp": "x" * 70_000})
    status, out = call(url + "/v1/events", "POST", [huge, event("x" * 200)], key=keys["a"])
    assert status == 422
    assert out["errors"][0]["field"] == "record" and "record too large" in out["errors"][0]["reason"]
    assert out["errors"][1]["field"] == "event_id" and "too long" in out["errors"][1]["reason"]
    (q,) = [r for r in stored(engine, quarantined_events) if r.raw.startswith('{"event_id": "ev_huge"')]
    assert q.raw_size > 70_000 and len(q.raw.encode()) <= 64 * 1024


HOSTILE_BODIES = [
    b"", b"not json", b"\xff\xfe\x00garbage", b"[" * 100_000, b'{"a":' * 5000, b"NaN", b"1e999", b"null", b"[]",
    b"[[]]", b"[1, \"x\", null, true]", b'{"event_id": {"$gt": ""}}', b'[{"payload": [1, 2, {"x": []}]}]',
    b'"\\ud800"', b'{"event_id": "\\ud800", "event_type": "bet.placed"}', b"\x00" * 100,
]


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
def test_hostile_bodies_never_500(api, body):
    url, keys, *_ = api
    status, out = call(url + "/v1/events", "POST", body, key=keys["a"])
    assert status in (202, 400, 413, 422), (status, out)


def test_hostile_values_never_500(api):
    url, keys, engine, _ = api
    odd = [
        event("odd1", event_type="  PAYMENT.Captured ", brand=" A "),  # odd case and spaces: normalized
        event("odd2", event_type="casino.jackpot"),  # unknown type
        event("odd3", occurred_at="9999-12-31T23:59:59Z"), event("odd4", occurred_at="0001-01-01T00:00:00Z"),
        event("odd5", occurred_at="infinity"), event("odd6", occurred_at=-1e300), event("odd7", occurred_at=None),
        event("odd8", payload={"amount": 10**30, "currency": "EUR"}),
        event("odd9", payload={"amount": "100", "currency": "€"}), event("odd10", player_id="p\u200b\x00"),
        event("odd11", payload="{not json"), event("odd12", payload={"amount": 1, "currency": "eur",
                                                                     "nested": [[[[{"a": [None] * 50}]]]]}),
        {"event_id": None}, {"event_id": ["ev"], "brand_id": {"b": 1}}, event("odd13", event_type="x" * 60_000),
        event("\ud83d\ude00 emoji"), event("odd14", brand=""),
    ]
    status, out = call(url + "/v1/events", "POST", odd, key=keys["a"])
    assert status == 422, out
    by_index = {r["index"]: r for r in out["results"]}
    assert by_index[0]["status"] == "accepted"
    env = json.loads(stored(engine, accepted_events, event_id="ev_odd1")[0].envelope)
    assert env["event_type"] == "payment.captured" and env["brand_id"] == "A"
    assert by_index[1]["field"] == "event_type"
    assert by_index[2]["field"] == "occurred_at" and by_index[3]["field"] == "occurred_at"
    assert by_index[8]["field"] == "payload.amount"
    assert all(r["status"] in ("accepted", "quarantined", "refused") for r in out["results"])
    assert all(len(r["reason"] or "") <= 1000 for r in out["results"])
    assert sum(out[k] for k in ("accepted", "duplicates", "quarantined", "refused")) == len(odd)


def landed_ids(paths: Paths) -> list[str]:
    with duckdb.connect() as con:
        return [r[0] for r in con.execute("SELECT event_id FROM read_parquet(?)",
                                          [str(paths.events / "*.parquet")]).fetchall()]


def test_hand_off_lands_each_event_once_across_a_crash(tmp_path, monkeypatch, store_url):
    paths = Paths(tmp_path).ensure()
    engine = make_engine(paths, store_url)
    upgrade_to_head(engine)
    key = create_key(engine, "w", "A", ["events:write"])[1]
    with running_server(paths, engine=engine) as url:
        assert call(url + "/v1/events", "POST", [event(f"h{i}") for i in range(3)], key=key)[0] == 202
        # the same event also arrives in a file drop
        (paths.incoming / "drop.jsonl").write_text(json.dumps(event("h0")) + "\n" + json.dumps(event("file1")) + "\n")

        # a crash after the file is renamed into place, before the events are marked
        def crash(*_a, **_k):
            raise RuntimeError("crash between rename and mark")
        monkeypatch.setattr(store_events, "mark_handed_off", crash)
        with pytest.raises(RuntimeError):
            store_events.hand_off(paths, engine)
        monkeypatch.undo()
        assert len(list(paths.incoming.glob("api_*.jsonl"))) == 1
        assert not list(paths.incoming.glob("*.tmp"))
        reports = ingest_pending(paths)  # landing runs before the hand-off is retried
        assert call(url + "/v1/events", "POST", [event("h3"), event("h1")], key=key)[0] == 202
        done = store_events.hand_off(paths, engine)  # the retry writes h0-h2 again, and h3
        assert done.events == 4
        monkeypatch.setenv("CRM_DATABASE_URL", store_url)  # SQLite: the default file of paths all the same
        assert store_events.hand_off(paths).events == 0  # all marked now (the store of paths by default)
        reports += ingest_pending(paths)
    ids = landed_ids(paths)
    assert sorted(ids) == ["ev_file1", "ev_h0", "ev_h1", "ev_h2", "ev_h3"]  # each once
    assert sum(r.duplicates for r in reports) == 4  # h0 in the drop; h0-h2 handed off twice
    assert all(r.quarantined == 0 for r in reports)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(accepted_events)
                            .where(accepted_events.c.handed_off_at.is_(None))).scalar_one() == 0


def test_hand_off_from_the_serve_loop(tmp_path, store_url):
    import time

    paths = Paths(tmp_path).ensure()
    engine = make_engine(paths, store_url)
    key = create_key(engine, "w", "A", ["events:write"])[1] if upgrade_to_head(engine) else None
    with running_server(paths, engine=engine, hand_off_every=0.2) as url:
        assert call(url + "/v1/events", "POST", [event("loop1")], key=key)[0] == 202
        deadline = time.monotonic() + 10
        while not list(paths.incoming.glob("api_*.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.1)
    (f,) = paths.incoming.glob("api_*.jsonl")
    assert json.loads(f.read_text())["event_id"] == "ev_loop1"


def test_identifiers_go_to_the_vault_not_the_store(api):
    """A registration over the API: the store and the hand-off file hold pseudonyms only; the vault
    holds the values (newest per field), and the contact ledger knows an email exists."""
    from crm.store.schema import contacts
    from crm.store.vault import Vault, is_pseudonym

    url, keys, engine, paths = api
    reg = event("pii1", event_type="player.registered", player_id="p_pii", payload={
        "country": "MT", "locale": "en-MT", "timezone": "Europe/Malta", "birth_date": "1990-01-01",
        "currency": "EUR", "email": "  Pii.Person@Example.COM ", "phone": "+356 7900 0001",
        "ip": "198.51.100.23", "device_id": "dev-pii-1"})
    status, out = call(url + "/v1/events", "POST", [reg], key=keys["a"])
    assert status == 202, out
    [row] = stored(engine, accepted_events, event_id="ev_pii1")
    payload = json.loads(row.envelope)["payload"]
    for field, value in (("email", "Pii.Person"), ("phone", "7900"), ("ip", "198.51.100.23"), ("device_id", "dev-pii")):
        assert value not in row.envelope and is_pseudonym(payload[field])
    vault = Vault(paths)
    assert vault.values("A", "p_pii") == {"email": "Pii.Person@Example.COM", "phone": "+356 7900 0001",
                                          "ip": "198.51.100.23", "device_id": "dev-pii-1"}
    assert payload["email"] == vault.pseudonym("email", "pii.person@example.com")  # case and spaces alike
    got = {c.channel: c.address_pseudonym for c in stored(engine, contacts, player_id="p_pii")}
    assert got == {"email": payload["email"], "sms": payload["phone"]}
    store_events.hand_off(paths, engine)  # (or the server's own hand-off loop did)
    text = "".join(f.read_text() for f in paths.incoming.glob("api_*.jsonl"))
    assert "ev_pii1" in text and "Pii.Person" not in text and "198.51.100.23" not in text
