"""The features suite: ``player_features`` (the scoring snapshot) against the feature spec.

* key ``player_id`` unique and not null, every row's player in ``dim_player``;
* value ranges by feature kind (:func:`feature_range`, from :mod:`ml.features`): shares and
  rates in [0, 1], "days since" in [0, 999], active days within the window, counts, money
  that only flows one way, means and trends >= 0; net loss and NGR may be negative (no range);
* null rate per feature at most ``max_feature_null_rate`` (the spec promises none);
* drift: PSI of each feature against the training reference of each champion
  (:func:`champion_feature_psi`; error above ``psi_error``, warning above ``psi_warn``).
"""

from __future__ import annotations

from pathlib import Path

import great_expectations as gx
import numpy as np
import pandas as pd

from expectations.drift import feature_label, name_drift
from expectations.marts import referential_integrity
from expectations.thresholds import threshold
from expectations.validate import GateResult, combine, outcome, validate, warning
from ml.features import CATEGORICAL, FEATURES, Feature

SUITE = "features"
_SIGNED = ("net_loss_", "ngr_")  # may be negative


def feature_range(f: Feature) -> tuple[float | None, float | None] | None:
    """(min, max) a feature's values must lie in; None: no range (categorical or signed money)."""
    if f.kind == CATEGORICAL or f.name.startswith(_SIGNED):
        return None
    if "share" in f.name or "_rate_" in f.name:
        return 0.0, 1.0
    if f.name.startswith("days_since"):
        return 0.0, 999.0
    if f.name.startswith("active_days_") and f.window_days:
        return 0.0, float(f.window_days)
    return 0.0, None


def champion_feature_psi(tracking_uri: str, features: pd.DataFrame) -> tuple[dict[str, dict[str, float]], list[str]]:
    """{model: {feature: PSI}} of ``features`` against each champion's logged training reference
    (the model's population only, as :func:`ml.score.drift_report`), and notes for models
    without a champion or a reference."""
    from ml import registry
    from ml.models import MODELS
    from ml.score import drift_report, resolve

    out: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    for name, cfg in MODELS.items():
        try:
            loaded = resolve(tracking_uri, cfg.registered_name)
        except registry.NoModelError:
            notes.append(f"{name}: no champion yet, drift not checked")
            continue
        report = drift_report(loaded.reference, features, np.zeros(len(features))) if len(features) else {}
        if not report.get("available"):
            notes.append(f"{name}: {report.get('reason', 'no rows')}, drift not checked")
            continue
        out[name] = {k: float(v) for k, v in (report.get("features") or {}).items()}
    return out, notes


def gate_features(features: pd.DataFrame, dim_player: pd.DataFrame, *,
                  psi: dict[str, dict[str, float]] | None = None, notes: list[str] | None = None,
                  max_null_rate: float | None = None, psi_warn: float | None = None,
                  psi_error: float | None = None, docs_dir: str | Path | None = None) -> GateResult:
    """``psi``: {model: {feature: PSI}} (:func:`champion_feature_psi`; None or empty: drift not checked)."""
    null_rate = threshold("max_feature_null_rate") if max_null_rate is None else max_null_rate
    warn = threshold("psi_warn") if psi_warn is None else psi_warn
    err = threshold("psi_error") if psi_error is None else psi_error
    df, ri = referential_integrity(features, dim_player, "player_features")
    exps = [gx.expectations.ExpectColumnValuesToNotBeNull(column="player_id"),
            gx.expectations.ExpectColumnValuesToBeUnique(column="player_id"), ri,
            gx.expectations.ExpectTableColumnsToMatchSet(column_set=[f.name for f in FEATURES], exact_match=False)]
    desc = {1: "one row per player", 2: "every feature row has a player in dim_player",
            3: "every feature of the spec present"}
    for f in FEATURES:
        if f.name not in df:
            continue
        mostly = {"mostly": 1.0 - null_rate} if null_rate > 0 else {}
        exps.append(gx.expectations.ExpectColumnValuesToNotBeNull(column=f.name, **mostly))
        desc[len(exps) - 1] = f"null rate at most {null_rate:g}"
        rng = feature_range(f)
        if rng is not None:
            exps.append(gx.expectations.ExpectColumnValuesToBeBetween(column=f.name, min_value=rng[0],
                                                                      max_value=rng[1]))
            desc[len(exps) - 1] = f"{f.kind} feature within [{rng[0]}, {rng[1] if rng[1] is not None else '∞'}]"
    parts = [validate(df, f"{SUITE}_values", exps, id_column="player_id", descriptions=desc, docs_dir=docs_dir)]
    extra = [outcome("drift_reference", True, n, description="note") for n in (notes or [])]
    rows = [{"model_feature": f"{m}.{k}", "psi": v} for m, feats in (psi or {}).items() for k, v in feats.items()]
    if rows:
        drift = pd.DataFrame(rows)
        checked = validate(drift, f"{SUITE}_drift", [
            gx.expectations.ExpectColumnValuesToBeBetween(column="psi", max_value=err),
            warning(gx.expectations.ExpectColumnValuesToBeBetween(column="psi", max_value=warn)),
        ], id_column="model_feature", descriptions={0: f"feature PSI vs training reference at most {err:g} (error)",
                                                    1: f"feature PSI at most {warn:g} (warning)"},
            docs_dir=docs_dir)
        # a failed drift outcome names each feature and its PSI ("psi of x (churn) is 0.44 (warn above 0.1)")
        parts.append(name_drift(checked, drift, "model_feature", "psi", warn, err, feature_label))
    elif not notes:
        extra.append(outcome("drift_reference", True, "no drift reference given", description="note"))
    return combine(SUITE, parts, extra)
