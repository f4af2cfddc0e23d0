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


def psi(expected, actual, bins: int = 10) -> float:
    """Population stability index of ``actual`` against the ``expected`` (reference) sample.

    Bins are reference deciles (quantiles); empty shares are floored at 1e-4. Rule of thumb:
    < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift.
    """
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.size == 0 or a.size == 0:
        raise ValueError("psi needs non-empty expected and actual samples")
    edges = np.unique(np.quantile(e, np.linspace(0, 1, bins + 1))[1:-1])
    e_share = np.bincount(np.searchsorted(edges, e, side="right"), minlength=len(edges) + 1) / e.size
    a_share = np.bincount(np.searchsorted(edges, a, side="right"), minlength=len(edges) + 1) / a.size
    e_share = np.maximum(e_share, 1e-4)
    a_share = np.maximum(a_share, 1e-4)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def reliability_figure(table: pd.DataFrame, title: str = "Reliability (holdout)") -> Figure:
    """Observed rate against mean predicted score per bin, with the diagonal."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5.0), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    ax.plot(table["mean_score"], table["observed_rate"], marker="o", label="model")
    for _, r in table.iterrows():
        ax.annotate(
            str(int(r["n"])),
            (r["mean_score"], r["observed_rate"]),
            fontsize=7,
            textcoords="offset points",
            xytext=(3, -9),
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed positive rate")
    ax.set_title(title)
    ax.legend(loc="upper left")
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
