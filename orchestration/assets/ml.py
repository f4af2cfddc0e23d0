"""Churn model training (MLflow, champion alias) and daily scoring."""


import os

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from crm.warehouse import read_table, write_scores
from ml.score import score_players
from ml.train import train_churn
from orchestration.resources import DAILY, CrmResource

MODEL_NAME = os.environ.get("CRM_CHURN_MODEL", "churn_lgbm")


@asset(group_name="ml", kinds={"lightgbm", "mlflow"},
       deps=[AssetKey("player_feature_snapshots"), AssetKey("player_labels")],
       description="LightGBM churn model trained on point-in-time snapshots with a time-based holdout; "
                   "registered in MLflow, promoted to @champion only if it beats the champion.")
def churn_model(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
    paths = crm.paths()
    snapshots = read_table(paths, "player_feature_snapshots")
    labels = read_table(paths, "player_labels")
    res = train_churn(snapshots, labels, tracking_uri=paths.mlflow_tracking_uri,
                      artifact_location=paths.mlflow_artifacts.as_uri(), model_name=MODEL_NAME,
                      tags={"as_of_date": crm.as_of(context).isoformat()})
    context.log.info(f"model {res.model_name} v{res.model_version}: {res.decision}")
    return MaterializeResult(metadata={
        "model": f"{res.model_name} v{res.model_version}",
        "run_id": res.run_id,
        "promoted_to_champion": res.promoted,
        "decision": res.decision,
        "train_rows": res.train_rows, "valid_rows": res.valid_rows,
        "train_range": f"{res.train_range[0]} .. {res.train_range[1]}", "valid_as_of": res.valid_as_of,
        **{k: MetadataValue.float(float(v)) for k, v in res.metrics.items()},
    })


@asset(group_name="ml", kinds={"lightgbm", "duckdb"}, partitions_def=DAILY,
       deps=[churn_model, AssetKey("player_features"), AssetKey("dim_player")],
       description="Churn score of each current player with profiling consent, by the @champion model.")
def player_scores(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
    paths = crm.paths()
    as_of = crm.as_of(context)
    features = read_table(paths, "player_features")
    consenting = read_table(paths, "dim_player", "WHERE consent_profiling")[["player_id"]]
    # ML targeting only with profiling consent: players without it are not scored at all.
    features = features.merge(consenting, on="player_id", how="inner")
    scores = score_players(features, tracking_uri=paths.mlflow_tracking_uri, model_name=MODEL_NAME)
    n = write_scores(paths, scores, as_of)
    q = scores["churn_score"].quantile([0.1, 0.5, 0.9]).round(4).tolist() if n else [None] * 3
    return MaterializeResult(metadata={
        "rows": n, "as_of_date": as_of.isoformat(),
        "model_version": ", ".join(sorted(scores["model_version"].astype(str).unique())) if n else "",
        "score_p10": q[0], "score_median": q[1], "score_p90": q[2],
        "mean_score": float(scores["churn_score"].mean()) if n else 0.0,
    })
