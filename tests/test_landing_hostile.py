"""Landing under hostile input: values the contract does not expect, SQL in column names,
bytes that are not UTF-8, huge records, impossible times. Every record is landed (normalized,
or read the safe way if it is a stop event) or quarantined with a reason, and nothing else
happens: no file outside the home, no crash, no record lost."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.config import Paths
from crm.contract import ALL_CHANNELS, INVISIBLE, VOCABULARIES, WHITESPACE
from crm.ingest import landing
from crm.ingest.landing import default_as_of, ingest_file

T = "2025-05-01T10:00:00Z"


def _ev(i: int | str, etype: str, payload, at=T, pid: str = "p1", **kw) -> dict:
    return {"event_id": f"e{i}", "event_type": etype, "player_id": pid, "brand_id": "A", "occurred_at": at,
            "payload": payload, **kw}


def _land(tmp_path, paths: Paths, records: list, name: str = "in.jsonl") -> landing.IngestReport:
    src = tmp_path / name
    with src.open("wb") as f:
        for r in records:
            f.write(r if isinstance(r, bytes) else json.dumps(r).encode())
            f.write(b"\n")
    return ingest_file(src, paths)


def _landed(paths: Paths) -> dict[str, dict]:
    rows = duckdb.connect().execute("SELECT event_id, event_type, player_id, occurred_at, payload FROM "
                                    "read_parquet(?)", [str(paths.events / "*.parquet")]).fetchall()
    return {r[0]: {"event_type": r[1], "player_id": r[2], "occurred_at": r[3], "payload": json.loads(r[4])}
            for r in rows}


def _quarantined(paths: Paths) -> dict[int, dict]:
    rows = duckdb.connect().execute("SELECT record_no, reason, raw, raw_bytes FROM read_parquet(?)",
                                    [str(paths.quarantine / "*.parquet")]).fetchall()
    return {r[0]: {"reason": r[1], "raw": r[2], "raw_bytes": r[3]} for r in rows}


@pytest.fixture
def paths(tmp_path) -> Paths:
    return Paths(tmp_path / "home").ensure()


REG = {"locale": "en", "timezone": "Europe/London", "birth_date": "1990-01-01", "currency": "GBP"}


def test_enumerated_values_are_normalized_once_or_quarantined(tmp_path, paths):
    records = [
        _ev(1, "consent.revoked", {"channel": "Email"}),
        _ev(2, "crm.unsubscribe", {"delivery_id": "d", "campaign_id": "c", "channel": "EMAIL "}),
        _ev(3, " Consent.Revoked ", {"channel": "in-app"}),
        _ev(4, "consent.revoked", {"channel": "e\u200bmail"}),  # a zero-width space inside
        _ev(5, "consent.revoked", {"channel": "email", "product": "Sportsbook"}),
        _ev(6, "rg.self_exclusion.ended", {"scope": "Cooling-Off"}),
        _ev(7, "bet.settled", {"stake": 1, "win": 0, "currency": " eur"}),
        _ev(8, "player.registered", {**REG, "country": "gb"}),
        _ev(9, "rg.limit.hit", {"kind": "Weird"}),  # a limit hit of a kind we do not know still counts
        _ev(10, "session.started", {"session_id": "s"}, pid=" p1 \u200b"),  # the id around the same player
        # quarantined: a grant or a fact that names something we do not know
        _ev(11, "consent.granted", {"channel": "fax"}),
        _ev(12, "consent.granted", {"channel": "email", "product": "knitting"}),
        _ev(13, "bet.settled", {"stake": 1, "win": 0, "currency": "USD"}),  # no fx rate: the warehouse would stop
        _ev(14, "player.registered", {**REG, "country": "Germany"}, pid="p2"),
        _ev(15, "rg.self_exclusion.ended", {"scope": "galaxy"}),  # which exclusion ends? none
        _ev(16, "rg.self_exclusion.ended", {}),
        _ev(17, "session.started", {"session_id": "s"}, pid="p\x01"),
        _ev(18, "session.started", {"session_id": "s"}, pid="p" * 500),
    ]
    r = _land(tmp_path, paths, records)
    assert r.balanced and (r.loaded, r.quarantined) == (10, 8), r.reasons
    ev = _landed(paths)
    assert ev["e1"]["payload"] == {"channel": "email", "channel_received": "Email"}
    assert ev["e2"]["payload"]["channel"] == "email"
    assert ev["e3"]["event_type"] == "consent.revoked" and ev["e3"]["payload"]["channel"] == "in_app"
    assert ev["e4"]["payload"]["channel"] == "email"
    assert ev["e5"]["payload"]["product"] == "sports"
    assert ev["e6"]["payload"]["scope"] == "cooling_off"
    assert ev["e7"]["payload"]["currency"] == "EUR"
    assert ev["e8"]["payload"]["country"] == "UK" and ev["e8"]["payload"]["country_received"] == "gb"
    assert ev["e9"]["payload"]["kind"] == "other"
    assert ev["e10"]["player_id"] == "p1"
    q = {rec["reason"].split(":")[0] for rec in _quarantined(paths).values()}
    assert q == {"unknown channel for consent.granted", "unknown product for consent.granted",
                 "unknown currency for bet.settled", "unknown country for player.registered",
                 "unknown scope for rg.self_exclusion.ended", "missing field payload.scope for rg.self_exclusion.ended",
                 "control or invisible characters in player_id", "field player_id too long"}


def test_stop_events_are_read_the_safe_way_never_quarantined(tmp_path, paths):
    """A withdrawal or a self-exclusion that names a player always lands: whatever is unclear is
    read so that it stops more, never less."""
    records = [
        _ev(1, "consent.revoked", {"channel": "fax"}),  # not one of ours: every channel
        _ev(2, "consent.revoked", {}),  # no channel: every channel
        _ev(3, "crm.unsubscribe", 5),  # no payload at all
        _ev(4, "consent.revoked", {"channel": "email", "product": "knitting"}),  # every product of email
        _ev(5, "rg.self_exclusion.started", {"scope": "Galaxy"}),  # unknown scope: operator-wide
        _ev(6, "rg.self_exclusion.started", {"until": "infinity"}),  # no scope, unusable until: indefinite
        _ev(7, "rg.self_exclusion.started", {"scope": "brand", "until": 12}),
        _ev(8, "crm.complaint", {"channel": "push"}, at="infinity"),  # unusable time: when we learned of it
        _ev(9, "consent.revoked", {"channel": "sms"}, at=None),
        _ev(10, "consent.revoked", {"channel": "sms"}, at="1970-01-01T00:00:00Z"),
        _ev(11, "rg.self_exclusion.started", {"scope": "operator"}, at="2999-01-01T00:00:00Z"),
    ]
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    r = _land(tmp_path, paths, records)
    after = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=1)
    assert (r.loaded, r.quarantined) == (len(records), 0), r.reasons
    ev = _landed(paths)
    assert ev["e1"]["payload"]["channel"] == ALL_CHANNELS and ev["e1"]["payload"]["channel_received"] == "fax"
    assert ev["e2"]["payload"]["channel"] == ALL_CHANNELS
    assert ev["e3"]["payload"]["channel"] == ALL_CHANNELS and ev["e3"]["payload"]["payload_received"] == 5
    assert "product" not in ev["e4"]["payload"] and ev["e4"]["payload"]["product_received"] == "knitting"
    assert ev["e5"]["payload"]["scope"] == "operator"
    assert ev["e6"]["payload"] == {"scope": "operator", "until_received": "infinity"}
    assert "until" not in ev["e7"]["payload"] and ev["e7"]["payload"]["scope"] == "brand"
    for e, sent in (("e8", "infinity"), ("e9", None), ("e10", "1970-01-01T00:00:00Z"),
                    ("e11", "2999-01-01T00:00:00Z")):
        assert before <= ev[e]["occurred_at"] <= after, e
        assert ev[e]["payload"].get("occurred_at_received") == sent, e
    assert default_as_of(paths) == after.date() + dt.timedelta(days=1) or default_as_of(paths) == before.date() + \
        dt.timedelta(days=1)


@pytest.mark.parametrize("at", ["infinity", "-infinity", "epoch", "9999-12-31T00:00:00Z", "1989-12-31T23:59:59Z",
                                "2999-01-01", "now", "today", "allballs"])
def test_impossible_event_times_are_quarantined_and_nothing_downstream_crashes(tmp_path, paths, at):
    from expectations.landing import gate_batches

    ok = [_ev(f"ok{i}", "session.started", {"session_id": "s"}) for i in range(40)]
    r = _land(tmp_path, paths, [*ok, _ev("bad", "session.started", {"session_id": "s"}, at=at)])
    assert (r.loaded, r.quarantined) == (40, 1)
    assert next(iter(_quarantined(paths).values()))["reason"].startswith(("occurred_at out of range", "bad timestamp"))
    assert default_as_of(paths) == dt.date(2025, 5, 2)
    result = gate_batches(paths, [r.batch_id])  # the landing gate step: a verdict, not a crash
    assert result.success, result.failed


def test_birth_dates_are_bounded(tmp_path, paths):
    r = _land(tmp_path, paths, [_ev(1, "player.registered", {**REG, "country": "UK", "birth_date": "9999-01-01"}),
                                _ev(2, "player.registered", {**REG, "country": "UK", "birth_date": "1850-01-01"})])
    assert r.quarantined == 2 and set(r.reasons) == {"date payload.birth_date out of range (1900-01-01 to the "
                                                     "landing day)"}


def test_records_that_are_not_utf8_are_quarantined_with_their_bytes(tmp_path, paths):
    """Two ids that differ only in their invalid bytes must not merge into one player."""
    a = b'{"event_id": "x1", "event_type": "session.started", "player_id": "p_\xff", "brand_id": "A", ' \
        b'"occurred_at": "2025-05-01T10:00:00Z", "payload": {"session_id": "s"}}'
    b = a.replace(b"x1", b"x2").replace(b"\xff", b"\xfe")
    good = json.dumps(_ev("g", "session.started", {"session_id": "s"})).encode()
    r = _land(tmp_path, paths, [a, good, b])
    assert (r.records, r.loaded, r.quarantined) == (3, 1, 2)
    q = _quarantined(paths)
    assert q[1]["raw_bytes"] == a and q[3]["raw_bytes"] == b
    assert q[1]["reason"].startswith("not valid UTF-8: byte") and q[2 if 2 in q else 3]["raw_bytes"] is not None
    assert q[1]["raw"] == q[3]["raw"].replace("x2", "x1")  # the text alone could not tell them apart


def test_records_over_the_size_cap_are_quarantined_without_parsing(tmp_path, paths, monkeypatch):
    monkeypatch.setenv("CRM_MAX_RECORD_BYTES", "2000")
    big = _ev("big", "session.started", {"session_id": "s", "pad": "x" * 5000})
    r = _land(tmp_path, paths, [big, _ev("ok", "session.started", {"session_id": "s"})])
    assert (r.loaded, r.quarantined) == (1, 1)
    rec = _quarantined(paths)[1]
    assert rec["reason"].startswith("record too large: 5,") and json.loads(rec["raw"]) == big


def test_a_line_too_long_to_hold_keeps_its_start_and_checksum(tmp_path, paths, monkeypatch):
    monkeypatch.setattr(landing, "_JSONL_CHUNK_BYTES", 4096)
    monkeypatch.setattr(landing, "_MAX_LINE_BYTES", 4096)
    monkeypatch.setattr(landing, "_MAX_KEPT_BYTES", 100)
    huge = b'{"event_id": "huge", "pad": "' + b"y" * 50_000 + b'"}'
    r = _land(tmp_path, paths, [_ev("a", "session.started", {"session_id": "s"}), huge,
                                _ev("b", "session.started", {"session_id": "s"})])
    assert (r.records, r.loaded, r.quarantined) == (3, 2, 1)
    rec = _quarantined(paths)[2]
    assert rec["raw_bytes"] == huge[:100]
    assert f"{len(huge):,} bytes" in rec["reason"] and hashlib.sha256(huge).hexdigest() in rec["reason"]


_ATTACK = 'a" := 1))::VARCHAR AS raw FROM (SELECT 0 AS file_row_number); COPY (SELECT 1) TO \'pwned.csv\'; ' \
          "SELECT 1 AS record_no, 'x' AS raw --"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), min_size=1,
                              max_size=40), min_size=1, max_size=4, unique=True).map(lambda n: [_ATTACK, *n]))
def test_parquet_column_names_are_data_never_sql(tmp_path_factory, names):
    """Column names come from the file: quoted as identifiers, so any name (the probe's attack
    included) is just a key of the record, and nothing runs."""
    tmp = tmp_path_factory.mktemp("cols")
    paths = Paths(tmp / "home").ensure()
    names = list(dict.fromkeys(names))
    src = tmp / "x.parquet"
    pq.write_table(pa.table({n: [f"v{i}"] for i, n in enumerate(names)}), src)
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        r = ingest_file(src, paths)
    finally:
        os.chdir(cwd)
    assert (r.records, r.quarantined) == (1, 1)  # a record with these keys breaks the contract, nothing more
    assert not (tmp / "pwned.csv").exists() and not os.path.exists(os.path.join(cwd, "pwned.csv"))
    raw = json.loads(next(iter(_quarantined(paths).values()))["raw"])
    # every value arrives (DuckDB renames a name that repeats another but for case: the key may differ)
    assert sorted(raw.values()) == sorted(f"v{i}" for i in range(len(names))) and raw[_ATTACK] == "v0"


# Values drawn around our vocabularies: odd case, spaces and separators, invisible and look-alike
# characters, and anything at all.
_AROUND = st.one_of(
    st.sampled_from(sorted({x for v in VOCABULARIES for x in (*v.values, *v.aliases)})).flatmap(
        lambda w: st.tuples(st.sampled_from(["", " ", "\t", "\u00a0", INVISIBLE[1]]), st.sampled_from(
            [w, w.upper(), w.title(), w.replace("_", "-"), w.replace("_", " "), w.replace("e", "\u0435")]),
            st.sampled_from(["", " ", "\n", "\ufeff", "_", "."])).map("".join)),
    # anything a UTF-8 file can hold (landing quarantines bytes that are not UTF-8, so a lone surrogate
    # never reaches the SQL reading: DuckDB refuses it as a parameter)
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12),
    st.text(alphabet=WHITESPACE + INVISIBLE + "._-aAeEmMiIlLsSpP", max_size=10),
)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(_AROUND, min_size=1, max_size=25))
def test_landing_sql_and_python_read_enumerated_values_alike(values):
    """The vocabularies are applied in SQL at landing and in Python for single records: one
    reading, whatever the value."""
    from crm.ingest.landing import _canonical_sql, _key_sql

    con = duckdb.connect()
    for v in VOCABULARIES:
        sql = f"SELECT x, {_canonical_sql(v, 'k')} FROM (SELECT x, {_key_sql(v.case, 'x')} AS k FROM unnest(?) t(x))"
        got = dict(con.execute(sql, [values]).fetchall())
        for x in values:
            assert got[x] == v.canonical(x), (v.field, v.event_types, repr(x))


def test_a_parquet_file_with_an_unnamed_column_is_read_not_crashed_on(tmp_path, paths):
    src = tmp_path / "x.parquet"
    pq.write_table(pa.table({"": ["v"], "event_id": ["e1"]}), src)
    r = ingest_file(src, paths)  # DuckDB names it C0: a record with an unknown key, quarantined
    assert (r.records, r.quarantined) == (1, 1) and "C0" in json.loads(_quarantined(paths)[1]["raw"])


def test_a_file_that_is_not_what_its_name_says_fails_whole_with_nothing_written(tmp_path, paths):
    src = tmp_path / "x.parquet"
    src.write_bytes(b"PAR1 not really a parquet file")
    with pytest.raises(landing.LandingError, match="x.parquet"):
        ingest_file(src, paths)
    assert not list(paths.events.iterdir()) and not list(paths.quarantine.iterdir())
    assert not paths.ingest_log.exists()


def test_the_warehouse_macros_list_the_contracts_values():
    """dbt cannot import Python: its macros read the contract's lists from generated vars
    (tests/test_vocabulary.py checks them in full)."""
    from crm.contract import main

    assert main(["--check-dbt-vars"]) == 0
