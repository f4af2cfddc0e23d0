"""The gate on every campaign list before dispatch.

The eligibility check here is recomputed from the player profile with its own SQL, on
purpose *not* with :mod:`crm.eligibility`: a gate that trusted the list builder's code
would pass the builder's bugs. It checks the core compliance rules (channel consent,
self-exclusion now or ended without return, cooling-off, harm flag, minimum age,
profiling consent for any row that carries a model score) and that the player exists in
the profile. For a campaign targeted by uplift it also checks, from the list alone, that
the offer cost of the treated (non-holdout) rows is within the budget and that every
listed player's predicted uplift is above the campaign's minimum.
"""

from __future__ import annotations

import duckdb
import great_expectations as gx
import pandas as pd

from expectations.validate import GateResult, validate

REQUIRED_COLUMNS = ("player_id", "campaign_id", "channel", "variant", "as_of_date", "offer_cost_eur_cents")
SUITE = "campaign_list"

_RECOMPUTE_SQL = """
SELECT l.player_id,
       coalesce(
         CASE WHEN p.player_id IS NULL THEN 'not in profile' END,
         CASE WHEN coalesce(p.age_years, 0) < 18 THEN 'under 18' END,
         CASE WHEN coalesce(p.self_excluded_now, true) THEN 'self-excluded' END,
         CASE WHEN coalesce(p.ever_self_excluded, true)
                   AND NOT coalesce(p.returned_after_exclusion, false) THEN 'excluded, not returned' END,
         CASE WHEN coalesce(p.cooling_off_now, true) THEN 'cooling off' END,
         CASE WHEN coalesce(p.harm_risk_flag, true) THEN 'harm risk' END,
         CASE WHEN NOT coalesce(
                CASE l.channel WHEN 'email' THEN p.consent_email WHEN 'push' THEN p.consent_push
                               WHEN 'sms' THEN p.consent_sms WHEN 'in_app' THEN p.consent_in_app END,
                false) THEN 'no consent for ' || l.channel END,
         CASE WHEN ({scored}) AND NOT coalesce(p.consent_profiling, false)
              THEN 'scored without profiling consent' END
       ) AS violation
FROM lst l LEFT JOIN profile p USING (player_id)
"""


def recompute_violations(lst: pd.DataFrame, profile: pd.DataFrame) -> pd.Series:
    """Per list row, the first compliance violation found from the profile, or None."""
    if lst.empty:
        return pd.Series([], dtype=object)
    con = duckdb.connect()
    try:
        con.register("lst", lst.reset_index(drop=True).assign(_row=lambda d: range(len(d))))
        con.register("profile", profile)
        # Any model score on a row (churn, deposit intent, uplift, ...) is profiling.
        scored = " OR ".join(f'l."{c}" IS NOT NULL' for c in lst.columns if str(c).endswith("_score")) or "false"
        sql = _RECOMPUTE_SQL.format(scored=scored).replace("SELECT l.player_id,", "SELECT l._row, l.player_id,")
        out = con.execute(sql + " ORDER BY l._row").df()
    finally:
        con.close()
    return out["violation"]


def holdout_tolerance(share: float, n: int) -> float:
    """Allowed deviation of the observed holdout share: 4 standard errors, at least 2 points."""
    if n == 0:
        return 1.0
    return max(0.02, 4 * (share * (1 - share) / n) ** 0.5)


def _treated_cost(df: pd.DataFrame) -> pd.Series:
    """Offer cost per row of the treated; the holdout is never sent the offer (0). A treated
    row without a cost fails closed (infinite)."""
    cost = (pd.to_numeric(df["offer_cost_eur_cents"], errors="coerce").astype(float)
            if "offer_cost_eur_cents" in df else pd.Series(float("nan"), index=df.index))
    return cost.fillna(float("inf")).where(df["variant"] != "holdout", 0.0)


def gate_list(lst: pd.DataFrame, profile: pd.DataFrame, holdout_share: float,
              variants: list[str], *, budget_cents: int | None = None,
              min_uplift_cents: float | None = None) -> GateResult:
    """Run the campaign-list suite; ``success`` False means the list must not be dispatched.

    ``budget_cents``: the campaign's offer budget (the treated rows' ``offer_cost_eur_cents``
    must sum to at most this); ``min_uplift_cents``: for a campaign targeted by uplift,
    every row's ``uplift_ngr_score`` must be above it (``CampaignSpec.target`` gives both;
    None: not checked).
    """
    df = lst.copy()
    df["compliance_violation"] = recompute_violations(df, profile).to_numpy() if len(df) else []
    df["compliance_violation"] = df["compliance_violation"].fillna("none")
    df["is_holdout"] = (df["variant"] == "holdout").astype(float) if len(df) else []
    df["treated_cost_eur_cents"] = _treated_cost(df) if len(df) else []
    tol = holdout_tolerance(holdout_share, len(df))
    exps = [
        gx.expectations.ExpectTableColumnsToMatchSet(column_set=list(REQUIRED_COLUMNS), exact_match=False),
        gx.expectations.ExpectColumnValuesToBeInSet(column="compliance_violation", value_set=["none"]),
        gx.expectations.ExpectColumnValuesToNotBeNull(column="player_id"),
        gx.expectations.ExpectColumnValuesToBeUnique(column="player_id"),
        gx.expectations.ExpectColumnValuesToBeInSet(column="variant", value_set=[*variants, "holdout"]),
        gx.expectations.ExpectColumnValuesToBeBetween(column="offer_cost_eur_cents", min_value=0),
    ]
    descriptions = {1: "no ineligible player (recomputed from the profile)", 3: "unique player per campaign"}
    if len(df):
        exps.append(gx.expectations.ExpectColumnMeanToBeBetween(
            column="is_holdout", min_value=max(0.0, holdout_share - tol), max_value=min(1.0, holdout_share + tol)))
        descriptions[len(exps) - 1] = f"holdout share {holdout_share:.2f} ± {tol:.3f}"
    if budget_cents is not None and len(df):
        exps.append(gx.expectations.ExpectColumnSumToBeBetween(
            column="treated_cost_eur_cents", min_value=0, max_value=float(budget_cents)))
        descriptions[len(exps) - 1] = f"offer cost of the treated within the budget ({budget_cents} EUR cents)"
    if min_uplift_cents is not None:
        uplift = (pd.to_numeric(df["uplift_ngr_score"], errors="coerce") if "uplift_ngr_score" in df
                  else pd.Series(float("nan"), index=df.index))
        df["uplift_above_min"] = (uplift > min_uplift_cents).astype(bool)  # NULL: not above
        exps.append(gx.expectations.ExpectColumnValuesToBeInSet(column="uplift_above_min", value_set=[True]))
        descriptions[len(exps) - 1] = f"every listed player's predicted uplift above {min_uplift_cents} EUR cents"
    return validate(df, SUITE, exps, id_column="player_id", descriptions=descriptions)
