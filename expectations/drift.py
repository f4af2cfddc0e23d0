"""Drift outcomes that say what drifted: ``psi of days_since_last_active (churn) is 0.44 (warn above 0.1)``.

GX reports a failed ``between`` expectation as its unexpected values (a dict of numbers) and the
failing rows' ids, apart: a reader of the check had to pair them. :func:`name_drift` rewrites the
drift outcomes of a suite from the frame it validated: each names the features (or models) over
its threshold with their values, the error outcome those above the error threshold, the warning
outcome those between the two (or above, when every one is).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pandas as pd

from expectations.validate import GateResult


def _round(v: float) -> float:
    return float(f"{v:.4g}")


def drift_texts(frame: pd.DataFrame, id_column: str, value_column: str, low: float, high: float | None,
                label: Callable[[str], str], level: str) -> list[str]:
    """``<label> is <value> (<level> above <low>)`` for each row with ``low < value`` (``<= high``)."""
    rows = frame[(frame[value_column] > low) & ((frame[value_column] <= high) if high is not None else True)]
    rows = rows.sort_values(value_column, ascending=False)
    return [f"{label(str(i))} is {_round(float(v)):g} ({level} above {low:g})"
            for i, v in zip(rows[id_column], rows[value_column], strict=True)]


def name_drift(part: GateResult, frame: pd.DataFrame, id_column: str, value_column: str, warn: float,
               err: float, label: Callable[[str], str]) -> GateResult:
    """``part``: the validation of ``frame`` with the error expectation (``value <= err``) first and the
    warning one (``value <= warn``) second; their failed outcomes get descriptions that name each row
    over the threshold and its value, and ``observed`` {id: value} (4 significant digits)."""
    outcomes = []
    for o in part.outcomes:
        if o.success or o.column != value_column:
            outcomes.append(o)
            continue
        if o.severity == "warning":
            texts = drift_texts(frame, id_column, value_column, warn, err, label, "warn") or \
                drift_texts(frame, id_column, value_column, warn, None, label, "warn")
            over = frame[frame[value_column] > warn]
        else:
            texts = drift_texts(frame, id_column, value_column, err, None, label, "error")
            over = frame[frame[value_column] > err]
        observed = {str(i): _round(float(v)) for i, v in zip(over[id_column], over[value_column], strict=True)}
        outcomes.append(replace(o, description="; ".join(texts) or o.description, observed=observed))
    return replace(part, outcomes=outcomes)


def feature_label(model_feature: str) -> str:
    """``churn.days_since_last_active`` -> ``psi of days_since_last_active (churn)``."""
    model, _, feature = model_feature.partition(".")
    return f"psi of {feature} ({model})" if feature else f"psi of {model}"


def score_label(model: str) -> str:
    return f"score psi of {model}"
