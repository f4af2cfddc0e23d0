"""The bonus-abuse risk score (issue 19): point-in-time features (player_abuse_features), the label
(player_abuse_labels), training with MLflow (ml.abuse), the scores table (crm.risk.score), on a small
simulated casino through real landing, dbt, linking and MLflow. The truth is read only to check."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from crm.config import Paths
from crm.ingest.landing import default_as_of, ingest_file, ingest_pending
from crm.risk import score as risk
from crm.risk.linking import build_clusters
from ml import abuse, registry
from ml.score import resolve

sys.path.insert(0, str(Path(__file__).parent))
from _dbt import dbt_build  # noqa: E402

PLAYERS = 3000


def query(paths: Paths, sql: str, params: list | None = None) -> pd.DataFrame:
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        return con.execute(sql, params or []).df()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> tuple[Paths, dt.date, object]:
    from crm.simulator.casino import simulate

    paths = Paths(tmp_path_factory.mktemp("risk")).ensure()
    simulate(paths, players=PLAYERS, days=100, seed=7, progress=False)
    ingest_pending(paths)
    as_of = default_as_of(paths)
    dbt_build(paths.home, as_of, "--select", "+player_abuse_labels", "+fct_identity_links", "--exclude",
              "test_type:unit", "test_type:data")  # seeds and models; the data tests of the two marts next
    dbt_build(paths.home, as_of, "--select", "player_abuse_features", "player_abuse_labels", command="test")
    build_clusters(paths)
    trained = risk.train(paths, {"as_of_date": as_of.isoformat()})
    return paths, as_of, trained


def test_training_registers_a_champion_with_its_features_and_metrics(home):
    paths, _, trained = home
    assert trained.promoted and trained.model_version == "1"
    client = registry.get_client(paths.mlflow_tracking_uri)
    assert str(registry.champion_version(client, abuse.MODEL_NAME).version) == trained.model_version
    assert str(registry.alias_version(client, abuse.MODEL_NAME, registry.CHALLENGER).version) == "1"
    run = client.get_run(trained.run_id)
    assert {"pr_auc", "roc_auc", "precision_at_threshold", "baseline_logreg_pr_auc"} <= set(run.data.metrics)
    assert run.data.params["label"] == abuse.LABEL
    logged = json.loads(Path(client.download_artifacts(trained.run_id, "features.json")).read_text())
    assert logged == list(abuse.FEATURES)
    # a second training on the same data ties the champion re-scored on the same holdout: it stays challenger
    again = risk.train(paths, {"as_of_date": "2099-01-01"})
    assert not again.promoted and again.champion_before == "1" and "does not beat" in again.decision
    assert str(registry.champion_version(client, abuse.MODEL_NAME).version) == "1"


def test_the_label_is_observed_after_the_features_date(home):
    paths, as_of, _ = home
    lab = query(paths, "SELECT * FROM player_abuse_labels")
    assert len(lab) and lab["bonus_hunter_outcome"].any() and not lab["bonus_hunter_outcome"].all()
    # complete windows only, and the withdrawal that makes a positive is after the first bonus consumed
    assert (pd.to_datetime(lab["as_of_date"]) + pd.Timedelta(days=37) <= pd.Timestamp(as_of)).all()
    pos = lab[lab["bonus_hunter_outcome"]]
    assert (pos["withdrawn_at"] >= pos["consumed_at"]).all() and (pos["bonus_share_to_withdrawal"] >= 0.8).all()


def test_features_ignore_events_on_or_after_their_date(home, tmp_path):
    paths, as_of, _ = home
    rows = query(paths, "SELECT * FROM player_abuse_features WHERE is_training_anchor AND NOT is_run_date "
                        "AND as_of_date <= ? ORDER BY player_id LIMIT 1", [as_of - dt.timedelta(days=5)])
    assert len(rows)
    before = rows.iloc[0]
    player, brand, d = before["player_id"], before["brand_id"], pd.Timestamp(before["as_of_date"]).date()
    run_before = query(paths, "SELECT stake_eur FROM player_abuse_features WHERE player_id = ? AND is_run_date",
                       [player])["stake_eur"].iloc[0]
    at = [f"{d}T00:00:00Z", f"{d + dt.timedelta(days=1)}T12:00:00Z"]  # D itself (its first instant) and after
    events = []
    for i, ts in enumerate(at):
        base = {"player_id": player, "brand_id": brand, "occurred_at": ts}
        events += [
            {**base, "event_id": f"pit_bet_{i}", "event_type": "bet.settled",
             "payload": {"stake": 900000, "win": 0, "currency": "EUR", "in_bonus": True, "provider": "NetEnt",
                         "game": "Starburst", "game_category": "slots", "rounds": 10}},
            {**base, "event_id": f"pit_dep_{i}", "event_type": "payment.captured",
             "payload": {"amount": 50000, "currency": "EUR", "psp": "Worldpay", "method": "card"}},
            {**base, "event_id": f"pit_wd_{i}", "event_type": "payment.withdraw",
             "payload": {"amount": 40000, "currency": "EUR", "psp": "Worldpay", "method": "card"}},
            {**base, "event_id": f"pit_bon_{i}", "event_type": "bonus.consumed",
             "payload": {"offer_id": "welcome_100", "template": "welcome", "cost": 1000, "currency": "EUR",
                         "wagering": 35}}]
    src = paths.incoming / "pit.jsonl"
    src.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert ingest_file(src, paths).loaded == len(events)
    dbt_build(paths.home, as_of, "--select", "int_bets_daily_by_game", "int_payments_daily_by_method",
              "int_activity_daily_aggregated", "fct_player_daily", "player_abuse_features", command="run")
    after = query(paths, "SELECT * FROM player_abuse_features WHERE player_id = ? AND as_of_date = ?",
                  [player, d]).iloc[0]
    pd.testing.assert_series_equal(before, after, check_names=False)
    run_after = query(paths, "SELECT stake_eur FROM player_abuse_features WHERE player_id = ? AND is_run_date",
                      [player])["stake_eur"].iloc[0]
    assert run_after >= run_before + 2 * 900000  # the same events did reach the run date's row


def test_scores_table_interface_reasons_and_flags(home):
    paths, as_of, trained = home
    summary = risk.score(paths, as_of)
    scores = query(paths, "SELECT * FROM player_risk_scores")
    assert list(scores.columns) == list(risk.SCORE_COLUMNS)
    types = dict(query(paths, "SELECT column_name, data_type FROM information_schema.columns "
                              "WHERE table_name = 'player_risk_scores'").to_numpy())
    assert types["reasons"] == types["evidence_key"] == "VARCHAR" and types["above_threshold"] == "BOOLEAN"
    assert len(scores) == summary.scored > 0 and scores["risk_score"].between(0, 1).all()
    assert (scores["model_name"] == abuse.MODEL_NAME).all() and (scores["model_version"] == "1").all()
    assert (scores["above_threshold"] == (scores["risk_score"] >= risk.FLAG_THRESHOLD)).all()
    flagged = scores[scores["above_threshold"]]
    assert len(flagged) == summary.flagged > 0
    for text in flagged["reasons"]:
        reasons = json.loads(text)
        assert reasons and all(r["feature"] in abuse.FEATURES and r["contribution"] > 0 for r in reasons)
        assert all(r["text"].startswith(abuse.FEATURE_TEXT[r["feature"]]) and "population median" in r["text"]
                   for r in reasons)
    # the flags are mostly the planted hunters (a loose bound: the label is the warehouse's, not the truth)
    with duckdb.connect() as con:
        truth = con.execute("SELECT * FROM read_parquet(?)", [str(paths.truth / "abuse_accounts.parquet")]).df()
    hunters = set(truth.loc[truth["role"] == "bonus_hunter", "player_id"])
    assert flagged["player_id"].isin(hunters).mean() >= 0.7
    assert flagged["player_id"].isin(hunters).sum() >= 0.5 * len(hunters & set(scores["player_id"]))


def test_evidence_key_is_stable_and_follows_the_cluster(home):
    paths, as_of, _ = home
    risk.score(paths, as_of)
    first = query(paths, "SELECT player_id, evidence_key, reasons FROM player_risk_scores ORDER BY player_id")
    risk.score(paths, as_of)  # a rerun of the date replaces its rows with the same evidence
    second = query(paths, "SELECT player_id, evidence_key, reasons FROM player_risk_scores ORDER BY player_id")
    pd.testing.assert_frame_equal(first, second)
    reasons = json.loads(first["reasons"].iloc[0])
    key = risk.evidence_key("A", "p1", ["p1", "p2"], reasons)
    assert key == risk.evidence_key("A", "p1", ["p2", "p1"], reasons)  # a set: order does not matter
    assert key != risk.evidence_key("A", "p1", ["p1", "p2", "p3"], reasons)  # a new member: new evidence
    assert key != risk.evidence_key("A", "p1", ["p1"], reasons)
    # through the scoring: a cluster that gains a member changes its members' keys, and only theirs
    clusters = query(paths, "SELECT * FROM player_clusters")
    scored = set(first["player_id"])
    cid = clusters.loc[clusters["player_id"].isin(scored), "cluster_id"].iloc[0]
    members = set(clusters.loc[clusters["cluster_id"] == cid, "player_id"])
    features = query(paths, "SELECT * FROM player_abuse_features WHERE is_run_date")
    model = resolve(paths.mlflow_tracking_uri, abuse.MODEL_NAME)
    grown = pd.concat([clusters, clusters[clusters["cluster_id"] == cid].head(1).assign(player_id="p_new")])
    a = risk.score_frame(features, clusters, model).set_index("player_id")["evidence_key"]
    b = risk.score_frame(features, grown, model).set_index("player_id")["evidence_key"]
    changed = set(a.index[a.to_numpy() != b.reindex(a.index).to_numpy()])
    assert changed == members & scored and np.all(a.drop(list(changed)) == b.drop(list(changed)))


def test_the_dagster_assets_train_and_score(home, monkeypatch):
    from dagster import DagsterInstance, materialize

    from orchestration.assets.risk import abuse_risk_model, player_risk_scores
    from orchestration.resources import RETRAIN_TAG, CrmResource

    paths, as_of, _ = home
    for var in ("DAGSTER_HOME", "MLFLOW_TRACKING_URI", "DBT_LOG_PATH"):  # export_env sets them: restored after
        monkeypatch.setenv(var, "")
    monkeypatch.setenv("CRM_HOME", str(paths.home))
    result = materialize([abuse_risk_model, player_risk_scores], instance=DagsterInstance.ephemeral(),
                         resources={"crm": CrmResource()}, partition_key=as_of.isoformat(),
                         tags={RETRAIN_TAG: "true"})
    assert result.success
    trained = result.asset_materializations_for_node("abuse_risk_model")[0].metadata
    assert trained["trained"].value and trained["pr_auc"].value > 0.5
    assert not trained["promoted_to_champion"].value  # the same data: a tie keeps the champion
    scored = result.asset_materializations_for_node("player_risk_scores")[0].metadata
    assert scored["model"].value == f"{abuse.MODEL_NAME} v1" and scored["scored"].value > scored["flagged"].value > 0
