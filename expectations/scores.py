"""The scores suite: ``player_scores`` of one as-of date.

* key ``(player_id, model)`` unique, every row's player in ``dim_player``;
* probability models' scores in [0, 1] and not null; uplift scores (EUR cents or a
  probability difference, may be negative) only finite;
* share of the scoring population (profiling consent and a feature row) scored by each
  probability model at least ``min_scored_share`` (failing rows: the unscored players);
* score PSI of each champion against its training reference (error above ``psi_error``,
  warning above ``psi_warn``; :func:`champion_score_psi`).
"""

from __future__ import annotations

from pathlib import Path

import great_expectations as gx
import numpy as np
import pandas as pd

from crm.warehouse import isin
from expectations.drift import name_drift, score_label
from expectations.marts import referential_integrity
from expectations.thresholds import threshold
from expectations.validate import GateResult, combine, outcome, validate, warning

SUITE = "scores"


def probability_models() -> tuple[str, ...]:
    from ml.models import MODELS

    return tuple(MODELS)


def champion_score_psi(tracking_uri: str, scores: pd.DataFrame, features: pd.DataFrame
                       ) -> tuple[dict[str, float], list[str]]:
    """{model: score PSI} of the written scores against each champion's training reference
    (in the model's population, as :func:`ml.score.drift_report`), and notes for the rest."""
    from ml import registry
    from ml.models import MODELS
    from ml.score import drift_report, resolve

    out: dict[str, float] = {}
    notes: list[str] = []
    for name, cfg in MODELS.items():
        s = scores[scores["model"] == name]
        if s.empty:
            notes.append(f"{name}: no scores, drift not checked")
            continue
        try:
            loaded = resolve(tracking_uri, cfg.registered_name)
        except registry.NoModelError:
            notes.append(f"{name}: no champion, drift not checked")
            continue
        f = features.merge(s[["player_id", "score"]], on="player_id", how="inner")
        report = drift_report(loaded.reference, f, f["score"].to_numpy(dtype=float))
        if not report.get("available"):
            notes.append(f"{name}: {report.get('reason', 'no reference')}, drift not checked")
            continue
        out[name] = float(report["score_psi"])
    return out, notes


def gate_scores(scores: pd.DataFrame, population: pd.Series, dim_player: pd.DataFrame, *,
                psi: dict[str, float] | None = None, notes: list[str] | None = None,
                probability: tuple[str, ...] | None = None, min_scored_share: float | None = None,
                psi_warn: float | None = None, psi_error: float | None = None,
                docs_dir: str | Path | None = None) -> GateResult:
    """``scores``: player_id, model, score (one as-of date); ``population``: the player ids that
    must be scored by every probability model; ``psi``: {model: score PSI}."""
    prob = probability_models() if probability is None else probability
    share = threshold("min_scored_share") if min_scored_share is None else min_scored_share
    warn = threshold("psi_warn") if psi_warn is None else psi_warn
    err = threshold("psi_error") if psi_error is None else psi_error
    df, ri = referential_integrity(scores[["player_id", "model", "score"]], dim_player, "player_scores")
    is_prob = df["model"].isin(prob)
    df["probability_score"] = df["score"].where(is_prob)
    df["uplift_score_finite"] = (~is_prob | np.isfinite(pd.to_numeric(df["score"], errors="coerce"))).astype(bool)
    df["probability_score_present"] = (~is_prob | df["score"].notna()).astype(bool)
    exps = [gx.expectations.ExpectColumnValuesToNotBeNull(column="player_id"),
            gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["player_id", "model"]), ri,
            gx.expectations.ExpectColumnValuesToBeBetween(column="probability_score", min_value=0.0, max_value=1.0),
            gx.expectations.ExpectColumnValuesToBeInSet(column="probability_score_present", value_set=[True]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="uplift_score_finite", value_set=[True])]
    desc = {1: "one score per player and model", 2: "every score has a player in dim_player",
            3: f"probability scores ({', '.join(prob)}) within [0, 1]",
            5: "uplift scores finite (not probabilities: no range)"}
    parts = [validate(df, f"{SUITE}_values", exps, id_column="player_id", descriptions=desc, docs_dir=docs_dir)]
    pop = pd.Series(population).dropna().drop_duplicates().reset_index(drop=True)
    cov = pd.concat([pd.DataFrame({"player_id": pop.to_numpy(), "model": m,
                                   "scored": isin(pop, scores.loc[scores["model"] == m, "player_id"])})
                     for m in prob], ignore_index=True) if len(pop) and prob else pd.DataFrame(
        {"player_id": pd.Series([], dtype=object), "model": [], "scored": pd.Series([], dtype=bool)})
    cov["scored"] = cov["scored"].astype(bool)
    mostly = {"mostly": share} if share < 1 else {}
    parts.append(validate(cov, f"{SUITE}_coverage",
                          [gx.expectations.ExpectColumnValuesToBeInSet(column="scored", value_set=[True], **mostly)],
                          id_column="player_id",
                          descriptions={0: f"share of active players (profiling consent + feature row) scored "
                                           f"by each model at least {share:g}"}, docs_dir=docs_dir))
    extra = [outcome("drift_reference", True, n, description="note") for n in (notes or [])]
    if psi:
        drift = pd.DataFrame({"model": list(psi), "score_psi": [float(v) for v in psi.values()]})
        checked = validate(drift, f"{SUITE}_drift", [
            gx.expectations.ExpectColumnValuesToBeBetween(column="score_psi", max_value=err),
            warning(gx.expectations.ExpectColumnValuesToBeBetween(column="score_psi", max_value=warn)),
        ], id_column="model", descriptions={0: f"score PSI vs training reference at most {err:g} (error)",
                                            1: f"score PSI at most {warn:g} (warning)"}, docs_dir=docs_dir)
        # a failed drift outcome names each model and its PSI ("score psi of churn is 0.15 (warn above 0.1)")
        parts.append(name_drift(checked, drift, "model", "score_psi", warn, err, score_label))
    return combine(SUITE, parts, extra)
