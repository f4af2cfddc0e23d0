"""The gate on every campaign list before dispatch.

The eligibility check here is recomputed from the player profile with its own SQL, on
purpose *not* with :mod:`crm.eligibility`: a gate that trusted the list builder's code
would pass the builder's bugs. It checks the core compliance rules (channel consent,
self-exclusion now or ended without return, cooling-off, harm flag, minimum age,
profiling consent for any row that carries a model score), the jurisdiction rules that
the profile can prove (NL: no bonus under 24; UK: wagering at most 10x and consent for the
list's product; SE: no bonus to a player who already had one; an unknown jurisdiction gets
all of them) and that the player exists in the profile. For a campaign targeted by uplift
it also checks, from the list alone, that the offer cost of the treated (non-holdout) rows
is within the budget and that every listed player's predicted uplift is above the
campaign's minimum.

Across the lists of one day (``day_lists``: the published lists of the higher-priority
campaigns of the same as-of date), it checks for each treated player of this list that
the day's offers stay within the cost per player per day, that nobody gets a second bonus
offer that day, and that the per-channel and global daily message caps hold (skipped for a
transactional campaign, which may bypass caps). Messages of earlier days are not visible
from the lists; the builder counts them.

List size: within a band around the median size of the campaign's recent runs
(:func:`recent_list_sizes` reads the earlier manifests under ``lists/<campaign>/``;
:func:`list_size_band`); without history the expectation is skipped with a note.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import great_expectations as gx
import pandas as pd

from expectations.thresholds import threshold
from expectations.validate import GateResult, outcome, validate

REQUIRED_COLUMNS = ("player_id", "campaign_id", "channel", "variant", "as_of_date", "offer_cost_eur_cents")
SUITE = "campaign_list"

_KNOWN = "('UK', 'MT', 'NL', 'SE', 'DE')"
_BONUS = "l.offer_template IN ('bonus', 'cashback', 'free_spins')"
# the rules of a jurisdiction apply to it and to any unknown one (the strictest set)
_IN = "(p.country = '{code}' OR p.country IS NULL OR p.country NOT IN " + _KNOWN + ")"

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
              THEN 'scored without profiling consent' END,
         CASE WHEN {bonus} AND {nl} AND coalesce(p.age_years, 0) < 24 THEN 'bonus under 24 (NL)' END,
         CASE WHEN {bonus} AND {uk} AND coalesce(l.offer_wagering, 1e9) > 10 THEN 'wagering over 10x (UK)' END,
         CASE WHEN {bonus} AND {se} AND coalesce(p.bonuses_received, 1) > 0
              THEN 'bonus after a first bonus (SE)' END,
         CASE WHEN {uk} AND NOT coalesce(list_contains(string_split(
                CASE l.channel WHEN 'email' THEN p.consent_email_products WHEN 'push' THEN p.consent_push_products
                               WHEN 'sms' THEN p.consent_sms_products WHEN 'in_app' THEN p.consent_in_app_products
                END, ','), l.product), false)
              THEN 'no consent for product ' || coalesce(l.product, '?') || ' (UK)' END
       ) AS violation
FROM lst l LEFT JOIN profile p USING (player_id)
"""


# Columns the checks read; absent ones are NULL, which every check treats as failing.
_PROFILE_COLUMNS = {
    "player_id": "VARCHAR", "country": "VARCHAR", "age_years": "DOUBLE", "self_excluded_now": "BOOLEAN",
    "ever_self_excluded": "BOOLEAN", "returned_after_exclusion": "BOOLEAN", "cooling_off_now": "BOOLEAN",
    "harm_risk_flag": "BOOLEAN", "consent_profiling": "BOOLEAN", "bonuses_received": "DOUBLE",
    **{f"consent_{ch}": "BOOLEAN" for ch in ("email", "push", "sms", "in_app")},
    **{f"consent_{ch}_products": "VARCHAR" for ch in ("email", "push", "sms", "in_app")},
}
_LIST_COLUMNS = {"player_id": "VARCHAR", "channel": "VARCHAR", "product": "VARCHAR", "offer_template": "VARCHAR",
                 "offer_wagering": "DOUBLE"}


def _typed(name: str, df: pd.DataFrame, columns: dict[str, str]) -> str:
    """A SELECT over registered frame ``name`` with every column of ``columns`` (NULL when absent)."""
    return ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' if c in df.columns else f'CAST(NULL AS {t}) AS "{c}"'
                     for c, t in columns.items())


def recompute_violations(lst: pd.DataFrame, profile: pd.DataFrame) -> pd.Series:
    """Per list row, the first compliance violation found from the profile, or None."""
    if lst.empty:
        return pd.Series([], dtype=object)
    con = duckdb.connect()
    try:
        frame = lst.reset_index(drop=True).assign(_row=lambda d: range(len(d)))
        con.register("lst_raw", frame)
        con.register("profile_raw", profile)
        scores = [c for c in lst.columns if str(c).endswith("_score")]
        con.execute(f"CREATE TEMP VIEW lst AS SELECT _row, {_typed('lst_raw', frame, _LIST_COLUMNS)}"
                    + "".join(f', "{c}"' for c in scores) + " FROM lst_raw")
        con.execute(f"CREATE TEMP VIEW profile AS SELECT {_typed('profile_raw', profile, _PROFILE_COLUMNS)} "
                    "FROM profile_raw")
        # Any model score on a row (churn, deposit intent, uplift, ...) is profiling.
        scored = " OR ".join(f'l."{c}" IS NOT NULL' for c in scores) or "false"
        sql = _RECOMPUTE_SQL.format(scored=scored, bonus=_BONUS, nl=_IN.format(code="NL"), uk=_IN.format(code="UK"),
                                    se=_IN.format(code="SE")).replace("SELECT l.player_id,",
                                                                      "SELECT l._row, l.player_id,")
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


def day_checks(lst: pd.DataFrame, day_lists: list[pd.DataFrame], *, max_cost_per_player_cents: int | None = None,
               bonus_offers_per_day: int | None = None, channel_day_cap: int | None = None,
               global_day_cap: int | None = None) -> pd.DataFrame:
    """Per row of ``lst``: whether the day's limits hold with the other lists of the day.

    Only treated rows send anything (a holdout row always passes). For a treated row: its
    offer cost plus the player's treated offer costs in ``day_lists`` within
    ``max_cost_per_player_cents`` (a free offer adds nothing); for a bonus row, no treated
    bonus row of the player in ``day_lists`` beyond ``bonus_offers_per_day`` - 1; one more
    message on the row's channel (all channels) within ``channel_day_cap``
    (``global_day_cap``). A limit that is None is not checked (column all True).
    """
    sent = lst["variant"].astype(str).to_numpy() != "holdout"
    others = [d[d["variant"].astype(str) != "holdout"] for d in day_lists if len(d)]
    other = (pd.concat([d[["player_id", "channel", "offer_template", "offer_cost_eur_cents"]] for d in others],
                       ignore_index=True) if others
             else pd.DataFrame({"player_id": [], "channel": [], "offer_template": [], "offer_cost_eur_cents": []}))
    other = other.assign(player_id=other["player_id"].astype(str),
                         # a negative cost (a broken list) never makes room under the cap: counted as 0
                         cost=pd.to_numeric(other["offer_cost_eur_cents"], errors="coerce").fillna(float("inf"))
                         .clip(lower=0),
                         bonus=other["offer_template"].isin(["bonus", "cashback", "free_spins"]))
    pid = lst["player_id"].astype(str)
    cost_before = pid.map(other.groupby("player_id")["cost"].sum()).fillna(0).to_numpy(dtype=float)
    bonus_before = pid.map(other.groupby("player_id")["bonus"].sum()).fillna(0).to_numpy(dtype=float)
    msgs_before = pid.map(other.groupby("player_id").size()).fillna(0).to_numpy(dtype=float)
    ch_key = pid + "|" + lst["channel"].astype(str)
    ch_counts = (other["player_id"] + "|" + other["channel"].astype(str)).value_counts()
    ch_before = ch_key.map(ch_counts).fillna(0).to_numpy(dtype=float)
    cost = (pd.to_numeric(lst["offer_cost_eur_cents"], errors="coerce").fillna(float("inf")).clip(lower=0)
            .to_numpy(dtype=float))
    is_bonus = lst["offer_template"].isin(["bonus", "cashback", "free_spins"]).to_numpy(dtype=bool)
    ok = pd.DataFrame(index=lst.index)
    ok["day_cost_within_cap"] = ~sent | (cost == 0) | (
        True if max_cost_per_player_cents is None else cost_before + cost <= max_cost_per_player_cents)
    ok["one_bonus_offer_per_day"] = ~sent | ~is_bonus | (
        True if bonus_offers_per_day is None else bonus_before + 1 <= bonus_offers_per_day)
    ok["channel_day_cap"] = ~sent | (True if channel_day_cap is None else ch_before + 1 <= channel_day_cap)
    ok["global_day_cap"] = ~sent | (True if global_day_cap is None else msgs_before + 1 <= global_day_cap)
    return ok.astype(bool)


def recent_list_sizes(campaign_dir: Path, as_of: dt.date, runs: int | None = None) -> list[int]:
    """Listed counts of the ``runs`` latest published lists of a campaign before ``as_of``
    (from ``<campaign_dir>/<date>/manifest.json``; oldest first)."""
    n = int(threshold("list_size_history_runs") if runs is None else runs)
    found = []
    for mf in sorted(Path(campaign_dir).glob("*/manifest.json")):
        try:
            day = dt.date.fromisoformat(mf.parent.name)
        except ValueError:  # temporary / old folders of an atomic publish
            continue
        if day < as_of:
            counts = json.loads(mf.read_text()).get("counts", {})
            if "listed" in counts:
                found.append(int(counts["listed"]))
    return found[-n:] if n > 0 else []


def list_size_band(history: list[int], band: float | None = None, slack: float | None = None
                   ) -> tuple[float, float, float] | None:
    """(low, high, median) allowed list size: median * (1 ± band), widened by ``slack`` rows;
    None without history."""
    if not history:
        return None
    b = threshold("list_size_band") if band is None else band
    k = threshold("list_size_slack_rows") if slack is None else slack
    med = float(pd.Series(history).median())
    return max(0.0, med * (1 - b) - k), med * (1 + b) + k, med


def gate_list(lst: pd.DataFrame, profile: pd.DataFrame, holdout_share: float,
              variants: list[str], *, budget_cents: int | None = None,
              min_uplift_cents: float | None = None, day_lists: list[pd.DataFrame] | None = None,
              max_cost_per_player_cents: int | None = None, bonus_offers_per_day: int | None = None,
              channel_day_cap: int | None = None, global_day_cap: int | None = None,
              size_history: list[int] | None = None, docs_dir: str | Path | None = None) -> GateResult:
    """Run the campaign-list suite; ``success`` False means the list must not be dispatched.

    ``budget_cents``: the campaign's offer budget (the treated rows' ``offer_cost_eur_cents``
    must sum to at most this); ``min_uplift_cents``: for a campaign targeted by uplift,
    every row's ``uplift_ngr_score`` must be above it (``CampaignSpec.target`` gives both;
    None: not checked). ``day_lists`` (the published higher-priority lists of the same day)
    and the day's limits: see :func:`day_checks` (each given limit adds an expectation;
    ``max_cost_per_player_cents`` is also checked on this list alone). ``size_history``:
    listed counts of recent runs (:func:`recent_list_sizes`; empty or None: passes with a
    note). ``docs_dir``: build GX Data Docs there.
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
    limits = {"day_cost_within_cap": max_cost_per_player_cents, "one_bonus_offer_per_day": bonus_offers_per_day,
              "channel_day_cap": channel_day_cap, "global_day_cap": global_day_cap}
    if any(v is not None for v in limits.values()) and len(df):
        ok = day_checks(df, list(day_lists or []), max_cost_per_player_cents=max_cost_per_player_cents,
                        bonus_offers_per_day=bonus_offers_per_day, channel_day_cap=channel_day_cap,
                        global_day_cap=global_day_cap)
        for col, limit in limits.items():
            if limit is None:
                continue
            df[col] = ok[col].to_numpy()
            exps.append(gx.expectations.ExpectColumnValuesToBeInSet(column=col, value_set=[True]))
            descriptions[len(exps) - 1] = (f"{col.replace('_', ' ')} ({limit}) with the "
                                           f"{len(day_lists or [])} higher-priority lists of the day")
    band = list_size_band(list(size_history or []))
    if band is not None:
        low, high, med = band
        exps.append(gx.expectations.ExpectTableRowCountToBeBetween(min_value=int(low // 1),
                                                                   max_value=int(-(-high // 1))))
        descriptions[len(exps) - 1] = (f"list size within [{low:.0f}, {high:.0f}] around the median {med:g} "
                                       f"of the {len(size_history or [])} recent runs")
    result = validate(df, SUITE, exps, id_column="player_id", descriptions=descriptions, docs_dir=docs_dir)
    if band is None:
        result.outcomes.append(outcome("list_size_within_recent_band", True, len(df),
                                       description="no earlier run of this campaign: size not checked (note)"))
    return result
