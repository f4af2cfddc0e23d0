"""The dbt project on Apache Spark (dbt-spark, a local Spark in the dbt process) builds the same
warehouse as on DuckDB, row for row, and hands it over to DuckDB for everything after it.

One data home: a small simulated casino, plus hostile histories drawn by hypothesis the way a
casino's systems send them (odd case, spaces, unknown channels and scopes, impossible timestamps:
tests/test_compliance_histories.py) and edge records of our own (a 29 February birthday on the
day it counts, a time zone nobody knows, sessions across midnight in a zone with daylight saving,
contact details in payloads). dbt builds every model on both engines from the same landed files
and every table is compared row for row (text, integers, timestamps exact; doubles to 1e-6).
One example per run: a Spark build takes a minute or two.
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pytest
from _dbt import dbt_build
from hypothesis import HealthCheck, Phase, given, settings
from test_compliance_histories import AS_OF, _events, histories

from crm.config import Paths
from crm.ingest.landing import ingest_file
from crm.simulator.casino import simulate
from crm.warehouse import needs_full_refresh, read_audience
from crm.warehouse_spark import publish_to_duckdb, spark_tables, spark_tables_dir

pytestmark = pytest.mark.slow

MODELS_ONLY = ("--resource-type", "model", "--resource-type", "seed")
# every table the marts need; each must hold rows on this home (an empty pair compares equal)
MUST_HAVE_ROWS = ("dim_player", "fct_player_daily", "player_features", "player_feature_snapshots", "player_labels",
                  "int_rg_status_derived", "int_consents_versioned", "int_players_historized",
                  "int_activity_daily_aggregated", "fct_campaign_outcomes", "stg_casino__crm_messages")


def _edge_events() -> list[dict]:
    """Records whose meaning depends on engine details: age on a 29 February birthday, local hours
    in a zone with daylight saving and in a zone nobody knows, a session across midnight, contact
    details in a payload."""
    def ev(i, etype, pid, at, **payload):
        return {"event_id": f"edge_{i}", "event_type": etype, "player_id": pid, "brand_id": "A",
                "occurred_at": at, "payload": payload}

    reg = {"locale": "de-DE", "currency": "EUR", "age_verified": True, "email": "x@probe.example",
           "phone": "+4900000", "ip": "203.0.113.9", "device_id": "dev-1"}
    return [
        # 18 on 2025-02-28 (both engines count a 29 February birthday on the 28th)
        ev(1, "player.registered", "edge_leap", "2025-02-20T10:00:00Z", country="DE", timezone="Europe/Berlin",
           birth_date="2007-02-28", **reg),
        ev(2, "player.registered", "edge_leap29", "2025-02-20T10:00:00Z", country="UK", timezone="Europe/London",
           birth_date="2008-02-29", **reg),
        ev(3, "player.registered", "edge_zone", "2025-02-20T10:00:00Z", country="MT", timezone="Mars/Olympus_Mons",
           birth_date="1990-06-15", **reg),
        # local hours either side of the daylight-saving change (2025-03-30 in Europe) and midnight
        ev(4, "session.started", "edge_leap", "2025-03-29T22:59:59Z", session_id="s1"),
        ev(5, "session.ended", "edge_leap", "2025-03-30T01:30:00Z", session_id="s1"),
        ev(6, "session.started", "edge_leap29", "2025-03-30T23:30:00Z", session_id="s2"),
        ev(7, "session.ended", "edge_leap29", "2025-03-31T00:10:00.5Z", session_id="s2"),
        ev(8, "session.started", "edge_zone", "2025-04-10T05:59:59Z", session_id="s3"),
        ev(9, "player.updated", "edge_zone", "2025-04-11T00:00:00Z", timezone="Asia/Kathmandu"),
        ev(10, "session.started", "edge_zone", "2025-04-12T18:14:00Z", session_id="s4"),
        ev(11, "consent.granted", "edge_zone", "2025-02-20T10:00:01Z", channel="EMAIL ", source="registration"),
    ]


@settings(max_examples=1, deadline=None, phases=[Phase.generate], derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(players=histories())
def test_spark_builds_the_same_warehouse_as_duckdb_and_hands_it_over(tmp_path_factory, players):
    home = tmp_path_factory.mktemp("spark")
    paths = Paths(home)
    simulate(paths, players=300, days=60, seed=21, start_date=dt.date(2025, 3, 2), progress=False)
    hostile = home / "hostile.jsonl"
    hostile.write_text("".join(json.dumps(e) + "\n" for e in _events(players) + _edge_events()))
    for f in [*sorted((home / "landing" / "incoming").glob("*.parquet")), hostile]:
        assert ingest_file(f, paths).loaded > 0

    dbt_build(home, AS_OF, *MODELS_ONLY)
    dbt_build(home, AS_OF, *MODELS_ONLY, target="spark")

    tables = spark_tables(paths)
    assert set(MUST_HAVE_ROWS) <= set(tables)
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    for table in tables:
        files = f"read_parquet('{spark_tables_dir(paths) / table}/*.parquet')"
        cols = con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
                           "AND column_name <> 'loaded_at' ORDER BY ordinal_position", [table]).fetchall()
        spark_cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {files}").fetchall()} - {"loaded_at"}
        assert spark_cols == {c for c, _ in cols}, f"{table}: columns differ"
        sel = ", ".join(f'round(CAST("{c}" AS DOUBLE), 6)' if t in ("DOUBLE", "FLOAT") else f'CAST("{c}" AS {t})'
                        for c, t in cols)
        duck, spark = f"SELECT {sel} FROM {table}", f"SELECT {sel} FROM {files}"
        rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        only_duck = con.execute(f"SELECT count(*) FROM ({duck} EXCEPT ALL {spark})").fetchone()[0]
        only_spark = con.execute(f"SELECT count(*) FROM ({spark} EXCEPT ALL {duck})").fetchone()[0]
        assert (only_duck, only_spark) == (0, 0), (
            f"{table}: {only_duck} rows only on DuckDB, {only_spark} only on Spark (of {rows})")
        assert rows > 0 or table not in MUST_HAVE_ROWS, f"{table} is empty: the comparison proves nothing"
    # the edge records came through on both: the leap-day player is 17 on the as-of date, the
    # unknown zone counted as UTC, no contact detail anywhere
    assert con.execute("SELECT age_years FROM dim_player WHERE player_id = 'edge_leap29'").fetchone()[0] == 17
    hours = dict(((r[0], str(r[1])), r[2:]) for r in con.execute(
        "SELECT player_id, activity_date, sessions_evening, sessions_night, sessions_daytime "
        "FROM int_activity_daily_aggregated WHERE activity_family = 'session_hours' AND player_id LIKE 'edge_%'"
    ).fetchall())
    assert hours[("edge_leap", "2025-03-29")] == (1, 0, 0)  # 23:59:59 in Berlin (CET)
    assert hours[("edge_leap29", "2025-03-30")] == (0, 1, 0)  # 00:30 in London: summer time began that day
    assert hours[("edge_zone", "2025-04-10")] == (0, 1, 0)  # unknown zone: UTC, 05:59
    assert hours[("edge_zone", "2025-04-12")] == (1, 0, 0)  # 23:59 in Kathmandu (+05:45)
    con.close()
    for table in tables:
        blob = duckdb.sql(f"SELECT string_agg(CAST(t AS VARCHAR), '') FROM read_parquet("
                          f"'{spark_tables_dir(paths) / table}/*.parquet') AS t").fetchall()[0][0] or ""
        assert "probe.example" not in blob and "203.0.113.9" not in blob, f"contact details in Spark's {table}"

    # the hand-off: DuckDB's tables become Spark's, and the next DuckDB build is a full one
    counts = publish_to_duckdb(paths)
    assert counts["dim_player"] > 0 and set(counts) == set(tables)
    assert needs_full_refresh(paths) is not None
    audience = read_audience(paths, AS_OF)
    assert len(audience) > 0 and "edge_leap29" in set(audience["player_id"])


@pytest.mark.slower
def test_crm_run_on_spark_end_to_end(tmp_path):
    """`crm run --target spark`: Dagster runs the dbt build on Spark (its tests as asset checks),
    hands the tables to DuckDB, and the rest of the day (models, scores, lists, gates, dispatch)
    runs on them. The lists equal those of the same day built on DuckDB."""
    import os
    import subprocess
    import sys

    from tests.conftest import make_home

    homes = {}
    for target in ("duckdb", "spark"):
        home = tmp_path / target
        home.mkdir()
        campaigns = make_home(home, players=800)  # as the pipeline tests: enough data for every gate
        env = os.environ | {"CRM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
                            "CRM_CAMPAIGNS_DIR": str(campaigns)}
        res = subprocess.run([sys.executable, "-m", "crm.cli", "run", "--json", "--target", target], env=env,
                             capture_output=True, text=True, timeout=1200)
        assert res.returncode == 0, f"crm run --target {target} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
        summary = json.loads(res.stdout)
        assert summary["success"], summary.get("failed_steps")
        homes[target] = (home, summary)
    spark_home, spark_run = homes["spark"]
    assert spark_tables(Paths(spark_home)), "no Spark tables: the run did not build on Spark"
    assert needs_full_refresh(Paths(spark_home)) is not None  # the next DuckDB build is a full one
    duck_lists = {li["campaign_id"]: li["rows"] for li in homes["duckdb"][1]["lists"]}
    spark_lists = {li["campaign_id"]: li["rows"] for li in spark_run["lists"]}
    assert spark_lists == duck_lists and sum(spark_lists.values()) > 0
