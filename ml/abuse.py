"""The bonus-abuse risk score (issue 19): a LightGBM classifier of the bonus-hunter outcome, its
training through the one register-and-promote path of ml.registry, and per-player reasons.

Pure functions over DataFrames (the warehouse is read and written by crm.risk.score):

* features: the behaviour columns of the dbt mart ``player_abuse_features`` (:data:`BEHAVIOUR_FEATURES`)
  and the cluster columns derived from ``player_clusters`` (:func:`with_cluster_features`);
* label: ``player_abuse_labels.bonus_hunter_outcome`` (docs/risk_score.md: a withdrawal within days of
  the first bonus consumed, then no bet and no deposit for a month, the stake mostly bonus-funded),
  observed after the features' as-of date;
* holdout: the latest quarter of the labelled as-of dates (time-based, as the other models);
* promotion: the challenger becomes ``champion`` only when its holdout average precision (``pr_auc``)
  beats the champion's re-scored on the same holdout rows (:func:`ml.registry.beats_champion`);
* reasons: LightGBM's per-feature contributions (``pred_contrib=True``, SHAP values in log-odds) of
  each scored row, the largest pushes towards "hunter" as plain text (:func:`reasons`).

Why LightGBM rather than the logistic regression it is logged beside: on the bench's holdout both
rank the labelled hunters almost perfectly, and LightGBM's exact per-row contributions give the
reasons the review queue shows, with missing values (no withdrawal yet) handled natively.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml import registry
from ml.metrics import binary_metrics
from ml.models import LGBM_PARAMS, FeatureSchema

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as ml.models: before lightgbm loads

MODEL_NAME = "abuse_risk_lgbm"
EXPERIMENT = "abuse_risk"
LABEL = "bonus_hunter_outcome"
DESCRIPTION = ("Bonus-abuse risk: probability of the bonus-hunter outcome (withdrawal soon after the first bonus "
               "consumed, then inactive, stake mostly bonus-funded) from behaviour and the account's cluster.")
AUTO_PROMOTER = "training (automatic)"
PROMOTION_METRIC = "pr_auc"
HOLDOUT_SHARE = 0.25  # the latest quarter of the labelled as-of dates
MIN_TRAIN_POSITIVES = 5
TARGET_PRECISION = 0.9

# the dbt mart's columns (player_abuse_features.yml) and what a reason calls them
BEHAVIOUR_TEXT: dict[str, str] = {
    "bonus_stake_share": "bonus share of stake",
    "wagering_ratio": "stake over the wagering requirement",
    "hours_bonus_to_withdrawal": "hours from first bonus to withdrawal",
    "hours_consumed_to_withdrawal": "hours from bonus consumed to withdrawal",
    "first_deposit_vs_min": "first deposit over the jurisdiction minimum",
    "table_live_stake_share": "table and live game share of stake",
    "low_volatility_stake_share": "low-volatility game share of stake",
    "days_active": "days active",
    "deposits": "deposits",
    "cashout_ratio": "withdrawn over deposited",
    "bonuses_issued": "bonuses issued",
    "bonuses_consumed": "bonuses consumed",
    "days_since_last_active": "days since last active",
    "registration_burst": "accounts registered within hours on the same network",
}
CLUSTER_TEXT: dict[str, str] = {
    "cluster_size": "accounts in the linked cluster",
    "cluster_link_score": "strongest identity link score",
    "cluster_links": "identity links",
    "cluster_shares_device": "cluster linked by a device",
    "cluster_shares_payment": "cluster linked by a payment instrument",
    "cluster_shares_place": "cluster linked by an address or network",
    "cluster_shares_name": "cluster linked by a name",
}
# Not model features, though the mart has them (crm risk explain shows them): hours_registration_to_deposit and
# days_since_registration. Every planted hunter is a new account, and so are few of the labelled rows of players
# already there when the data starts: trained on them, the model flagged every quick new depositor at scoring
# (precision 0.70 on a 3,000-player home against 1.0 without them).
FEATURE_TEXT = {**BEHAVIOUR_TEXT, **CLUSTER_TEXT}
BEHAVIOUR_FEATURES: tuple[str, ...] = tuple(BEHAVIOUR_TEXT)
CLUSTER_FEATURES: tuple[str, ...] = tuple(CLUSTER_TEXT)
FEATURES: tuple[str, ...] = (*BEHAVIOUR_FEATURES, *CLUSTER_FEATURES)

PARAMS: dict[str, object] = {**LGBM_PARAMS, "n_estimators": 150, "num_leaves": 15, "min_child_samples": 10,
                             "n_jobs": 1}


def with_cluster_features(features: pd.DataFrame, clusters: pd.DataFrame) -> pd.DataFrame:
    """``features`` with :data:`CLUSTER_FEATURES` from ``player_clusters`` rows (brand_id, player_id,
    cluster_size, link_score, links, cluster_types): an account in no cluster has size 1, no links."""
    c = clusters[["brand_id", "player_id", "cluster_size", "link_score", "links", "cluster_types"]]
    out = features.merge(c, on=["brand_id", "player_id"], how="left", validate="many_to_one")
    out["cluster_size"] = out["cluster_size"].fillna(1).astype("float64")
    out["cluster_link_score"] = out.pop("link_score").astype("float64").fillna(0.0)
    out["cluster_links"] = out.pop("links").astype("float64").fillna(0.0)
    types = out.pop("cluster_types").fillna("").astype(str)
    for t in ("device", "payment", "place", "name"):
        out[f"cluster_shares_{t}"] = types.str.split(",").map(lambda v, t=t: float(t in v))
    return out


def matrix(frame: pd.DataFrame, names: Sequence[str] | None = None) -> pd.DataFrame:
    """The model's input: the feature columns (default :data:`FEATURES`) as float64 (missing stays NaN)."""
    names = FEATURES if names is None else names
    return pd.DataFrame({c: pd.to_numeric(frame[c], errors="coerce").astype("float64") for c in names},
                        index=frame.index)


def time_split(frame: pd.DataFrame, share: float = HOLDOUT_SHARE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on the earlier as-of dates, hold out the latest ``share`` of them (at least one)."""
    dates = np.sort(frame["as_of_date"].unique())
    if len(dates) < 2:
        raise ValueError(f"the risk score needs labelled rows on 2 as-of dates or more, got {len(dates)}")
    cut = dates[max(1, min(len(dates) - 1, math.floor(len(dates) * (1 - share))))]
    return frame[frame["as_of_date"] < cut], frame[frame["as_of_date"] >= cut]


def fit(train: pd.DataFrame, params: dict | None = None):
    """A LightGBM classifier of ``train["y"]`` on :data:`FEATURES`."""
    import lightgbm as lgb

    model = lgb.LGBMClassifier(**{**PARAMS, **(params or {})})
    model.fit(matrix(train), train["y"].to_numpy(dtype=int))
    return model


def precision_recall(y, flagged) -> dict[str, float]:
    """Precision and recall of boolean ``flagged`` against ``y`` (NaN where undefined) and the flagged count."""
    y = np.asarray(y, dtype=bool)
    f = np.asarray(flagged, dtype=bool)
    hit = int((y & f).sum())
    return {"precision": hit / f.sum() if f.sum() else float("nan"),
            "recall": hit / y.sum() if y.sum() else float("nan"), "flagged": int(f.sum())}


def threshold_for_precision(y, p, target: float = TARGET_PRECISION) -> float:
    """The lowest score threshold whose flags (score >= it) reach ``target`` precision: the most recall
    at that precision; NaN when no threshold does."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=float)
    order = np.argsort(-p, kind="stable")
    ps = p[order]
    prec = np.cumsum(y[order]) / np.arange(1, len(p) + 1)
    last_of_tie = np.r_[ps[1:] != ps[:-1], True]  # flags at threshold s take every row scored s
    ok = np.nonzero(last_of_tie & (prec >= target))[0]
    return float(ps[ok[-1]]) if len(ok) else float("nan")


def _logreg_scores(train: pd.DataFrame, valid: pd.DataFrame) -> np.ndarray:
    from ml.train import fit_logreg

    cols = list(FEATURES)
    pipe = fit_logreg(train.assign(**{c: matrix(train)[c] for c in cols}), cols)
    return pipe.predict_proba(matrix(valid).to_numpy(dtype="float64"))[:, 1]


@dataclass(frozen=True)
class TrainedRisk:
    run_id: str
    model_name: str
    model_version: str
    promoted: bool
    decision: str
    metrics: dict[str, float]
    train_rows: int
    valid_rows: int
    valid_from: str
    champion_before: str | None


def _holdout_metrics(y: np.ndarray, p: np.ndarray, threshold: float, prefix: str = "") -> dict[str, float]:
    out = {f"{prefix}{k}": v for k, v in binary_metrics(y, p).items()}
    at = precision_recall(y, p >= threshold)
    out[f"{prefix}precision_at_threshold"] = at["precision"]
    out[f"{prefix}recall_at_threshold"] = at["recall"]
    return out


def train_risk_model(frame: pd.DataFrame, *, tracking_uri: str, artifact_location: str, threshold: float,
                     model_name: str = MODEL_NAME, experiment: str = EXPERIMENT, lineage: dict | None = None,
                     promote: bool = True, params: dict | None = None) -> TrainedRisk:
    """Train on ``frame`` (the labelled anchor rows: as_of_date, :data:`FEATURES`, ``y``), evaluate on the
    time-based holdout beside the logistic regression and the rule "bonus share of stake > 0.5", log
    the run (params, metrics, the feature list and config, contributions), register a version
    (``challenger``) and promote it to ``champion`` when it beats the champion re-scored on the same
    holdout (``pr_auc``; a tie keeps the champion). ``threshold``: the flag threshold whose holdout
    precision / recall are logged. Raises ValueError on unusable data before touching MLflow."""
    train, valid = time_split(frame)
    if int(train["y"].sum()) < MIN_TRAIN_POSITIVES or train["y"].nunique() < 2:
        raise ValueError(f"too few labelled hunters to train on ({int(train['y'].sum())} in {len(train)} rows)")
    model = fit(train, params)
    y = valid["y"].to_numpy(dtype=int)
    both = len(np.unique(y)) == 2
    p = model.predict_proba(matrix(valid))[:, 1]
    metrics: dict[str, float] = {"train_rows": len(train), "valid_rows": len(valid), "valid_positives": int(y.sum()),
                                 "threshold": threshold}
    if both:
        metrics.update(_holdout_metrics(y, p, threshold))
        metrics.update(_holdout_metrics(y, _logreg_scores(train, valid), 0.5, "baseline_logreg_"))
        share = pd.to_numeric(valid["bonus_stake_share"], errors="coerce").fillna(0).to_numpy()
        rule = precision_recall(y, share > 0.5)
        metrics.update({"baseline_share_rule_precision": rule["precision"],
                        "baseline_share_rule_recall": rule["recall"],
                        "threshold_for_precision_0_9": threshold_for_precision(y, p)})
    schema = FeatureSchema.numeric(list(FEATURES))
    lineage = {str(k): str(v) for k, v in (lineage or {}).items()}
    tags = {"label": LABEL, "model_name": model_name, "train_from": str(train["as_of_date"].min())[:10],
            "train_to": str(train["as_of_date"].max())[:10], "valid_from": str(valid["as_of_date"].min())[:10],
            "valid_to": str(valid["as_of_date"].max())[:10], **lineage}
    with registry.quiet():
        client = registry.connect(tracking_uri)

        def rescore(mv) -> float:
            from ml.score import load

            champ = load(tracking_uri, model_name, str(mv.version))
            return float(binary_metrics(y, champ.predict(valid))["pr_auc"])

        champion = (registry.rescore_champion(client, model_name, rescore, metric=PROMOTION_METRIC,
                                              fallback_note=lambda e: f"champion could not score the holdout: {e}")
                    if both else None)
        if champion is not None and champion.metric is not None:
            metrics["champion_pr_auc"] = champion.metric
        run_name = registry.run_name(EXPERIMENT, lineage, tags["valid_to"])
        with registry.training_run(client, experiment, artifact_location, run_name=run_name, tags=tags) as run_id:
            _log(model, schema, train, valid, p, metrics, params, threshold)
            done = registry.register_and_promote(client, tracking_uri, run_id,
                                                 _candidate(model, schema, model_name, valid, p, metrics),
                                                 champion, _decider(metrics, both, promote), by=AUTO_PROMOTER)
    return TrainedRisk(done.run_id, model_name, done.version, done.promoted, done.decision, metrics, len(train),
                       len(valid), tags["valid_from"], champion.version if champion else None)


def _decider(metrics: dict[str, float], both: bool, auto: bool):
    def decide(champion: registry.Champion | None) -> tuple[bool, str]:
        if not both:
            return False, "challenger: the holdout has a single class (no precision to compare)"
        value = metrics[PROMOTION_METRIC]
        if not auto:
            return False, f"challenger: automatic promotion off (holdout pr_auc {value:.4f})"
        if champion is None or champion.metric is None:
            return True, f"champion: first version (holdout pr_auc {value:.4f})"
        if registry.beats_champion(value, champion.metric):
            return True, (f"champion: holdout pr_auc {value:.4f} beats v{champion.version}'s {champion.metric:.4f} "
                          f"on the same rows{' (' + champion.note + ')' if champion.note else ''}")
        return False, (f"challenger: holdout pr_auc {value:.4f} does not beat v{champion.version}'s "
                       f"{champion.metric:.4f}")

    return decide


def _log(model, schema: FeatureSchema, train: pd.DataFrame, valid: pd.DataFrame, p: np.ndarray,
         metrics: dict[str, float], params: dict | None, threshold: float) -> None:
    import mlflow

    from ml.score import SCHEMA_ARTIFACT

    mlflow.log_params({**{k: v for k, v in {**PARAMS, **(params or {})}.items()}, "label": LABEL,
                       "features": len(FEATURES), "holdout_share": HOLDOUT_SHARE, "flag_threshold": threshold})
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and not _nan(v)})
    mlflow.log_text(json.dumps(list(FEATURES), indent=1), "features.json")
    mlflow.log_text(json.dumps(schema.to_dict(), indent=1), SCHEMA_ARTIFACT)
    mlflow.log_text(json.dumps({"label": LABEL, "features": FEATURE_TEXT, "params": {**PARAMS, **(params or {})},
                                "holdout_share": HOLDOUT_SHARE, "flag_threshold": threshold,
                                "promotion_metric": PROMOTION_METRIC}, indent=1, default=str), "model_config.json")
    contrib = model.booster_.predict(matrix(valid).to_numpy(dtype="float64"), pred_contrib=True)[:, :-1]
    mean_abs = pd.DataFrame({"feature": FEATURES, "mean_abs_contribution": np.abs(contrib).mean(axis=0)})
    mlflow.log_text(mean_abs.sort_values("mean_abs_contribution", ascending=False).to_csv(index=False),
                    "contributions/mean_abs.csv")
    mlflow.log_text(pd.DataFrame({"score": p, "y": valid["y"].to_numpy()}).to_csv(index=False),
                    "holdout_scores.csv")


def _nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _candidate(model, schema: FeatureSchema, model_name: str, valid: pd.DataFrame, p: np.ndarray,
               metrics: dict[str, float]) -> registry.Candidate:
    def log_model():
        import mlflow.lightgbm
        from mlflow.models import infer_signature

        example = matrix(valid).head(5)
        return mlflow.lightgbm.log_model(model, name="model", signature=infer_signature(example, p[:5]),
                                         input_example=example, pip_requirements=registry.pip_requirements(),
                                         metadata={"label": LABEL, "feature_schema": schema.to_dict()})

    tags = {"label": LABEL, **({"pr_auc": f"{metrics['pr_auc']:.4f}"} if "pr_auc" in metrics else {})}
    return registry.Candidate(model_name, DESCRIPTION, log_model, tags)


def contributions(booster, frame: pd.DataFrame) -> np.ndarray:
    """Per row and feature, its contribution to the score in log-odds (SHAP values; bias left out)."""
    x = matrix(frame).to_numpy(dtype="float64")
    return np.asarray(booster.predict(x, pred_contrib=True, num_threads=2))[:, :len(FEATURES)]


def _fmt(v: float) -> str:
    if _nan(v):
        return "missing"
    return f"{v:.2f}" if abs(v) < 100 else f"{v:,.0f}"


def reasons(frame: pd.DataFrame, contrib: np.ndarray, medians: dict[str, float], top: int = 3) -> list[list[dict]]:
    """Per row, its ``top`` largest positive contributions (pushes towards "hunter"): feature, value,
    contribution (log-odds), text such as "bonus share of stake 0.94 (population median 0.05)"."""
    values = matrix(frame).to_numpy(dtype="float64")
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :top]
    out: list[list[dict]] = []
    for i in range(len(frame)):
        row = []
        for j in order[i]:
            c = float(contrib[i, j])
            if c <= 0:
                break
            name, v = FEATURES[j], float(values[i, j])
            median = _fmt(medians.get(name, math.nan))
            row.append({"feature": name, "value": None if _nan(v) else round(v, 4), "contribution": round(c, 4),
                        "text": f"{FEATURE_TEXT[name]} {_fmt(v)} (population median {median})"})
        out.append(row)
    return out
