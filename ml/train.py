"""Training: one shared path for every model configuration (:data:`ml.models.MODELS`).

``train_model(config, snapshots, labels, ...)``:

1. joins point-in-time snapshots to the config's label, drops rows whose label is NULL
   (label window not complete) and applies the config's population filter;
2. splits by time: the holdout is the latest as-of date with labels *for this model*,
   training uses every strictly earlier one;
3. fits LightGBM on the spec's features (``ml.features.FEATURES`` unless a spec is passed;
   categorical features become pandas Categoricals with categories fixed at training) and,
   on the same split, a logistic regression on RFM features and a recency-only rule;
4. logs one MLflow run: metrics of all three, lift by decile, reliability, feature
   importance, per-player contributions, the drift reference, lineage tags, the model with
   signature + input example;
5. registers a new version (alias ``challenger``) and promotes it to ``champion`` only if it
   passes the sanity bounds and beats the current champion *re-scored on the same holdout*
   by more than the config's margin (a tie keeps the champion). The decision and its reason are
   tagged on the version and run. Steps 4-5 are :func:`ml.registry.register_and_promote`, the
   path uplift models (:mod:`ml.uplift_train`) take too.

Never imports Dagster.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ml import registry
from ml import score as scoring
from ml.features import FEATURE_NAMES, Feature
from ml.metrics import (
    binary_metrics,
    categorical_reference,
    ece_noise_floor,
    importance_figure,
    lift_figure,
    lift_table,
    reference_bins,
    reliability_figure,
    reliability_table,
    score_auc,
    top_fraction_lift,
)
from ml.models import CATEGORICAL, CHURN, LGBM_PARAMS, NUMERIC, FeatureSchema, ModelConfig, SanityBounds, get_config

log = logging.getLogger(__name__)

KEYS: tuple[str, str] = ("player_id", "as_of_date")
RECENCY = "days_since_last_active"
POPULATION_MAX_DAYS_INACTIVE = 30  # churn population (see ml.models.CHURN)
LEAKAGE_AUC = SanityBounds().leakage_auc
MIN_VALID_PER_CLASS = SanityBounds().min_valid_per_class
DEFAULT_PARAMS: dict[str, object] = dict(LGBM_PARAMS)
REPO_ROOT = Path(__file__).resolve().parents[1]
AUTO_PROMOTER = "train_model"
SMALL_FIT_CELLS = 2_000_000  # training rows x features below which LightGBM fits on one thread


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
    config: str = "churn"
    label: str = "churned"
    champion_roc_auc: float | None = None  # the previous champion re-scored on this holdout
    tags: dict[str, str] = field(default_factory=dict)  # lineage / row counts logged on the run

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


def _population_columns(config: ModelConfig, columns) -> list[str]:
    """Snapshot columns the population expression may refer to (by name occurrence)."""
    if not config.population:
        return []
    return [c for c in columns if c in config.population and c not in KEYS]


def labelled_frame(
    config: ModelConfig,
    snapshots: pd.DataFrame,
    labels: pd.DataFrame,
    columns: Sequence[str] = (),
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Snapshots joined to ``config.label``: NULL labels dropped, population applied.

    Returns the frame (``player_id``, ``as_of_date`` as a normalised Timestamp, ``columns``,
    the population's columns, ``y`` 0/1, sorted by keys) and row counts for lineage.
    """
    label = config.label
    cols = list(dict.fromkeys([*KEYS, *columns, *_population_columns(config, snapshots.columns)]))
    _require(snapshots, cols, "snapshots")
    _require(labels, [*KEYS, label], "labels")
    snap = snapshots[cols].copy()
    lab = labels[[*KEYS, label]].copy()
    snap["as_of_date"] = _as_dates(snap["as_of_date"])
    lab["as_of_date"] = _as_dates(lab["as_of_date"])
    for name, df in (("snapshots", snap), ("labels", lab)):
        dups = int(df.duplicated(list(KEYS)).sum())
        if dups:
            raise ValueError(f"{name} has {dups} duplicate (player_id, as_of_date) rows")
    null = lab[label].isna().to_numpy()
    counts: dict[str, object] = {
        "snapshot_rows": len(snap),
        "snapshot_dates": int(snap["as_of_date"].nunique()),
        "snapshot_from": _iso(snap["as_of_date"].min()) if len(snap) else "",
        "snapshot_to": _iso(snap["as_of_date"].max()) if len(snap) else "",
        "label_rows": len(lab),
        "label_null_rows": int(null.sum()),
    }
    lab = lab[~null]
    frame = snap.merge(lab, on=list(KEYS), how="inner", validate="one_to_one")
    counts["labelled_rows"] = len(frame)
    if config.population:
        frame = frame[np.asarray(frame.eval(config.population), dtype=bool)]
    counts["population_rows"] = len(frame)
    frame["y"] = frame.pop(label).astype(bool).astype(int)
    return frame.sort_values(list(KEYS), kind="stable").reset_index(drop=True), counts


def build_training_frame(snapshots: pd.DataFrame, labels: pd.DataFrame, label: str = "churned") -> pd.DataFrame:
    """The churn population joined to ``label`` (kept for callers of the churn-only API)."""
    frame, _ = labelled_frame(CHURN.replace(label=label), snapshots, labels, list(FEATURE_NAMES))
    return frame[[*KEYS, *FEATURE_NAMES, "y"]]


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


def _needed_columns(config: ModelConfig, feats: Sequence[Feature], snapshots: pd.DataFrame) -> list[str]:
    names = [f.name for f in feats]
    extra = [config.recency_feature] if config.recency_feature in snapshots.columns else []
    return list(dict.fromkeys([*names, *extra]))


# ---------------------------------------------------------------------------- baselines


def _signed_log1p(x):
    return np.sign(x) * np.log1p(np.abs(x))


def baseline_features(config: ModelConfig, feats: Sequence[Feature]) -> list[str]:
    """The config's RFM columns that are numeric features of the spec."""
    numeric = {f.name for f in feats if f.kind == NUMERIC}
    return [c for c in config.baseline_features if c in numeric]


def fit_logreg(train: pd.DataFrame, cols: Sequence[str]):
    """Logistic regression on ``cols`` (median-imputed, signed log1p, standardised)."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    pipe = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            ("log", FunctionTransformer(_signed_log1p)),
            ("scale", StandardScaler()),
            ("logreg", LogisticRegression(max_iter=1000)),
        ]
    )
    pipe.fit(train[list(cols)].to_numpy(dtype="float64", na_value=np.nan), train["y"].to_numpy())
    return pipe


def recency_score(config: ModelConfig, frame: pd.DataFrame) -> np.ndarray:
    """The recency-only rule: ``days_since_last_active`` (negated when recency means *less* likely)."""
    r = pd.to_numeric(frame[config.recency_feature], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    r = np.where(np.isnan(r), np.nanmax(r) if np.isfinite(r).any() else 0.0, r)
    return config.recency_direction * r


# ---------------------------------------------------------------------------- fit


@dataclass
class Fitted:
    """A fitted model with its holdout evaluation (everything MLflow logging needs)."""

    config: ModelConfig
    model: object
    schema: FeatureSchema
    params: dict[str, object]
    train: pd.DataFrame
    valid: pd.DataFrame
    p_valid: np.ndarray
    metrics: dict[str, float]
    comparison: pd.DataFrame  # one row per model on the holdout: lightgbm, baseline_logreg, baseline_recency
    importance: pd.DataFrame
    reliability: pd.DataFrame
    reliability_baseline: pd.DataFrame | None
    lift: pd.DataFrame  # long: model, decile, ...
    contributions: pd.DataFrame  # sample of holdout players
    reference: dict
    train_range: tuple[str, str]
    valid_as_of: str
    seconds: dict[str, float]


_Fitted = Fitted  # former private name


def fit_and_evaluate(
    frame: pd.DataFrame,
    config: ModelConfig | dict | None = None,
    min_rows: int | None = None,
    *,
    spec: Sequence[Feature] | None = None,
) -> Fitted:
    """Time split, LightGBM + baselines fitted on the earlier dates, evaluated on the latest one.

    ``frame`` comes from :func:`labelled_frame`. (A ``dict`` as ``config`` is read as LightGBM
    parameters for the churn config, the former signature.)
    """
    if config is None or isinstance(config, dict):
        config = CHURN.replace(params=config or {})
    min_rows = config.sanity.min_train_rows if min_rows is None else min_rows
    feats = config.resolve_features(spec)
    _require(frame, [f.name for f in feats], "training frame")
    train, valid, valid_date = _checked_split(frame, config, min_rows)
    seconds: dict[str, float] = {}
    model, schema, params = _fit_lightgbm(config, feats, train, seconds)
    X_valid = schema.matrix(valid)
    p_valid = np.clip(model.booster_.predict(X_valid), 0.0, 1.0)
    holdout = _evaluate_holdout(config, feats, train, valid, p_valid, seconds)
    importance, contributions = _explain(config, model.booster_, schema, valid, X_valid, p_valid)
    return Fitted(
        config=config,
        model=model,
        schema=schema,
        params=params,
        train=train,
        valid=valid,
        p_valid=p_valid,
        metrics=holdout.metrics,
        comparison=pd.DataFrame(holdout.comparison),
        importance=importance,
        reliability=reliability_table(valid["y"].to_numpy(), p_valid),
        reliability_baseline=holdout.reliability_baseline,
        lift=holdout.lift(),
        contributions=contributions,
        reference=drift_reference(config, schema, importance, valid, p_valid),
        train_range=(_iso(train["as_of_date"].min()), _iso(train["as_of_date"].max())),
        valid_as_of=_iso(valid_date),
        seconds=seconds,
    )


def _checked_split(
    frame: pd.DataFrame, config: ModelConfig, min_rows: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """:func:`time_split`, refusing too few training rows or a single class on either side."""
    train, valid, valid_date = time_split(frame)
    if len(train) < min_rows:
        raise ValueError(
            f"only {len(train)} training rows (population {config.population or 'all rows'}, "
            f"as-of dates before {_iso(valid_date)}); need at least {min_rows}"
        )
    _check_classes(train["y"], "training data")
    _check_classes(valid["y"], f"holdout {_iso(valid_date)}")
    return train, valid, valid_date


def _fit_lightgbm(
    config: ModelConfig, feats: Sequence[Feature], train: pd.DataFrame, seconds: dict[str, float]
) -> tuple[object, FeatureSchema, dict[str, object]]:
    """LightGBM on the training rows (categories fixed on them): (model, schema, parameters used)."""
    from lightgbm import LGBMClassifier

    schema = FeatureSchema.fit(feats, train)
    params = dict(config.params)
    if len(train) * len(feats) < SMALL_FIT_CELLS:
        # OpenMP overhead dominates small fits, and on a busy machine two spinning threads can be
        # 10-30x slower than one. deterministic=True: the model is the same either way.
        params["n_jobs"] = 1
    t0 = time.perf_counter()
    model = LGBMClassifier(**params)
    model.fit(schema.encode(train), train["y"])
    seconds["fit_seconds"] = time.perf_counter() - t0
    return model, schema, params


@dataclass
class _Holdout:
    """The model and its baselines on the holdout, as :func:`_evaluate_holdout` builds them."""

    metrics: dict[str, float]
    comparison: list[dict]  # one row per model: lightgbm, baseline_logreg, baseline_recency
    lifts: dict[str, pd.DataFrame]  # model -> lift by decile
    reliability_baseline: pd.DataFrame | None = None

    def lift(self) -> pd.DataFrame:
        """The lift tables in one long frame (``model`` first)."""
        lift = pd.concat([t.assign(model=name) for name, t in self.lifts.items()], ignore_index=True)
        return lift[["model", *[c for c in lift.columns if c != "model"]]]


def _evaluate_holdout(
    config: ModelConfig,
    feats: Sequence[Feature],
    train: pd.DataFrame,
    valid: pd.DataFrame,
    p_valid: np.ndarray,
    seconds: dict[str, float],
) -> _Holdout:
    """Holdout metrics of the model, then of the logistic-regression and recency baselines."""
    y_valid = valid["y"].to_numpy()
    metrics = binary_metrics(y_valid, p_valid)
    holdout = _Holdout(metrics, [{"model": "lightgbm", **metrics}], {"lightgbm": lift_table(y_valid, p_valid)})
    metrics["ece_noise"] = ece_noise_floor(p_valid)
    rfm = baseline_features(config, feats)
    if rfm:
        _add_logreg_baseline(holdout, train, valid, rfm, seconds)
    if config.recency_feature in valid.columns:
        _add_recency_baseline(holdout, config, valid)
    metrics["train_positive_rate"] = float(train["y"].mean())
    metrics.update(seconds)
    return holdout


def _add_logreg_baseline(
    holdout: _Holdout, train: pd.DataFrame, valid: pd.DataFrame, rfm: Sequence[str], seconds: dict[str, float]
) -> None:
    y_valid = valid["y"].to_numpy()
    t0 = time.perf_counter()
    logreg = fit_logreg(train, rfm)
    seconds["baseline_logreg_fit_seconds"] = time.perf_counter() - t0
    p_lr = logreg.predict_proba(valid[list(rfm)].to_numpy(dtype="float64", na_value=np.nan))[:, 1]
    m_lr = binary_metrics(y_valid, p_lr)
    holdout.metrics.update({f"baseline_logreg_{k}": v for k, v in m_lr.items() if k != "base_rate"})
    holdout.comparison.append({"model": "baseline_logreg", "features": ",".join(rfm), **m_lr})
    holdout.lifts["baseline_logreg"] = lift_table(y_valid, p_lr)
    holdout.reliability_baseline = reliability_table(y_valid, p_lr)


def _add_recency_baseline(holdout: _Holdout, config: ModelConfig, valid: pd.DataFrame) -> None:
    y_valid = valid["y"].to_numpy()
    s = recency_score(config, valid)
    m_rec = {
        "roc_auc": score_auc(y_valid, s),
        "pr_auc": float(_average_precision(y_valid, s)),
        "lift_top_decile": top_fraction_lift(y_valid, s, 0.1),
    }
    holdout.metrics.update({f"baseline_recency_{k}": v for k, v in m_rec.items()})
    holdout.metrics["baseline_recency_auc"] = m_rec["roc_auc"]  # former name
    holdout.comparison.append({"model": "baseline_recency", "features": config.recency_feature, **m_rec})
    holdout.lifts["baseline_recency"] = lift_table(y_valid, s)


def _explain(
    config: ModelConfig, booster, schema: FeatureSchema, valid: pd.DataFrame, X_valid: np.ndarray, p_valid: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(feature importance, per-player contributions of a holdout sample).

    Contributions are TreeSHAP values in log-odds (last column = bias); they cost ~1 ms a row,
    hence a sample of ``config.contribution_sample`` players.
    """
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(valid), size=min(config.contribution_sample, len(valid)), replace=False))
    contrib = booster.predict(X_valid[idx], pred_contrib=True)
    importance = pd.DataFrame(
        {
            "feature": booster.feature_name(),
            "kind": list(schema.kinds),
            "gain": booster.feature_importance(importance_type="gain"),
            "split": booster.feature_importance(importance_type="split"),
            "mean_abs_contribution": np.abs(contrib[:, :-1]).mean(axis=0),
            "mean_contribution": contrib[:, :-1].mean(axis=0),
        }
    ).sort_values(["gain", "feature"], ascending=[False, True], ignore_index=True)
    importance["gain_share"] = importance["gain"] / max(float(importance["gain"].sum()), 1e-12)
    players = pd.DataFrame(
        {
            "player_id": valid["player_id"].to_numpy()[idx],
            "as_of_date": valid["as_of_date"].dt.strftime("%Y-%m-%d").to_numpy()[idx],
            "y": valid["y"].to_numpy()[idx],
            "score": p_valid[idx],
        }
    )
    contributions = pd.concat([players, pd.DataFrame(contrib, columns=[*schema.names, "bias"])], axis=1)
    return importance, contributions


def _average_precision(y, s) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s))


def drift_reference(
    config: ModelConfig, schema: FeatureSchema, importance: pd.DataFrame, valid: pd.DataFrame, p_valid: np.ndarray
) -> dict:
    """What scoring compares against: holdout score deciles and, for the top features by gain,
    holdout quantile bins (numeric) or category shares (categorical)."""
    kinds = dict(zip(schema.names, schema.kinds, strict=True))
    top = importance.loc[importance["gain"] > 0, "feature"].head(config.drift_top_features).tolist()
    feats: dict[str, dict] = {}
    for name in top:
        if kinds[name] == CATEGORICAL:
            feats[name] = categorical_reference(valid[name].astype(object).where(valid[name].notna(), None))
        else:
            feats[name] = reference_bins(valid[name].to_numpy(dtype="float64", na_value=np.nan))
    return {
        "model": config.name,
        "label": config.label,
        "population": config.population,
        "as_of": _iso(valid["as_of_date"].iloc[0]),
        "rows": len(valid),
        "score": reference_bins(p_valid),
        "top_features": top,
        "features": feats,
    }


# ---------------------------------------------------------------------------- promotion


def decide(
    metrics: dict[str, float],
    *,
    valid_rows: int,
    valid_positives: int,
    sanity: SanityBounds,
    margin: float,
    champion_version: str | None = None,
    champion_auc: float | None = None,
    champion_note: str = "",
    holdout: str = "",
    auto: bool = True,
) -> tuple[bool, str]:
    """Promote or not, with the reason. Sanity bounds first, then the champion comparison
    (``champion_auc``: the champion re-scored on the same holdout)."""
    auc = metrics["roc_auc"]
    ece = metrics.get("ece")
    noise = metrics.get("ece_noise", 0.0)
    failed = []
    if valid_rows < sanity.min_valid_rows:
        failed.append(f"holdout has {valid_rows} rows < {sanity.min_valid_rows}")
    if min(valid_positives, valid_rows - valid_positives) < sanity.min_valid_per_class:
        failed.append(f"holdout has fewer than {sanity.min_valid_per_class} rows of a class")
    if auc >= sanity.leakage_auc:
        failed.append(f"holdout roc_auc {auc:.4f} >= {sanity.leakage_auc} (suspiciously high: label leakage?)")
    if auc <= sanity.min_auc:
        failed.append(f"holdout roc_auc {auc:.4f} <= {sanity.min_auc} (no better than random)")
    if ece is not None and ece - noise > sanity.max_ece:
        failed.append(
            f"holdout ece {ece:.4f} exceeds its sampling noise {noise:.4f} by more than {sanity.max_ece} "
            "(poorly calibrated)"
        )
    if failed:
        promoted, reason = False, "kept as challenger: sanity check failed: " + "; ".join(failed)
    elif champion_version is None:
        promoted, reason = True, f"promoted to champion: no champion yet (holdout roc_auc {auc:.4f})"
    elif champion_auc is None:
        promoted, reason = True, f"promoted to champion: champion v{champion_version} has no roc_auc to compare"
    else:
        where = f" on the same holdout ({holdout}, {valid_rows} rows)" if holdout else " on the same holdout"
        cmp = f"champion v{champion_version} {champion_auc:.4f} + margin {margin:.4f}{where}"
        # strictly better: a tie (a rerun on the same data) keeps the champion, no new version each run
        if registry.beats_champion(auc, champion_auc, margin):
            promoted, reason = True, f"promoted to champion: holdout roc_auc {auc:.4f} > {cmp}"
        else:
            promoted, reason = False, f"kept as challenger: holdout roc_auc {auc:.4f} <= {cmp}"
    if champion_note:
        reason += f" [{champion_note}]"
    if promoted and not auto:
        return False, f"kept as challenger: automatic promotion off (would be {reason.removeprefix('promoted to ')})"
    return promoted, reason


def _champion_on_holdout(
    client, tracking_uri: str, model_name: str, valid: pd.DataFrame, snapshots: pd.DataFrame
) -> registry.Champion | None:
    """The champion with its roc_auc on ``valid``. Falls back to the champion's logged roc_auc
    (with a note) when it cannot score these rows (e.g. a column it needs is gone)."""

    def on_holdout(champ) -> float:
        loaded = scoring.load(tracking_uri, model_name, str(champ.version))
        rows = valid
        missing = [c for c in loaded.schema.names if c not in valid.columns]
        if missing:
            rows = _holdout_rows(snapshots, valid, missing)
        loaded.check_columns(rows)
        return score_auc(valid["y"], loaded.predict(rows))

    def note(exc: Exception) -> str:
        text = f"champion could not be scored on this holdout ({type(exc).__name__}: {exc})"
        return text[:400] + "; compared with its logged roc_auc"

    return registry.rescore_champion(client, model_name, on_holdout, metric="roc_auc", fallback_note=note)


def _holdout_rows(snapshots: pd.DataFrame, valid: pd.DataFrame, extra: Sequence[str]) -> pd.DataFrame:
    """``valid`` plus snapshot columns ``extra`` for the same (player, date) rows."""
    _require(snapshots, extra, "snapshots")
    snap = snapshots[[*KEYS, *extra]].copy()
    snap["as_of_date"] = _as_dates(snap["as_of_date"])
    snap = snap[snap["as_of_date"] == valid["as_of_date"].iloc[0]]
    out = valid.merge(snap, on=list(KEYS), how="left", validate="one_to_one")
    out.index = valid.index
    return out


# ---------------------------------------------------------------------------- lineage


def git_revision(root: Path = REPO_ROOT) -> dict[str, str]:
    """``git_revision`` (HEAD) and ``git_dirty`` of the checkout holding this code; "unknown"
    when it is not a git checkout or git is missing."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    rev = git("rev-parse", "HEAD")
    if not rev:
        return {"git_revision": "unknown", "git_dirty": "unknown"}
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git_revision": rev, "git_dirty": "unknown" if dirty is None else str(bool(dirty)).lower()}


# ---------------------------------------------------------------------------- MLflow


COMPARISON_TABLE = "comparison/model_vs_baselines.json"
COMPARISON_FIGURE = "comparison/model_vs_baselines.png"
COMPARISON_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "ece")


def comparison_table(comparison: pd.DataFrame) -> pd.DataFrame:
    """One row per model on the holdout (``lightgbm`` first, then the baselines), the metrics they share."""
    cols = ["model", *[c for c in COMPARISON_METRICS if c in comparison.columns]]
    return comparison[cols].reset_index(drop=True)


def comparison_figure(comparison: pd.DataFrame, title: str):
    """Grouped bars: one group per metric, one bar per model (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = comparison_table(comparison)
    metrics = [c for c in table.columns if c != "model"]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(table), 1)
    for i, row in table.iterrows():
        xs = [j + i * width for j in range(len(metrics))]
        ax.bar(xs, [float(row[m]) for m in metrics], width, label=str(row["model"]))
    ax.set_xticks([j + width * (len(table) - 1) / 2 for j in range(len(metrics))], metrics)
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _log_artifacts(fit: Fitted) -> None:
    import mlflow

    title = f"{fit.config.name}, holdout {fit.valid_as_of}"
    mlflow.log_text(json.dumps(list(fit.schema.names), indent=1), "features.json")
    mlflow.log_text(json.dumps(fit.schema.to_dict(), indent=1), scoring.SCHEMA_ARTIFACT)
    mlflow.log_text(
        json.dumps({**fit.config.summary(), "params": fit.params}, indent=1, default=str), "model_config.json"
    )
    mlflow.log_text(fit.comparison.to_csv(index=False), "baselines.csv")
    # the model against its baselines in one table and one chart (the per-baseline metrics stay)
    mlflow.log_table(comparison_table(fit.comparison), COMPARISON_TABLE)
    mlflow.log_figure(comparison_figure(fit.comparison, f"Model vs baselines, {title}"), COMPARISON_FIGURE)
    mlflow.log_text(fit.importance.to_csv(index=False), "feature_importance.csv")
    mlflow.log_figure(
        importance_figure(fit.importance, title=f"Feature importance (gain), {title}"), "feature_importance.png"
    )
    mlflow.log_text(fit.reliability.to_csv(index=False), "reliability.csv")
    others = {"baseline_logreg": fit.reliability_baseline} if fit.reliability_baseline is not None else None
    reliability = reliability_figure(fit.reliability, f"Reliability, {title}", others, label="lightgbm")
    mlflow.log_figure(reliability, "reliability.png")
    mlflow.log_text(fit.lift.to_csv(index=False), "lift_by_decile.csv")
    tables = {name: t for name, t in fit.lift.groupby("model", sort=False)}
    mlflow.log_figure(lift_figure(tables, f"Lift by decile, {title}"), "lift_by_decile.png")
    mlflow.log_text(fit.contributions.to_csv(index=False), "contributions/holdout_sample.csv")
    mlflow.log_text(
        fit.importance[["feature", "mean_abs_contribution", "mean_contribution"]]
        .sort_values("mean_abs_contribution", ascending=False)
        .to_csv(index=False),
        "contributions/mean_abs.csv",
    )
    mlflow.log_text(json.dumps(fit.reference, indent=1), scoring.REFERENCE_ARTIFACT)
    mlflow.log_text(pd.DataFrame({"score": fit.p_valid}).to_csv(index=False), scoring.LEGACY_SCORES_ARTIFACT)


def _run_tags(fit: Fitted, counts: dict[str, object], lineage: dict[str, str] | None) -> dict[str, str]:
    """Tags of the training run: the config, row counts, the split, the code revision, ``lineage``."""
    config, train, valid = fit.config, fit.train, fit.valid
    return {
        "model_config": config.name,
        "model_name": config.registered_name,
        "label": config.label,
        "population": config.population or "all snapshot rows",
        **{k: str(v) for k, v in counts.items()},
        "train_from": fit.train_range[0],
        "train_to": fit.train_range[1],
        "train_dates": str(train["as_of_date"].nunique()),
        "valid_as_of": fit.valid_as_of,
        "train_rows": str(len(train)),
        "valid_rows": str(len(valid)),
        "train_positives": str(int(train["y"].sum())),
        "valid_positives": str(int(valid["y"].sum())),
        "features": str(len(fit.schema.names)),
        "categorical_features": ",".join(fit.schema.categorical),
        **git_revision(),
        **{str(k): str(v) for k, v in (lineage or {}).items()},
    }


def _log_run(fit: Fitted) -> None:
    """Parameters, metrics and artifacts of ``fit`` in the active run."""
    import mlflow

    config = fit.config
    mlflow.log_params(
        {
            **fit.params,
            **config.summary(),
            "n_features": len(fit.schema.names),
            "min_rows": config.sanity.min_train_rows,
        }
    )
    mlflow.log_metrics(fit.metrics)
    _log_artifacts(fit)


def _candidate(fit: Fitted) -> registry.Candidate:
    """The LightGBM model of ``fit`` as a new version of the config's registered model."""
    config = fit.config

    def log_model():
        import mlflow
        from mlflow.models import infer_signature

        # Raw model input: numeric features as doubles (they may be missing), categoricals as strings.
        example = fit.valid[list(fit.schema.names)].head(5).copy()
        for c, kind in zip(fit.schema.names, fit.schema.kinds, strict=True):
            if kind == CATEGORICAL:
                example[c] = example[c].astype(object).where(example[c].notna(), None)
            else:
                example[c] = example[c].to_numpy(dtype="float64", na_value=np.nan)
        return mlflow.lightgbm.log_model(
            fit.model,
            name="model",
            signature=infer_signature(example, fit.p_valid[:5]),
            input_example=example,
            pip_requirements=registry.pip_requirements(),
            metadata={"model_config": config.name, "label": config.label, "feature_schema": fit.schema.to_dict()},
            # the native model takes encoded categoricals; the pyfunc check on raw strings cannot pass
            validate_serving_input=False,
        )

    tags = {"label": config.label, "valid_as_of": fit.valid_as_of, "roc_auc": f"{fit.metrics['roc_auc']:.4f}"}
    return registry.Candidate(config.registered_name, config.description, log_model, tags)


def _decider(fit: Fitted, *, auto: bool):
    """:func:`decide` for ``fit`` against the champion :func:`registry.register_and_promote` passes."""

    def decide_on(champion: registry.Champion | None) -> tuple[bool, str]:
        return decide(
            fit.metrics,
            valid_rows=len(fit.valid),
            valid_positives=int(fit.valid["y"].sum()),
            sanity=fit.config.sanity,
            margin=fit.config.promotion_margin,
            champion_version=champion.version if champion else None,
            champion_auc=champion.metric if champion else None,
            champion_note=champion.note if champion else "",
            holdout=fit.valid_as_of,
            auto=auto,
        )

    return decide_on


def train_model(
    config: ModelConfig | str,
    snapshots: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    tracking_uri: str,
    artifact_location: str,
    lineage: dict[str, str] | None = None,
    promote: bool = True,
    spec: Sequence[Feature] | None = None,
) -> TrainResult:
    """Train, evaluate, log, register ``config``'s model and decide on promotion.

    ``config``: a :class:`ModelConfig` or a name in :data:`ml.models.MODELS`. ``spec``: the
    feature spec (default ``ml.features.FEATURES`` at call time). ``lineage``: tags the caller
    knows (dbt manifest hash, trigger, ...), logged on the run next to the snapshot range, row
    counts and the git revision. ``promote=False`` registers the version as challenger only.

    Raises ``ValueError`` on unusable data (missing columns, duplicates, fewer than 2 labelled
    dates, too few training rows, a single class) before touching MLflow.
    """
    cfg = get_config(config)
    if cfg is None:
        raise ValueError(f"unknown model config {config!r}")
    feats = cfg.resolve_features(spec)
    frame, counts = labelled_frame(cfg, snapshots, labels, _needed_columns(cfg, feats, snapshots))
    fit = fit_and_evaluate(frame, cfg, spec=feats)
    tags = _run_tags(fit, counts, lineage)
    with registry.quiet():
        client = registry.connect(tracking_uri)
        champion = _champion_on_holdout(client, tracking_uri, cfg.registered_name, fit.valid, snapshots)
        if champion is not None and champion.metric is not None:
            fit.metrics["champion_roc_auc"] = champion.metric
        # the run's as-of date (not the holdout's validation date): one name per daily partition
        run_name = registry.run_name(cfg.name, lineage, str(counts.get("snapshot_to") or fit.valid_as_of))
        with registry.training_run(
            client, cfg.experiment_name, artifact_location, run_name=run_name, tags=tags
        ) as run_id:
            _log_run(fit)
            done = registry.register_and_promote(
                client, tracking_uri, run_id, _candidate(fit), champion, _decider(fit, auto=promote), by=AUTO_PROMOTER
            )
    _log_trained(fit, done)
    return _train_result(fit, done, champion, tags)


def _log_trained(fit: Fitted, done: registry.Promotion) -> None:
    m = fit.metrics
    log.info(
        "trained %s v%s (holdout %s roc_auc %.4f, logreg %.4f, recency %.4f): %s",
        fit.config.registered_name,
        done.version,
        fit.valid_as_of,
        m["roc_auc"],
        m.get("baseline_logreg_roc_auc", float("nan")),
        m.get("baseline_recency_roc_auc", float("nan")),
        done.decision,
    )


def _train_result(
    fit: Fitted, done: registry.Promotion, champion: registry.Champion | None, tags: dict[str, str]
) -> TrainResult:
    return TrainResult(
        run_id=done.run_id,
        model_name=fit.config.registered_name,
        model_version=done.version,
        metrics=fit.metrics,
        promoted=done.promoted,
        decision=done.decision,
        train_rows=len(fit.train),
        valid_rows=len(fit.valid),
        train_range=fit.train_range,
        valid_as_of=fit.valid_as_of,
        champion_before=champion.version if champion else None,
        config=fit.config.name,
        label=fit.config.label,
        champion_roc_auc=champion.metric if champion else None,
        tags=tags,
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
    """The churn model through :func:`train_model` (``tags`` are passed as ``lineage``)."""
    config = CHURN.replace(
        registered_name=model_name,
        experiment=experiment,
        label=label,
        params=params or {},
        promotion_margin=promote_margin,
        sanity=dataclasses.replace(CHURN.sanity, min_train_rows=min_rows, min_valid_rows=max(20, min_rows // 4)),
    )
    return train_model(
        config, snapshots, labels, tracking_uri=tracking_uri, artifact_location=artifact_location, lineage=tags
    )


# ---------------------------------------------------------------------------- evaluate


def evaluate(
    config: ModelConfig | str,
    snapshots: pd.DataFrame,
    labels: pd.DataFrame,
    tracking_uri: str,
    alias: str = registry.CHAMPION,
    *,
    model_name: str | None = None,
) -> dict:
    """Score the latest labelled holdout of ``config`` with ``<registered name>@alias``.

    Returns ``config``, ``model_name``, ``alias``, ``version``, ``run_id``, ``holdout_as_of``,
    ``rows``, ``positives``, the holdout metrics (``roc_auc``, ``pr_auc``, ``log_loss``,
    ``brier``, ``base_rate``, ``ece``, ``lift_top_decile``), ``baseline_recency_roc_auc`` and,
    from training, ``trained_valid_as_of`` / ``trained_roc_auc``. Raises
    :class:`ml.registry.NoModelError` when nothing is registered under the alias.
    """
    cfg = get_config(config)
    if cfg is None:
        raise ValueError(f"unknown model config {config!r}")
    name = model_name or cfg.registered_name
    loaded = scoring.resolve(tracking_uri, name, alias)
    cols = list(loaded.schema.names)
    if cfg.recency_feature in snapshots.columns:
        cols.append(cfg.recency_feature)
    frame, _ = labelled_frame(cfg, snapshots, labels, list(dict.fromkeys(cols)))
    if frame.empty:
        raise ValueError(f"no labelled rows for {cfg.label} in the population")
    as_of = frame["as_of_date"].max()
    valid = frame[frame["as_of_date"] == as_of]
    _check_classes(valid["y"], f"holdout {_iso(as_of)}")
    p = loaded.predict(valid)
    out: dict = {
        "config": cfg.name,
        "model_name": name,
        "alias": alias,
        "version": loaded.version,
        "run_id": loaded.run_id,
        "holdout_as_of": _iso(as_of),
        "rows": len(valid),
        "positives": int(valid["y"].sum()),
        **binary_metrics(valid["y"], p),
    }
    if cfg.recency_feature in valid.columns:
        out["baseline_recency_roc_auc"] = score_auc(valid["y"], recency_score(cfg, valid))
    if loaded.run_id:
        with registry.quiet():
            run = registry.get_client(tracking_uri).get_run(loaded.run_id)
        out["trained_valid_as_of"] = run.data.tags.get("valid_as_of")
        out["trained_roc_auc"] = run.data.metrics.get("roc_auc")
    return out
