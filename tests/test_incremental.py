"""The incremental warehouse: a daily run rebuilds only the days that can have changed, and the
result equals a full rebuild, late events and a run for an earlier date included.

Real dbt on a small simulated casino: the history is landed in two parts (the second one is the
last day plus a share of the events of a day 10 days earlier, held back: late events), the
warehouse is built incrementally after each, and compared row for row with ``--full-refresh``
on the same landed data.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

from crm.config import Paths
from crm.ingest.landing import ingest_file
from tests._dbt import dbt_build

# The day facts (incremental by day) and the marts built on them
COMPARED = ["int_bets_daily_by_game", "int_payments_daily_by_method", "int_activity_daily_aggregated",
            "int_activity_daily_dimensions", "fct_player_daily", "player_feature_snapshots", "player_labels",
            "dim_player", "int_campaign_sends_featurized", "fct_campaign_exposures"]
MODELS_ONLY = ("--resource-type", "model", "--resource-type", "seed")


def _differences(current: Path, other: Path, table: str) -> tuple[int, int, int]:
    """(rows, rows only in current, rows only in other), ignoring the watermark column."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{current}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{other}' AS b (READ_ONLY)")
    cols = [r[0] for r in con.execute(f"DESCRIBE a.main.{table}").fetchall() if r[0] != "loaded_at"]
    sel = ", ".join(f'"{c}"' for c in cols)
    rows = con.execute(f"SELECT count(*) FROM a.main.{table}").fetchone()[0]
    only_a = con.execute(f"SELECT count(*) FROM (SELECT {sel} FROM a.main.{table} EXCEPT ALL "
                         f"SELECT {sel} FROM b.main.{table})").fetchone()[0]
    only_b = con.execute(f"SELECT count(*) FROM (SELECT {sel} FROM b.main.{table} EXCEPT ALL "
                         f"SELECT {sel} FROM a.main.{table})").fetchone()[0]
    con.close()
    return rows, only_a, only_b


def _assert_equal_to_full_refresh(home: Path, as_of: dt.date) -> None:
    warehouse = home / "warehouse.duckdb"
    incremental = home / "incremental.duckdb"
    shutil.copy(warehouse, incremental)
    dbt_build(home, as_of, "--full-refresh", *MODELS_ONLY)
    for table in COMPARED:
        rows, only_inc, only_full = _differences(incremental, warehouse, table)
        assert rows > 0, table
        assert (only_inc, only_full) == (0, 0), (
            f"{table} as of {as_of}: {only_inc} rows only in the incremental build, {only_full} only in the "
            f"full rebuild (of {rows})")


@pytest.fixture(scope="module")
def split_home(tmp_path_factory) -> tuple[Path, dt.date]:
    """A home whose events are split in two files: everything before the last day except a share of the
    events of the day 10 days before it, then the last day with those late events."""
    from crm.simulator.casino import simulate

    home = tmp_path_factory.mktemp("incremental")
    simulate(Paths(home), players=500, days=45, seed=5, progress=False)
    incoming = home / "landing" / "incoming"
    source = sorted(incoming.glob("*.parquet"))
    con = duckdb.connect()
    con.execute(f"CREATE TABLE e AS SELECT * FROM read_parquet({[str(p) for p in source]})")
    last = con.execute("SELECT max(occurred_at::TIMESTAMP)::DATE FROM e WHERE occurred_at LIKE '2%'").fetchone()[0]
    late_day = last - dt.timedelta(days=10)
    # about a third of the late day's events of every type arrive with the last day (sessions
    # whose start comes late included)
    con.execute(f"""CREATE TABLE late AS SELECT * FROM e
                    WHERE try_cast(occurred_at AS TIMESTAMP)::DATE = DATE '{late_day}' AND hash(event_id) % 3 = 0""")
    assert con.execute("SELECT count(DISTINCT event_type) FROM late").fetchone()[0] >= 8
    parts = home / "parts"
    parts.mkdir()
    con.execute(f"""COPY (SELECT * FROM e WHERE event_id NOT IN (SELECT event_id FROM late)
                          AND coalesce(try_cast(occurred_at AS TIMESTAMP)::DATE < DATE '{last}', true))
                    TO '{parts / "a.parquet"}' (FORMAT parquet)""")
    con.execute(f"""COPY (SELECT * FROM e WHERE event_id IN (SELECT event_id FROM late)
                          OR try_cast(occurred_at AS TIMESTAMP)::DATE >= DATE '{last}')
                    TO '{parts / "b.parquet"}' (FORMAT parquet)""")
    con.close()
    for p in source:
        p.unlink()
    return home, last


def test_daily_refresh_with_late_events_equals_full_rebuild(split_home):
    home, last = split_home
    paths = Paths(home)
    assert ingest_file(home / "parts" / "a.parquet", paths).loaded > 0
    dbt_build(home, last, *MODELS_ONLY)  # the first build: every day
    report = ingest_file(home / "parts" / "b.parquet", paths)
    assert report.loaded > 0
    dbt_build(home, last + dt.timedelta(days=1), *MODELS_ONLY)  # incremental: the new day and the late day
    # only the rebuilt days carry the new watermark: the new day, the late day and what follows late changes
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    rebuilt = {r[0] for r in con.execute(
        "SELECT DISTINCT activity_date FROM fct_player_daily WHERE loaded_at = (SELECT max(loaded_at) "
        "FROM fct_player_daily)").fetchall()}
    days = con.execute("SELECT count(DISTINCT activity_date) FROM fct_player_daily").fetchone()[0]
    con.close()
    assert last in rebuilt and last - dt.timedelta(days=10) in rebuilt
    assert len(rebuilt) < days / 2, f"{len(rebuilt)} of {days} days rebuilt"
    _assert_equal_to_full_refresh(home, last + dt.timedelta(days=1))


def test_run_for_an_earlier_date_then_forward_again_equals_full_rebuild(split_home):
    home, last = split_home
    for part in ("a", "b"):  # landed by the test above when it ran (landing the same file again is a no-op)
        ingest_file(home / "parts" / f"{part}.parquet", Paths(home))
    earlier = last - dt.timedelta(days=5)
    dbt_build(home, earlier, *MODELS_ONLY)  # incremental, as-of date moved back: no row of its future
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT max(activity_date) FROM fct_player_daily").fetchone()[0] < earlier
    con.close()
    _assert_equal_to_full_refresh(home, earlier)
    dbt_build(home, last + dt.timedelta(days=1), *MODELS_ONLY)  # and forward again: the days in between
    _assert_equal_to_full_refresh(home, last + dt.timedelta(days=1))


def test_send_features_after_a_run_for_the_day_after_a_send_equal_full_rebuild(split_home):
    """A run moved back to the day after a send day S1 (nothing between the held sends and that
    date to rebuild) must still rebuild the features of a later send S2, whose days it cut off."""
    home, last = split_home
    for part in ("a", "b"):  # landed by the tests above when they ran (landing again is a no-op)
        ingest_file(home / "parts" / f"{part}.parquet", Paths(home))
    # a full build: every row saw every landing, so the run moved back has no landed day to rebuild
    dbt_build(home, last + dt.timedelta(days=1), "--full-refresh", *MODELS_ONLY)
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    sends = [r[0] for r in con.execute(
        "SELECT DISTINCT as_of_date FROM int_campaign_sends_featurized ORDER BY 1").fetchall()]
    con.close()
    assert len(sends) >= 2, sends
    day_after = sends[-2] + dt.timedelta(days=1)
    dbt_build(home, day_after, *MODELS_ONLY)
    _assert_equal_to_full_refresh(home, day_after)
    dbt_build(home, last + dt.timedelta(days=1), *MODELS_ONLY)
    _assert_equal_to_full_refresh(home, last + dt.timedelta(days=1))


# --------------------------------------------------------------------------- a day without data
def test_a_day_without_data_is_a_feed_outage_not_drift(split_home, monkeypatch):
    from crm.ingest.feed import MIN_SHARE_ENV, check_feed

    home, last = split_home
    paths = Paths(home)
    for part in ("a", "b"):
        ingest_file(home / "parts" / f"{part}.parquet", paths)
    ok = check_feed(paths, last + dt.timedelta(days=1))  # the last day landed
    assert ok.passed and ok.volume > 0 and ok.median and str(last) in ok.message
    outage = check_feed(paths, last + dt.timedelta(days=2))  # nothing landed for last + 1
    assert not outage.passed and outage.volume == 0
    assert f"feed outage: no data landed for {last + dt.timedelta(days=1)}" in outage.message
    monkeypatch.setenv(MIN_SHARE_ENV, "1.0")  # a day short of the median is partial with a strict share
    median_day = check_feed(paths, last + dt.timedelta(days=1))
    assert median_day.passed == (median_day.volume >= median_day.median)
    monkeypatch.setenv(MIN_SHARE_ENV, "lots")
    with pytest.raises(ValueError, match=MIN_SHARE_ENV):
        check_feed(paths, last)


# --------------------------------------------------------------------------- a late session start
def test_a_late_session_start_rebuilds_the_day_of_its_end(split_home):
    """A session.ended without duration_s is timed against its start: when the start lands late, the
    day of the end (here the next day, otherwise untouched by late data) is rebuilt too."""
    home, last = split_home
    paths = Paths(home)
    for part in ("a", "b"):
        ingest_file(home / "parts" / f"{part}.parquet", paths)
    as_of = last + dt.timedelta(days=1)
    dbt_build(home, as_of, *MODELS_ONLY)
    start_day = last - dt.timedelta(days=25)  # well before the late day of split_home (last - 10)
    end_day = start_day + dt.timedelta(days=1)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE s AS SELECT * FROM read_parquet('{home / 'parts' / 'a.parquet'}') "
                f"WHERE event_type = 'session.started' AND occurred_at LIKE '{start_day}T%' LIMIT 1")
    player = con.execute("SELECT player_id FROM s").fetchone()[0]
    # the end first (23:30 -> 00:45 the next day, no duration_s), the start a day later
    con.execute(f"""COPY (SELECT * REPLACE ('ev_late_end' AS event_id, 'session.ended' AS event_type,
                                        '{end_day}T00:45:00Z' AS occurred_at,
                                        '{{"session_id":"s_late_start"}}' AS payload) FROM s)
                    TO '{home / 'parts' / 'c.parquet'}' (FORMAT parquet)""")
    con.execute(f"""COPY (SELECT * REPLACE ('ev_late_start' AS event_id, '{start_day}T23:30:00Z' AS occurred_at,
                                        '{{"session_id":"s_late_start"}}' AS payload) FROM s)
                    TO '{home / 'parts' / 'd.parquet'}' (FORMAT parquet)""")
    con.close()
    seconds = f"""SELECT coalesce(sum(session_seconds), 0) FROM fct_player_daily
                  WHERE player_id = '{player}' AND activity_date = DATE '{end_day}'"""
    warehouse = home / "warehouse.duckdb"
    assert ingest_file(home / "parts" / "c.parquet", paths).loaded == 1
    dbt_build(home, as_of, *MODELS_ONLY)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        before = con.execute(seconds).fetchone()[0]
    assert ingest_file(home / "parts" / "d.parquet", paths).loaded == 1
    dbt_build(home, as_of, *MODELS_ONLY)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        after = con.execute(seconds).fetchone()[0]
        rebuilt = {r[0] for r in con.execute(
            "SELECT DISTINCT activity_date FROM fct_player_daily WHERE loaded_at = (SELECT max(loaded_at) "
            "FROM fct_player_daily)").fetchall()}
    assert rebuilt == {start_day, end_day}  # the start's day and its end's, nothing else
    assert after - before == 75 * 60  # the session's 75 minutes, timed against the late start
    _assert_equal_to_full_refresh(home, as_of)


# --------------------------------------------------------------------------- scoped data tests
def test_the_scoped_data_tests_still_fail_on_what_a_build_changed(split_home, tmp_path):
    """The uniqueness tests that scale with the history test what the build changed
    (macros/test_scope.sql): an event id landed again fails the next incremental build (the old
    copy is outside the new rows, the new one inside), and a repeated key fails among the rebuilt
    rows of a day fact; a repeated key in a day the build did not touch is left to full builds."""
    home, last = split_home
    for part in ("a", "b"):
        ingest_file(home / "parts" / f"{part}.parquet", Paths(home))
    as_of = last + dt.timedelta(days=1)
    dbt_build(home, as_of)
    # every event landed within the day before the last build: the plain test (cheaper than filtering all)
    plain = next((home / "dbt" / "target" / "compiled").rglob("unique_stg_casino__events_event_id.sql"))
    assert "ingested_at >" not in plain.read_text()
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    events = copy / "landing" / "events"
    first = sorted(events.glob("*.parquet"))[0]
    # the last build two days after the history landed (so the test is scoped), and an event id of
    # the history again, landed after it, in a batch file written past the landing's checks
    with duckdb.connect(str(copy / "warehouse.duckdb")) as con:
        con.execute("UPDATE fct_player_daily SET loaded_at = loaded_at + INTERVAL 2 DAY")
    with duckdb.connect() as con:
        con.execute(f"""COPY (SELECT * REPLACE ('again' AS batch_id, ingested_at + INTERVAL 3 DAY AS ingested_at)
                              FROM read_parquet('{first}') WHERE occurred_at < TIMESTAMP '{last}' LIMIT 1)
                        TO '{events / "batch_again.parquet"}' (FORMAT parquet)""")
    res = dbt_build(copy, as_of, "--select", "stg_casino__events", check=False)
    assert res.returncode != 0 and "unique_stg_casino__events_event_id" in res.stdout, res.stdout[-3000:]
    compiled = next((copy / "dbt" / "target" / "compiled").rglob("unique_stg_casino__events_event_id.sql"))
    assert "where ingested_at > cast(" in compiled.read_text()  # the scoped test found it
    (events / "batch_again.parquet").unlink()

    with duckdb.connect(str(copy / "warehouse.duckdb")) as con:  # the first day as built by an earlier build
        con.execute("UPDATE fct_player_daily SET loaded_at = loaded_at - INTERVAL 1 DAY "
                    "WHERE activity_date = (SELECT min(activity_date) FROM fct_player_daily)")

    def repeat_row(newest: bool) -> subprocess.CompletedProcess:
        with duckdb.connect(str(copy / "warehouse.duckdb")) as con:
            pick = "max" if newest else "min"
            con.execute(f"INSERT INTO fct_player_daily SELECT * FROM fct_player_daily WHERE loaded_at = "
                        f"(SELECT {pick}(loaded_at) FROM fct_player_daily) LIMIT 1")
        return dbt_build(copy, as_of, "--select", "fct_player_daily,test_type:data", command="test", check=False)

    untouched = repeat_row(newest=False)  # a day the last build did not rebuild
    assert untouched.returncode == 0, untouched.stdout[-3000:]
    rebuilt = repeat_row(newest=True)
    assert rebuilt.returncode != 0 and "unique_combination_fct_player_daily" in rebuilt.stdout, rebuilt.stdout[-3000:]
    # a full build tests every row: the untouched day's repeat fails it
    with duckdb.connect(str(copy / "warehouse.duckdb")) as con:
        con.execute("DELETE FROM fct_player_daily WHERE loaded_at = (SELECT max(loaded_at) FROM fct_player_daily)")
        con.execute("UPDATE fct_player_daily SET loaded_at = TIMESTAMP '2000-01-01'")  # one loaded_at: as a full build
    full = dbt_build(copy, as_of, "--select", "fct_player_daily,test_type:data", command="test", check=False)
    assert full.returncode != 0 and "unique_combination_fct_player_daily" in full.stdout, full.stdout[-3000:]
