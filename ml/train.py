"""Churn model training: time-based holdout, LightGBM, MLflow run + registry, champion/challenger.

Population: players active in the 30 days before the as-of date (``days_since_last_active
<= 30``); churn is only defined for them. The holdout is the latest labelled as-of date;
training uses every strictly earlier one. Features are exactly ``ml.features.FEATURE_NAMES``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ml import registry
from ml.features import FEATURE_NAMES
from ml.metrics import (
    binary_metrics,
    importance_figure,
    reliability_figure,
    reliability_table,
    score_auc,
)

log = logging.getLogger(__name__)

KEYS: tuple[str, str] = ("player_id", "as_of_date")
RECENCY = "days_since_last_active"
POPULATION_MAX_DAYS_INACTIVE = 30
LEAKAGE_AUC = 0.995  # a holdout AUC at or above this is treated as label leakage, never promoted
MIN_VALID_PER_CLASS = 5

DEFAULT_PARAMS: dict[str, object] = {
    "n_estimators": 200,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 20,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "reg_lambda": 0.0,
    "random_state": 42,
    "deterministic": True,
    "force_col_wise": True,
    "n_jobs": 2,
    "verbose": -1,
}


@dataclass
class TrainResult:
    run_id: str
    model_name: str
    model_version: str
    metrics: dict[str, float]
    promoted: bool
    decision: str  # human-readable reason for (not) promoting
    train_rows: int
    valid_rows: int
    train_range: tuple[str, str]
    valid_as_of: str
    champion_before: str | None = field(default=None)  # champion version when training started

    def to_dict(self) -> dict:
        d = asdict(self)
        d["train_range"] = list(self.train_range)
        return d


# ---------------------------------------------------------------------------- data


def _as_dates(s: pd.Series) -> pd.Series:
    d = pd.to_datetime(s)
    if getattr(d.dt, "tz", None) is not None:
        d = d.dt.tz_convert(None)
    return d.dt.normalize()


def _iso(ts) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d")


def _require(df: pd.DataFrame, cols, what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing columns: {missing}")


def build_training_frame(snapshots: pd.DataFrame, labels: pd.DataFrame, label: str = "churned") -> pd.DataFrame:
    """Snapshots joined to their labels, restricted to the churn population.

    Returns ``player_id``, ``as_of_date`` (normalised Timestamp), the feature columns and
    ``y`` (0/1). Rows without a label (label window not complete) are dropped.
    """
    features = list(FEATURE_NAMES)
    _require(snapshots, [*KEYS, *features], "snapshots")
    _require(labels, [*KEYS, label], "labels")
    snap = snapshots[[*KEYS, *features]].copy()
    lab = labels[[*KEYS, label]].copy()
    snap["as_of_date"] = _as_dates(snap["as_of_date"])
    lab["as_of_date"] = _as_dates(lab["as_of_date"])
    for name, df in (("snapshots", snap), ("labels", lab)):
        dups = int(df.duplicated(list(KEYS)).sum())
        if dups:
            raise ValueError(f"{name} has {dups} duplicate (player_id, as_of_date) rows")
    lab = lab[lab[label].notna()]
    frame = snap.merge(lab, on=list(KEYS), how="inner", validate="one_to_one")
    frame = frame[frame[RECENCY] <= POPULATION_MAX_DAYS_INACTIVE]
    frame["y"] = frame.pop(label).astype(bool).astype(int)
    return frame.sort_values(list(KEYS), kind="stable").reset_index(drop=True)


def time_split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Holdout = latest as-of date; train = all strictly earlier dates."""
    dates = np.sort(frame["as_of_date"].unique())
    if len(dates) < 2:
        raise ValueError(
            f"need at least 2 labelled snapshot dates in the population, found {len(dates)}"
            + (f" ({', '.join(_iso(d) for d in dates)})" if len(dates) else "")
        )
    valid_date = pd.Timestamp(dates[-1])
    train = frame[frame["as_of_date"] < valid_date]
    valid = frame[frame["as_of_date"] == valid_date]
    return train, valid, valid_date


def _check_classes(y: pd.Series, what: str) -> None:
    if y.nunique() < 2:
        raise ValueError(
            f"{what} has a single class (all {'positive' if len(y) and y.iloc[0] else 'negative'}); "
            "cannot train or evaluate a classifier"
        )


# ---------------------------------------------------------------------------- training


def _pip_requirements() -> list[str]:
    """Pinned requirements of the logged model (skips MLflow's slow subprocess inference)."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("lightgbm", "scikit-learn", "skops", "numpy", "pandas")]


def _register(client, model_name: str, model_info, run_id: str, tags: dict[str, str]):
    """Create (if needed) the registered model and a new version from the logged model.

    Done through the client rather than ``log_model(registered_model_name=...)``, which
    prints "Successfully registered model ..." to stderr.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            model_name, description="Churn propensity (LightGBM); champion/challenger by aliases."
        )
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    return client.create_model_version(
        name=model_name,
        source=model_info.model_uri,
        run_id=run_id,
        tags=tags,
        model_id=getattr(model_info, "model_id", None),
    )


def _decide(
    client,
    model_name: str,
    metrics: dict[str, float],
    valid_rows: int,
    valid_pos: int,
    promote_margin: float,
    min_valid_rows: int,
) -> tuple[bool, str, object]:
    auc = metrics["roc_auc"]
    failed = []
    if valid_rows < min_valid_rows:
        failed.append(f"holdout has {valid_rows} rows < {min_valid_rows}")
    if min(valid_pos, valid_rows - valid_pos) < MIN_VALID_PER_CLASS:
        failed.append(f"holdout has fewer than {MIN_VALID_PER_CLASS} rows of a class")
    if auc >= LEAKAGE_AUC:
        failed.append(f"holdout roc_auc {auc:.4f} >= {LEAKAGE_AUC} (suspiciously high: label leakage?)")
    if auc <= 0.5:
        failed.append(f"holdout roc_auc {auc:.4f} <= 0.5 (no better than random)")
    champ = registry.champion_version(client, model_name)
    if failed:
        return False, "kept as challenger: sanity check failed: " + "; ".join(failed), champ
    if champ is None:
        return True, f"promoted to champion: no champion yet (holdout roc_auc {auc:.4f})", champ
    champ_auc = registry.version_metric(client, champ, "roc_auc")
    if champ_auc is None:
        return True, f"promoted to champion: champion v{champ.version} has no roc_auc metric", champ
    bar = champ_auc + promote_margin
    if auc >= bar:
        return (
            True,
            (
                f"promoted to champion: holdout roc_auc {auc:.4f} >= champion v{champ.version} "
                f"{champ_auc:.4f} + margin {promote_margin:.4f}"
            ),
            champ,
        )
    return (
        False,
        (
            f"kept as challenger: holdout roc_auc {auc:.4f} < champion v{champ.version} "
            f"{champ_auc:.4f} + margin {promote_margin:.4f}"
        ),
        champ,
    )


@dataclass
class _Fitted:
    """A fitted model with its holdout evaluation (everything MLflow logging needs)."""

    model: object
    params: dict[str, object]
    train: pd.DataFrame
    valid: pd.DataFrame
    p_valid: np.ndarray
    metrics: dict[str, float]
    importance: pd.DataFrame
    reliability: pd.DataFrame
    train_range: tuple[str, str]
    valid_as_of: str


def fit_and_evaluate(frame: pd.DataFrame, params: dict | None = None, min_rows: int = 200) -> _Fitted:
    """Time split, LightGBM fit on the earlier dates, evaluation on the latest one."""
    from lightgbm import LGBMClassifier

    features = list(FEATURE_NAMES)
    train, valid, valid_date = time_split(frame)
    if len(train) < min_rows:
        raise ValueError(
            f"only {len(train)} training rows (population {RECENCY} <= {POPULATION_MAX_DAYS_INACTIVE}, "
            f"as-of dates before {_iso(valid_date)}); need at least {min_rows}"
        )
    _check_classes(train["y"], "training data")
    _check_classes(valid["y"], f"holdout {_iso(valid_date)}")

    model_params = {**DEFAULT_PARAMS, **(params or {})}
    model = LGBMClassifier(**model_params)
    model.fit(train[features].astype("float64"), train["y"])
    p_valid = model.predict_proba(valid[features].astype("float64"))[:, 1]

    metrics = binary_metrics(valid["y"], p_valid)
    metrics["baseline_recency_auc"] = score_auc(valid["y"], valid[RECENCY])
    booster = model.booster_
    importance = pd.DataFrame(
        {
            "feature": booster.feature_name(),
            "gain": booster.feature_importance(importance_type="gain"),
            "split": booster.feature_importance(importance_type="split"),
        }
    ).sort_values("gain", ascending=False, ignore_index=True)
    importance["gain_share"] = importance["gain"] / max(float(importance["gain"].sum()), 1e-12)
    return _Fitted(
        model=model,
        params=model_params,
        train=train,
        valid=valid,
        p_valid=p_valid,
        metrics=metrics,
        importance=importance,
        reliability=reliability_table(valid["y"], p_valid),
        train_range=(_iso(train["as_of_date"].min()), _iso(train["as_of_date"].max())),
        valid_as_of=_iso(valid_date),
    )


def train_churn(
    snapshots: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    tracking_uri: str,
    artifact_location: str,
    model_name: str = "churn_lgbm",
    experiment: str = "churn",
    label: str = "churned",
    params: dict | None = None,
    promote_margin: float = 0.0,
    min_rows: int = 200,
    tags: dict[str, str] | None = None,
) -> TrainResult:
    """Train a LightGBM churn classifier, log it to MLflow, register it and decide on promotion.

    The new version always gets the ``challenger`` alias; it also becomes ``champion`` when
    there is none, or when its holdout ROC AUC >= the champion's (from the champion's run
    metrics) + ``promote_margin`` and the sanity checks pass (holdout size, both classes,
    0.5 < roc_auc < 0.995). Raises ``ValueError`` on unusable data (fewer than 2 labelled
    dates, fewer than ``min_rows`` training rows, a single class) before touching MLflow.
    """
    fit = fit_and_evaluate(build_training_frame(snapshots, labels, label), params, min_rows)
    train, valid, metrics = fit.train, fit.valid, fit.metrics
    run_tags = {
        "label": label,
        "population": f"{RECENCY} <= {POPULATION_MAX_DAYS_INACTIVE}",
        "train_from": fit.train_range[0],
        "train_to": fit.train_range[1],
        "train_dates": str(train["as_of_date"].nunique()),
        "valid_as_of": fit.valid_as_of,
        "train_rows": str(len(train)),
        "valid_rows": str(len(valid)),
        "model_name": model_name,
        **{str(k): str(v) for k, v in (tags or {}).items()},
    }
    run_params = {
        **fit.params,
        "label": label,
        "n_features": len(FEATURE_NAMES),
        "population_max_days_inactive": POPULATION_MAX_DAYS_INACTIVE,
        "promote_margin": promote_margin,
        "min_rows": min_rows,
    }

    with registry.quiet():
        import mlflow
        from mlflow.models import infer_signature

        registry.use_tracking_uri(tracking_uri)
        client = registry.get_client(tracking_uri)
        experiment_id = registry.ensure_experiment(client, experiment, artifact_location)
        example = valid[list(FEATURE_NAMES)].astype("float64").head(5)
        signature = infer_signature(example, fit.model.predict(example))

        run_name = f"{label}-{fit.valid_as_of}"
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=run_tags) as run:
            run_id = run.info.run_id
            mlflow.log_params(run_params)
            mlflow.log_metrics({**metrics, "train_positive_rate": float(train["y"].mean())})
            mlflow.log_text(json.dumps(list(FEATURE_NAMES), indent=1), "features.json")
            mlflow.log_text(fit.importance.to_csv(index=False), "feature_importance.csv")
            mlflow.log_figure(importance_figure(fit.importance), "feature_importance.png")
            mlflow.log_text(fit.reliability.to_csv(index=False), "reliability.csv")
            mlflow.log_figure(
                reliability_figure(fit.reliability, f"Reliability, holdout {fit.valid_as_of}"), "reliability.png"
            )
            # Reference distribution of holdout scores, for drift (PSI) checks on scored lists.
            mlflow.log_text(
                pd.DataFrame({"churn_score": fit.p_valid}).to_csv(index=False), "reference/holdout_scores.csv"
            )
            info = mlflow.lightgbm.log_model(
                fit.model,
                name="model",
                signature=signature,
                input_example=example,
                pip_requirements=_pip_requirements(),
            )
            mv = _register(
                client,
                model_name,
                info,
                run_id,
                {"label": label, "valid_as_of": fit.valid_as_of, "roc_auc": f"{metrics['roc_auc']:.4f}"},
            )

        version = str(mv.version)
        registry.set_alias(client, model_name, registry.CHALLENGER, version)
        promoted, decision, champ = _decide(
            client,
            model_name,
            metrics,
            len(valid),
            int(valid["y"].sum()),
            promote_margin,
            min_valid_rows=max(20, min_rows // 4),
        )
        if promoted:
            registry.promote(tracking_uri, model_name, version, decision)
        client.set_model_version_tag(model_name, version, "decision", "champion" if promoted else "challenger")
        client.set_model_version_tag(model_name, version, "decision_reason", decision)
        client.set_tag(run_id, "decision", decision)
        client.set_tag(run_id, "model_version", version)

    log.info(
        "trained %s v%s (holdout %s roc_auc %.4f, recency baseline %.4f): %s",
        model_name,
        version,
        fit.valid_as_of,
        metrics["roc_auc"],
        metrics["baseline_recency_auc"],
        decision,
    )
    return TrainResult(
        run_id=run_id,
        model_name=model_name,
        model_version=version,
        metrics=metrics,
        promoted=promoted,
        decision=decision,
        train_rows=len(train),
        valid_rows=len(valid),
        train_range=fit.train_range,
        valid_as_of=fit.valid_as_of,
        champion_before=str(champ.version) if champ is not None else None,
    )
