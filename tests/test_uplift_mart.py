"""Campaign exposures in the warehouse and an uplift model trained on them, end to end.

A small simulated casino (with its export of past campaign assignments) is landed and built
with an as-of date; ``fct_campaign_exposures`` must hold both arms with the simulator's ~20 %
holdout, the feature snapshot at the send and no outcome from on or after the as-of date. Then
:func:`ml.uplift_train.train_uplift_from_exposures` trains into a temporary MLflow store and
must register a champion with its Qini metrics. The selected learner's Qini as a fraction of
the oracle's (ground truth ``truth/campaign_effects.parquet``) is printed (``-s``) and only
required to be positive.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from _dbt import dbt_build

from crm.config import Paths
from ml.features import FEATURE_NAMES

START = dt.date(2025, 6, 1)
DAYS = 100
AS_OF = START + dt.timedelta(days=DAYS)  # the day after the last simulated day


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    from crm.ingest.landing import ingest_pending
    from crm.simulator.casino import simulate

    home = tmp_path_factory.mktemp("uplift_home")
    paths = Paths(home)
    simulate(paths, players=3000, days=DAYS, seed=11, start_date=START, progress=False)
    assert ingest_pending(paths)
    assert (paths.exports / "campaign_assignments.parquet").is_file()
    dbt_build(home, AS_OF)
    return home


@pytest.fixture(scope="module")
def exposures(home) -> pd.DataFrame:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("SELECT * FROM fct_campaign_exposures ORDER BY campaign_id, player_id").df()


def test_exposure_mart(home, exposures):
    e = exposures
    assert set(e["arm"]) == {"treatment", "control"}
    assert (e["treated"] == (e["arm"] == "treatment")).all()
    share = (e["arm"] == "control").mean()
    assert 0.12 < share < 0.28, share
    assert not e.duplicated(["campaign_id", "player_id"]).any()
    # every spec feature flows through from the snapshots, no NULLs
    missing = [c for c in FEATURE_NAMES if c not in e.columns]
    assert not missing, missing
    assert e[list(FEATURE_NAMES)].notna().all().all()
    # features as of the send day, sent before the as-of
    sent_day = pd.to_datetime(e["sent_at"]).dt.normalize()
    assert (pd.to_datetime(e["features_as_of"]) == sent_day).all()
    assert (pd.to_datetime(e["sent_at"]) < pd.Timestamp(AS_OF)).all()
    # no outcome from on or after the as-of: a complete window ends by it, incomplete -> NULL
    complete = e["outcome_complete"].astype(bool)
    assert complete.any()
    assert (sent_day[complete] + pd.Timedelta(days=14) <= pd.Timestamp(AS_OF)).all()
    assert e.loc[~complete, "ngr_eur_14d"].isna().all()
    assert e.loc[complete, ["deposited_7d", "ngr_eur_14d"]].notna().all().all()
    # every exported assignment sent before the as-of is an exposure (the simulator only
    # assigns registered players), with its arm; players without recent activity included
    exported = pd.read_parquet(Paths(home).exports / "campaign_assignments.parquet")
    exported = exported[pd.to_datetime(exported["sent_at"]) < pd.Timestamp(AS_OF)]
    assert len(e) == len(exported)
    keyed = exported.set_index(["campaign_id", "player_id"])["arm"]
    assert (keyed.loc[list(zip(e["campaign_id"], e["player_id"], strict=True))].to_numpy() == e["arm"]).all()
    dormant = e["active_days_90d"] == 0
    assert dormant.any() and (e.loc[dormant, "days_since_last_active"] == 999).all()


def test_send_day_features_equal_the_snapshot_at_that_day(home, exposures, tmp_path):
    """The two access paths of macros/feature_snapshots.sql agree: the exposures' features at a
    send day S equal player_feature_snapshots built with S as its as-of date (for the players
    in the snapshot's population, active in the 90 days before S)."""
    import shutil

    copy = tmp_path / "home"
    shutil.copytree(home, copy, ignore=shutil.ignore_patterns("dbt"))
    send_day = pd.to_datetime(exposures["sent_at"]).dt.date.max()
    dbt_build(copy, send_day, "--select", "+player_feature_snapshots", "--exclude", "resource_type:test")
    with duckdb.connect(str(copy / "warehouse.duckdb"), read_only=True) as con:
        snap = con.execute("SELECT * FROM player_feature_snapshots WHERE as_of_date = ? ORDER BY player_id",
                           [send_day]).df()
    sent = exposures[pd.to_datetime(exposures["sent_at"]).dt.date == send_day]
    sent = sent.drop_duplicates("player_id").set_index("player_id")
    both = snap.set_index("player_id").index.intersection(sent.index)
    assert len(both) > 50 and len(both) >= 0.3 * len(sent)
    cols = [c for c in FEATURE_NAMES if c in snap.columns]
    pd.testing.assert_frame_equal(snap.set_index("player_id").loc[both, cols], sent.loc[both, cols],
                                  check_dtype=False)
    # players outside the snapshot population are exactly those without activity before S
    outside = sent.index.difference(both)
    assert (sent.loc[outside, "active_days_90d"] == 0).all()


def test_empty_safe_without_export(tmp_path):
    """Without an export file the exposure models build as empty, typed relations."""
    from crm.ingest.landing import ingest_pending
    from crm.simulator.casino import simulate

    paths = Paths(tmp_path)
    simulate(paths, players=150, days=30, seed=5, start_date=START, progress=False)
    for f in paths.exports.glob("campaign_assignments*.parquet"):
        f.unlink()
    ingest_pending(paths)
    dbt_build(tmp_path, START + dt.timedelta(days=30))
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM fct_campaign_exposures").fetchone()[0] == 0
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'fct_campaign_exposures'").fetchall())
    assert types["treated"] == "BOOLEAN" and types["sent_at"] == "TIMESTAMP" and types["ngr_eur_14d"] == "BIGINT"


def test_train_uplift_from_exposures(home, exposures, tmp_path):
    from ml import registry
    from ml import uplift as U
    from ml.uplift_train import train_uplift_from_exposures

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = train_uplift_from_exposures(exposures, tracking_uri=uri, artifact_location=str(tmp_path / "artifacts"),
                                      lineage={"as_of_date": AS_OF.isoformat()})
    assert out["promoted"] and out["model_version"] == "1"
    client = registry.get_client(uri)
    champ = registry.champion_version(client, "uplift_deposit")
    assert champ is not None and str(champ.version) == out["model_version"]
    assert str(registry.alias_version(client, "uplift_deposit", registry.CHALLENGER).version) == "1"
    run = client.get_run(out["run_id"])
    for name in out["metrics"]:
        for k in ("qini_auc", "auuc", "uplift_at_10", "uplift_at_20", "uplift_at_30"):
            if np.isfinite(out["metrics"][name][k]):
                assert f"{name}_{k}" in run.data.metrics
    assert "qini_auc" in run.data.metrics and run.data.params["selected_learner"] == out["selected"]
    artifacts = {a.path for a in client.list_artifacts(out["run_id"])}
    assert "qini_curve.png" in artifacts
    # experiment kind (opens on runs in MLflow 3), run named by the as-of date, one comparison table
    kind = client.get_experiment(run.info.experiment_id).tags[registry.EXPERIMENT_KIND_TAG]
    assert kind == "custom_model_development"
    assert run.info.run_name == f"uplift_deposit-{AS_OF.isoformat()}"
    import mlflow

    from ml.uplift_train import COMPARISON_TABLE

    with registry.quiet():
        mlflow.set_tracking_uri(uri)
        logged = mlflow.artifacts.load_dict(f"runs:/{out['run_id']}/{COMPARISON_TABLE}")  # mlflow.log_table's JSON
    table = pd.DataFrame(logged["data"], columns=logged["columns"])
    assert set(out["metrics"]) <= set(table["model"])
    assert table.loc[table["selected"], "model"].tolist() == [out["selected"]]
    selected = out["metrics"][out["selected"]]["qini_auc"]
    assert table.set_index("model").loc[out["selected"], "qini_auc"] == pytest.approx(selected)

    # the registered pyfunc scores raw exposure rows like the in-memory model
    import mlflow.pyfunc

    with registry.quiet():
        loaded = mlflow.pyfunc.load_model(f"models:/uplift_deposit@{registry.CHAMPION}")
        sample = exposures.head(20)
        got = loaded.predict(sample[list(FEATURE_NAMES)])["uplift"].to_numpy()
    assert np.allclose(got, out["result"].model.predict_uplift(sample))

    # Qini as a fraction of the oracle's on the validation rows (ground truth)
    res = out["result"]
    rows = exposures[exposures["outcome_complete"].astype(bool) & exposures["deposited_7d"].notna()]
    valid = rows.reset_index(drop=True).iloc[res.prepared.index[res.valid_index]]
    truth = pd.read_parquet(Paths(home).truth / "campaign_effects.parquet")
    tau = valid[["campaign_id", "player_id"]].merge(truth, on=["campaign_id", "player_id"], how="left")
    assert tau["true_effect_deposit_prob"].notna().all()
    p = res.prepared
    fractions = {
        name: U.oracle_fractions(p.y[res.valid_index], p.treatment[res.valid_index], score,
                                 tau["true_effect_deposit_prob"].to_numpy())
        for name, score in res.valid_scores.items()
    }
    print(f"\nuplift oracle fractions (selected {res.selected}, {res.valid_rows} validation rows): "
          + json.dumps({n: {k: round(v, 3) for k, v in f.items()} for n, f in fractions.items()}))
    if np.isfinite(fractions[res.selected]["expected"]):
        assert fractions[res.selected]["expected"] > 0


def test_uplift_champion_is_rescored_on_the_same_rows(exposures, tmp_path):
    """A second training re-scores the champion on its own validation rows: the same data and
    seed give the same model, so the same Qini, and a tie keeps the champion (a rerun on the same
    data does not make a new champion version each time)."""
    from ml import registry
    from ml.uplift_train import train_uplift_from_exposures

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    kw = dict(tracking_uri=uri, artifact_location=str(tmp_path / "artifacts"), learners=("t",))
    first = train_uplift_from_exposures(exposures, **kw)
    second = train_uplift_from_exposures(exposures, **kw)
    client = registry.get_client(uri)
    same = client.get_run(second["run_id"]).data.metrics["champion_qini_auc_same_holdout"]
    assert same == pytest.approx(first["metrics"]["t"]["qini_auc"])
    assert first["promoted"], first["decision"]
    assert not second["promoted"] and "same validation rows" in second["decision"], second["decision"]
    assert str(registry.champion_version(client, "uplift_deposit").version) == "1"


def test_uplift_promotion_rule():
    from types import SimpleNamespace

    from ml.uplift_train import promotion_decision

    champ = SimpleNamespace(version="3")
    assert promotion_decision(0.01, None, None)[0]
    assert not promotion_decision(-0.01, None, None)[0]  # worse than random: never champion
    assert not promotion_decision(float("nan"), None, None)[0]
    assert not promotion_decision(0.02, champ, 0.02)[0]  # a tie keeps the champion
    assert promotion_decision(0.0201, champ, 0.02)[0]
    ok, why = promotion_decision(0.01, champ, 0.02)
    assert not ok and "0.0200" in why and "v3" in why
    ok, why = promotion_decision(0.03, champ, 0.02, "champion could not score these rows (KeyError)")
    assert ok and "could not score" in why
