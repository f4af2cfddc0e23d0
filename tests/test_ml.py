"""ML layer: training, MLflow registry (champion/challenger, promote, rollback), scoring.

Real MLflow with a SQLite store in a temp dir; small synthetic snapshots over weekly
as-of dates whose churn signal is *not* recency, so the model must beat the recency baseline.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from ml import registry
from ml.features import FEATURE_NAMES
from ml.metrics import (
    binary_metrics,
    expected_calibration_error,
    psi,
    reliability_table,
)
from ml.score import score_players
from ml.train import train_churn

DATES = pd.date_range("2025-01-05", periods=6, freq="7D")  # last date: no labels yet (window open)
N_PLAYERS = 600


def make_snapshots(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = N_PLAYERS * len(DATES)
    df = pd.DataFrame({name: rng.gamma(2.0, 10.0, n).round(2) for name in FEATURE_NAMES})
    recency = rng.integers(0, 31, n)
    outside = rng.random(n) < 0.1  # not recently active: outside the churn population
    recency[outside] = rng.integers(31, 200, outside.sum())
    df["days_since_last_active"] = recency
    df["deposit_failures_30d"] = rng.poisson(1.5, n)
    df["trend_stake_7d_30d"] = rng.uniform(0, 2, n)
    df["message_open_rate_90d"] = rng.uniform(0, 1, n)
    df.insert(0, "player_id", [f"p_{i % N_PLAYERS}" for i in range(n)])
    df.insert(1, "as_of_date", np.repeat(DATES.date, N_PLAYERS))
    df.insert(2, "brand_id", "A")
    df.insert(3, "country", "NL")
    return df


def make_labels(snapshots: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    s = snapshots
    logit = (
        -0.6
        + 0.9 * (s["deposit_failures_30d"] - 1.5)
        - 1.5 * (s["trend_stake_7d_30d"] - 1.0)
        - 1.2 * (s["message_open_rate_90d"] - 0.5)
    )
    churned = rng.random(len(s)) < 1 / (1 + np.exp(-logit))
    labels = pd.DataFrame(
        {
            "player_id": s["player_id"],
            "as_of_date": s["as_of_date"],
            "churned": churned,
            "deposited_7d": ~churned & (rng.random(len(s)) < 0.5),
        }
    )
    return labels[labels["as_of_date"] < DATES[-1].date()].reset_index(drop=True)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    snaps = make_snapshots()
    return snaps, make_labels(snaps)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("mlflow")
    return {
        "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        "artifact_location": str(root / "artifacts"),
        "cwd": tmp_path_factory.mktemp("cwd"),
    }


@pytest.fixture(scope="module")
def first(store, data):
    snaps, labels = data
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(store["cwd"])  # nothing may be written relative to the working directory
        return train_churn(
            snaps,
            labels,
            tracking_uri=store["tracking_uri"],
            artifact_location=store["artifact_location"],
            tags={"trigger": "test"},
        )


@pytest.fixture(scope="module")
def weaker(store, data, first):
    """v2: decision stumps, clearly worse than v1 on the same holdout."""
    snaps, labels = data
    return train_churn(
        snaps,
        labels,
        tracking_uri=store["tracking_uri"],
        artifact_location=store["artifact_location"],
        params={"n_estimators": 3, "num_leaves": 2},
    )


@pytest.fixture(scope="module")
def leaky(store, data, weaker):
    """v3: a feature carries the label, so its AUC beats v1 but fails the leakage check."""
    snaps, labels = data
    snaps = snaps.copy()
    key = ["player_id", "as_of_date"]
    merged = snaps[key].merge(labels[[*key, "churned"]], on=key, how="left")
    snaps["rg_limit_hits_30d"] = merged["churned"].fillna(False).astype(int).to_numpy()
    return train_churn(snaps, labels, tracking_uri=store["tracking_uri"], artifact_location=store["artifact_location"])


def aliases(client, name: str = "churn_lgbm") -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def current_features(snaps: pd.DataFrame) -> pd.DataFrame:
    return snaps[snaps["as_of_date"] == DATES[-1].date()].sample(frac=1.0, random_state=3)


def test_first_training_logs_registers_and_promotes(store, first):
    assert first.model_name == "churn_lgbm" and first.model_version == "1"
    assert first.promoted and first.decision.startswith("promoted to champion: no champion yet")
    assert first.champion_before is None

    client = registry.get_client(store["tracking_uri"])
    assert aliases(client) == {"champion": "1", "challenger": "1"}
    assert registry.champion_version(client, "churn_lgbm").run_id == first.run_id

    run = client.get_run(first.run_id)
    for key in ("roc_auc", "pr_auc", "log_loss", "brier", "base_rate", "baseline_recency_auc"):
        assert run.data.metrics[key] == pytest.approx(first.metrics[key])
    assert run.data.tags["label"] == "churned" and run.data.tags["trigger"] == "test"
    assert run.data.tags["train_rows"] == str(first.train_rows)
    assert run.data.params["deterministic"] == "True"
    assert json.loads(mlflow.artifacts.load_text(f"runs:/{first.run_id}/features.json")) == list(FEATURE_NAMES)
    arts = {a.path for a in client.list_artifacts(first.run_id)}
    assert {"feature_importance.csv", "feature_importance.png", "reliability.png", "reliability.csv"} <= arts
    imp = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{first.run_id}/feature_importance.csv")))
    assert set(imp["feature"].head(3)) & {"deposit_failures_30d", "trend_stake_7d_30d", "message_open_rate_90d"}

    mv = client.get_model_version("churn_lgbm", "1")
    assert mv.tags["decision"] == "champion" and mv.tags["decision_reason"] == first.decision
    # Artifacts under the explicit location, nothing in the working directory.
    assert Path(store["artifact_location"]).is_dir()
    assert not (store["cwd"] / "mlruns").exists() and not list(store["cwd"].iterdir())


def test_model_learns_signal_beyond_recency(first):
    m = first.metrics
    assert abs(m["baseline_recency_auc"] - 0.5) < 0.1  # recency carries no signal here
    assert m["roc_auc"] > 0.72
    assert m["roc_auc"] > m["baseline_recency_auc"] + 0.15
    assert 0.0 < m["brier"] < m["base_rate"] * (1 - m["base_rate"])  # better than predicting the base rate


def test_time_split_and_population(first, data):
    snaps, labels = data
    labelled = sorted(pd.to_datetime(labels["as_of_date"]).unique())
    assert first.valid_as_of == labelled[-1].strftime("%Y-%m-%d")  # latest labelled date, not the open one
    assert first.train_range == (labelled[0].strftime("%Y-%m-%d"), labelled[-2].strftime("%Y-%m-%d"))
    assert first.train_range[1] < first.valid_as_of
    population = snaps[(snaps["days_since_last_active"] <= 30) & (snaps["as_of_date"] < DATES[-1].date())]
    assert first.train_rows + first.valid_rows == len(population)
    assert first.valid_rows == int((population["as_of_date"] == DATES[-2].date()).sum())
    d = first.to_dict()
    assert json.loads(json.dumps(d))["train_range"] == list(first.train_range)


def test_worse_model_stays_challenger(store, first, weaker):
    assert weaker.model_version == "2" and not weaker.promoted
    assert weaker.metrics["roc_auc"] < first.metrics["roc_auc"]
    assert weaker.decision.startswith("kept as challenger: holdout roc_auc")
    assert "< champion v1" in weaker.decision and weaker.champion_before == "1"
    client = registry.get_client(store["tracking_uri"])
    assert aliases(client) == {"champion": "1", "challenger": "2"}
    mv = client.get_model_version("churn_lgbm", "2")
    assert mv.tags["decision"] == "challenger" and mv.tags["decision_reason"] == weaker.decision


def test_leaky_model_fails_sanity_check(store, first, leaky):
    assert leaky.metrics["roc_auc"] >= 0.995 > first.metrics["roc_auc"]
    assert not leaky.promoted and "label leakage" in leaky.decision
    assert aliases(registry.get_client(store["tracking_uri"])) == {"champion": "1", "challenger": "3"}


def test_promote_and_rollback_move_champion(store, data, first, weaker, leaky):
    uri = store["tracking_uri"]
    client = registry.get_client(uri)
    feats = current_features(data[0])

    registry.promote(uri, "churn_lgbm", weaker.model_version, "manual: test promotion")
    assert registry.champion_version(client, "churn_lgbm").version == 2
    mv2 = client.get_model_version("churn_lgbm", "2")
    assert mv2.tags["previous_champion"] == "1" and mv2.tags["promotion_reason"] == "manual: test promotion"
    assert set(score_players(feats, tracking_uri=uri)["model_version"]) == {"2"}

    back = registry.rollback(uri, "churn_lgbm", "bad week")
    assert str(back.version) == "1"
    assert registry.champion_version(client, "churn_lgbm").version == 1
    mv2 = client.get_model_version("churn_lgbm", "2")
    assert mv2.tags["rollback_reason"] == "bad week" and "rolled back to v1" in mv2.description
    assert "rollback v2 -> v1" in client.get_registered_model("churn_lgbm").tags["last_champion_change"]
    assert set(score_players(feats, tracking_uri=uri)["model_version"]) == {"1"}
    with pytest.raises(ValueError, match="no previous champion"):
        registry.rollback(uri, "churn_lgbm", "again")  # v1 replaced nobody


def test_score_players(store, data, first):
    feats = current_features(data[0])
    out = score_players(feats, tracking_uri=store["tracking_uri"])
    assert list(out.columns) == ["player_id", "churn_score", "model_name", "model_version"]
    assert len(out) == len(feats) and out["player_id"].tolist() == feats["player_id"].tolist()
    assert out.index.equals(feats.index)
    assert out["churn_score"].between(0, 1).all() and out["churn_score"].std() > 0.05
    assert set(out["model_version"]) == {"1"} and set(out["model_name"]) == {"churn_lgbm"}
    empty = score_players(feats.head(0), tracking_uri=store["tracking_uri"])
    assert empty.empty and list(empty.columns) == list(out.columns)


def test_score_without_champion_errors(store, data, first):
    feats = current_features(data[0])
    with pytest.raises(registry.NoModelError, match="no model registered as nobody@champion: run training first"):
        score_players(feats, tracking_uri=store["tracking_uri"], model_name="nobody")
    with pytest.raises(ValueError, match="missing columns"):
        score_players(feats.drop(columns=["tenure_days"]), tracking_uri=store["tracking_uri"])
    with pytest.raises(ValueError, match="must be absolute"):
        score_players(feats, tracking_uri="sqlite:///relative/mlflow.db")


def test_bad_inputs_raise_before_touching_mlflow(tmp_path, data):
    snaps, labels = data
    never = tmp_path / "never.db"
    kw = {"tracking_uri": f"sqlite:///{never}", "artifact_location": str(tmp_path / "art")}
    one_date = labels[labels["as_of_date"] == DATES[0].date()]
    with pytest.raises(ValueError, match="at least 2 labelled snapshot dates"):
        train_churn(snaps, one_date, **kw)
    with pytest.raises(ValueError, match="training rows"):
        train_churn(snaps, labels, min_rows=100_000, **kw)
    with pytest.raises(ValueError, match="single class"):
        train_churn(snaps, labels.assign(churned=False), **kw)
    with pytest.raises(ValueError, match="missing columns"):
        train_churn(snaps.drop(columns=["sessions_7d"]), labels, **kw)
    with pytest.raises(ValueError, match="duplicate"):
        train_churn(pd.concat([snaps, snaps.head(3)]), labels, **kw)
    assert not never.exists() and not (tmp_path / "art").exists()


def test_metrics_helpers():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 5000)
    y = (rng.random(5000) < p).astype(int)  # perfectly calibrated
    assert expected_calibration_error(y, p) < 0.03
    t = reliability_table(y, p)
    assert t["n"].sum() == 5000 and len(t) == 10
    m = binary_metrics(y, p)
    assert 0.7 < m["roc_auc"] < 0.9 and m["lift_top_decile"] > 1.5
    assert psi(p, rng.uniform(0, 1, 5000)) < 0.02
    assert psi(p, rng.uniform(0.5, 1, 5000)) > 0.25


def test_ml_never_imports_dagster():
    code = "import sys, ml.train, ml.score, ml.registry, ml.metrics; sys.exit('dagster' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
