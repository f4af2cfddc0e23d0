"""Model configurations: a model is data (label, population, parameters, gates), not code.

Every model goes through the one shared path :func:`ml.train.train_model`; adding a model
means adding a :class:`ModelConfig` to :data:`MODELS`.

Also here: :class:`FeatureSchema`, the input contract of one *trained* model (its feature
columns, their kinds, and the categories of categorical columns fixed at training). It is
stored with every run (``feature_schema.json``) and used both to fit and to score, so a
category unseen at training becomes missing (NaN) at scoring instead of shifting codes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml import features as feature_spec
from ml.metrics import category_codes

# LightGBM's OpenMP threads spin while waiting for each other. When another process holds a
# core (2-core machine, a concurrent job), the spinning thread starves its partner: a 99k-row
# fit took 24 s on two threads against 3-7 s on one. Passive waiting removes that cliff.
# Read by libgomp when it loads, so this must run before lightgbm is imported; ml.train and
# ml.score import this module first. An explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

NUMERIC = "numeric"
CATEGORICAL = "categorical"
MAX_CATEGORIES = 200  # most frequent training values kept per categorical feature; the rest -> NaN

LGBM_PARAMS: dict[str, object] = {
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

# Recency / frequency / monetary columns of the logistic-regression baseline (those in the spec are used).
RFM_FEATURES: tuple[str, ...] = (
    "days_since_last_active",
    "active_days_30d",
    "active_days_90d",
    "stake_eur_30d",
    "deposit_eur_90d",
)


@dataclass(frozen=True)
class SanityBounds:
    """Gates a trained model must pass before it may become champion."""

    min_train_rows: int = 200  # fewer training rows: training refuses (ValueError, nothing logged)
    min_valid_rows: int = 50  # fewer holdout rows: never promoted automatically
    min_valid_per_class: int = 5  # fewer holdout positives (or negatives): never promoted
    max_ece: float = 0.10  # holdout ECE above its sampling noise (metric ece_noise) by more: never promoted
    leakage_auc: float = 0.995  # holdout roc_auc at or above this signals label leakage: never promoted
    min_auc: float = 0.5  # holdout roc_auc at or below this is no better than random: never promoted


@dataclass(frozen=True)
class ModelConfig:
    """Everything that distinguishes one model from another.

    ``population`` is a pandas ``DataFrame.query`` expression over snapshot columns (``None``:
    every snapshot row). ``features`` optionally restricts the feature spec to a subset by
    name (``None``: the whole spec). ``recency_direction`` is +1 when a longer time since the
    last activity means "more likely positive" (churn) and -1 when it means less likely.
    """

    name: str
    registered_name: str
    label: str
    description: str
    population: str | None = None
    params: Mapping[str, object] = field(default_factory=lambda: dict(LGBM_PARAMS))
    promotion_margin: float = 0.0
    sanity: SanityBounds = field(default_factory=SanityBounds)
    experiment: str = ""  # MLflow experiment; "" = name
    features: tuple[str, ...] | None = None
    baseline_features: tuple[str, ...] = RFM_FEATURES
    recency_feature: str = "days_since_last_active"
    recency_direction: int = 1
    drift_top_features: int = 10
    contribution_sample: int = 500  # holdout players whose per-feature contributions are logged (and averaged)
    # beyond this many snapshot rows, train on a fixed share of the players (crm.warehouse.read_training_data):
    # LightGBM's AUC flattens long before (bench.ml), while reading and fitting grow with every row
    max_training_rows: int | None = 1_500_000

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name

    def replace(self, **changes) -> ModelConfig:
        """A copy with ``changes``; ``params`` is merged into the current parameters."""
        if "params" in changes:
            changes["params"] = {**self.params, **(changes["params"] or {})}
        return dataclasses.replace(self, **changes)

    def resolve_features(self, spec: Sequence[feature_spec.Feature] | None = None) -> tuple[feature_spec.Feature, ...]:
        """The spec features this model uses (``spec`` defaults to ``ml.features.FEATURES`` now)."""
        spec = tuple(feature_spec.FEATURES if spec is None else spec)
        names = [f.name for f in spec]
        if len(set(names)) != len(names):
            raise ValueError(f"feature spec has duplicate names: {sorted({n for n in names if names.count(n) > 1})}")
        for f in spec:
            if f.kind not in (NUMERIC, CATEGORICAL):
                raise ValueError(f"feature {f.name}: unknown kind {f.kind!r} (numeric | categorical)")
        if self.features is None:
            return spec
        unknown = [n for n in self.features if n not in names]
        if unknown:
            raise ValueError(f"model {self.name} selects features not in the spec: {unknown}")
        return tuple(f for f in spec if f.name in set(self.features))

    def summary(self) -> dict[str, object]:
        """Flat, loggable description (MLflow params / `crm ml list`)."""
        return {
            "config": self.name,
            "registered_name": self.registered_name,
            "label": self.label,
            "population": self.population or "all snapshot rows",
            "promotion_margin": self.promotion_margin,
            **{f"sanity_{k}": v for k, v in dataclasses.asdict(self.sanity).items()},
        }


CHURN = ModelConfig(
    name="churn",
    registered_name="churn_lgbm",
    label="churned",
    description="Churn propensity of recently active players (LightGBM); champion/challenger by aliases.",
    population="days_since_last_active <= 30",
    recency_direction=1,
)

DEPOSIT_INTENT = ModelConfig(
    name="deposit_intent",
    registered_name="deposit_intent_lgbm",
    label="deposited_7d",
    description="Probability of a captured deposit in the next 7 days (LightGBM); champion/challenger by aliases.",
    population=None,
    recency_direction=-1,
)

MODELS: dict[str, ModelConfig] = {c.name: c for c in (CHURN, DEPOSIT_INTENT)}

# The score-model vocabulary (crm.contract re-exports it; see its docstring for what derives from it).
# Uplift models trained from the campaign exposures (ml.uplift_train), registered under these names:
# name -> outcome. uplift_ngr predicts EUR cents of 14-day NGR, uplift_deposit a probability difference.
UPLIFT_DEPOSIT_MODEL = "uplift_deposit"
UPLIFT_NGR_MODEL = "uplift_ngr"
UPLIFT_MODELS: dict[str, str] = {UPLIFT_DEPOSIT_MODEL: "deposited_7d", UPLIFT_NGR_MODEL: "ngr_eur_14d"}
# The uplift score campaigns target by (``target: by: uplift``): the gross predicted value of an
# offer, EUR cents (ml.policy.deposit_value_cents: the uplift_deposit champion's predicted deposit
# uplift x the player's expected theoretical win), derived at scoring; campaigns net it of their
# offer's cost. May be negative, not a probability. uplift_ngr (realized NGR, which carries the
# players' luck) is trained and scored as a challenger for comparison (bench.policy).
UPLIFT_VALUE_MODEL = "uplift_value"
UPLIFT_VALUE_SOURCE = UPLIFT_DEPOSIT_MODEL  # the registered model the value is derived from
UPLIFT_SCORE_MODEL = UPLIFT_VALUE_MODEL
# Models whose scores campaigns can use, in list-column order (player_scores.model values):
# crm.warehouse.read_audience pivots each to <model>_score / <model>_model_version.
SCORE_MODELS: tuple[str, ...] = (*MODELS, UPLIFT_SCORE_MODEL)
# Probability scores a segment may bound (``segment.scores``): the configured models' <name>_score.
PROBABILITY_SCORE_FIELDS: tuple[str, ...] = tuple(f"{m}_score" for m in MODELS)
# The name a model is registered under in MLflow, per model (uplift models: their own name).
REGISTERED_NAMES: dict[str, str] = {**{c.name: c.registered_name for c in MODELS.values()},
                                    **{m: m for m in UPLIFT_MODELS}, UPLIFT_VALUE_MODEL: UPLIFT_VALUE_SOURCE}


def get_config(name: str | ModelConfig) -> ModelConfig | None:
    """A config by config name (``churn``) or registered model name (``churn_lgbm``); None if unknown."""
    if isinstance(name, ModelConfig):
        return name
    if name in MODELS:
        return MODELS[name]
    return next((c for c in MODELS.values() if c.registered_name == name), None)


# ---------------------------------------------------------------------------- schema


def _as_strings(s: pd.Series) -> pd.Series:
    """Values of a categorical feature as strings, missing stays missing."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    return s.astype("string")


@dataclass(frozen=True)
class FeatureSchema:
    """The input of one trained model: columns in order, kinds, categories fixed at training."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def fit(cls, spec: Sequence[feature_spec.Feature], frame: pd.DataFrame) -> FeatureSchema:
        """Schema of ``spec`` with the categories seen in ``frame`` (the training rows).

        Categories are the :data:`MAX_CATEGORIES` most frequent values (ties by name), sorted.
        """
        cats: dict[str, tuple[str, ...]] = {}
        for f in spec:
            if f.kind == CATEGORICAL:
                counts = _as_strings(frame[f.name]).dropna().value_counts()
                counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
                cats[f.name] = tuple(sorted(str(v) for v in counts.index[:MAX_CATEGORIES]))
        return cls(tuple(f.name for f in spec), tuple(f.kind for f in spec), cats)

    @classmethod
    def numeric(cls, names: Sequence[str]) -> FeatureSchema:
        """All-numeric schema (models trained before categorical support)."""
        return cls(tuple(names), tuple(NUMERIC for _ in names), {})

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(n for n, k in zip(self.names, self.kinds, strict=True) if k == CATEGORICAL)

    @property
    def numeric_names(self) -> tuple[str, ...]:
        return tuple(n for n, k in zip(self.names, self.kinds, strict=True) if k == NUMERIC)

    def missing(self, df: pd.DataFrame) -> list[str]:
        return [n for n in self.names if n not in df.columns]

    def _codes(self, df: pd.DataFrame, name: str) -> pd.Categorical:
        return pd.Categorical(_as_strings(df[name]), categories=list(self.categories.get(name, ())))

    def _category_codes(self, s: pd.Series, name: str) -> np.ndarray:
        """The codes of :meth:`_codes` (-1: unknown or missing) without building a ``pd.Categorical``
        (:func:`ml.metrics.category_codes`; scoring pays it on every call)."""
        return category_codes(s if isinstance(s.dtype, pd.StringDtype) else _as_strings(s),
                              self.categories.get(name, ()))

    def encode(self, df: pd.DataFrame) -> pd.DataFrame:
        """Model input as a DataFrame: numeric -> float64, categorical -> pandas Categorical with
        the training categories (unknown or missing -> NaN). This is what LightGBM is fitted on."""
        cols: dict[str, object] = {}
        for name, kind in zip(self.names, self.kinds, strict=True):
            if kind == CATEGORICAL:
                cols[name] = self._codes(df, name)
            else:
                cols[name] = df[name].to_numpy(dtype="float64", na_value=np.nan)
        return pd.DataFrame(cols, index=df.index)

    def matrix(self, df: pd.DataFrame, out: np.ndarray | None = None) -> np.ndarray:
        """Model input as a float64 matrix (categorical columns as their category codes, NaN for
        unknown / missing): exactly what LightGBM derives from :meth:`encode`, without pandas.

        The matrix is column-major (Fortran order), which ``Booster.predict`` reads without a copy:
        each feature is then one contiguous write from its pandas column, where a row-major matrix
        is a transposition of the frame (three times slower at 1 M rows). ``out``: a Fortran-ordered
        float64 array of shape (rows, features) to fill instead of a new one."""
        shape = (len(df), len(self.names))
        if out is None:
            out = np.empty(shape[::-1], dtype="float64").T
        elif out.shape != shape or out.dtype != np.float64 or not out.flags["F_CONTIGUOUS"]:
            raise ValueError(f"out must be a Fortran-ordered float64 array of shape {shape}")
        rows = out.T  # one contiguous row per feature
        for i, (name, kind) in enumerate(zip(self.names, self.kinds, strict=True)):
            s = df[name]
            if kind == CATEGORICAL:
                codes = self._category_codes(s, name)
                rows[i] = codes
                rows[i][codes < 0] = np.nan
            elif isinstance(s.dtype, np.dtype) and s.dtype.kind in "iufb":  # no missing value to map
                rows[i] = s.to_numpy()
            else:
                rows[i] = s.to_numpy(dtype="float64", na_value=np.nan)
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "features": [
                {"name": n, "kind": k, **({"categories": list(self.categories.get(n, ()))} if k == CATEGORICAL else {})}
                for n, k in zip(self.names, self.kinds, strict=True)
            ]
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> FeatureSchema:
        feats = list(d["features"])  # type: ignore[arg-type]
        return cls(
            tuple(f["name"] for f in feats),
            tuple(f.get("kind", NUMERIC) for f in feats),
            {f["name"]: tuple(f.get("categories", ())) for f in feats if f.get("kind") == CATEGORICAL},
        )
