"""Landing: every record is loaded, quarantined with a reason, or counted as a duplicate."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from crm.config import Paths
from crm.ingest.landing import LandingError, default_as_of, ingest_file, landed_summary

GOOD = {"event_id": "ev_1", "event_type": "bet.settled", "trace_id": "tr_1", "player_id": "p_1", "brand_id": "A",
        "occurred_at": "2025-10-23T11:21:05Z", "payload": {"stake": 100, "win": 50, "currency": "EUR"}}


def _ev(**kw) -> dict:
    return {**GOOD, **kw}


def _write_jsonl(path, records) -> None:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")


def _files(d):
    return sorted((p.name, p.read_bytes()) for p in d.rglob("*") if p.is_file())


@pytest.fixture
def paths(tmp_path) -> Paths:
    return Paths(tmp_path / "home").ensure()


def test_each_bad_record_is_quarantined_with_its_reason(tmp_path, paths):
    records = [
        _ev(event_id="ev_ok"),
        _ev(event_id="ev_unknown", event_type="bet.exploded"),
        _ev(event_id="ev_missing", payload={"win": 1, "currency": "EUR"}),
        _ev(event_id="ev_type", payload={"stake": "100", "win": 1, "currency": "EUR"}),
        _ev(event_id="ev_time", occurred_at="yesterday"),
        _ev(event_id="ev_nots", occurred_at=None),
        {k: v for k, v in _ev(event_id="ev_noplayer").items() if k != "player_id"},
        "{this is not json",
        _ev(event_id="ev_ok"),  # duplicate within the file
        _ev(event_id="ev_reg", event_type="player.registered",
            payload={"country": "UK", "locale": "en-GB", "timezone": "Europe/London", "birth_date": "1990-02-30",
                     "currency": "GBP"}),
    ]
    src = tmp_path / "batch.jsonl"
    _write_jsonl(src, records)
    r = ingest_file(src, paths)
    assert (r.records, r.loaded, r.quarantined, r.duplicates) == (10, 1, 8, 1)
    q = duckdb.connect().execute(
        f"SELECT record_no, reason FROM read_parquet('{paths.quarantine}/*.parquet') ORDER BY 1").fetchall()
    reasons = dict(q)
    assert reasons[2] == "unknown event_type: bet.exploded"
    assert reasons[3] == "missing field payload.stake for bet.settled"
    assert reasons[4].startswith("wrong type for payload.stake: expected integer")
    assert reasons[5] == "bad timestamp occurred_at: yesterday"
    assert reasons[6] == "missing field occurred_at"
    assert reasons[7] == "missing field player_id"
    assert reasons[8] == "malformed JSON"
    assert reasons[10].startswith("bad date payload.birth_date")
    raw = duckdb.connect().execute(
        f"SELECT raw FROM read_parquet('{paths.quarantine}/*.parquet') WHERE record_no = 8").fetchone()
    assert raw[0] == "{this is not json"  # kept verbatim, never lost


def test_reingest_changes_nothing_and_replays_are_duplicates(tmp_path, paths):
    src = tmp_path / "a.jsonl"
    _write_jsonl(src, [_ev(event_id=f"ev_{i}") for i in range(5)] + ["garbage"])
    first = ingest_file(src, paths)
    before = _files(paths.home)
    again = ingest_file(src, paths)
    assert again.already_ingested and _files(paths.home) == before
    # A different file replaying two landed events: they are duplicates, the new one loads.
    replay = tmp_path / "b.jsonl"
    _write_jsonl(replay, [_ev(event_id="ev_1"), _ev(event_id="ev_3"), _ev(event_id="ev_new")])
    r = ingest_file(replay, paths)
    assert (r.loaded, r.duplicates, r.quarantined) == (1, 2, 0)
    totals = landed_summary(paths)
    assert totals["records"] == totals["loaded"] + totals["quarantined"] + totals["duplicates"] == 9
    assert first.loaded + r.loaded == duckdb.connect().execute(
        f"SELECT count(DISTINCT event_id) FROM read_parquet('{paths.events}/*.parquet')").fetchone()[0]


def test_parquet_with_struct_or_text_payload_and_default_as_of(tmp_path, paths):
    df = pd.DataFrame([_ev(event_id="ev_a"), _ev(event_id="ev_b", occurred_at="2025-10-24T23:59:00Z")])
    df_text = df.assign(payload=df["payload"].map(json.dumps), event_id=["ev_c", "ev_d"])
    df.to_parquet(tmp_path / "s.parquet")
    df_text.to_parquet(tmp_path / "t.parquet")
    assert ingest_file(tmp_path / "s.parquet", paths).loaded == 2
    assert ingest_file(tmp_path / "t.parquet", paths).loaded == 2
    stored = duckdb.connect().execute(f"SELECT payload FROM read_parquet('{paths.events}/*.parquet')").fetchall()
    assert all(json.loads(p)["stake"] == 100 for (p,) in stored)
    assert default_as_of(paths).isoformat() == "2025-10-25"


def test_unsupported_file_is_a_clear_error_and_writes_nothing(tmp_path, paths):
    bad = tmp_path / "events.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(LandingError, match="unsupported file type '.csv'"):
        ingest_file(bad, paths)
    assert not any(paths.events.iterdir()) and not paths.ingest_log.exists()


def test_gate_ledger_keeps_failed_batches_pending_until_they_pass(tmp_path, paths):
    """A batch is landed once; the landing gate's ledger decides what it checks next time."""
    from crm.ingest.landing import batches_to_gate, landed_schema, record_landing_gate
    from expectations.landing import LANDED_TYPES

    a, b, dup = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "dup.jsonl"
    _write_jsonl(a, [_ev(event_id="ev_1")])
    _write_jsonl(b, [_ev(event_id="ev_2"), "garbage"])
    _write_jsonl(dup, [_ev(event_id="ev_2"), _ev(event_id="ev_1")])  # only duplicates: nothing landed, nothing to gate
    ra, rb, rd = (ingest_file(f, paths) for f in (a, b, dup))
    assert rd.loaded == rd.quarantined == 0
    assert batches_to_gate(paths) == [ra.batch_id, rb.batch_id]
    record_landing_gate(paths, [ra.batch_id, rb.batch_id], passed=False, summary="schema")
    assert batches_to_gate(paths) == [ra.batch_id, rb.batch_id]  # failed: checked again
    record_landing_gate(paths, [ra.batch_id], passed=True)
    assert batches_to_gate(paths) == [rb.batch_id]
    record_landing_gate(paths, [rb.batch_id], passed=True)
    assert batches_to_gate(paths) == []
    # what landing writes is what the gate's type expectation expects
    assert landed_schema(paths.events / f"batch_{ra.batch_id}.parquet") == LANDED_TYPES


def test_orphaned_or_missing_batch_files_do_not_slip_past_the_gate(tmp_path, paths):
    """A batch file with no ingest-log line (a crash between the rename and the log, or a hand copy)
    is read by dbt all the same: it waits for the gate. A logged batch whose file is gone fails the
    schema expectation (its columns show as missing) instead of passing with nothing read."""
    import shutil

    from crm.ingest.landing import batches_to_gate, record_landing_gate
    from expectations.landing import gate_batches

    a = tmp_path / "a.jsonl"
    _write_jsonl(a, [_ev(event_id="ev_1"), _ev(event_id="ev_2")])
    ra = ingest_file(a, paths)
    record_landing_gate(paths, [ra.batch_id], passed=True)
    assert batches_to_gate(paths) == []
    orphan = paths.events / "batch_0123456789abcdef.parquet"
    shutil.copy(paths.events / f"batch_{ra.batch_id}.parquet", orphan)
    assert batches_to_gate(paths) == ["0123456789abcdef"]
    r = gate_batches(paths, ["0123456789abcdef"])
    assert r.rows == 2  # its events were read and checked
    # the logged batch's file disappears
    (paths.events / f"batch_{ra.batch_id}.parquet").unlink()
    r = gate_batches(paths, [ra.batch_id])
    failed = {o.name: o for o in r.failed}
    assert not r.success and "expect_column_pair_values_to_be_equal" in failed, r.summary()
    assert f"{ra.batch_id}.event_id" in failed["expect_column_pair_values_to_be_equal"].sample


def test_a_batch_rewritten_after_it_passed_is_gated_again(tmp_path, paths):
    import os

    from crm.ingest.landing import batches_to_gate, record_landing_gate

    a = tmp_path / "a.jsonl"
    _write_jsonl(a, [_ev(event_id="ev_1")])
    b = ingest_file(a, paths).batch_id
    record_landing_gate(paths, [b], passed=True)
    assert batches_to_gate(paths) == []
    f = paths.events / f"batch_{b}.parquet"
    f.write_bytes(f.read_bytes())  # same bytes, new modification time: checked again
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert batches_to_gate(paths) == [b]
    record_landing_gate(paths, [b], passed=True)
    assert batches_to_gate(paths) == []
