"""Uplift modelling for randomized campaigns: learners, Qini metrics, data preparation.

Pure functions over arrays and DataFrames (no Dagster, no MLflow). Used by ``crm ml uplift``
for any randomized campaign export and, later, by the simulator's campaign history.

Learners (LightGBM, small deterministic parameters), one interface
``fit(X, treatment, y) -> self`` / ``predict_uplift(X) -> np.ndarray``:

* :class:`TLearner` - one outcome model per arm; uplift = mu1(x) - mu0(x).
* :class:`XLearner` - T-learner outcome models, imputed effects regressed per arm and blended
  by the propensity (the known randomization share by default, or estimated).
* :class:`ClassTransformation` - binary outcome only: a classifier of Z = 1[y == treatment]
  on arm-balanced weights; uplift = 2 P(Z=1 | x) - 1.

Outcomes in {0, 1} use classifiers (uplift in probability points), anything else regressors.

Metrics (all on held-out rows, ``score`` = predicted uplift, higher = target first). With
players ranked by score and N_t, N_c the arm sizes, for the top fraction phi:

* Qini curve ``Q(phi) = (Y_t(phi) - Y_c(phi) * N_t(phi) / N_c(phi)) / N_t``: incremental outcomes
  in the top phi (control outcomes rescaled to the treated count), per treated player overall.
  ``Q(1)`` is the observed ATE and ``Q(phi)`` estimates ``sum(tau over the top phi) / n``.
* ``qini_auc`` = area between the Qini curve and the random line ``phi * Q(1)``, phi in [0, 1].
  0 for a random (or constant) score; the oracle ordering maximises it.
* ``auuc`` = area under the uplift (gain) curve ``U(phi) = (ybar_t(phi) - ybar_c(phi)) * phi``
  (not random-adjusted: a random score gives about ATE / 2).
* ``uplift_at_K`` = ybar_t - ybar_c among the top K% (observed uplift of targeting K%).

Tied scores are treated as one block (the curves are linear inside it), so a constant score
has ``qini_auc == 0`` exactly. :func:`oracle_qini_auc` is the Qini of the ordering by the true
effect on the same observed outcomes; :func:`expected_qini_auc` is the noise-free Qini of an
ordering computed from the true effects themselves.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ml.models import CATEGORICAL, LGBM_PARAMS, NUMERIC, FeatureSchema

UPLIFT_PARAMS: dict[str, object] = {
    **LGBM_PARAMS,
    "n_estimators": 150,
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 50,
    "n_jobs": 1,  # small fits: OpenMP overhead dominates (see ml.train.SMALL_FIT_CELLS)
}
TOP_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3)
LEARNERS: tuple[str, ...] = ("t", "x", "s", "ct")
MIN_ROWS_PER_ARM = 20  # in each of the training and validation splits
CONTROL_NAMES = ("control", "holdout", "ctrl", "c", "no", "false", "0")
MODEL_FORMAT = "crm-uplift/1"

# ---------------------------------------------------------------------------- learners


def is_binary_outcome(y) -> bool:
    """True when every outcome is 0 or 1 (and both occur)."""
    v = np.asarray(y, dtype=float)
    u = np.unique(v[~np.isnan(v)])
    return len(u) == 2 and set(u.tolist()) == {0.0, 1.0}


def _params(seed: int, params: dict | None) -> dict:
    return {**UPLIFT_PARAMS, "random_state": int(seed), **(params or {})}


def _classifier(seed: int, params: dict | None):
    from lightgbm import LGBMClassifier

    return LGBMClassifier(**_params(seed, params))


def _regressor(seed: int, params: dict | None):
    from lightgbm import LGBMRegressor

    return LGBMRegressor(**_params(seed, params))


def _predict(model, X) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)[:, 1]
    return np.asarray(model.predict(X), dtype=float)


def _check_fit_input(X, treatment, y) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(treatment)
    if t.dtype != bool:
        if not np.isin(t, (0, 1)).all():
            raise ValueError("treatment must be boolean (or 0/1)")
        t = t.astype(bool)
    yv = np.asarray(y, dtype=float)
    if not (len(X) == len(t) == len(yv)):
        raise ValueError(f"X, treatment and y differ in length: {len(X)}, {len(t)}, {len(yv)}")
    if t.all() or not t.any():
        raise ValueError("both arms (treated and control) need rows to fit an uplift model")
    return t, yv


def _rows(X, mask: np.ndarray):
    return X[mask] if isinstance(X, pd.DataFrame) else np.asarray(X)[mask]


class _Learner:
    name = "base"

    def __init__(self, seed: int = 0, params: dict | None = None, binary: bool | None = None):
        self.seed = seed
        self.params = params
        self.binary = binary  # None: decided from y at fit

    def _outcome_model(self, offset: int = 0):
        maker = _classifier if self.binary_ else _regressor
        return maker(self.seed + offset, self.params)

    def _set_kind(self, y: np.ndarray) -> None:
        self.binary_ = is_binary_outcome(y) if self.binary is None else bool(self.binary)

    def fit(self, X, treatment, y):  # pragma: no cover - interface
        raise NotImplementedError

    def predict_uplift(self, X) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class TLearner(_Learner):
    """Two outcome models (control, treated); uplift = mu1(x) - mu0(x)."""

    name = "t"

    def fit(self, X, treatment, y) -> TLearner:
        t, yv = _check_fit_input(X, treatment, y)
        self._set_kind(yv)
        self.model0_ = self._outcome_model(0).fit(_rows(X, ~t), yv[~t])
        self.model1_ = self._outcome_model(1).fit(_rows(X, t), yv[t])
        return self

    def predict_uplift(self, X) -> np.ndarray:
        return _predict(self.model1_, X) - _predict(self.model0_, X)


class SLearner(_Learner):
    """One outcome model over the features plus the treatment flag; uplift = mu(x, 1) - mu(x, 0).

    The single model shares its trees between the arms, which helps when the effect is small
    next to the outcome's variation (the usual case in CRM data); the treatment column can be
    left unused by the trees, which shrinks the predicted effects towards zero.
    """

    name = "s"
    FLAG = "__treated__"

    def _with_flag(self, X, flag) -> pd.DataFrame | np.ndarray:
        if isinstance(X, pd.DataFrame):
            return X.assign(**{self.FLAG: np.broadcast_to(np.asarray(flag, dtype=float), len(X))})
        X = np.asarray(X, dtype=float)
        return np.column_stack([X, np.broadcast_to(np.asarray(flag, dtype=float), len(X))])

    def fit(self, X, treatment, y) -> SLearner:
        t, yv = _check_fit_input(X, treatment, y)
        self._set_kind(yv)
        self.model_ = self._outcome_model(0).fit(self._with_flag(X, t), yv)
        return self

    def predict_uplift(self, X) -> np.ndarray:
        return _predict(self.model_, self._with_flag(X, 1.0)) - _predict(self.model_, self._with_flag(X, 0.0))


class XLearner(_Learner):
    """X-learner (Kuenzel et al. 2019).

    Stage 1: outcome models mu0, mu1 per arm. Stage 2: regress the imputed effects
    D1 = y - mu0(x) on treated rows and D0 = mu1(x) - y on control rows. Uplift =
    g(x) * tau0(x) + (1 - g(x)) * tau1(x) with g the propensity: ``propensity=None`` uses the
    treated share of the training rows (the randomization share), a float uses that share,
    ``"estimate"`` fits a classifier of treatment on X (clipped to [0.05, 0.95]).
    """

    name = "x"

    def __init__(
        self,
        seed: int = 0,
        params: dict | None = None,
        binary: bool | None = None,
        propensity: float | str | None = None,
    ):
        super().__init__(seed, params, binary)
        if isinstance(propensity, str) and propensity != "estimate":
            raise ValueError(f"propensity must be a share in (0, 1), 'estimate' or None, not {propensity!r}")
        if isinstance(propensity, int | float) and not 0 < float(propensity) < 1:
            raise ValueError(f"propensity must be a share in (0, 1), not {propensity}")
        self.propensity = propensity

    def fit(self, X, treatment, y) -> XLearner:
        t, yv = _check_fit_input(X, treatment, y)
        self._set_kind(yv)
        X0, X1 = _rows(X, ~t), _rows(X, t)
        self.model0_ = self._outcome_model(0).fit(X0, yv[~t])
        self.model1_ = self._outcome_model(1).fit(X1, yv[t])
        d1 = yv[t] - _predict(self.model0_, X1)
        d0 = _predict(self.model1_, X0) - yv[~t]
        self.tau0_ = _regressor(self.seed + 2, self.params).fit(X0, d0)
        self.tau1_ = _regressor(self.seed + 3, self.params).fit(X1, d1)
        self.propensity_model_ = None
        if self.propensity == "estimate":
            self.propensity_model_ = _classifier(self.seed + 4, self.params).fit(X, t.astype(int))
            self.share_ = float(t.mean())
        else:
            self.share_ = float(t.mean()) if self.propensity is None else float(self.propensity)
        return self

    def propensity_of(self, X) -> np.ndarray:
        if self.propensity_model_ is not None:
            return np.clip(_predict(self.propensity_model_, X), 0.05, 0.95)
        return np.full(len(X), self.share_)

    def predict_uplift(self, X) -> np.ndarray:
        g = self.propensity_of(X)
        return g * _predict(self.tau0_, X) + (1 - g) * _predict(self.tau1_, X)


class ClassTransformation(_Learner):
    """Class transformation (Jaskowski & Jaroszewicz 2012) for a binary outcome.

    Z = 1 when (treated and y = 1) or (control and y = 0). Rows are weighted so both arms
    carry half the weight (any randomization share), then uplift = 2 P(Z = 1 | x) - 1.
    """

    name = "ct"

    def fit(self, X, treatment, y) -> ClassTransformation:
        t, yv = _check_fit_input(X, treatment, y)
        if not is_binary_outcome(yv):
            raise ValueError("class transformation needs a binary (0/1) outcome")
        self.binary_ = True
        z = (t == (yv == 1)).astype(int)
        p = t.mean()
        w = np.where(t, 0.5 / p, 0.5 / (1 - p))
        self.model_ = _classifier(self.seed, self.params).fit(X, z, sample_weight=w)
        return self

    def predict_uplift(self, X) -> np.ndarray:
        return 2 * _predict(self.model_, X) - 1


LEARNER_CLASSES: dict[str, type[_Learner]] = {"t": TLearner, "x": XLearner, "s": SLearner, "ct": ClassTransformation}


def make_learner(name: str, seed: int = 0, **kwargs) -> _Learner:
    """A learner by short name: ``t``, ``x``, ``s`` or ``ct``."""
    if name not in LEARNER_CLASSES:
        raise ValueError(f"unknown uplift learner {name!r}; expected one of: {', '.join(LEARNER_CLASSES)}")
    return LEARNER_CLASSES[name](seed=seed, **kwargs)


# ---------------------------------------------------------------------------- metrics


def _metric_arrays(y, treatment, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yv = np.asarray(y, dtype=float)
    t = np.asarray(treatment).astype(bool)
    s = np.asarray(score, dtype=float)
    if not (yv.shape == t.shape == s.shape) or yv.ndim != 1:
        raise ValueError(f"y, treatment and score differ in shape: {yv.shape}, {t.shape}, {s.shape}")
    if t.all() or not t.any():
        raise ValueError("uplift metrics need both treated and control rows")
    return yv, t, s


def _blocks(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order by descending score and the end index (exclusive) of each block of tied scores."""
    order = np.argsort(-score, kind="stable")
    s = score[order]
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) + 1
    return order, ends


def qini_curve(y, treatment, score) -> pd.DataFrame:
    """Qini and uplift (gain) curves at each block of tied scores, from (0, 0).

    Columns: ``fraction`` (share of rows targeted), ``n_treated``, ``n_control``, ``qini``
    (incremental outcomes per treated player, see the module doc), ``uplift`` (gain curve
    ``(ybar_t - ybar_c) * fraction``, 0 while an arm is still empty) and ``random`` (``fraction * Q(1)``).
    """
    yv, t, s = _metric_arrays(y, treatment, score)
    order, ends = _blocks(s)
    yo, to = yv[order], t[order]
    nt = np.cumsum(to)[ends - 1]
    nc = np.cumsum(~to)[ends - 1]
    yt = np.cumsum(np.where(to, yo, 0.0))[ends - 1]
    yc = np.cumsum(np.where(to, 0.0, yo))[ends - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        qini = np.where(nc > 0, yt - yc * nt / np.maximum(nc, 1), yt) / t.sum()
        gain = np.where((nt > 0) & (nc > 0), yt / np.maximum(nt, 1) - yc / np.maximum(nc, 1), 0.0) * ends / len(s)
    frac = np.r_[0.0, ends / len(s)]
    qini = np.r_[0.0, qini]
    return pd.DataFrame(
        {
            "fraction": frac,
            "n_treated": np.r_[0, nt],
            "n_control": np.r_[0, nc],
            "qini": qini,
            "uplift": np.r_[0.0, gain],
            "random": frac * qini[-1],
        }
    )


def _area(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def qini_auc(y, treatment, score) -> float:
    """Area between the Qini curve and the random line (0 = random, higher = better)."""
    c = qini_curve(y, treatment, score)
    return _area(c["fraction"].to_numpy(), (c["qini"] - c["random"]).to_numpy())


def auuc(y, treatment, score) -> float:
    """Area under the uplift (gain) curve ``(ybar_t(phi) - ybar_c(phi)) * phi`` over phi in [0, 1]."""
    c = qini_curve(y, treatment, score)
    return _area(c["fraction"].to_numpy(), c["uplift"].to_numpy())


def uplift_at(y, treatment, score, k: float) -> float:
    """Observed treated-minus-control mean outcome among the top ``k`` (share, e.g. 0.1) of
    scores; NaN when an arm has no rows there."""
    yv, t, s = _metric_arrays(y, treatment, score)
    if not 0 < k <= 1:
        raise ValueError(f"k must be a share in (0, 1], not {k}")
    top = np.argsort(-s, kind="stable")[: max(1, math.ceil(k * len(s) - 1e-9))]
    tt = t[top]
    if tt.all() or not tt.any():
        return float("nan")
    return float(yv[top][tt].mean() - yv[top][~tt].mean())


def uplift_metrics(y, treatment, score, fractions: Sequence[float] = TOP_FRACTIONS) -> dict[str, float]:
    """``qini_auc``, ``auuc``, ``uplift_at_10`` / ``_20`` / ``_30`` and the observed ``ate``."""
    yv, t, s = _metric_arrays(y, treatment, score)
    out = {"qini_auc": qini_auc(yv, t, s), "auuc": auuc(yv, t, s)}
    for k in fractions:
        out[f"uplift_at_{round(k * 100)}"] = uplift_at(yv, t, s, k)
    out["ate"] = float(yv[t].mean() - yv[~t].mean())
    return out


def oracle_qini_auc(y, treatment, true_effect) -> float:
    """Qini of the oracle ordering (by the true individual effect) on these observed outcomes."""
    return qini_auc(y, treatment, true_effect)


def expected_qini_auc(score, true_effect) -> float:
    """Noise-free Qini of ``score``'s ordering: the curve is ``cumsum(true effect) / n`` along it."""
    s = np.asarray(score, dtype=float)
    tau = np.asarray(true_effect, dtype=float)
    if s.shape != tau.shape:
        raise ValueError(f"score and true_effect differ in shape: {s.shape} vs {tau.shape}")
    order, ends = _blocks(s)
    curve = np.r_[0.0, np.cumsum(tau[order])[ends - 1] / len(s)]
    frac = np.r_[0.0, ends / len(s)]
    return _area(frac, curve - frac * curve[-1])


def oracle_fractions(y, treatment, score, true_effect) -> dict[str, float]:
    """A score's Qini as a fraction of the oracle's: ``observed`` (both on these observed
    outcomes) and ``expected`` (both noise-free, from the true effects)."""
    oracle = oracle_qini_auc(y, treatment, true_effect)
    exp_oracle = expected_qini_auc(true_effect, true_effect)
    return {
        "observed": qini_auc(y, treatment, score) / oracle if oracle > 0 else float("nan"),
        "expected": expected_qini_auc(score, true_effect) / exp_oracle if exp_oracle > 0 else float("nan"),
    }


# ---------------------------------------------------------------------------- data


@dataclass
class Prepared:
    """A randomized campaign ready for an uplift learner."""

    X: pd.DataFrame  # encoded features (numeric float64, categorical pandas Categorical)
    treatment: np.ndarray  # bool
    y: np.ndarray  # float
    schema: FeatureSchema
    binary: bool  # outcome in {0, 1}
    treatment_col: str
    outcome_col: str
    control_value: str
    treated_value: str
    arms: dict[str, int]  # every value of the treatment column -> rows
    rows: int  # rows used
    rows_other_arms: int  # rows of other arms or a missing treatment (excluded)
    rows_missing_outcome: int  # rows of the chosen arms without an outcome (excluded)
    index: pd.Index = field(default_factory=lambda: pd.RangeIndex(0))  # rows used, in the input frame


def _require_columns(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        raise ValueError(
            f"{what} column{'s' if len(missing) > 1 else ''} {names} not in the data; "
            f"available columns: {', '.join(map(str, df.columns))}"
        )


def _arm_labels(s: pd.Series) -> pd.Series:
    """Treatment values as strings (1.0 -> "1"); missing stays missing."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.map(lambda v: pd.NA if pd.isna(v) else str(int(bool(v)))).astype("string")
    if pd.api.types.is_numeric_dtype(s.dtype):

        def fmt(v):
            if pd.isna(v):
                return pd.NA
            f = float(v)
            return str(int(f)) if f.is_integer() else str(f)

        return s.map(fmt).astype("string")
    return s.astype("string").str.strip()


def _match_arm(value, arms: Sequence[str], col: str) -> str:
    v = str(value).strip()
    if v in arms:
        return v
    folded = [a for a in arms if a.lower() == v.lower()]
    if len(folded) == 1:
        return folded[0]
    try:  # "1.0" for an arm "1"
        f = float(v)
        key = str(int(f)) if f.is_integer() else str(f)
        if key in arms:
            return key
    except ValueError:
        pass
    raise ValueError(f"arm {v!r} of treatment column {col!r} is empty (no rows); arms present: {', '.join(arms)}")


def _choose_arms(arms: list[str], col: str, control_value, treated_value) -> tuple[str, str]:
    listing = ", ".join(arms)
    if control_value is not None:
        control = _match_arm(control_value, arms, col)
    if treated_value is not None:
        treated = _match_arm(treated_value, arms, col)
    if control_value is not None and treated_value is not None:
        if control == treated:
            raise ValueError(f"control and treated value are the same arm {control!r} of column {col!r}")
        return control, treated
    if len(arms) < 2:
        raise ValueError(f"treatment column {col!r} has a single arm ({listing}): an arm is empty")
    if control_value is not None:
        rest = [a for a in arms if a != control]
        if len(rest) > 1:
            raise ValueError(
                f"treatment column {col!r} is not binary after selecting control {control!r}: "
                f"arms {', '.join(rest)} remain; choose one with --treated-value"
            )
        return control, rest[0]
    if treated_value is not None:
        rest = [a for a in arms if a != treated]
        if len(rest) > 1:
            raise ValueError(
                f"treatment column {col!r} is not binary after selecting treated {treated!r}: "
                f"arms {', '.join(rest)} remain; choose the control with --control-value"
            )
        return rest[0], treated
    if len(arms) > 2:
        raise ValueError(
            f"treatment column {col!r} has {len(arms)} arms ({listing}); choose two with "
            "--control-value and --treated-value"
        )
    known = [a for a in arms if a.lower() in CONTROL_NAMES]
    if len(known) == 1:
        control = known[0]
        return control, next(a for a in arms if a != control)
    raise ValueError(f"cannot tell the control arm of treatment column {col!r} ({listing}); pass --control-value")


_ID_NAME = re.compile(r"(^|_)(id|uuid|key)$|^id_", re.IGNORECASE)


def id_columns(df: pd.DataFrame) -> list[str]:
    """Identifier-like columns: named ``id``, ``*_id``, ``id_*``, ``*_uuid``, ``*_key``."""
    return [c for c in df.columns if _ID_NAME.search(str(c))]


def default_features(df: pd.DataFrame, exclude: Sequence[str]) -> list[str]:
    """Every column except ``exclude``, identifier-like columns (:func:`id_columns`), string
    columns with a distinct value per row, and datetime columns."""
    skip = set(exclude) | set(id_columns(df))
    out = []
    for c in df.columns:
        if c in skip:
            continue
        s = df[c]
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            continue
        if not _is_numeric(s) and len(s) > 20 and s.nunique(dropna=True) == s.notna().sum():
            continue
        out.append(c)
    return out


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)


def prepare(
    df: pd.DataFrame,
    treatment_col: str,
    outcome_col: str,
    control_value=None,
    treated_value=None,
    features: Sequence[str] | None = None,
    schema: FeatureSchema | None = None,
) -> Prepared:
    """Select two arms of a randomized campaign export and encode its features.

    ``control_value`` / ``treated_value`` pick the arms (compared as text, ``1.0`` == ``1``,
    case-insensitive). With neither, the column must have exactly two arms, one of them an
    obvious control (``0``, ``control``, ``holdout``, ...). Rows of other arms, with a missing
    treatment or a missing outcome are excluded (counted). ``features`` defaults to
    :func:`default_features`; numeric (and boolean) columns are numeric, anything else
    categorical (categories fixed on these rows unless ``schema`` is given).

    Raises ``ValueError`` naming the problem: a missing column (with the available ones), a
    treatment that is not binary after selection, an empty arm, a non-numeric or constant outcome.
    """
    if treatment_col == outcome_col:
        raise ValueError(f"treatment and outcome are the same column {treatment_col!r}")
    _require_columns(df, [treatment_col], "treatment")
    _require_columns(df, [outcome_col], "outcome")
    features = _feature_columns(df, treatment_col, outcome_col, features)

    labels = _arm_labels(df[treatment_col])
    counts = labels.value_counts(dropna=True)
    arms = sorted(counts.index.tolist())
    if not arms:
        raise ValueError(f"treatment column {treatment_col!r} has no values")
    control, treated = _choose_arms(arms, treatment_col, control_value, treated_value)
    in_pair = labels.isin([control, treated]).fillna(False).to_numpy(dtype=bool)

    yall = _outcome_values(df[outcome_col], outcome_col)
    missing_y = in_pair & np.isnan(yall)
    keep = in_pair & ~missing_y
    t = (labels.to_numpy(dtype=object, na_value=None)[keep] == treated).astype(bool)
    y = yall[keep]
    _check_selection(t, y, (control, treated), arms, treatment_col, outcome_col)

    rows = df.loc[keep]
    if schema is None:
        schema = _fit_schema(rows, features)
    return Prepared(
        X=schema.encode(rows).reset_index(drop=True),
        treatment=t,
        y=y,
        schema=schema,
        binary=is_binary_outcome(y),
        treatment_col=treatment_col,
        outcome_col=outcome_col,
        control_value=control,
        treated_value=treated,
        arms={a: int(counts[a]) for a in arms},
        rows=int(keep.sum()),
        rows_other_arms=int((~in_pair).sum()),
        rows_missing_outcome=int(missing_y.sum()),
        index=rows.index,
    )


def _feature_columns(
    df: pd.DataFrame, treatment_col: str, outcome_col: str, features: Sequence[str] | None
) -> list[str]:
    """``features`` checked against ``df`` (deduplicated), or :func:`default_features`."""
    if features is None:
        features = default_features(df, [treatment_col, outcome_col])
        if not features:
            raise ValueError(
                f"no feature columns besides treatment {treatment_col!r}, outcome {outcome_col!r} and identifiers; "
                f"columns: {', '.join(map(str, df.columns))}"
            )
        return features
    features = list(dict.fromkeys(features))
    if not features:
        raise ValueError("no feature columns given")
    _require_columns(df, features, "feature")
    clash = [c for c in features if c in (treatment_col, outcome_col)]
    if clash:
        raise ValueError(f"feature list includes the treatment/outcome column {clash[0]!r}")
    return features


def _outcome_values(out: pd.Series, outcome_col: str) -> np.ndarray:
    """The outcome as float64 (booleans as 0/1, numeric text parsed, missing as NaN)."""
    if pd.api.types.is_bool_dtype(out.dtype):
        out = out.astype("float64")
    if not pd.api.types.is_numeric_dtype(out.dtype):
        conv = pd.to_numeric(out, errors="coerce")
        bad = out[conv.isna() & out.notna()]
        if len(bad):
            raise ValueError(f"outcome column {outcome_col!r} is not numeric (e.g. {bad.iloc[0]!r})")
        out = conv
    return out.to_numpy(dtype="float64", na_value=np.nan)


def _check_selection(
    t: np.ndarray, y: np.ndarray, pair: tuple[str, str], arms: Sequence[str], treatment_col: str, outcome_col: str
) -> None:
    """Both chosen arms have rows with an outcome, and the outcome varies."""
    control, treated = pair
    for arm, n in ((control, int((~t).sum())), (treated, int(t.sum()))):
        if n == 0:
            raise ValueError(
                f"arm {arm!r} of treatment column {treatment_col!r} is empty (no rows with an outcome in "
                f"{outcome_col!r}); arms present: {', '.join(arms)}"
            )
    if np.unique(y).size < 2:
        raise ValueError(
            f"outcome column {outcome_col!r} is constant ({y[0]:g}) on the selected arms: nothing to model"
        )


def _fit_schema(rows: pd.DataFrame, features: Sequence[str]) -> FeatureSchema:
    """Numeric (and boolean) columns numeric, anything else categorical, categories from ``rows``."""
    from ml.features import Feature

    spec = [Feature(c, None, "", kind=NUMERIC if _is_numeric(rows[c]) else CATEGORICAL) for c in features]
    return FeatureSchema.fit(spec, rows)


# ---------------------------------------------------------------------------- training


@dataclass
class UpliftModel:
    """A fitted learner with its input contract: scores any frame that has the feature columns."""

    learner: _Learner
    schema: FeatureSchema
    name: str
    meta: dict = field(default_factory=dict)

    def encode(self, df: pd.DataFrame) -> pd.DataFrame:
        missing = self.schema.missing(df)
        if missing:
            raise ValueError(
                f"data is missing the model's feature column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(c) for c in missing)}; available columns: {', '.join(map(str, df.columns))}"
            )
        fixed = {}
        for name in self.schema.numeric_names:
            if not _is_numeric(df[name]):
                conv = pd.to_numeric(df[name], errors="coerce")
                bad = df[name][conv.isna() & df[name].notna()]
                if len(bad):
                    raise ValueError(f"feature column {name!r} should be numeric (e.g. {bad.iloc[0]!r})")
                fixed[name] = conv.astype("float64")
        return self.schema.encode(df.assign(**fixed) if fixed else df)

    def predict_uplift(self, df: pd.DataFrame) -> np.ndarray:
        """Predicted uplift per row of ``df`` (raw columns; encoded with the training schema)."""
        return self.learner.predict_uplift(self.encode(df))


@dataclass
class UpliftResult:
    """What :func:`train_uplift` returns: validation metrics per learner and the selected model."""

    model: UpliftModel
    selected: str
    metrics: dict[str, dict[str, float]]  # learner -> validation metrics
    skipped: dict[str, str]  # learner -> why it was not trained
    train_rows: int
    valid_rows: int
    prepared: Prepared
    valid_scores: dict[str, np.ndarray] = field(default_factory=dict)
    valid_index: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=int))  # rows of prepared.X

    def summary(self) -> dict:
        p = self.prepared
        return {
            "selected": self.selected,
            "selected_by": "qini_auc on the validation split",
            "metrics": self.metrics,
            "skipped": self.skipped,
            "outcome": p.outcome_col,
            "outcome_kind": "binary" if p.binary else "continuous",
            "treatment": p.treatment_col,
            "control_value": p.control_value,
            "treated_value": p.treated_value,
            "arms": p.arms,
            "rows": p.rows,
            "rows_other_arms": p.rows_other_arms,
            "rows_missing_outcome": p.rows_missing_outcome,
            "train_rows": self.train_rows,
            "valid_rows": self.valid_rows,
            "features": [{"name": n, "kind": k} for n, k in zip(p.schema.names, p.schema.kinds, strict=True)],
        }


def split(treatment: np.ndarray, valid_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation row positions, stratified by treatment, seeded."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(treatment))
    tr, va = train_test_split(idx, test_size=valid_fraction, random_state=seed, stratify=treatment)
    return np.sort(tr), np.sort(va)


def train_uplift(
    df: pd.DataFrame,
    treatment_col: str,
    outcome_col: str,
    control_value=None,
    treated_value=None,
    features: Sequence[str] | None = None,
    learners: Sequence[str] = LEARNERS,
    seed: int = 0,
    valid_fraction: float = 0.3,
    propensity: float | str | None = None,
    params: dict | None = None,
) -> UpliftResult:
    """Prepare, split (stratified by treatment), fit each learner on the training rows,
    evaluate on the validation rows (:func:`uplift_metrics`) and select the best by Qini.

    Class transformation is skipped (listed in ``skipped``) for a continuous outcome.
    ``propensity`` goes to the X-learner. The selected model is the one fitted on the
    training rows (its metrics are honest held-out numbers).
    """
    unknown = [n for n in learners if n not in LEARNER_CLASSES]
    if unknown or not learners:
        raise ValueError(f"unknown uplift learner(s) {unknown}; expected some of: {', '.join(LEARNER_CLASSES)}")
    prep = prepare(df, treatment_col, outcome_col, control_value, treated_value, features)
    tr, va = _checked_split(prep, valid_fraction, seed)
    fits = _fit_learners(prep, tr, va, learners, seed=seed, propensity=propensity, params=params)
    best = _select(fits)
    meta = {
        "format": MODEL_FORMAT,
        "learner": best,
        "treatment": treatment_col,
        "outcome": outcome_col,
        "control_value": prep.control_value,
        "treated_value": prep.treated_value,
        "outcome_kind": "binary" if prep.binary else "continuous",
        "metrics": fits.metrics[best],
        "seed": seed,
    }
    return UpliftResult(
        model=UpliftModel(fits.fitted[best], prep.schema, best, meta),
        selected=best,
        metrics=fits.metrics,
        skipped=fits.skipped,
        train_rows=len(tr),
        valid_rows=len(va),
        prepared=prep,
        valid_scores=fits.scores,
        valid_index=va,
    )


def _checked_split(prep: Prepared, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`split`, refusing an arm with fewer than :data:`MIN_ROWS_PER_ARM` rows in either
    split or a constant outcome on the training rows."""
    tr, va = split(prep.treatment, valid_fraction, seed)
    for what, pos in (("training", tr), ("validation", va)):
        t = prep.treatment[pos]
        for arm, n in ((prep.control_value, int((~t).sum())), (prep.treated_value, int(t.sum()))):
            if n < MIN_ROWS_PER_ARM:
                raise ValueError(
                    f"arm {arm!r} of {prep.treatment_col!r} has only {n} rows in the {what} split; "
                    f"need at least {MIN_ROWS_PER_ARM} per arm ({prep.rows} rows in total)"
                )
    if np.unique(prep.y[tr]).size < 2:
        raise ValueError(f"outcome column {prep.outcome_col!r} is constant on the training split")
    return tr, va


@dataclass
class _LearnerFits:
    """Learners fitted on the training rows, with their validation scores and metrics."""

    fitted: dict[str, _Learner] = field(default_factory=dict)
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # learner -> why it was not trained / selectable


def _fit_learners(
    prep: Prepared,
    tr: np.ndarray,
    va: np.ndarray,
    learners: Sequence[str],
    *,
    seed: int,
    propensity: float | str | None,
    params: dict | None,
) -> _LearnerFits:
    """Fit each learner (once, in the given order) on ``tr`` and evaluate it on ``va``."""
    Xtr, Xva = prep.X.iloc[tr], prep.X.iloc[va]
    ttr, tva = prep.treatment[tr], prep.treatment[va]
    ytr, yva = prep.y[tr], prep.y[va]
    fits = _LearnerFits()
    for name in dict.fromkeys(learners):
        if name == "ct" and not prep.binary:
            fits.skipped[name] = "class transformation needs a binary (0/1) outcome"
            continue
        kwargs: dict = {"params": params, "binary": prep.binary}
        if name == "x":
            kwargs["propensity"] = propensity
        learner = make_learner(name, seed=seed, **kwargs).fit(Xtr, ttr, ytr)
        s = learner.predict_uplift(Xva)
        fits.fitted[name], fits.scores[name] = learner, s
        fits.metrics[name] = uplift_metrics(yva, tva, s)
    if not fits.fitted:
        raise ValueError(f"no uplift learner applies: {fits.skipped}")
    return fits


def _select(fits: _LearnerFits) -> str:
    """The learner with the highest validation Qini (the first one on a tie).

    A learner whose predictions do not vary (an S-learner whose trees never split on the
    treatment flag) ranks nobody: its Qini is the random line's, which can still beat
    learners that are noisy on small data. It is reported (in ``skipped``) but not selected.
    """
    order = list(fits.fitted)
    flat = [n for n in order if not np.ptp(fits.scores[n]) > 0]
    for n in flat:
        fits.skipped[n] = "fitted but not selectable: predicts the same uplift for every held-out row"
    pool = [n for n in order if n not in flat] or order
    return max(pool, key=lambda n: (fits.metrics[n]["qini_auc"], -order.index(n)))


# ---------------------------------------------------------------------------- persistence


def save_model(result: UpliftResult | UpliftModel, path: str | Path) -> Path:
    """Write the selected model (fitted learner + feature schema + metadata) with joblib."""
    import joblib

    model = result.model if isinstance(result, UpliftResult) else result
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": MODEL_FORMAT,
        "name": model.name,
        "learner": model.learner,
        "schema": model.schema.to_dict(),
        "meta": model.meta,
    }
    joblib.dump(payload, path)
    return path


def load_model(path: str | Path) -> UpliftModel:
    """Read a model written by :func:`save_model`."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no uplift model at {path}")
    try:
        payload = joblib.load(path)
    except Exception as e:  # not a joblib file, truncated, ...
        raise ValueError(f"{path} is not a readable uplift model: {e}") from e
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not an uplift model ({MODEL_FORMAT})")
    return UpliftModel(
        payload["learner"], FeatureSchema.from_dict(payload["schema"]), payload["name"], dict(payload.get("meta") or {})
    )
