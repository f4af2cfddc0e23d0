"""Bring your own data, end to end: a home fed only by `crm import-daily` (no event stream)
builds the warehouse and gets the same features, training and scoring as event data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
import pytest
from _dbt import dbt_build

from crm.config import Paths
from crm.ingest.import_daily import import_daily
from crm.ingest.landing import default_as_of
from ml.score import score_model
from ml.train import train_model

pytestmark = pytest.mark.slow
START = dt.date(2013, 3, 1)  # an operator's history from before 2015 (issue 12: partitions covered 2024 on)
DAYS = 110


def _export(path, players: int = 400, seed: int = 5) -> None:
    """Daily aggregates with a learnable churn signal: players fade out before they stop."""
    rng = np.random.default_rng(seed)
    lines = ["customer_ref,day,deposits,turnover,winnings,logins,market"]
    for i in range(players):
        stop = int(rng.integers(20, DAYS + 60))  # day of the last visit (some never stop)
        base = rng.uniform(0.2, 0.8)
        for d in range(min(stop, DAYS)):
            fade = 1.0 if stop - d > 21 else (stop - d) / 21  # activity declines before churn
            if rng.random() < base * fade:
                stake = round(float(rng.gamma(2, 20)), 2)
                lines.append(f"c{i:04d},{START + dt.timedelta(days=d)},{round(stake * 0.8, 2)},{stake},"
                             f"{round(stake * rng.uniform(0.5, 1.3), 2)},{int(rng.integers(1, 4))},MT")
    path.write_text("\n".join(lines) + "\n")


def test_import_only_home_builds_trains_and_scores(tmp_path):
    paths = Paths(tmp_path / "home").ensure()
    csv = tmp_path / "export.csv"
    _export(csv)
    mapping = tmp_path / "m.yaml"
    mapping.write_text("columns: {player_id: customer_ref, date: day, deposit_amount: deposits, stake: turnover,\n"
                       "          win: winnings, sessions: logins, country: market}\nunits: major\ncurrency: EUR\n")
    report = import_daily(csv, mapping, paths)
    as_of = default_as_of(paths)
    assert as_of == dt.date.fromisoformat(report.date_to) + dt.timedelta(days=1)

    dbt_build(paths.home, as_of)
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        snapshots = con.execute("SELECT * FROM player_feature_snapshots").df()
        labels = con.execute("SELECT * FROM player_labels").df()
        features = con.execute("SELECT * FROM player_features").df()
        contactable = con.execute("SELECT count(*) FROM dim_player WHERE consent_email OR consent_push "
                                  "OR consent_sms OR consent_in_app").fetchone()[0]
        players = con.execute("SELECT count(*) FROM dim_player").fetchone()[0]
    assert players == report.players and contactable == 0  # imported players are never contactable
    assert len(features) and labels["churned"].notna().sum() > 200

    uri = f"sqlite:///{paths.mlflow_dir / 'mlflow.db'}"
    res = train_model("churn", snapshots, labels, tracking_uri=uri, artifact_location=paths.mlflow_artifacts.as_uri())
    assert res.metrics["roc_auc"] > 0.6 and res.promoted, res.decision
    scored = score_model("churn", features, tracking_uri=uri)
    assert len(scored.scores) == len(features) and scored.scores["score"].between(0, 1).all()


@pytest.mark.slower  # CI keeps test_import_only_home_builds_trains_and_scores for this path
def test_an_old_history_runs_through_dagster_on_its_own_dates(tmp_path):
    """`crm run` on a home whose data ends in 2013: the daily partition of that date exists."""
    import json
    import os
    import subprocess
    import sys

    paths = Paths(tmp_path / "home").ensure()
    csv = tmp_path / "export.csv"
    _export(csv, players=150)
    mapping = tmp_path / "m.yaml"
    mapping.write_text("columns: {player_id: customer_ref, date: day, deposit_amount: deposits, stake: turnover, "
                       "win: winnings, "
                       "sessions: logins, country: market}\nunits: major\ncurrency: EUR\n")
    import_daily(csv, mapping, paths)
    env = os.environ | {"CRM_HOME": str(paths.home), "DAGSTER_HOME": str(paths.dagster_home)}
    env.pop("CRM_PARTITIONS_START", None)  # the partitions start on the history's own first day (2013)
    res = subprocess.run([sys.executable, "-m", "orchestration.run", "--json"], env=env, capture_output=True,
                         text=True, timeout=900)
    assert "Could not find a partition" not in res.stderr, res.stderr[-2000:]
    summary = json.loads(res.stdout)
    assert summary["as_of_date"].startswith("2013-"), summary["as_of_date"]
    assert summary["success"], (summary["failed_steps"], res.stderr[-3000:])
    # the terminal gets one line per step; the full Dagster and dbt log is in the run's log file
    assert "ok    warehouse" in res.stderr and "dbt" not in res.stderr.lower(), res.stderr[-2000:]
    log_text = Path(summary["log_file"]).read_text()
    assert "daily_refresh" in log_text and "- warehouse - dbt" in log_text
