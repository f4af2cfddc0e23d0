"""Uplift models from the warehouse's campaign exposures, tracked and registered in MLflow.

:func:`train_uplift_from_exposures` takes ``fct_campaign_exposures`` (one row per campaign and
player: ``arm`` treatment | control, the feature snapshot at the send, outcomes
``deposited_7d`` / ``ngr_eur_14d``, ``outcome_complete``), keeps the rows whose outcome window
is complete, fits every learner of :func:`ml.uplift.train_uplift` on the spec's features
(``ml.features.FEATURE_NAMES`` present in the frame) and selects one by Qini on the held-out
split. One MLflow run (experiment ``uplift``) gets the parameters, per-learner metrics
(``<learner>_qini_auc``, ``_auuc``, ``_uplift_at_10/20/30``, ``_ate``), the selected learner's
metrics unprefixed, a Qini-curve PNG and the model (a pyfunc wrapping the joblib file of
:func:`ml.uplift.save_model`; ``predict`` returns the uplift per row). The version is
registered under ``model_name`` with alias ``challenger`` and promoted to ``champion`` when
its Qini is positive (better than random targeting) and either there is no champion or it is
above the champion's Qini *re-scored on the same validation rows* (a tie keeps the champion: a
rerun on the same data must not make a new champion version each time). When the champion
cannot score these rows (a feature it needs is gone), its logged validation Qini is compared
instead, with a note in the decision.

Never imports Dagster.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ml import models, registry
from ml import uplift as U
from ml.features import FEATURE_NAMES

log = logging.getLogger(__name__)

EXPERIMENT = "uplift"
OUTCOMES = ("deposited_7d", "ngr_eur_14d")
# The registered uplift models trained from the exposures: name -> outcome (defined in ml.models, the
# score-model vocabulary). uplift_ngr (EUR cents of 14-day NGR, net of the bonus cost) is what
# `target: uplift` campaigns rank by.
UPLIFT_MODELS = models.UPLIFT_MODELS
TREATMENT_COL = "arm"
CONTROL, TREATED = "control", "treatment"
AUTO_PROMOTER = "train_uplift"
MODEL_ARTIFACT = "uplift.joblib"


def _pyfunc_class():
    import mlflow.pyfunc

    class UpliftPyfunc(mlflow.pyfunc.PythonModel):
        """Scores raw feature columns with the saved :class:`ml.uplift.UpliftModel`."""

        def load_context(self, context):
            self.model = U.load_model(context.artifacts["model"])

        def predict(self, context, model_input, params=None):
            return pd.DataFrame({"uplift": self.model.predict_uplift(pd.DataFrame(model_input))})

    return UpliftPyfunc


class NotEnoughExposures(ValueError):
    """Too few finished exposures in an arm to train and validate an uplift model yet."""


def check_enough(df: pd.DataFrame, valid_fraction: float) -> None:
    """Raise :class:`NotEnoughExposures` unless each arm can fill both splits (ml.uplift's minimum)."""
    need = int(np.ceil(U.MIN_ROWS_PER_ARM / min(valid_fraction, 1 - valid_fraction)))
    counts = df[TREATMENT_COL].value_counts()
    short = {arm: int(counts.get(arm, 0)) for arm in (TREATED, CONTROL) if counts.get(arm, 0) < need}
    if short:
        raise NotEnoughExposures(
            "not enough finished campaign exposures to train an uplift model yet: "
            + ", ".join(f"{arm} {n}" for arm, n in short.items())
            + f" rows with a complete outcome window (need {need} per arm)")


def exposure_frame(exposures: pd.DataFrame, outcome: str) -> tuple[pd.DataFrame, list[str], dict[str, int]]:
    """Complete rows of the two arms with a non-null outcome, the present spec features and counts."""
    U._require_columns(exposures, [TREATMENT_COL, outcome, "outcome_complete"], "exposures")
    features = [c for c in FEATURE_NAMES if c in exposures.columns]
    if not features:
        raise ValueError(f"exposures carry none of the spec's features ({', '.join(FEATURE_NAMES[:3])}, ...)")
    complete = exposures["outcome_complete"].fillna(False).astype(bool)
    df = exposures[complete & exposures[outcome].notna()].copy()
    df[outcome] = df[outcome].astype("float64")  # boolean / BIGINT (nullable) -> float
    counts = {"exposure_rows": len(exposures), "complete_rows": int(complete.sum()), "training_rows": len(df)}
    return df.reset_index(drop=True), features, counts


def churn_baseline(tracking_uri: str, df: pd.DataFrame, result: U.UpliftResult) -> tuple[np.ndarray | None, str]:
    """The baseline ranking of the issue: the churn champion's score on the validation rows
    (features as of the send), i.e. "target whoever is most likely to churn". ``None`` with the
    reason when there is no churn champion or it cannot score these rows."""
    from ml.score import score_model

    rows = df.loc[result.prepared.index[result.valid_index]]
    try:
        churn = score_model(models.CHURN.name, rows, tracking_uri=tracking_uri, drift=False)
        return churn.scores["score"].to_numpy(), ""
    except (registry.NoModelError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def qini_figure(result: U.UpliftResult, title: str, baselines: dict[str, np.ndarray] | None = None):
    """Qini curves of every learner (and baseline rankings) on the validation split, with the random line."""
    from matplotlib.figure import Figure

    p = result.prepared
    y, t = p.y[result.valid_index], p.treatment[result.valid_index]
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    curve = None
    for name, score in result.valid_scores.items():
        curve = U.qini_curve(y, t, score)
        q = result.metrics[name]["qini_auc"]
        ax.plot(curve["fraction"], curve["qini"], label=f"{name} (qini_auc {q:.4f})",
                lw=2.2 if name == result.selected else 1.2)
    for name, score in (baselines or {}).items():
        curve = U.qini_curve(y, t, score)
        ax.plot(curve["fraction"], curve["qini"], ":", lw=1.5,
                label=f"baseline: {name} (qini_auc {U.qini_auc(y, t, score):.4f})")
    if curve is not None:
        ax.plot(curve["fraction"], curve["random"], "k--", lw=1, label="random")
    ax.set_xlabel("fraction targeted (by predicted uplift)")
    ax.set_ylabel("incremental outcome per treated player")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _ensure_registered_model(client, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=description)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


def _champion_qini(client, tracking_uri: str, champ, df: pd.DataFrame,
                   result: U.UpliftResult) -> tuple[float | None, str]:
    """The champion's Qini on the challenger's validation rows, or its logged Qini and a note."""
    if champ is None:
        return None, ""
    p = result.prepared
    rows = df.loc[p.index[result.valid_index]]
    try:
        from ml.uplift_score import load

        score = load(tracking_uri, champ.name, version=str(champ.version)).model.predict_uplift(rows)
        return U.qini_auc(p.y[result.valid_index], p.treatment[result.valid_index], score), ""
    except Exception as exc:  # noqa: BLE001 - any failure falls back to the logged metric
        note = f"champion could not score these rows ({type(exc).__name__}: {str(exc)[:200]}); its logged qini"
        return registry.version_metric(client, champ, "qini_auc"), note


def promotion_decision(qini: float, champ, champ_qini: float | None, champ_note: str = "") -> tuple[bool, str]:
    """Whether the new version becomes champion, and why (see the module docstring)."""
    if not np.isfinite(qini) or qini <= 0:
        return False, f"kept as challenger: qini_auc {qini:.4f} is not better than random targeting"
    if champ is None:
        return True, f"no champion yet; qini_auc {qini:.4f} > 0"
    where = champ_note or "on the same validation rows"
    if champ_qini is None or qini > champ_qini:  # strictly better: a tie keeps the champion
        shown = "none logged" if champ_qini is None else f"{champ_qini:.4f}"
        return True, f"qini_auc {qini:.4f} > champion v{champ.version} ({shown}, {where})"
    return False, f"kept as challenger: qini_auc {qini:.4f} <= champion v{champ.version} ({champ_qini:.4f}, {where})"


def train_uplift_from_exposures(
    exposures: pd.DataFrame,
    *,
    outcome: str = "deposited_7d",
    tracking_uri: str,
    artifact_location: str,
    model_name: str = models.UPLIFT_DEPOSIT_MODEL,
    lineage: dict | None = None,
    learners=U.LEARNERS,
    seed: int = 0,
    valid_fraction: float = 0.3,
) -> dict:
    """Fit, select, log and register an uplift model on ``fct_campaign_exposures`` rows.

    Returns ``run_id``, ``model_name``, ``model_version``, ``selected``, ``promoted``,
    ``decision``, ``metrics`` (learner -> validation metrics), ``skipped``,
    ``baseline_churn_qini_auc`` (ranking the same rows by the churn champion's score; None
    without a churn champion), row counts and the
    ``result`` (:class:`ml.uplift.UpliftResult`, for callers that score or compare further).
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
    df, features, counts = exposure_frame(exposures, outcome)
    check_enough(df, valid_fraction)
    result = U.train_uplift(df, TREATMENT_COL, outcome, control_value=CONTROL, treated_value=TREATED,
                            features=features, learners=learners, seed=seed, valid_fraction=valid_fraction)
    sel = result.metrics[result.selected]
    metrics: dict[str, float] = {}
    for name, m in result.metrics.items():
        metrics.update({f"{name}_{k}": float(v) for k, v in m.items() if np.isfinite(v)})
    metrics.update({k: float(v) for k, v in sel.items() if np.isfinite(v)})
    campaigns = sorted(df["campaign_id"].astype(str).unique()) if "campaign_id" in df.columns else []
    params = {
        "outcome": outcome,
        "learners": ",".join(result.metrics),
        "selected_learner": result.selected,
        "selected_by": "qini_auc on the validation split",
        "seed": seed,
        "valid_fraction": valid_fraction,
        "n_features": len(features),
        "outcome_kind": "binary" if result.prepared.binary else "continuous",
        **{f"lgbm_{k}": v for k, v in U.UPLIFT_PARAMS.items()},
    }
    tags = {
        "outcome": outcome,
        "selected_learner": result.selected,
        "campaigns": ",".join(campaigns),
        "train_rows": str(result.train_rows),
        "valid_rows": str(result.valid_rows),
        "treated_rows": str(int(result.prepared.treatment.sum())),
        "control_rows": str(int((~result.prepared.treatment).sum())),
        **{k: str(v) for k, v in counts.items()},
        **{str(k): str(v) for k, v in (lineage or {}).items()},
    }
    if result.skipped:
        tags["skipped_learners"] = json.dumps(result.skipped)

    with registry.quiet():
        import mlflow

        from ml.train import _pip_requirements

        registry.use_tracking_uri(tracking_uri)
        client = registry.get_client(tracking_uri)
        champ = registry.champion_version(client, model_name)
        champ_qini, champ_note = _champion_qini(client, tracking_uri, champ, df, result)
        if champ_qini is not None and champ_note == "":
            metrics["champion_qini_auc_same_holdout"] = champ_qini
        baselines: dict[str, np.ndarray] = {}
        churn, why = churn_baseline(tracking_uri, df, result)
        if churn is not None:
            baselines["churn score"] = churn
            p = result.prepared
            yv, tv = p.y[result.valid_index], p.treatment[result.valid_index]
            metrics.update({f"baseline_churn_{k}": float(v) for k, v in U.uplift_metrics(yv, tv, churn).items()
                            if np.isfinite(v)})
        else:
            tags["baseline_churn"] = f"not computed: {why}"[:500]
        experiment_id = registry.ensure_experiment(client, EXPERIMENT, artifact_location)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{model_name}-{outcome}", tags=tags) as run:
            run_id = run.info.run_id
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.log_text(json.dumps(result.summary(), indent=1, default=str), "uplift_summary.json")
            rows = [{"learner": n, **m} for n, m in result.metrics.items()]
            mlflow.log_text(pd.DataFrame(rows).to_csv(index=False), "learners.csv")
            mlflow.log_figure(qini_figure(result, f"Qini, {outcome} (validation, {result.valid_rows} rows)",
                                          baselines), "qini_curve.png")
            with tempfile.TemporaryDirectory() as tmp:
                path = U.save_model(result, Path(tmp) / MODEL_ARTIFACT)
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=_pyfunc_class()(),
                    artifacts={"model": str(path)},
                    pip_requirements=[*_pip_requirements(), "joblib"],
                    metadata={"outcome": outcome, "learner": result.selected, "format": U.MODEL_FORMAT},
                )
            _ensure_registered_model(client, model_name, f"Uplift on {outcome} (fct_campaign_exposures)")
            mv = client.create_model_version(
                name=model_name,
                source=info.model_uri,
                run_id=run_id,
                tags={"outcome": outcome, "learner": result.selected, "qini_auc": f"{sel['qini_auc']:.6f}"},
                model_id=getattr(info, "model_id", None),
            )
        version = str(mv.version)
        registry.set_alias(client, model_name, registry.CHALLENGER, version)
        promoted, decision = promotion_decision(sel["qini_auc"], champ, champ_qini, champ_note)
        registry.record_decision(client, tracking_uri, model_name, version, run_id, promoted, decision,
                                 by=AUTO_PROMOTER)

    log.info("trained %s v%s (%s, qini_auc %.4f): %s", model_name, version, result.selected, sel["qini_auc"], decision)
    return {
        "run_id": run_id,
        "model_name": model_name,
        "model_version": version,
        "selected": result.selected,
        "promoted": promoted,
        "decision": decision,
        "metrics": result.metrics,
        "skipped": result.skipped,
        "baseline_churn_qini_auc": metrics.get("baseline_churn_qini_auc"),
        "baselines": baselines,
        "train_rows": result.train_rows,
        "valid_rows": result.valid_rows,
        **counts,
        "result": result,
    }
