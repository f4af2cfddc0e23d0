"""Evaluation of binary scores: discrimination, calibration, drift, and the plots for them.

Pure functions over arrays and DataFrames. Plots use matplotlib's object API
(``matplotlib.figure.Figure``), so no pyplot state or GUI backend is touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_EPS = 1e-6


def _arrays(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(y_score, dtype=float)
    if y.shape != p.shape:
        raise ValueError(f"y_true and y_score differ in shape: {y.shape} vs {p.shape}")
    return y, p


def binary_metrics(y_true, y_score) -> dict[str, float]:
    """Holdout metrics of a probability score.

    ``roc_auc``, ``pr_auc`` (average precision), ``log_loss``, ``brier``, ``base_rate``
    (share of positives), ``ece`` (expected calibration error, 10 equal-width bins) and
    ``lift_top_decile`` (positive rate in the top 10% of scores / base rate).
    """
    y, p = _arrays(y_true, y_score)
    if len(np.unique(y)) < 2:
        raise ValueError("metrics need both classes in y_true")
    base = float(y.mean())
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, _EPS, 1 - _EPS), labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "base_rate": base,
        "ece": expected_calibration_error(y, p),
        "lift_top_decile": top_fraction_lift(y, p, 0.1),
    }


def score_auc(y_true, score) -> float:
    """ROC AUC of any score where higher means "more likely positive" (e.g. recency)."""
    y, s = _arrays(y_true, score)
    return float(roc_auc_score(y, s))


def top_fraction_lift(y_true, y_score, fraction: float = 0.1) -> float:
    """Positive rate among the top ``fraction`` of scores divided by the overall rate."""
    y, p = _arrays(y_true, y_score)
    base = y.mean()
    if base == 0:
        return 0.0
    k = max(1, round(len(p) * fraction))
    top = np.argsort(-p, kind="stable")[:k]
    return float(y[top].mean() / base)


def reliability_table(y_true, y_score, bins: int = 10) -> pd.DataFrame:
    """Calibration by equal-width score bins: ``bin_lo``, ``bin_hi``, ``n``, ``mean_score``,
    ``observed_rate``. Empty bins are omitted."""
    y, p = _arrays(y_true, y_score)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    df = pd.DataFrame({"bin": idx, "y": y, "p": p})
    g = df.groupby("bin", sort=True).agg(n=("y", "size"), mean_score=("p", "mean"), observed_rate=("y", "mean"))
    g.insert(0, "bin_lo", edges[g.index.to_numpy()])
    g.insert(1, "bin_hi", edges[g.index.to_numpy() + 1])
    return g.reset_index(drop=True)


def expected_calibration_error(y_true, y_score, bins: int = 10) -> float:
    """Count-weighted mean |observed rate - mean score| over equal-width bins."""
    t = reliability_table(y_true, y_score, bins)
    if t.empty:
        return 0.0
    return float((t["n"] * (t["observed_rate"] - t["mean_score"]).abs()).sum() / t["n"].sum())


def ece_noise_floor(y_score, bins: int = 10) -> float:
    """Expected ECE of a *perfectly calibrated* model with these scores on this many rows.

    Sampling noise alone gives each bin an expected |observed - mean score| of
    sqrt(2/pi) * sqrt(p(1-p)/n_bin); this is their count-weighted mean. On a few hundred
    rows it is several points, so an ECE bound is only meaningful above it.
    """
    p = np.asarray(y_score, dtype=float)
    if p.size == 0:
        return 0.0
    t = reliability_table(np.zeros(p.size, dtype=int), p, bins)
    m = t["mean_score"].clip(0, 1)
    return float(np.sqrt(2 / np.pi) * (np.sqrt(t["n"] * m * (1 - m))).sum() / p.size)


def reference_bins(values, bins: int = 10) -> dict:
    """Reference distribution of a numeric sample for PSI: interior quantile ``edges`` (deciles
    by default, duplicates collapsed) and the ``shares`` of the bins plus a last "missing" bin."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("reference_bins needs a non-empty sample")
    ok = v[~np.isnan(v)]
    edges = np.unique(np.quantile(ok, np.linspace(0, 1, bins + 1))[1:-1]) if ok.size else np.empty(0)
    return {"kind": "numeric", "edges": edges.tolist(), "shares": _numeric_shares(edges, v).tolist(), "n": int(v.size)}


def _numeric_shares(edges, values) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    edges = np.asarray(edges, dtype=float)
    missing = np.isnan(v)
    counts = np.bincount(np.searchsorted(edges, v[~missing], side="right"), minlength=len(edges) + 1)
    return np.append(counts, missing.sum()) / max(v.size, 1)


def categorical_reference(values, categories=None, top: int = 20) -> dict:
    """Reference distribution of a categorical sample: shares of its ``top`` most frequent
    values (or of ``categories``), then "other" and "missing"."""
    s = pd.Series(values, dtype="object")
    if s.empty:
        raise ValueError("categorical_reference needs a non-empty sample")
    present = s.dropna().astype(str)
    if categories is None:
        categories = present.value_counts().index[:top]
    cats = [str(c) for c in categories][:top]
    return {"kind": "categorical", "categories": cats, "shares": _categorical_shares(cats, s).tolist(), "n": len(s)}


def category_codes(values: pd.Series, categories) -> np.ndarray:
    """Position of each string of ``values`` in ``categories`` (-1: not there, or missing).

    Arrow-backed strings (what DuckDB hands pandas) go through Arrow's hash lookup, 20x a
    ``pd.Categorical`` of the values; other strings through a pandas index."""
    cats = [str(c) for c in categories]
    if getattr(values.dtype, "storage", None) == "pyarrow":
        import pyarrow as pa
        import pyarrow.compute as pc

        arrow = pa.array(values.array)
        codes = pc.index_in(arrow, value_set=pa.array(cats, type=arrow.type))
        return codes.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64", copy=False)
    return pd.Index(cats, dtype="str").get_indexer(values)


def _categorical_shares(categories, values) -> np.ndarray:
    s = values if isinstance(values, pd.Series) and isinstance(values.dtype, pd.StringDtype) \
        else pd.Series(values, dtype="object")
    missing = s.isna().to_numpy()
    present = s[~missing]
    codes = category_codes(present if isinstance(present.dtype, pd.StringDtype) else present.astype(str), categories)
    counts = np.bincount(np.where(codes < 0, len(categories), codes), minlength=len(categories) + 1)
    return np.append(counts, missing.sum()) / max(len(s), 1)


def psi_against(reference: dict, actual) -> float:
    """PSI of the ``actual`` sample against a reference from :func:`reference_bins` or
    :func:`categorical_reference`. Empty shares are floored at 1e-4."""
    if len(actual) == 0:
        raise ValueError("psi needs a non-empty actual sample")
    e = np.asarray(reference["shares"], dtype=float)
    if reference.get("kind") == "categorical":
        a = _categorical_shares(reference["categories"], actual)
    else:
        a = _numeric_shares(reference["edges"], actual)
    e = np.maximum(e, 1e-4)
    a = np.maximum(a, 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def psi(expected, actual, bins: int = 10) -> float:
    """Population stability index of ``actual`` against the ``expected`` (reference) sample.

    Bins are reference deciles (quantiles), plus one for missing values; empty shares are
    floored at 1e-4. Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant.
    """
    if np.asarray(expected).size == 0 or np.asarray(actual).size == 0:
        raise ValueError("psi needs non-empty expected and actual samples")
    return psi_against(reference_bins(expected, bins), actual)


def psi_status(value: float) -> str:
    """``stable`` (< 0.1), ``moderate`` (< 0.25) or ``significant``."""
    return "stable" if value < 0.1 else "moderate" if value < 0.25 else "significant"


def lift_table(y_true, y_score, groups: int = 10) -> pd.DataFrame:
    """Lift by score decile (``decile`` 1 = highest scores): ``n``, ``positives``, score range,
    ``rate``, ``lift`` (rate / base rate), cumulative ``capture`` (share of all positives in
    deciles 1..k) and ``cum_lift``."""
    y, p = _arrays(y_true, y_score)
    if y.size == 0:
        raise ValueError("lift_table needs a non-empty sample")
    order = np.argsort(-p, kind="stable")
    decile = np.empty(len(p), dtype=int)
    decile[order] = np.arange(len(p)) * groups // len(p) + 1
    df = pd.DataFrame({"decile": decile, "y": y, "p": p})
    g = df.groupby("decile", sort=True).agg(
        n=("y", "size"),
        positives=("y", "sum"),
        min_score=("p", "min"),
        max_score=("p", "max"),
        mean_score=("p", "mean"),
    )
    base = y.mean() if y.size else 0.0
    g["rate"] = g["positives"] / g["n"]
    g["lift"] = g["rate"] / base if base > 0 else 0.0
    g["capture"] = g["positives"].cumsum() / max(int(y.sum()), 1)
    g["cum_lift"] = (g["positives"].cumsum() / g["n"].cumsum()) / base if base > 0 else 0.0
    return g.reset_index()


def reliability_figure(
    table: pd.DataFrame,
    title: str = "Reliability (holdout)",
    others: dict[str, pd.DataFrame] | None = None,
    label: str = "model",
) -> Figure:
    """Observed rate against mean predicted score per bin, with the diagonal; ``others`` adds
    the reliability curves of other models (e.g. a baseline) for comparison."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5.0), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    ax.plot(table["mean_score"], table["observed_rate"], marker="o", label=label)
    for _, r in table.iterrows():
        ax.annotate(
            str(int(r["n"])),
            (r["mean_score"], r["observed_rate"]),
            fontsize=7,
            textcoords="offset points",
            xytext=(3, -9),
        )
    for name, t in (others or {}).items():
        ax.plot(t["mean_score"], t["observed_rate"], marker=".", linewidth=1, alpha=0.8, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed positive rate")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def lift_figure(tables: dict[str, pd.DataFrame], title: str = "Lift by decile (holdout)") -> Figure:
    """Grouped bars of ``lift`` per decile, one group member per model (``tables`` by name)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(tables), 1)
    for i, (name, t) in enumerate(tables.items()):
        ax.bar(t["decile"] + (i - (len(tables) - 1) / 2) * width, t["lift"], width=width, label=name)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(sorted({int(d) for t in tables.values() for d in t["decile"]}))
    ax.set_xlabel("score decile (1 = highest scores)")
    ax.set_ylabel("lift (positive rate / base rate)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def importance_figure(importance: pd.DataFrame, top: int = 25, title: str = "Feature importance (gain)") -> Figure:
    """Horizontal bar chart of the ``gain`` column by ``feature``, largest on top."""
    from matplotlib.figure import Figure

    d = importance.sort_values("gain", ascending=False).head(top).iloc[::-1]
    fig = Figure(figsize=(7.0, 0.28 * len(d) + 1.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(d["feature"], d["gain"], color="#4C72B0")
    ax.set_xlabel("total gain")
    ax.set_title(title)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return fig
