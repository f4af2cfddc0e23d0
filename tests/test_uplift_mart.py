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
    from crm.landing import ingest_pending
    from crm.simulate import simulate

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
    # features as of the latest snapshot on or before the send day, sent before the as-of
    sent_day = pd.to_datetime(e["sent_at"]).dt.normalize()
    fa = pd.to_datetime(e["features_as_of"])
    assert (fa <= sent_day).all() and (fa > sent_day - pd.Timedelta(days=7)).all()
    assert (pd.to_datetime(e["sent_at"]) < pd.Timestamp(AS_OF)).all()
    # no outcome from on or after the as-of: a complete window ends by it, incomplete -> NULL
    complete = e["outcome_complete"].astype(bool)
    assert complete.any()
    assert (sent_day[complete] + pd.Timedelta(days=14) <= pd.Timestamp(AS_OF)).all()
    assert e.loc[~complete, "ngr_eur_14d"].isna().all()
    assert e.loc[complete, ["deposited_7d", "ngr_eur_14d"]].notna().all().all()
    # exposures match the export (dropped only when the player has no snapshot row)
    exported = pd.read_parquet(Paths(home).exports / "campaign_assignments.parquet")
    keyed = exported.set_index(["campaign_id", "player_id"])["arm"]
    assert (keyed.loc[list(zip(e["campaign_id"], e["player_id"], strict=True))].to_numpy() == e["arm"]).all()


def test_empty_safe_without_export(tmp_path):
    """Without an export file the exposure models build as empty, typed relations."""
    from crm.landing import ingest_pending
    from crm.simulate import simulate

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
