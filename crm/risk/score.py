"""The bonus-abuse risk score per player (issue 19, docs/risk_score.md): training from the warehouse
and the daily scoring step that writes ``player_risk_scores``.

Inputs (all from the warehouse; the simulator's truth/ is never read): the dbt marts
``player_abuse_features`` (behaviour, point in time) and ``player_abuse_labels`` (the bonus-hunter
outcome, observed after the features' date), and ``player_clusters`` (crm.risk.linking). The model
itself is ml.abuse (LightGBM, MLflow, ``champion`` alias).

``player_risk_scores`` (one row per brand, player and as-of date; a rerun of a date replaces it):
brand_id, player_id, as_of_date, risk_score (0..1), reasons (JSON list of {feature, value,
contribution, text}), evidence_key, model_name, model_version, above_threshold. The review queue,
the eligibility rule and ``crm risk explain`` read this table: keep its columns.

``evidence_key``: a hash of the evidence behind a score, the account's cluster member set and its
top reasons' features with binned values (:func:`evidence_key`), so that a person's "clear" on a
flag matches the same evidence later and a changed cluster or behaviour is a new flag.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crm.config import Paths
from crm.sql import ident
from crm.warehouse import connect, fetch_df, table_exists
from ml import abuse

FEATURES_TABLE = "player_abuse_features"
LABELS_TABLE = "player_abuse_labels"
CLUSTERS_TABLE = "player_clusters"
SCORES_TABLE = "player_risk_scores"
# Flag threshold: on the bench's holdout (20,000 players, BENCHMARKS.md) scores of labelled hunters and
# of everyone else are far apart; 0.5 gave precision >= 0.9 there (metric threshold_for_precision_0_9 of
# each training run tells the lowest threshold that keeps 0.9 on its holdout).
FLAG_THRESHOLD = 0.5
TOP_REASONS = 3
REASONS_MIN_SCORE = 0.05  # below this score a row's reasons are an empty list (its evidence: the cluster alone)
SCORE_COLUMNS = ("brand_id", "player_id", "as_of_date", "risk_score", "reasons", "evidence_key", "model_name",
                 "model_version", "above_threshold")
_DDL = (f"CREATE TABLE IF NOT EXISTS {ident(SCORES_TABLE)} (brand_id VARCHAR, player_id VARCHAR, as_of_date DATE, "
        "risk_score DOUBLE, reasons VARCHAR, evidence_key VARCHAR, model_name VARCHAR, model_version VARCHAR, "
        "above_threshold BOOLEAN)")
_SELECT = ", ".join(SCORE_COLUMNS)  # constant names (SQL: no quoting needed)


CLUSTER_COLUMNS = ("brand_id", "player_id", "cluster_id", "cluster_size", "link_score", "links", "cluster_types")
_CLUSTER_SELECT = ", ".join(CLUSTER_COLUMNS)  # constant names (SQL: no quoting needed)


def _clusters(con) -> pd.DataFrame:
    if not table_exists(con, CLUSTERS_TABLE):  # no linking step yet: nobody is clustered
        return pd.DataFrame({c: pd.Series(dtype="object") for c in CLUSTER_COLUMNS})
    return fetch_df(con, f"SELECT {_CLUSTER_SELECT} FROM {ident(CLUSTERS_TABLE)}")


def _require(con, *tables: str) -> None:
    for t in tables:
        if not table_exists(con, t):
            raise FileNotFoundError(f"no {t} in the warehouse: build the dbt project first")


def read_training_frame(paths: Paths) -> pd.DataFrame:
    """The labelled anchor rows: features (with the cluster's) and ``y`` = the bonus-hunter outcome."""
    with connect(paths) as con:
        _require(con, FEATURES_TABLE, LABELS_TABLE)
        frame = fetch_df(con, f"SELECT f.*, l.{ident(abuse.LABEL)} AS y FROM {ident(FEATURES_TABLE)} f "
                              f"JOIN {ident(LABELS_TABLE)} l USING (player_id, as_of_date) "
                              "WHERE f.is_training_anchor ORDER BY f.as_of_date, f.player_id")
        clusters = _clusters(con)
    frame["y"] = frame["y"].astype(int)
    return abuse.with_cluster_features(frame, clusters)


def train(paths: Paths, lineage: dict | None = None, promote: bool = True) -> abuse.TrainedRisk:
    """Train the risk model on the warehouse's labelled rows (ml.abuse.train_risk_model)."""
    return abuse.train_risk_model(read_training_frame(paths), tracking_uri=paths.mlflow_tracking_uri,
                                  artifact_location=paths.mlflow_artifacts.as_uri(), threshold=FLAG_THRESHOLD,
                                  lineage=lineage, promote=promote)


def _bin(name: str, v: float | None) -> str:
    """A coarse bin of a feature value: shares and ratios to one decimal, counts and hours on a log2 scale."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "missing"
    if name.endswith(("_share", "_ratio")) or name.startswith("cluster_shares_"):
        return f"{round(float(v), 1):.1f}"
    return f"log2~{round(math.log2(1.0 + max(float(v), 0.0)))}"


def evidence_key(brand_id: str, player_id: str, members: list[str], reasons: list[dict]) -> str:
    """sha256 (hex, 32 characters) of the account, its cluster's member set (sorted; itself alone when
    unclustered) and its reasons' features with binned values (sorted by feature)."""
    evidence = {"brand": brand_id, "player": player_id, "cluster": sorted(members),
                "features": sorted((r["feature"], _bin(r["feature"], r["value"])) for r in reasons)}
    return hashlib.sha256(json.dumps(evidence, sort_keys=True).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ScoreSummary:
    as_of_date: str
    scored: int
    flagged: int
    model_name: str
    model_version: str
    score_quantiles: dict[str, float]
    top_reasons: dict[str, int]
    deciles: dict[str, int]  # players per score decile ("0.0-0.1", ...)

    def to_dict(self) -> dict:
        return {"as_of_date": self.as_of_date, "scored": self.scored, "flagged": self.flagged,
                "model": f"{self.model_name} v{self.model_version}", "threshold": FLAG_THRESHOLD,
                **{f"score_{k}": v for k, v in self.score_quantiles.items()},
                "top_reasons": self.top_reasons}


def score_frame(features: pd.DataFrame, clusters: pd.DataFrame, model) -> pd.DataFrame:
    """Score ``features`` (the run-date rows of player_abuse_features) with ``model`` (an
    ml.score.LoadedModel): the rows of ``player_risk_scores``."""
    frame = abuse.with_cluster_features(features, clusters)
    p = np.clip(model.model.predict_proba(abuse.matrix(frame))[:, 1], 0.0, 1.0) if len(frame) else np.empty(0)
    medians = abuse.matrix(frame).median().to_dict()
    # reasons where the score is not negligible: the contributions (TreeSHAP) cost ~0.4 ms a row
    explain = np.nonzero(p >= REASONS_MIN_SCORE)[0]
    part = frame.iloc[explain]
    contrib = abuse.contributions(model.booster, part) if len(part) else np.empty((0, len(abuse.FEATURES)))
    why: list[list[dict]] = [[] for _ in range(len(frame))]
    for i, r in zip(explain, abuse.reasons(part, contrib, medians, TOP_REASONS), strict=True):
        why[i] = r
    members = clusters.groupby(["brand_id", "cluster_id"])["player_id"].agg(lambda s: sorted(map(str, s)))
    cluster_of = dict(zip(zip(clusters["brand_id"], clusters["player_id"], strict=True), clusters["cluster_id"],
                          strict=True))
    keys = []
    for b, pl, r in zip(frame["brand_id"], frame["player_id"], why, strict=True):
        cid = cluster_of.get((b, pl))
        keys.append(evidence_key(str(b), str(pl), members[(b, cid)] if cid is not None else [str(pl)], r))
    return pd.DataFrame({
        "brand_id": frame["brand_id"].astype(str).to_numpy(), "player_id": frame["player_id"].astype(str).to_numpy(),
        "as_of_date": pd.to_datetime(frame["as_of_date"]).dt.date.to_numpy(), "risk_score": p,
        "reasons": [json.dumps(r) for r in why], "evidence_key": keys, "model_name": model.model_name,
        "model_version": str(model.version), "above_threshold": p >= FLAG_THRESHOLD})


def score(paths: Paths, as_of: dt.date | None = None, model_name: str = abuse.MODEL_NAME) -> ScoreSummary:
    """Score every player of the run's as-of date in ``player_abuse_features`` (``as_of``: that date,
    default the latest run date there) with ``model_name@champion``; replace that date's rows of
    ``player_risk_scores``."""
    from ml.score import resolve

    with connect(paths) as con:
        _require(con, FEATURES_TABLE)
        if as_of is None:
            latest = f"SELECT max(as_of_date) FROM {ident(FEATURES_TABLE)} WHERE is_run_date"
            as_of = con.execute(latest).fetchall()[0][0]
        features = fetch_df(con, f"SELECT * FROM {ident(FEATURES_TABLE)} WHERE is_run_date AND as_of_date = ? "
                                 "ORDER BY brand_id, player_id", [as_of])
        clusters = _clusters(con)
    model = resolve(paths.mlflow_tracking_uri, model_name)
    rows = score_frame(features, clusters, model)
    with connect(paths, read_only=False) as con:
        con.execute(_DDL)
        con.execute(f"DELETE FROM {ident(SCORES_TABLE)} WHERE as_of_date = ?", [as_of])
        con.register("_scores", rows)
        con.execute(f"INSERT INTO {ident(SCORES_TABLE)} SELECT {_SELECT} FROM _scores")
        con.unregister("_scores")
    p = rows["risk_score"].to_numpy()
    counts = pd.Series([r["feature"] for rs in rows.loc[rows["above_threshold"], "reasons"]
                        for r in json.loads(rs)]).value_counts()
    qs = {f"p{int(q * 100)}": round(float(np.quantile(p, q)), 4) for q in (0.5, 0.9, 0.99)} if len(p) else {}
    bins = np.minimum((p * 10).astype(int), 9) if len(p) else np.empty(0, dtype=int)
    deciles = {f"{i / 10:.1f}-{(i + 1) / 10:.1f}": int((bins == i).sum()) for i in range(10)}
    return ScoreSummary(str(as_of)[:10], len(rows), int(rows["above_threshold"].sum()), model.model_name,
                        str(model.version), qs, {str(k): int(v) for k, v in counts.head(5).items()}, deciles)
