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
instead, with a note in the decision. Registration and promotion go through
:func:`ml.registry.register_and_promote`, the path of the classifiers (:mod:`ml.train`) too.

Never imports Dagster.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
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
            + f" rows with a complete outcome window (need {need} per arm)"
        )


EXPOSURE_KEYS = ("campaign_id", "player_id")  # one fct_campaign_exposures row per campaign and player


def exposure_frame(exposures: pd.DataFrame, outcome: str) -> tuple[pd.DataFrame, list[str], dict[str, int]]:
    """Complete rows of the two arms with a non-null outcome, the present spec features and counts.

    Rows come in the key's order (campaign, player): a warehouse read has no order of its own
    (DuckDB scans in parallel), and the train / validation split is by position, so without it
    the same data could train a different model and publish a different list."""
    U._require_columns(exposures, [TREATMENT_COL, outcome, "outcome_complete"], "exposures")
    features = [c for c in FEATURE_NAMES if c in exposures.columns]
    if not features:
        raise ValueError(f"exposures carry none of the spec's features ({', '.join(FEATURE_NAMES[:3])}, ...)")
    complete = exposures["outcome_complete"].fillna(False).astype(bool)
    df = exposures[complete & exposures[outcome].notna()].copy()
    df[outcome] = df[outcome].astype("float64")  # boolean / BIGINT (nullable) -> float
    counts = {"exposure_rows": len(exposures), "complete_rows": int(complete.sum()), "training_rows": len(df)}
    keys = [c for c in EXPOSURE_KEYS if c in df.columns]
    if keys:
        df = df.sort_values(keys, kind="stable")
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
        ax.plot(
            curve["fraction"],
            curve["qini"],
            label=f"{name} (qini_auc {q:.4f})",
            lw=2.2 if name == result.selected else 1.2,
        )
    for name, score in (baselines or {}).items():
        curve = U.qini_curve(y, t, score)
        ax.plot(
            curve["fraction"],
            curve["qini"],
            ":",
            lw=1.5,
            label=f"baseline: {name} (qini_auc {U.qini_auc(y, t, score):.4f})",
        )
    if curve is not None:
        ax.plot(curve["fraction"], curve["random"], "k--", lw=1, label="random")
    ax.set_xlabel("fraction targeted (by predicted uplift)")
    ax.set_ylabel("incremental outcome per treated player")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _champion_qini(
    client, tracking_uri: str, model_name: str, df: pd.DataFrame, result: U.UpliftResult
) -> registry.Champion | None:
    """The champion with its Qini on the challenger's validation rows (or its logged Qini and a note)."""
    p = result.prepared
    rows = df.loc[p.index[result.valid_index]]

    def on_validation_rows(champ) -> float:
        from ml.uplift_score import load

        score = load(tracking_uri, model_name, version=str(champ.version)).model.predict_uplift(rows)
        return U.qini_auc(p.y[result.valid_index], p.treatment[result.valid_index], score)

    def note(exc: Exception) -> str:
        return f"champion could not score these rows ({type(exc).__name__}: {str(exc)[:200]}); its logged qini"

    return registry.rescore_champion(client, model_name, on_validation_rows, metric="qini_auc", fallback_note=note)


def promotion_decision(qini: float, champ, champ_qini: float | None, champ_note: str = "") -> tuple[bool, str]:
    """Whether the new version becomes champion, and why (see the module docstring)."""
    if not np.isfinite(qini) or qini <= 0:
        return False, f"kept as challenger: qini_auc {qini:.4f} is not better than random targeting"
    if champ is None:
        return True, f"no champion yet; qini_auc {qini:.4f} > 0"
    where = champ_note or "on the same validation rows"
    if champ_qini is None or registry.beats_champion(qini, champ_qini):  # a tie keeps the champion
        shown = "none logged" if champ_qini is None else f"{champ_qini:.4f}"
        return True, f"qini_auc {qini:.4f} > champion v{champ.version} ({shown}, {where})"
    return False, f"kept as challenger: qini_auc {qini:.4f} <= champion v{champ.version} ({champ_qini:.4f}, {where})"


@dataclass
class _UpliftFit:
    """The exposure rows an uplift model was fitted on, and what it logs."""

    df: pd.DataFrame  # complete exposures with an outcome (the rows of result.prepared.index)
    outcome: str
    result: U.UpliftResult
    counts: dict[str, int]
    metrics: dict[str, float] = field(default_factory=dict)  # logged on the run
    params: dict[str, object] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    baselines: dict[str, np.ndarray] = field(default_factory=dict)  # ranking name -> validation scores

    @property
    def selected(self) -> dict[str, float]:
        return self.result.metrics[self.result.selected]

    def validation_outcomes(self) -> tuple[np.ndarray, np.ndarray]:
        p, va = self.result.prepared, self.result.valid_index
        return p.y[va], p.treatment[va]


def _fit(
    exposures: pd.DataFrame, outcome: str, learners, seed: int, valid_fraction: float, lineage: dict | None
) -> _UpliftFit:
    """Select the rows, fit every learner, and the run's metrics, parameters and tags."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
    df, features, counts = exposure_frame(exposures, outcome)
    check_enough(df, valid_fraction)
    result = U.train_uplift(
        df,
        TREATMENT_COL,
        outcome,
        control_value=CONTROL,
        treated_value=TREATED,
        features=features,
        learners=learners,
        seed=seed,
        valid_fraction=valid_fraction,
    )
    fit = _UpliftFit(df, outcome, result, counts)
    for name, m in result.metrics.items():
        fit.metrics.update({f"{name}_{k}": float(v) for k, v in m.items() if np.isfinite(v)})
    fit.metrics.update({k: float(v) for k, v in fit.selected.items() if np.isfinite(v)})
    fit.params = {
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
    fit.tags = _run_tags(fit, lineage)
    return fit


def _run_tags(fit: _UpliftFit, lineage: dict | None) -> dict[str, str]:
    result, df = fit.result, fit.df
    campaigns = sorted(df["campaign_id"].astype(str).unique()) if "campaign_id" in df.columns else []
    tags = {
        "outcome": fit.outcome,
        "selected_learner": result.selected,
        "campaigns": ",".join(campaigns),
        "train_rows": str(result.train_rows),
        "valid_rows": str(result.valid_rows),
        "treated_rows": str(int(result.prepared.treatment.sum())),
        "control_rows": str(int((~result.prepared.treatment).sum())),
        **{k: str(v) for k, v in fit.counts.items()},
        **{str(k): str(v) for k, v in (lineage or {}).items()},
    }
    if result.skipped:
        tags["skipped_learners"] = json.dumps(result.skipped)
    return tags


def _add_churn_baseline(fit: _UpliftFit, tracking_uri: str) -> None:
    """Rank the validation rows by the churn champion's score too (metrics ``baseline_churn_*``)."""
    churn, why = churn_baseline(tracking_uri, fit.df, fit.result)
    if churn is None:
        fit.tags["baseline_churn"] = f"not computed: {why}"[:500]
        return
    fit.baselines["churn score"] = churn
    yv, tv = fit.validation_outcomes()
    fit.metrics.update(
        {f"baseline_churn_{k}": float(v) for k, v in U.uplift_metrics(yv, tv, churn).items() if np.isfinite(v)}
    )


COMPARISON_TABLE = "comparison/learners_vs_baselines.json"


def _latest_send(exposures: pd.DataFrame) -> str:
    """The latest send day of the exposures (``features_as_of``), or ''. A run's name without an as-of date."""
    if "features_as_of" not in exposures.columns or exposures["features_as_of"].isna().all():
        return ""
    return str(pd.Timestamp(exposures["features_as_of"].max()).date())


def comparison_table(fit: _UpliftFit) -> pd.DataFrame:
    """One row per learner (``selected`` marks the model kept) and per baseline ranking of the same
    validation rows (``baseline: churn score``): Qini, AUUC, uplift at 10/20/30 %."""
    result = fit.result
    rows = [{"model": n, "selected": n == result.selected, **m} for n, m in result.metrics.items()]
    if fit.baselines:
        yv, tv = fit.validation_outcomes()
        rows += [{"model": f"baseline: {name}", "selected": False, **U.uplift_metrics(yv, tv, score)}
                 for name, score in fit.baselines.items()]
    return pd.DataFrame(rows)


def _log_run(fit: _UpliftFit) -> None:
    """Parameters, metrics, the learner comparison and the Qini curves in the active run."""
    import mlflow

    result = fit.result
    mlflow.log_params(fit.params)
    mlflow.log_metrics(fit.metrics)
    mlflow.log_text(json.dumps(result.summary(), indent=1, default=str), "uplift_summary.json")
    rows = [{"learner": n, **m} for n, m in result.metrics.items()]
    mlflow.log_text(pd.DataFrame(rows).to_csv(index=False), "learners.csv")
    mlflow.log_table(comparison_table(fit), COMPARISON_TABLE)  # learners and baselines, one table
    title = f"Qini, {fit.outcome} (validation, {result.valid_rows} rows)"
    mlflow.log_figure(qini_figure(result, title, fit.baselines), "qini_curve.png")


def _candidate(fit: _UpliftFit, model_name: str) -> registry.Candidate:
    """The selected model as a pyfunc wrapping its joblib file, a new version of ``model_name``."""
    result, outcome = fit.result, fit.outcome

    def log_model():
        import mlflow

        with tempfile.TemporaryDirectory() as tmp:
            path = U.save_model(result, Path(tmp) / MODEL_ARTIFACT)
            return mlflow.pyfunc.log_model(
                name="model",
                python_model=_pyfunc_class()(),
                artifacts={"model": str(path)},
                pip_requirements=registry.pip_requirements("joblib"),
                metadata={"outcome": outcome, "learner": result.selected, "format": U.MODEL_FORMAT},
            )

    tags = {"outcome": outcome, "learner": result.selected, "qini_auc": f"{fit.selected['qini_auc']:.6f}"}
    return registry.Candidate(model_name, f"Uplift on {outcome} (fct_campaign_exposures)", log_model, tags)


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
    fit = _fit(exposures, outcome, learners, seed, valid_fraction, lineage)
    qini = fit.selected["qini_auc"]

    def decide(champion: registry.Champion | None) -> tuple[bool, str]:
        return promotion_decision(
            qini, champion, champion.metric if champion else None, champion.note if champion else ""
        )

    with registry.quiet():
        client = registry.connect(tracking_uri)
        champion = _champion_qini(client, tracking_uri, model_name, fit.df, fit.result)
        if champion is not None and champion.rescored:
            fit.metrics["champion_qini_auc_same_holdout"] = champion.metric
        _add_churn_baseline(fit, tracking_uri)
        name = registry.run_name(model_name, lineage, _latest_send(exposures))
        with registry.training_run(client, EXPERIMENT, artifact_location, run_name=name, tags=fit.tags) as run_id:
            _log_run(fit)
            done = registry.register_and_promote(
                client, tracking_uri, run_id, _candidate(fit, model_name), champion, decide, by=AUTO_PROMOTER
            )

    result = fit.result
    log.info("trained %s v%s (%s, qini_auc %.4f): %s", model_name, done.version, result.selected, qini, done.decision)
    return {
        "run_id": run_id,
        "model_name": model_name,
        "model_version": done.version,
        "selected": result.selected,
        "promoted": done.promoted,
        "decision": done.decision,
        "metrics": result.metrics,
        "skipped": result.skipped,
        "baseline_churn_qini_auc": fit.metrics.get("baseline_churn_qini_auc"),
        "baselines": fit.baselines,
        "train_rows": result.train_rows,
        "valid_rows": result.valid_rows,
        **fit.counts,
        "result": result,
    }
