"""ML layer: model configs through one training path, baselines, MLflow registry
(champion/challenger on the same holdout, promote, rollback), scoring with drift.

Real MLflow with a SQLite store in a temp dir (one store for the module: both models live in
it, as in a data home); small synthetic snapshots over weekly as-of dates:

* churn's signal is *not* recency (so the model must beat the recency rule) and its label
  is NULL on the last two dates (window incomplete): holdout = DATES[3];
* deposit intent's label is NULL on the last date only (holdout = DATES[4]) and carries a
  signal in a test-only categorical feature, passed with an explicit spec.
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
from ml import score as scoring
from ml.features import FEATURE_NAMES, FEATURES, Feature
from ml.metrics import (
    binary_metrics,
    categorical_reference,
    ece_noise_floor,
    expected_calibration_error,
    lift_table,
    psi,
    psi_against,
    reliability_table,
)
from ml.models import MODELS, FeatureSchema, SanityBounds
from ml.score import score_model, score_players
from ml.train import decide, evaluate, train_churn, train_model

DATES = pd.date_range("2025-01-05", periods=6, freq="7D")
N_PLAYERS = 600
CAT = Feature("provider_test", 90, "test-only categorical feature", kind="categorical")
SPEC = (*FEATURES, CAT)  # the spec as the data scientist passes it
PROVIDERS = ["evolution", "netent", "playtech", "pragmatic"]
# ~2,000 training rows against a spec of dozens of (here mostly noise) features: fewer, more
# regularised trees than the defaults, or the model is overconfident and fails the ECE gate.
SMALL = {"n_estimators": 100, "min_child_samples": 50, "colsample_bytree": 0.5}
CHURN = MODELS["churn"].replace(params=SMALL)
INTENT = MODELS["deposit_intent"].replace(params=SMALL)


def make_snapshots(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = N_PLAYERS * len(DATES)
    cols = {}
    for f in SPEC:  # whatever the spec holds today: numbers for numeric, strings for categorical
        categorical = f.kind == "categorical"
        cols[f.name] = rng.choice(["a", "b", "none"], n) if categorical else rng.gamma(2.0, 10.0, n).round(2)
    df = pd.DataFrame(cols)
    recency = rng.integers(0, 31, n)
    outside = rng.random(n) < 0.1  # not recently active: outside the churn population
    recency[outside] = rng.integers(31, 200, outside.sum())
    df["days_since_last_active"] = recency
    df["deposit_failures_30d"] = rng.poisson(1.5, n)
    df["trend_stake_7d_30d"] = rng.uniform(0, 2, n)
    df["message_open_rate_90d"] = rng.uniform(0, 1, n)
    df["deposits_30d"] = rng.poisson(2.0, n)
    df["provider_test"] = rng.choice([*PROVIDERS, None], n, p=[0.25, 0.25, 0.2, 0.2, 0.1])
    df.insert(0, "player_id", [f"p_{i % N_PLAYERS}" for i in range(n)])
    df.insert(1, "as_of_date", np.repeat(DATES.date, N_PLAYERS))
    df.insert(2, "brand_id", "A")
    df.insert(3, "country", "NL")
    return df


def make_labels(s: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """Labels as the warehouse gives them: a row per snapshot, NULL where the window is open."""
    rng = np.random.default_rng(seed)
    logit = (
        -0.6
        + 0.9 * (s["deposit_failures_30d"] - 1.5)
        - 1.5 * (s["trend_stake_7d_30d"] - 1.0)
        - 1.2 * (s["message_open_rate_90d"] - 0.5)
    )
    churned = rng.random(len(s)) < 1 / (1 + np.exp(-logit))
    prov = s["provider_test"]
    intent = -1.0 + 0.7 * (s["deposits_30d"] - 2) + 1.8 * (prov == "evolution") - 1.5 * (prov == "playtech")
    deposited = rng.random(len(s)) < 1 / (1 + np.exp(-intent))
    dates = pd.to_datetime(s["as_of_date"])
    churn_open = dates >= DATES[-2]
    deposit_open = dates >= DATES[-1]
    return pd.DataFrame(
        {
            "player_id": s["player_id"],
            "as_of_date": s["as_of_date"],
            # object column with None (as DuckDB may hand it over) and a nullable boolean
            "churned": pd.Series(churned, dtype=object).where(~churn_open, None),
            "deposited_7d": pd.Series(deposited, dtype="boolean").mask(deposit_open),
        }
    )


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


def kw(store) -> dict:
    return {"tracking_uri": store["tracking_uri"], "artifact_location": store["artifact_location"]}


@pytest.fixture(scope="module")
def first(store, data):
    """churn v1 through the churn-only wrapper (what orchestration calls)."""
    snaps, labels = data
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(store["cwd"])  # nothing may be written relative to the working directory
        return train_churn(
            snaps, labels, params=SMALL, tags={"trigger": "test", "dbt_manifest": "abc123"}, **kw(store)
        )


@pytest.fixture(scope="module")
def weaker(store, data, first):
    """churn v2: sees only a few of the features (a config choice), clearly worse than v1."""
    snaps, labels = data
    config = CHURN.replace(features=("tenure_days", "days_since_last_active", "message_open_rate_90d"))
    return train_model(config, snaps, labels, **kw(store))


@pytest.fixture(scope="module")
def leaky(store, data, weaker):
    """churn v3: a feature carries the label, so its AUC beats v1 but fails the leakage check."""
    snaps, labels = data
    snaps = snaps.copy()
    snaps["rg_limit_hits_30d"] = labels["churned"].eq(True).astype(int).to_numpy()
    return train_model(CHURN, snaps, labels, **kw(store))


@pytest.fixture(scope="module")
def intent(store, data):
    """deposit_intent v1 with the categorical test feature in the spec."""
    snaps, labels = data
    return train_model(INTENT, snaps, labels, spec=SPEC, lineage={"trigger": "test"}, **kw(store))


@pytest.fixture(scope="module")
def intent_again(store, data, intent):
    """deposit_intent v2, identical model, after v1's *logged* roc_auc was tampered with:
    promotion must compare with v1 re-scored on the same holdout, not with the logged figure."""
    snaps, labels = data
    client = registry.get_client(store["tracking_uri"])
    client.log_metric(intent.run_id, "roc_auc", 0.999)
    return train_model(INTENT, snaps, labels, spec=SPEC, **kw(store))


def aliases(client, name: str = "churn_lgbm") -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def rows_at(snaps: pd.DataFrame, i: int) -> pd.DataFrame:
    return snaps[snaps["as_of_date"] == DATES[i].date()].sample(frac=1.0, random_state=3)


def artifact_csv(run_id: str, path: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{run_id}/{path}")))


# ---------------------------------------------------------------------------- training


def test_shared_path_trains_both_configs(store, first, intent):
    assert set(MODELS) == {"churn", "deposit_intent"}
    assert (first.config, first.model_name, first.label) == ("churn", "churn_lgbm", "churned")
    assert (intent.config, intent.model_name, intent.label) == ("deposit_intent", "deposit_intent_lgbm", "deposited_7d")
    assert first.promoted and intent.promoted and first.model_version == intent.model_version == "1"
    client = registry.get_client(store["tracking_uri"])
    for res in (first, intent):
        run = client.get_run(res.run_id)
        assert run.data.tags["model_config"] == res.config and run.data.tags["label"] == res.label
        assert aliases(client, res.model_name) == {"champion": "1", "challenger": "1"}
    assert intent.metrics["roc_auc"] > 0.75


def test_first_training_logs_registers_and_promotes(store, first):
    assert first.decision.startswith("promoted to champion: no champion yet") and first.champion_before is None
    client = registry.get_client(store["tracking_uri"])
    assert registry.champion_version(client, "churn_lgbm").run_id == first.run_id

    run = client.get_run(first.run_id)
    for key in ("roc_auc", "pr_auc", "log_loss", "brier", "base_rate", "ece", "lift_top_decile"):
        assert run.data.metrics[key] == pytest.approx(first.metrics[key])
    tags = run.data.tags
    # lineage: the caller's dict, the git revision, snapshot range and row counts
    assert tags["trigger"] == "test" and tags["dbt_manifest"] == "abc123"
    assert tags["git_revision"] != "" and tags["git_dirty"] in ("true", "false", "unknown")
    day = "%Y-%m-%d"
    assert tags["snapshot_from"] == DATES[0].strftime(day) and tags["snapshot_to"] == DATES[-1].strftime(day)
    assert tags["snapshot_rows"] == str(N_PLAYERS * len(DATES)) and tags["train_rows"] == str(first.train_rows)
    assert tags["label_null_rows"] == str(2 * N_PLAYERS)
    assert run.data.params["deterministic"] == "True"
    assert json.loads(mlflow.artifacts.load_text(f"runs:/{first.run_id}/features.json")) == list(FEATURE_NAMES)

    arts = {a.path for a in client.list_artifacts(first.run_id)}
    arts |= {a.path for d in ("contributions", "reference") for a in client.list_artifacts(first.run_id, d)}
    assert {
        "feature_importance.csv", "feature_importance.png", "reliability.csv", "reliability.png",
        "lift_by_decile.csv", "lift_by_decile.png", "baselines.csv", "feature_schema.json", "model_config.json",
        "contributions/holdout_sample.csv", "contributions/mean_abs.csv", "reference/drift_reference.json",
    } <= arts
    imp = artifact_csv(first.run_id, "feature_importance.csv")
    signal = {"deposit_failures_30d", "trend_stake_7d_30d", "message_open_rate_90d"}
    assert set(imp["feature"].head(3)) & signal
    contrib = artifact_csv(first.run_id, "contributions/holdout_sample.csv")
    assert len(contrib) == min(500, first.valid_rows)
    assert {"player_id", "score", "bias", *signal} <= set(contrib.columns)
    # contributions are log-odds: bias + sum over features = logit(score)
    logit = contrib[[*FEATURE_NAMES, "bias"]].sum(axis=1)
    assert np.allclose(1 / (1 + np.exp(-logit)), contrib["score"], atol=1e-6)
    mean_abs = artifact_csv(first.run_id, "contributions/mean_abs.csv")
    assert set(mean_abs["feature"].head(3)) & signal

    info = mlflow.models.get_model_info("models:/churn_lgbm/1")
    assert info.signature is not None and info.saved_input_example_info is not None
    assert "deposit_failures_30d" in info.signature.inputs.input_names()

    mv = client.get_model_version("churn_lgbm", "1")
    assert mv.tags["decision"] == "champion" and mv.tags["decision_reason"] == first.decision
    assert mv.tags["promoted_by"] == "train_model"
    assert Path(store["artifact_location"]).is_dir()
    assert not (store["cwd"] / "mlruns").exists() and not list(store["cwd"].iterdir())


def test_baselines_side_by_side_on_the_same_split(store, first):
    m = first.metrics
    for prefix in ("baseline_logreg_", "baseline_recency_"):
        for key in ("roc_auc", "pr_auc", "lift_top_decile"):
            assert 0 <= m[prefix + key] <= max(1.0, m[prefix + key])
    assert "baseline_logreg_ece" in m and "baseline_logreg_log_loss" in m
    assert m["baseline_recency_auc"] == m["baseline_recency_roc_auc"]  # former name kept
    assert abs(m["baseline_recency_roc_auc"] - 0.5) < 0.1  # recency carries no signal here
    assert m["roc_auc"] > 0.72 and m["roc_auc"] > m["baseline_recency_roc_auc"] + 0.15
    assert m["roc_auc"] > m["baseline_logreg_roc_auc"] + 0.1  # the signal is not in RFM
    assert 0.0 < m["brier"] < m["base_rate"] * (1 - m["base_rate"])
    run = registry.get_client(store["tracking_uri"]).get_run(first.run_id)
    assert run.data.metrics["baseline_logreg_roc_auc"] == pytest.approx(m["baseline_logreg_roc_auc"])
    table = artifact_csv(first.run_id, "baselines.csv")
    assert table["model"].tolist() == ["lightgbm", "baseline_logreg", "baseline_recency"]
    assert set(table.loc[1, "features"].split(",")) <= {
        "days_since_last_active", "active_days_30d", "active_days_90d", "stake_eur_30d", "deposit_eur_90d"}
    lift = artifact_csv(first.run_id, "lift_by_decile.csv")
    assert lift.groupby("model")["decile"].apply(list).map(len).to_dict() == {
        "lightgbm": 10, "baseline_logreg": 10, "baseline_recency": 10}
    assert lift.groupby("model")["n"].sum().eq(first.valid_rows).all()


def test_experiments_open_on_runs_and_runs_are_named_by_their_as_of_date(store, first, intent):
    client = registry.get_client(store["tracking_uri"])
    for name in ("churn", "deposit_intent"):
        exp = client.get_experiment_by_name(name)
        assert exp.tags[registry.EXPERIMENT_KIND_TAG] == registry.MODEL_TRAINING_KIND == "custom_model_development"
    # without an as-of date in the lineage: the latest snapshot date, not the holdout's validation date
    day = DATES[-1].strftime("%Y-%m-%d")
    assert client.get_run(first.run_id).info.run_name == f"churn-{day}" != f"churn-{first.valid_as_of}"
    assert registry.run_name("churn", {"as_of_date": "2025-09-28"}, day) == "churn-2025-09-28"


def test_an_experiment_made_before_the_kind_tag_gets_it(tmp_path):
    client = registry.get_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    old = client.create_experiment("old", artifact_location=str(tmp_path / "a"))
    assert registry.EXPERIMENT_KIND_TAG not in client.get_experiment(old).tags
    assert registry.ensure_experiment(client, "old", str(tmp_path / "a")) == old
    assert client.get_experiment(old).tags[registry.EXPERIMENT_KIND_TAG] == registry.MODEL_TRAINING_KIND
    client.set_experiment_tag(old, registry.EXPERIMENT_KIND_TAG, "finetuning")  # chosen by hand: kept
    registry.ensure_experiment(client, "old", str(tmp_path / "a"))
    assert client.get_experiment(old).tags[registry.EXPERIMENT_KIND_TAG] == "finetuning"


def test_model_against_baselines_in_one_table_and_one_chart(store, first):
    from ml.train import COMPARISON_FIGURE, COMPARISON_TABLE

    client = registry.get_client(store["tracking_uri"])
    arts = {a.path for a in client.list_artifacts(first.run_id, "comparison")}
    assert {COMPARISON_TABLE, COMPARISON_FIGURE} <= arts
    with registry.quiet():
        logged = mlflow.artifacts.load_dict(f"runs:/{first.run_id}/{COMPARISON_TABLE}")  # mlflow.log_table's JSON
    table = pd.DataFrame(logged["data"], columns=logged["columns"])
    assert table["model"].tolist() == ["lightgbm", "baseline_logreg", "baseline_recency"]
    m = first.metrics
    assert table.loc[0, "roc_auc"] == pytest.approx(m["roc_auc"])
    assert table.loc[1, "roc_auc"] == pytest.approx(m["baseline_logreg_roc_auc"])
    assert table.loc[2, "roc_auc"] == pytest.approx(m["baseline_recency_roc_auc"])


def test_null_labels_dropped_and_holdout_per_model(data, first, intent):
    snaps, labels = data
    day = "%Y-%m-%d"
    # churn is NULL on the last two dates, deposit intent only on the last one
    assert first.valid_as_of == DATES[3].strftime(day) and intent.valid_as_of == DATES[4].strftime(day)
    assert first.train_range == (DATES[0].strftime(day), DATES[2].strftime(day))
    labelled = pd.to_datetime(snaps["as_of_date"]) < DATES[4]
    population = snaps[(snaps["days_since_last_active"] <= 30) & labelled]
    assert first.train_rows + first.valid_rows == len(population)
    assert first.valid_rows == int((population["as_of_date"] == DATES[3].date()).sum())
    assert intent.train_rows + intent.valid_rows == N_PLAYERS * 5  # all snapshot rows, no population filter
    assert intent.tags["label_null_rows"] == str(N_PLAYERS)
    assert json.loads(json.dumps(first.to_dict()))["train_range"] == list(first.train_range)


def test_categorical_feature_fixed_at_training(store, data, intent_again, intent):
    snaps, _ = data
    run_id = intent.run_id
    schema = FeatureSchema.from_dict(json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/feature_schema.json")))
    assert dict(zip(schema.names, schema.kinds, strict=True))["provider_test"] == "categorical"
    assert schema.categories["provider_test"] == tuple(PROVIDERS)
    assert intent.tags["categorical_features"].split(",")[-1] == "provider_test"
    imp = artifact_csv(run_id, "feature_importance.csv")
    assert "provider_test" in set(imp["feature"].head(3))
    assert intent.metrics["roc_auc"] > intent.metrics["baseline_logreg_roc_auc"] + 0.03

    feats = rows_at(snaps, 5).head(50).copy()
    loaded = scoring.load(store["tracking_uri"], "deposit_intent_lgbm", "1")
    base = loaded.predict(feats)
    unknown = feats.assign(provider_test="brand_new_provider")  # unseen at training -> missing
    missing = feats.assign(provider_test=None)
    assert np.allclose(loaded.predict(unknown), loaded.predict(missing))
    as_cat = feats.assign(provider_test=pd.Categorical(feats["provider_test"], categories=PROVIDERS[::-1]))
    assert np.allclose(loaded.predict(as_cat), base)  # codes come from the stored categories, not the input's
    native = loaded.model.predict_proba(schema.encode(feats))[:, 1]
    assert np.allclose(native, base)  # the fast matrix path is LightGBM's own pandas path


# ---------------------------------------------------------------------------- promotion


def test_worse_model_stays_challenger_on_the_same_holdout(store, first, weaker):
    assert weaker.model_version == "2" and not weaker.promoted
    assert weaker.metrics["roc_auc"] < first.metrics["roc_auc"]
    assert weaker.decision.startswith("kept as challenger: holdout roc_auc")
    assert "<= champion v1" in weaker.decision and "on the same holdout" in weaker.decision
    assert weaker.champion_before == "1"
    # the champion was re-scored on the new holdout (here the same rows as its own)
    assert weaker.champion_roc_auc == pytest.approx(first.metrics["roc_auc"], abs=1e-9)
    client = registry.get_client(store["tracking_uri"])
    assert client.get_run(weaker.run_id).data.metrics["champion_roc_auc"] == pytest.approx(weaker.champion_roc_auc)
    assert aliases(client) == {"champion": "1", "challenger": "2"}
    mv = client.get_model_version("churn_lgbm", "2")
    assert mv.tags["decision"] == "challenger" and mv.tags["decision_reason"] == weaker.decision
    assert client.get_run(weaker.run_id).data.tags["decision"] == weaker.decision


def test_leaky_model_is_blocked(store, first, leaky):
    assert leaky.metrics["roc_auc"] >= 0.995 > first.metrics["roc_auc"]
    assert not leaky.promoted and "label leakage" in leaky.decision and "sanity check failed" in leaky.decision
    assert aliases(registry.get_client(store["tracking_uri"])) == {"champion": "1", "challenger": "3"}


def test_champion_is_compared_on_the_same_holdout_not_its_logged_metric(store, intent, intent_again):
    assert intent_again.champion_roc_auc == pytest.approx(intent.metrics["roc_auc"], abs=1e-9)
    # the same data again ties the champion: a tie keeps it (no new champion version per rerun)
    assert intent_again.metrics["roc_auc"] == pytest.approx(intent.metrics["roc_auc"], abs=1e-9)
    assert not intent_again.promoted, intent_again.decision
    assert "champion v1" in intent_again.decision and "0.999" not in intent_again.decision
    client = registry.get_client(store["tracking_uri"])
    assert aliases(client, "deposit_intent_lgbm") == {"champion": "1", "challenger": "2"}


def make_exposures(n: int = 2000, seed: int = 7) -> pd.DataFrame:
    """Campaign exposures as the warehouse gives them: the spec's features at the send, a random
    arm, a deposit outcome with a real effect in half of the players."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f.name: rng.choice(["a", "b", "c"], n) if f.kind == "categorical"
                       else rng.gamma(2.0, 5.0, n) for f in FEATURES})
    treated = rng.random(n) < 0.5
    responsive = df[FEATURE_NAMES[0]].to_numpy() > np.median(df[FEATURE_NAMES[0]])
    df["arm"] = np.where(treated, "treatment", "control")
    df["deposited_7d"] = (rng.random(n) < 0.2 + 0.15 * (treated & responsive)).astype(float)
    df["outcome_complete"] = True
    df["campaign_id"] = "c1"
    df["player_id"] = [f"p{i}" for i in range(n)]
    return df


def test_classifier_and_uplift_share_one_register_and_promote_path(tmp_path, data, monkeypatch):
    """Both kinds of model reach the registry through registry.register_and_promote, and training
    each again on the same data (a tie with its champion) leaves the champion version unchanged."""
    from ml.uplift_train import train_uplift_from_exposures

    calls = []
    shared = registry.register_and_promote

    def spy(client, tracking_uri, run_id, candidate, champion, decide, *, by):
        calls.append((candidate.model_name, champion.version if champion else None, by))
        return shared(client, tracking_uri, run_id, candidate, champion, decide, by=by)

    monkeypatch.setattr(registry, "register_and_promote", spy)
    snaps, labels = data
    exposures = make_exposures()
    store = {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "artifact_location": str(tmp_path / "art")}
    runs = []
    for _ in range(2):
        runs.append(train_model(CHURN, snaps, labels, **store))
        runs.append(train_uplift_from_exposures(exposures, learners=("t",), **store))
    churn1, uplift1, churn2, uplift2 = runs
    assert calls == [("churn_lgbm", None, "train_model"), ("uplift_deposit", None, "train_uplift"),
                     ("churn_lgbm", "1", "train_model"), ("uplift_deposit", "1", "train_uplift")]
    assert churn1.promoted and uplift1["promoted"], (churn1.decision, uplift1["decision"])
    assert churn2.metrics["roc_auc"] == churn2.champion_roc_auc  # same data, same model: a tie
    assert not churn2.promoted and "<= champion v1" in churn2.decision
    assert not uplift2["promoted"] and "<= champion v1" in uplift2["decision"]
    client = registry.get_client(store["tracking_uri"])
    for name in ("churn_lgbm", "uplift_deposit"):
        assert aliases(client, name) == {"champion": "1", "challenger": "2"}
        assert client.get_model_version(name, "2").tags["decision"] == "challenger"
    assert client.get_run(uplift2["run_id"]).data.tags["champion_before"] == "1"


def test_beats_champion_is_strict():
    assert not registry.beats_champion(0.8, 0.8)  # a tie keeps the champion
    assert registry.beats_champion(0.8001, 0.8)
    assert not registry.beats_champion(0.805, 0.8, margin=0.01)
    assert not registry.beats_champion(float("nan"), 0.8)


def test_rescore_champion_falls_back_to_its_logged_metric():
    from types import SimpleNamespace as NS

    mv = NS(version=4, run_id="r1", name="m")
    client = NS(get_model_version_by_alias=lambda name, alias: mv,
                get_run=lambda run_id: NS(data=NS(metrics={"roc_auc": 0.7})))
    champ = registry.rescore_champion(client, "m", lambda v: 0.75, metric="roc_auc", fallback_note=str)
    assert champ == registry.Champion("4", 0.75) and champ.rescored

    def cannot_score(v):
        raise KeyError("gone")

    champ = registry.rescore_champion(client, "m", cannot_score, metric="roc_auc",
                                      fallback_note=lambda e: f"could not score ({type(e).__name__})")
    assert champ == registry.Champion("4", 0.7, "could not score (KeyError)") and not champ.rescored


def test_decide_gates():
    ok = {"roc_auc": 0.8, "ece": 0.02}
    base = {"valid_rows": 1000, "valid_positives": 300, "sanity": SanityBounds(), "margin": 0.01, "holdout": "D"}
    assert decide(ok, **base) == (True, "promoted to champion: no champion yet (holdout roc_auc 0.8000)")
    promoted, reason = decide(ok, champion_version="4", champion_auc=0.795, **base)
    assert not promoted and "<= champion v4 0.7950 + margin 0.0100 on the same holdout (D, 1000 rows)" in reason
    assert decide(ok, champion_version="4", champion_auc=0.78, **base)[0]
    promoted, reason = decide({"roc_auc": 0.8, "ece": 0.2, "ece_noise": 0.01}, **base)
    assert not promoted and "ece 0.2000 exceeds its sampling noise 0.0100 by more than 0.1" in reason
    assert decide({"roc_auc": 0.8, "ece": 0.14, "ece_noise": 0.06}, **base)[0]  # small holdout: noisy ECE
    promoted, reason = decide(ok, **{**base, "valid_rows": 30, "valid_positives": 2})
    assert not promoted and "30 rows < 50" in reason and "fewer than 5 rows of a class" in reason
    promoted, reason = decide({"roc_auc": 0.49, "ece": 0.0}, **base)
    assert not promoted and "no better than random" in reason
    promoted, reason = decide(ok, auto=False, **base)
    assert not promoted and reason.startswith("kept as challenger: automatic promotion off (would be champion")


def test_manual_promote_and_rollback_with_reason(store, data, first, weaker, leaky):
    uri = store["tracking_uri"]
    client = registry.get_client(uri)
    feats = rows_at(data[0], 5)
    with pytest.raises(ValueError, match="reason is required"):
        registry.promote(uri, "churn_lgbm", "2", "  ", by="alice")
    with pytest.raises(registry.NoModelError, match="churn_lgbm has no version 99"):
        registry.promote(uri, "churn_lgbm", "99", "typo", by="alice")

    registry.promote(uri, "churn_lgbm", weaker.model_version, "manual: test promotion", by="alice")
    assert registry.champion_version(client, "churn_lgbm").version == 2
    mv2 = client.get_model_version("churn_lgbm", "2")
    assert mv2.tags["previous_champion"] == "1" and mv2.tags["promotion_reason"] == "manual: test promotion"
    assert mv2.tags["promoted_by"] == "alice"
    assert set(score_players(feats, tracking_uri=uri)["model_version"]) == {"2"}

    back = registry.rollback(uri, "churn_lgbm", "bad week", by="bob")
    assert str(back.version) == "1" and registry.champion_version(client, "churn_lgbm").version == 1
    mv2 = client.get_model_version("churn_lgbm", "2")
    assert mv2.tags["rollback_reason"] == "bad week" and mv2.tags["rolled_back_by"] == "bob"
    assert "rolled back to v1 by bob" in mv2.description
    last_change = client.get_registered_model("churn_lgbm").tags["last_champion_change"]
    assert "rollback v2 -> v1 by bob: bad week" in last_change
    assert set(score_players(feats, tracking_uri=uri)["model_version"]) == {"1"}
    with pytest.raises(ValueError, match="no previous champion"):
        registry.rollback(uri, "churn_lgbm", "again")  # v1 replaced nobody


def test_list_models(store, first, weaker, leaky, intent_again):
    models = {m["name"]: m for m in registry.list_models(store["tracking_uri"])}
    assert {"churn_lgbm", "deposit_intent_lgbm"} <= set(models)
    churn = models["churn_lgbm"]
    assert churn["champion"] == "1" and churn["challenger"] == "3"
    versions = churn["versions"]
    assert [v["version"] for v in versions] == ["3", "2", "1"]
    v3, _, v1 = versions
    assert v1["aliases"] == ["champion"] and v3["aliases"] == ["challenger"]
    assert v1["decision"] == "champion" and v3["decision"] == "challenger" and "label leakage" in v3["decision_reason"]
    assert v1["metrics"]["roc_auc"] == pytest.approx(first.metrics["roc_auc"])
    assert "baseline_logreg_roc_auc" in v1["metrics"] and v1["valid_as_of"] == first.valid_as_of
    assert json.loads(json.dumps(churn))["name"] == "churn_lgbm"  # JSON-ready for `crm ml list --json`


def test_evaluate_scores_the_holdout_with_the_champion(store, data, intent_again):
    snaps, labels = data
    out = evaluate(INTENT, snaps, labels, store["tracking_uri"])
    assert out["version"] == "1" and out["model_name"] == "deposit_intent_lgbm"  # the rerun tied: v1 stays
    assert out["holdout_as_of"] == DATES[4].strftime("%Y-%m-%d") and out["rows"] == N_PLAYERS
    assert out["roc_auc"] == pytest.approx(intent_again.metrics["roc_auc"], abs=1e-9)
    assert {"pr_auc", "ece", "brier", "log_loss", "baseline_recency_roc_auc", "trained_roc_auc"} <= set(out)
    with pytest.raises(registry.NoModelError):
        evaluate("deposit_intent", snaps, labels, store["tracking_uri"], alias="nobody")


# ---------------------------------------------------------------------------- scoring


def test_score_model_returns_champion_and_drift(store, data, first, leaky):
    snaps, _ = data
    uri = store["tracking_uri"]
    champion = str(registry.champion_version(registry.get_client(uri), "churn_lgbm").version)
    same = rows_at(snaps, 5)  # a later date drawn from the same distribution
    res = score_model("churn", same, tracking_uri=uri)
    assert list(res.scores.columns) == ["player_id", "score", "model_name", "model_version"]
    assert set(res.scores["model_version"]) == {champion} and res.model_version == champion
    assert res.scores.index.equals(same.index) and res.scores["score"].between(0, 1).all()
    d = res.drift
    assert d["available"] and d["population"] == "days_since_last_active <= 30"
    assert d["rows"] == int((same["days_since_last_active"] <= 30).sum())  # like for like: the population only
    assert len(d["features"]) == 10 and d["score_psi"] < 0.1 and d["max_feature_psi"] < 0.1
    assert d["status"] == "stable"

    shifted = same.assign(
        trend_stake_7d_30d=same["trend_stake_7d_30d"] + 1.5, deposit_failures_30d=same["deposit_failures_30d"] + 3
    )
    d = score_model(MODELS["churn"], shifted, tracking_uri=uri).drift
    assert d["features"]["trend_stake_7d_30d"] > 0.25 and d["features"]["deposit_failures_30d"] > 0.25
    assert d["score_psi"] > 0.25 and d["max_psi"] >= d["max_feature_psi"] > 0.25 and d["status"] == "significant"
    assert d["max_feature"] in ("trend_stake_7d_30d", "deposit_failures_30d")
    # by registered name, the alias of choice, no drift
    res = score_model("churn_lgbm", same, tracking_uri=uri, alias="challenger", drift=False)
    assert set(res.scores["model_version"]) == {leaky.model_version} and res.drift == {}


def test_scoring_in_chunks_equals_scoring_whole(store, data, first, monkeypatch):
    """Past SCORE_CHUNK_ROWS the matrix is built and scored a chunk at a time (a reused buffer and a
    shorter last chunk): the same scores and the same drift as one whole matrix."""
    same = rows_at(data[0], 5)
    uri = store["tracking_uri"]
    whole = score_model("churn", same, tracking_uri=uri)
    monkeypatch.setattr(scoring, "SCORE_CHUNK_ROWS", 37)  # len(same) is not a multiple of it
    assert len(same) % 37 and len(same) > 3 * 37
    chunked = score_model("churn", same, tracking_uri=uri)
    assert np.array_equal(chunked.scores["score"].to_numpy(), whole.scores["score"].to_numpy())
    assert chunked.scores["player_id"].tolist() == same["player_id"].tolist()
    assert chunked.drift == whole.drift

def test_scoring_caches_loaded_versions(store, data, first, monkeypatch):
    feats = rows_at(data[0], 5)
    uri = store["tracking_uri"]
    score_model("churn", feats, tracking_uri=uri)
    assert (uri, "churn_lgbm", "1") in scoring._CACHE
    import mlflow.lightgbm

    def boom(*a, **k):
        raise AssertionError("reloaded a cached model version")

    monkeypatch.setattr(mlflow.lightgbm, "load_model", boom)
    monkeypatch.setattr(scoring, "_load_text", boom)
    assert len(score_model("churn", feats, tracking_uri=uri).scores) == len(feats)


def test_score_players(store, data, first):
    feats = rows_at(data[0], 5)
    out = score_players(feats, tracking_uri=store["tracking_uri"])
    assert list(out.columns) == ["player_id", "churn_score", "model_name", "model_version"]
    assert len(out) == len(feats) and out["player_id"].tolist() == feats["player_id"].tolist()
    assert out.index.equals(feats.index)
    assert out["churn_score"].between(0, 1).all() and out["churn_score"].std() > 0.05
    assert set(out["model_name"]) == {"churn_lgbm"}
    empty = score_players(feats.head(0), tracking_uri=store["tracking_uri"])
    assert empty.empty and list(empty.columns) == list(out.columns)


def test_score_without_champion_errors(store, data, first):
    feats = rows_at(data[0], 5)
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
    with pytest.raises(ValueError, match="missing columns"):
        train_model("deposit_intent", snaps.drop(columns=["provider_test"]), labels, spec=SPEC, **kw)
    with pytest.raises(ValueError, match="duplicate"):
        train_churn(pd.concat([snaps, snaps.head(3)]), labels, **kw)
    with pytest.raises(ValueError, match="unknown model config"):
        train_model("nope", snaps, labels, **kw)
    assert not never.exists() and not (tmp_path / "art").exists()


def test_metrics_helpers():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 5000)
    y = (rng.random(5000) < p).astype(int)  # perfectly calibrated
    assert expected_calibration_error(y, p) < 0.03
    # the floor is the ECE a calibrated model shows from sampling noise alone
    noise = np.mean([expected_calibration_error(rng.random(300) < p[:300], p[:300]) for _ in range(40)])
    assert ece_noise_floor(p[:300]) == pytest.approx(noise, rel=0.25)
    assert ece_noise_floor(p) < ece_noise_floor(p[:300]) / 3
    t = reliability_table(y, p)
    assert t["n"].sum() == 5000 and len(t) == 10
    m = binary_metrics(y, p)
    assert 0.7 < m["roc_auc"] < 0.9 and m["lift_top_decile"] > 1.5
    assert psi(p, rng.uniform(0, 1, 5000)) < 0.02
    assert psi(p, rng.uniform(0.5, 1, 5000)) > 0.25
    with_nan = np.where(rng.random(5000) < 0.3, np.nan, rng.uniform(0, 1, 5000))
    assert psi(p, with_nan) > 0.25 and psi(with_nan, with_nan) == 0.0  # missing values have their own bin
    lift = lift_table(y, p)
    assert lift["decile"].tolist() == list(range(1, 11)) and lift["n"].sum() == 5000
    assert lift["lift"].iloc[0] > 1.5 > lift["lift"].iloc[-1] and lift["capture"].iloc[-1] == pytest.approx(1.0)
    ref = categorical_reference(rng.choice(["a", "b", "c"], 3000))
    assert psi_against(ref, rng.choice(["a", "b", "c"], 3000)) < 0.01
    assert psi_against(ref, rng.choice(["a", "d"], 3000)) > 0.25  # "d" is unknown: the "other" bin



@pytest.mark.parametrize("dtype", ["str", "string", object])
def test_category_codes_match_a_categorical_whatever_the_strings(dtype):
    """The fast lookup of scoring (Arrow's hash lookup for Arrow-backed strings, a pandas index
    otherwise) gives pandas' Categorical codes, values the training never saw included: odd
    case, spaces, empty strings, missing values."""
    from ml.metrics import category_codes

    cats = ("NetEnt", "Play'n GO", "none", "slots")
    values = ["NetEnt", "netent", " NetEnt", "", None, "Play'n GO", "slots", "SLOTS", "none", "??", "slots "]
    s = pd.Series(values * 50, dtype=dtype)
    expected = pd.Categorical(s.astype(object), categories=list(cats)).codes
    assert category_codes(s, cats).tolist() == expected.tolist()
    schema = FeatureSchema(("x", "cat"), ("numeric", "categorical"), {"cat": cats})
    m = schema.matrix(pd.DataFrame({"x": np.arange(len(s)), "cat": s}))
    assert np.array_equal(np.nan_to_num(m[:, 1], nan=-1), expected.astype(float))
    assert np.array_equal(m, schema.encode(pd.DataFrame({"x": np.arange(len(s)), "cat": s})).assign(
        cat=lambda d: d["cat"].cat.codes.replace(-1, np.nan)).to_numpy(dtype=float), equal_nan=True)


def test_population_filter_matches_dataframe_query():
    """A model's population ("days_since_last_active <= 30") is read without DataFrame.eval when it is
    one comparison; missing values are outside it, as with eval; anything else still goes to eval."""
    df = pd.DataFrame({"d": pd.array([0, 30, 31, None, -5, 30], dtype="Int64"), "f": [0.5, np.nan, 2.0, 3.0, 1.0, 0.1]})
    for expr in ("d <= 30", "d > 30", "d == 30", "d != 30", "f < 1.5", "f >= 2", " d<=30 "):
        fast, note = scoring._population_mask(df, expr)
        assert note is None and fast.tolist() == df.eval(expr).fillna(False).astype(bool).tolist(), expr
    both, _ = scoring._population_mask(df, "d <= 30 and f < 1")
    assert both.tolist() == [True, False, False, False, False, True]
    _, note = scoring._population_mask(df, "missing_column <= 3")
    assert note and "not applied" in note


def test_drift_past_the_sample_size_compares_evenly_spaced_rows(monkeypatch):
    """Past DRIFT_SAMPLE_ROWS the PSI is taken over that many evenly spaced rows: the same figure
    within sampling noise, at a fixed cost whatever the population."""
    from ml.metrics import reference_bins

    rng = np.random.default_rng(7)
    ref_values = rng.gamma(2.0, 10.0, 20_000)
    reference = {"score": reference_bins(rng.uniform(0, 1, 20_000)), "population": None, "rows": 20_000,
                 "features": {"x": reference_bins(ref_values)}}
    shifted = pd.DataFrame({"x": rng.gamma(2.0, 13.0, 50_000)})
    scores = rng.uniform(0, 1, 50_000)
    full = scoring.drift_report(reference, shifted, scores)
    monkeypatch.setattr(scoring, "DRIFT_SAMPLE_ROWS", 5_000)
    sampled = scoring.drift_report(reference, shifted, scores)
    assert full["compared_rows"] == 50_000 and sampled["compared_rows"] == 5_000 and sampled["rows"] == 50_000
    assert full["features"]["x"] > 0.05
    assert sampled["features"]["x"] == pytest.approx(full["features"]["x"], abs=0.02)
    assert sampled["score_psi"] < 0.02

def test_ml_never_imports_dagster():
    code = "import sys, ml.train, ml.score, ml.registry, ml.metrics, ml.models; sys.exit('dagster' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0


def test_uplift_training_does_not_depend_on_the_row_order(tmp_path):
    """A warehouse read has no order of its own: the same exposures in another order train the same
    model (same learner, same metrics), so the same inputs publish the same uplift list."""
    from ml.uplift_train import train_uplift_from_exposures

    exposures = make_exposures(n=1200)
    shuffled = exposures.sample(frac=1.0, random_state=3).reset_index(drop=True)
    assert not shuffled["player_id"].equals(exposures["player_id"])
    out = []
    for name, frame in (("ordered", exposures), ("shuffled", shuffled)):
        store = tmp_path / name
        store.mkdir()
        out.append(train_uplift_from_exposures(
            frame, tracking_uri=f"sqlite:///{store / 'mlflow.db'}", artifact_location=(store / "art").as_uri(),
            learners=("t", "s")))
    assert out[0]["selected"] == out[1]["selected"]
    assert out[0]["metrics"] == out[1]["metrics"]


# --------------------------------------------------------------------------- retrain schedule
def test_retrain_is_due_weekly_on_drift_or_when_asked(tmp_path, data, monkeypatch):
    """The daily refresh trains a model only when due: never trained, a week after the last training,
    when today's features drifted from the champion's training reference, or when asked."""
    import datetime as dt

    from ml.retrain import EVERY_DAYS_ENV, PSI_ENV, retrain_decision

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    snaps, labels = data
    trained_on = dt.date(2025, 2, 9)
    first = retrain_decision(uri, CHURN.registered_name, trained_on)
    assert first.due and first.reason == "never trained"
    res = train_model(CHURN, snaps, labels, tracking_uri=uri, artifact_location=str(tmp_path / "artifacts"),
                      lineage={"as_of_date": trained_on.isoformat()})
    assert res.promoted
    today = rows_at(snaps, 4)
    kwargs = {"features": today, "score_config": CHURN}

    quiet = retrain_decision(uri, CHURN.registered_name, trained_on + dt.timedelta(days=3), **kwargs)
    assert not quiet.due and quiet.last_trained_as_of == trained_on and quiet.champion_version == "1"
    assert quiet.max_psi is not None and quiet.max_psi < 0.25 and "next scheduled as of 2025-02-16" in quiet.reason
    weekly = retrain_decision(uri, CHURN.registered_name, trained_on + dt.timedelta(days=7), **kwargs)
    assert weekly.due and weekly.reason.startswith("scheduled: last trained as of 2025-02-09, 7 days ago")
    older = retrain_decision(uri, CHURN.registered_name, trained_on - dt.timedelta(days=1), **kwargs)
    assert not older.due and "not retrained on older data" in older.reason

    shifted = today.copy()
    shifted["days_since_last_active"] = shifted["days_since_last_active"] * 10 + 30  # the feed moved everyone
    drift = retrain_decision(uri, CHURN.registered_name, trained_on + dt.timedelta(days=1),
                             features=shifted, score_config=CHURN)
    assert drift.due and drift.reason.startswith("drift: PSI") and drift.max_psi >= 0.25
    # the features may come as a function: read only when the drift check is reached (the asset's
    # population read is a million rows at a million players)
    reads: list[int] = []
    lazy = {"features": lambda: reads.append(1) or shifted, "score_config": CHURN}
    assert retrain_decision(uri, CHURN.registered_name, trained_on + dt.timedelta(days=7), **lazy).due
    assert reads == []  # due by the schedule: nothing read
    assert retrain_decision(uri, CHURN.registered_name, trained_on + dt.timedelta(days=1), **lazy).max_psi >= 0.25
    assert reads == [1]

    assert retrain_decision(uri, CHURN.registered_name, trained_on, force=True).due
    monkeypatch.setenv(EVERY_DAYS_ENV, "1")
    assert retrain_decision(uri, CHURN.registered_name, trained_on + dt.timedelta(days=1)).due
    monkeypatch.delenv(EVERY_DAYS_ENV)
    monkeypatch.setenv(PSI_ENV, "-1")
    with pytest.raises(ValueError, match=PSI_ENV):
        retrain_decision(uri, CHURN.registered_name, trained_on + dt.timedelta(days=1), **kwargs)


def test_training_reads_a_fixed_share_of_players_beyond_the_row_cap(tmp_path, data):
    """Past ``max_training_rows`` training reads whole histories of a stable share of the players: the
    same players on every read, their snapshots and labels together, about the cap's rows."""
    import duckdb

    from crm.config import Paths
    from crm.warehouse import read_training_data

    snaps, labels = data
    paths = Paths(tmp_path)
    paths.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(paths.warehouse)) as con:
        con.register("s", snaps)
        con.register("l", labels)
        con.execute("CREATE TABLE player_feature_snapshots AS SELECT * FROM s")
        con.execute("CREATE TABLE player_labels AS SELECT * FROM l")

    every, every_labels, share = read_training_data(paths, None)
    assert (len(every), len(every_labels), share) == (len(snaps), len(labels), 1.0)
    assert read_training_data(paths, len(snaps))[2] == 1.0  # at the cap: still every row

    cap = len(snaps) // 4
    part, part_labels, share = read_training_data(paths, cap)
    assert 0.2 < share < 0.3 and 0.6 * cap < len(part) < 1.4 * cap
    players = set(part["player_id"])
    assert players == set(part_labels["player_id"])
    per_player = snaps.groupby("player_id").size()
    assert (part.groupby("player_id").size() == per_player[list(players)].sort_index()).all()  # whole histories
    again = read_training_data(paths, cap)[0]
    assert set(again["player_id"]) == players

    res = train_model(CHURN, part, part_labels, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                      artifact_location=str(tmp_path / "artifacts"))
    assert 0 < res.train_rows < len(snaps)
