"""Campaign readouts: the holdout-based effect of a randomized campaign, and what last touch claims.

Input: rows of the ``fct_campaign_outcomes`` mart, one per assignment (campaign_id,
player_id, arm treatment | control, outcomes after the send; NULL while a window is
incomplete). Per campaign:

* arm sizes and, when the expected control share is known, the sample-ratio-mismatch
  p-value (:func:`crm.campaigns.experiments.srm_pvalue`; flagged below :data:`SRM_ALPHA`);
* effects on conversion (a deposit within 7 days), deposits, deposit EUR, NGR (14 days) and
  reactivation: treated and control means, the difference with a 95 % confidence interval
  (normal approximations: Welch for counts and money, Agresti-Caffo for 0/1 outcomes, which
  keeps its coverage with few events), the relative lift and the
  incremental total over the treated group (difference x treated players, CI scaled alike);
* bonus cost and ROI. NGR in the warehouse is stake - win - bonus cost, i.e. already net of
  every bonus, so the incremental NGR is the campaign's net return and
  **ROI = incremental NGR / campaign bonus cost** (0 = break-even, -1 = the bonus bought
  nothing back). The cost is the cost of bonuses issued under the campaign (campaign_id on
  the bonus) to the treated group; when the casino does not tag bonuses, the incremental
  bonus cost (treated - control, x treated players) when it is significantly positive;
  otherwise the campaign has no bonus cost and no ROI;
* RG and message guardrails (limit hits, self-exclusions, complaints, unsubscribes):
  treated vs control with a CI, flagged when the treated rate is higher by a one-sided test
  at 5 % (Fisher's exact test for 0/1 outcomes, Welch's t-test for counts). Complaints and
  unsubscribes are about this campaign's messages, so control players have none by
  construction: the flag then says the campaign caused a significant number of them;
* last-touch attribution: a treated player's first deposit in the 7 days after the send is
  attributed to the campaign when the last touch of its messages before the deposit (click,
  else open, else delivery at equal times) is at most ``attribution_window_days`` earlier.
  Attributed conversions are shown beside the holdout-based incremental conversions; their
  ratio is how much last touch over-claims (players who would have deposited anyway still
  touched the message).

Only rows whose window is complete enter a metric (each metric reports its own n). Money
is reported in EUR (the mart holds EUR cents). Pure functions over DataFrames; plots are
``matplotlib.figure.Figure`` objects (no pyplot state).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from crm.campaigns.experiments import srm_pvalue
from crm.config import Paths

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OUTCOMES_TABLE = "fct_campaign_outcomes"
TREATMENT, CONTROL = "treatment", "control"
ALPHA = 0.05  # 95 % intervals, one-sided guardrail tests at 5 %
SRM_ALPHA = 0.001  # the usual sample-ratio-mismatch alarm level
DEFAULT_ATTRIBUTION_WINDOW_DAYS = 7.0
DEPOSIT_WINDOW_DAYS = 7  # the mart's first_deposit_at looks 7 days after the send
NO_ASSIGNMENTS = "no assignments yet"
NOT_MATURED = "no matured assignments yet"
OK = "ok"


@dataclass(frozen=True)
class Metric:
    column: str
    label: str
    kind: str  # share (0/1) | count | eur (the mart holds EUR cents)
    window_days: int

    @property
    def complete_column(self) -> str:
        return "outcome_7d_complete" if self.window_days <= 7 else "outcome_14d_complete"

    @property
    def unit(self) -> str:
        return {"share": "share of players", "count": "per player", "eur": "EUR per player"}[self.kind]


EFFECT_METRICS = (
    Metric("converted_7d", "conversion (a deposit within 7 days)", "share", 7),
    Metric("deposits_7d", "deposits (7 days)", "count", 7),
    Metric("deposit_eur_7d", "deposit EUR (7 days)", "eur", 7),
    Metric("ngr_eur_14d", "NGR EUR, net of bonus (14 days)", "eur", 14),
    Metric("reactivated_14d", "reactivation (active within 14 days after 30 dormant)", "share", 14),
)
BONUS_METRIC = Metric("bonus_cost_eur_14d", "bonus cost EUR (14 days, all bonuses)", "eur", 14)
CAMPAIGN_BONUS_METRIC = Metric("campaign_bonus_cost_eur_14d", "campaign bonus cost EUR (14 days)", "eur", 14)
GUARDRAIL_METRICS = (
    Metric("rg_limit_hits_14d", "RG limit hits (14 days)", "count", 14),
    Metric("self_excluded_14d", "self-exclusion started (14 days)", "share", 14),
    Metric("complained", "complaint about the campaign", "share", 14),
    Metric("unsubscribed", "unsubscribe from the campaign", "share", 14),
)
TOUCHES = (("delivery", "first_delivery_at"), ("open", "first_open_at"), ("click", "first_click_at"))


# --------------------------------------------------------------------------- statistics
def _num(x: float | None) -> float | None:
    """A JSON-friendly float: None for NaN / inf / missing."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def diff_in_means(treated: Sequence[float] | np.ndarray, control: Sequence[float] | np.ndarray,
                  alpha: float = ALPHA, binary: bool = False) -> dict:
    """Difference of means (treated - control) with a (1 - alpha) CI and a two-sided p-value.

    Welch: unequal variances, Welch-Satterthwaite degrees of freedom. ``binary`` (0/1
    outcomes): the Agresti-Caffo interval (the Wald interval after adding one success and one
    failure to each arm), which keeps its coverage when an arm has few or no events (a
    guardrail like self-exclusions); the point estimate stays the raw difference.
    """
    from scipy import stats

    t = np.asarray(treated, dtype=float)
    c = np.asarray(control, dtype=float)
    n1, n0 = len(t), len(c)
    out = {"n_treatment": n1, "n_control": n0,
           "treatment_mean": _num(t.mean()) if n1 else None, "control_mean": _num(c.mean()) if n0 else None,
           "diff": None, "ci_low": None, "ci_high": None, "se": None, "p_value": None,
           "ci_method": "Agresti-Caffo" if binary else "Welch"}
    if not n1 or not n0:
        return out
    diff = float(t.mean() - c.mean())
    out["diff"] = diff
    if binary:
        p1, p0 = (t.sum() + 1) / (n1 + 2), (c.sum() + 1) / (n0 + 2)
        centre = p1 - p0
        se = math.sqrt(p1 * (1 - p1) / (n1 + 2) + p0 * (1 - p0) / (n0 + 2))
        q = float(stats.norm.ppf(1 - alpha / 2))
        out.update(ci_low=centre - q * se, ci_high=centre + q * se, se=se,
                   p_value=float(2 * stats.norm.sf(abs(centre) / se)))
        return out
    if n1 < 2 or n0 < 2:
        return out
    v1, v0 = t.var(ddof=1) / n1, c.var(ddof=1) / n0
    se = math.sqrt(v1 + v0)
    if se == 0:
        out.update(ci_low=diff, ci_high=diff, se=0.0, p_value=1.0 if diff == 0 else 0.0)
        return out
    df = (v1 + v0) ** 2 / (v1 ** 2 / (n1 - 1) + v0 ** 2 / (n0 - 1))
    q = float(stats.t.ppf(1 - alpha / 2, df))
    out.update(ci_low=diff - q * se, ci_high=diff + q * se, se=se,
               p_value=float(2 * stats.t.sf(abs(diff) / se, df)))
    return out


def rise_pvalue(treated: np.ndarray, control: np.ndarray, binary: bool) -> float | None:
    """One-sided p-value of H1 'treated higher than control' (Fisher exact for 0/1, else Welch t)."""
    from scipy import stats

    t = np.asarray(treated, dtype=float)
    c = np.asarray(control, dtype=float)
    if not len(t) or not len(c):
        return None
    if binary:
        k1, k0 = int(t.sum()), int(c.sum())
        table = [[k1, len(t) - k1], [k0, len(c) - k0]]
        return float(stats.fisher_exact(table, alternative="greater").pvalue)
    if len(t) < 2 or len(c) < 2:
        return None
    if t.var() == 0 and c.var() == 0:
        return 1.0 if t.mean() <= c.mean() else 0.0
    return _num(stats.ttest_ind(t, c, equal_var=False, alternative="greater").pvalue)


def _arm_values(rows: pd.DataFrame, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    done = rows[rows[metric.complete_column].fillna(False).astype(bool) & rows[metric.column].notna()]
    scale = 0.01 if metric.kind == "eur" else 1.0
    vals = done[metric.column].astype(float).to_numpy() * scale
    arm = done["arm"].to_numpy()
    return vals[arm == TREATMENT], vals[arm == CONTROL]


def effect(rows: pd.DataFrame, metric: Metric, alpha: float = ALPHA) -> dict:
    """One metric's treated vs control comparison, scaled to the treated group."""
    t, c = _arm_values(rows, metric)
    d = diff_in_means(t, c, alpha, binary=metric.kind == "share")
    n1 = d["n_treatment"]
    cm = d["control_mean"]

    def scale(v: float | None) -> float | None:
        return None if v is None else v * n1

    return {"metric": metric.column, "label": metric.label, "kind": metric.kind, "unit": metric.unit,
            "window_days": metric.window_days, **d,
            "relative_lift": _num(d["diff"] / cm) if d["diff"] is not None and cm else None,
            "incremental_total": scale(d["diff"]), "incremental_ci_low": scale(d["ci_low"]),
            "incremental_ci_high": scale(d["ci_high"]),
            "significant": d["p_value"] is not None and d["p_value"] < alpha}


def guardrail(rows: pd.DataFrame, metric: Metric, alpha: float = ALPHA) -> dict:
    t, c = _arm_values(rows, metric)
    out = effect(rows, metric, alpha)
    p = rise_pvalue(t, c, binary=metric.kind == "share")
    out["p_value_rise"] = p
    out["test"] = "Fisher exact, one-sided" if metric.kind == "share" else "Welch t, one-sided"
    out["flagged"] = bool(p is not None and p < alpha and (out["diff"] or 0) > 0)
    return out


def last_touch(rows: pd.DataFrame, window_days: float = DEFAULT_ATTRIBUTION_WINDOW_DAYS) -> pd.Series:
    """Per row, the touch a last-touch model credits the first deposit to (NaN: not attributed).

    The last touch before the deposit (click > open > delivery at equal times) counts when it
    is at most ``window_days`` before the deposit. Only the first deposit of the 7 days after
    the send and the first touch of each kind are known (the mart's columns).
    """
    if window_days <= 0:
        raise ValueError(f"attribution window must be positive, got {window_days}")
    dep = pd.to_datetime(rows["first_deposit_at"])
    window = pd.Timedelta(days=window_days)
    best_ts = pd.Series(pd.NaT, index=rows.index, dtype="datetime64[ns]")
    best = pd.Series(None, index=rows.index, dtype=object)
    for kind, col in TOUCHES:  # later kinds win ties
        ts = pd.to_datetime(rows[col]).astype("datetime64[ns]")
        ok = ts.notna() & dep.notna() & (ts <= dep) & ((dep - ts) <= window)
        better = ok & (best_ts.isna() | (ts >= best_ts))
        best_ts = best_ts.where(~better, ts)
        best = best.where(~better, kind)
    return best


def attribution(rows: pd.DataFrame, conversion: dict, window_days: float = DEFAULT_ATTRIBUTION_WINDOW_DAYS) -> dict:
    """Last-touch attributed conversions vs the holdout-based incremental conversions."""
    done = rows[rows["outcome_7d_complete"].fillna(False).astype(bool) & (rows["arm"] == TREATMENT)]
    credited = last_touch(done, window_days)
    by_touch = {kind: int((credited == kind).sum()) for kind, _ in reversed(TOUCHES)}
    attributed = int(credited.notna().sum())
    inc, inc_hi = conversion.get("incremental_total"), conversion.get("incremental_ci_high")
    treated_conv = int(done["converted_7d"].fillna(False).astype(bool).sum())
    return {
        "window_days": float(window_days),
        "treated_players": len(done),
        "treated_conversions": treated_conv,
        "attributed_conversions": attributed,
        "attributed_by_touch": by_touch,
        "incremental_conversions": inc,
        "incremental_ci_low": conversion.get("incremental_ci_low"),
        "incremental_ci_high": inc_hi,
        # > 1: last touch credits the campaign with more conversions than it caused
        "over_claim_ratio": _num(attributed / inc) if inc is not None and inc > 0 else None,
        # the same against the upper end of the incremental CI: over-claiming at least this much
        "over_claim_ratio_low": _num(attributed / inc_hi) if inc_hi is not None and inc_hi > 0 else None,
        "note": ("deposits are observed for 7 days after the send" if window_days > DEPOSIT_WINDOW_DAYS else ""),
    }


def bonus_and_roi(rows: pd.DataFrame, ngr: dict, alpha: float = ALPHA) -> dict:
    """Campaign bonus cost and ROI = incremental NGR (already net of bonuses) / bonus cost."""
    all_bonus = effect(rows, BONUS_METRIC, alpha)
    t_tagged, _ = _arm_values(rows, CAMPAIGN_BONUS_METRIC)
    tagged = float(t_tagged.sum())
    inc_cost = all_bonus["incremental_total"]
    if tagged > 0:
        cost, basis = tagged, "bonuses issued under the campaign to the treated group"
    elif inc_cost is not None and (all_bonus["ci_low"] or 0) > 0:
        cost, basis = float(inc_cost), "incremental bonus cost (treated - control, x treated players)"
    else:
        cost, basis = None, "no bonus cost attributable to the campaign"
    inc_ngr = ngr.get("incremental_total")
    roi = _num(inc_ngr / cost) if cost and inc_ngr is not None else None
    lo, hi = ngr.get("incremental_ci_low"), ngr.get("incremental_ci_high")
    return {
        "campaign_bonus_cost_eur": tagged,
        "incremental_bonus_cost_eur": inc_cost,
        "incremental_bonus_cost_ci": [all_bonus["incremental_ci_low"], all_bonus["incremental_ci_high"]],
        "bonus_cost_per_treated_player_eur": all_bonus["treatment_mean"],
        "bonus_cost_per_control_player_eur": all_bonus["control_mean"],
        "cost_basis": basis,
        "cost_eur": cost,
        "incremental_ngr_eur": inc_ngr,
        "roi": roi,
        # the NGR interval over the (nearly deterministic) cost
        "roi_ci": [_num(lo / cost) if cost and lo is not None else None,
                   _num(hi / cost) if cost and hi is not None else None],
        "roi_definition": "incremental NGR (14 days, NGR already net of all bonus costs) / campaign bonus cost",
    }


# --------------------------------------------------------------------------- one campaign
def _share_for(expected: float | Mapping[str, float] | None, campaign_id: str) -> float | None:
    if isinstance(expected, Mapping):
        return expected.get(campaign_id)
    return expected


def empty_readout(campaign_id: str, status: str = NO_ASSIGNMENTS,
                  expected_control_share: float | None = None) -> dict:
    return {"campaign_id": campaign_id, "status": status, "arms": {TREATMENT: 0, CONTROL: 0},
            "expected_control_share": expected_control_share, "srm_pvalue": None, "srm_mismatch": False,
            "effects": [], "guardrails": [], "guardrails_flagged": [], "bonus": None, "attribution": None}


def campaign_readout(rows: pd.DataFrame, campaign_id: str | None = None, expected_control_share: float | None = None,
                     attribution_window_days: float = DEFAULT_ATTRIBUTION_WINDOW_DAYS, alpha: float = ALPHA) -> dict:
    """The readout of one campaign from its mart rows (see the module docstring)."""
    if campaign_id is None:
        ids = rows["campaign_id"].unique()
        if len(ids) != 1:
            raise ValueError(f"rows of {len(ids)} campaigns: pass campaign_id")
        campaign_id = str(ids[0])
    rows = rows[(rows["campaign_id"] == campaign_id) & rows["arm"].isin([TREATMENT, CONTROL])]
    if rows.empty:
        return empty_readout(campaign_id, expected_control_share=expected_control_share)
    arms = {TREATMENT: int((rows["arm"] == TREATMENT).sum()), CONTROL: int((rows["arm"] == CONTROL).sum())}
    srm = (srm_pvalue(arms, {TREATMENT: 1 - expected_control_share, CONTROL: expected_control_share})
           if expected_control_share is not None else None)
    sent = pd.to_datetime(rows["sent_at"])
    matured = {f"{n}d": {arm: int((rows[f"outcome_{n}d_complete"].fillna(False).astype(bool)
                                   & (rows["arm"] == arm)).sum()) for arm in (TREATMENT, CONTROL)}
               for n in (7, 14)}
    out = {
        "campaign_id": campaign_id,
        "channel": ", ".join(sorted(rows["channel"].dropna().astype(str).unique())),
        "sent_from": str(sent.min()), "sent_to": str(sent.max()),
        "arms": arms, "matured": matured,
        "observed_control_share": arms[CONTROL] / max(sum(arms.values()), 1),
        "expected_control_share": expected_control_share,
        "srm_pvalue": _num(srm), "srm_mismatch": bool(srm is not None and srm < SRM_ALPHA),
    }
    if not any(min(m.values()) > 0 for m in matured.values()):
        return {**empty_readout(campaign_id, NOT_MATURED, expected_control_share), **out, "status": NOT_MATURED}
    effects = [effect(rows, m, alpha) for m in EFFECT_METRICS]
    by_metric = {e["metric"]: e for e in effects}
    guards = [guardrail(rows, m, alpha) for m in GUARDRAIL_METRICS]
    return {
        **out, "status": OK,
        "effects": effects,
        "guardrails": guards,
        "guardrails_flagged": [g["metric"] for g in guards if g["flagged"]],
        "bonus": bonus_and_roi(rows, by_metric["ngr_eur_14d"], alpha),
        "attribution": attribution(rows, by_metric["converted_7d"], attribution_window_days),
    }


def readouts(rows: pd.DataFrame, campaign_ids: Sequence[str] | None = None,
             expected_control_share: float | Mapping[str, float] | None = None,
             attribution_window_days: float = DEFAULT_ATTRIBUTION_WINDOW_DAYS) -> list[dict]:
    """One readout per campaign (every campaign_id in ``rows`` unless ``campaign_ids``)."""
    ids = list(campaign_ids) if campaign_ids is not None else sorted(rows["campaign_id"].dropna().unique())
    return [campaign_readout(rows, cid, _share_for(expected_control_share, cid), attribution_window_days)
            for cid in ids]


# --------------------------------------------------------------------------- warehouse + files
def read_outcomes(paths: Paths, campaign_id: str | None = None) -> pd.DataFrame:
    """The mart's rows (of one campaign); FileNotFoundError without a warehouse or the mart."""
    from crm.warehouse import connect, table_exists

    with connect(paths) as con:
        if not table_exists(con, OUTCOMES_TABLE):
            raise FileNotFoundError(f"no {OUTCOMES_TABLE} in {paths.warehouse}: run the pipeline first (`crm run`)")
        where, params = ("WHERE campaign_id = ?", [campaign_id]) if campaign_id else ("", [])
        return con.execute(f"SELECT * FROM {OUTCOMES_TABLE} {where} ORDER BY campaign_id, player_id", params).df()


def readout(paths: Paths, campaign_id: str | None = None,
            expected_control_share: float | Mapping[str, float] | None = None,
            attribution_window_days: float = DEFAULT_ATTRIBUTION_WINDOW_DAYS) -> list[dict]:
    """Readouts from the warehouse: every campaign in the mart, or the one asked for (empty if unknown)."""
    rows = read_outcomes(paths, campaign_id)
    return readouts(rows, [campaign_id] if campaign_id and len(rows) else None,
                    expected_control_share, attribution_window_days)


def readouts_dir(paths: Paths) -> Path:
    return paths.home / "readouts"


def write_readout(paths: Paths, result: dict) -> Path:
    """``$CRM_HOME/readouts/<campaign_id>.json``, written atomically."""
    target = readouts_dir(paths) / f"{result['campaign_id']}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    os.replace(tmp, target)
    return target


# --------------------------------------------------------------------------- presentation
def _fmt(v: float | None, kind: str) -> str:
    if v is None:
        return "n/a"
    if kind == "share":
        return f"{100 * v:.2f}%"
    if kind == "pp":
        return f"{100 * v:+.2f} pp"
    if kind == "eur":
        return f"{v:,.2f}"
    return f"{v:.3f}"


def effects_table(result: dict) -> pd.DataFrame:
    """Effects and guardrails as one display table (formatted strings)."""
    out = []
    for section, items in (("effect", result.get("effects", [])), ("guardrail", result.get("guardrails", []))):
        for e in items:
            k = e["kind"]
            dk = "pp" if k == "share" else k
            ci = (f"[{_fmt(e['ci_low'], dk)}, {_fmt(e['ci_high'], dk)}]" if e["ci_low"] is not None else "n/a")
            lift = f"{100 * e['relative_lift']:+.1f}%" if e["relative_lift"] is not None else "n/a"
            flag = ("RISE" if e.get("flagged") else "ok") if section == "guardrail" else \
                ("significant" if e["significant"] else "")
            inc = e["incremental_total"]
            inc_text = "n/a" if inc is None else (f"{inc:,.0f} EUR" if k == "eur" else f"{inc:,.1f}")
            out.append({
                "metric": e["label"], "n (T/C)": f"{e['n_treatment']}/{e['n_control']}",
                "treatment": _fmt(e["treatment_mean"], k), "control": _fmt(e["control_mean"], k),
                "difference": _fmt(e["diff"], dk), "95% CI": ci, "lift": lift,
                "incremental (treated group)": inc_text,
                "flag": flag,
            })
    return pd.DataFrame(out)


def summary_line(result: dict) -> str:
    """One line: arms, SRM, ROI, guardrails and over-claim."""
    a = result["arms"]
    parts = [f"{result['campaign_id']}: {result['status']}", f"treatment {a[TREATMENT]:,} / control {a[CONTROL]:,}"]
    if result.get("srm_pvalue") is not None:
        parts.append(f"SRM p={result['srm_pvalue']:.3g}{' MISMATCH' if result['srm_mismatch'] else ''}")
    b, at = result.get("bonus"), result.get("attribution")
    if b:
        parts.append(f"ROI {b['roi']:+.2f}" if b["roi"] is not None else "ROI n/a (no bonus cost)")
    if at:
        r = at["over_claim_ratio"]
        inc = at["incremental_conversions"]
        parts.append(f"last touch {at['attributed_conversions']} vs incremental "
                     f"{'n/a' if inc is None else f'{inc:.1f}'} conversions "
                     f"(over-claim {'n/a' if r is None else f'{r:.1f}x'})")
    if result.get("status") == OK:
        flagged = result.get("guardrails_flagged") or []
        parts.append(f"guardrails: {'RISE in ' + ', '.join(flagged) if flagged else 'ok'}")
    return "; ".join(parts)


def readout_figures(result: dict) -> dict[str, Figure]:
    """``effects`` (difference with 95 % CI per metric, guardrails in red when flagged) and
    ``attribution`` (last-touch attributed vs incremental conversions). Empty without effects."""
    from matplotlib.figure import Figure

    if result.get("status") != OK:
        return {}
    items = [("effect", e) for e in result["effects"]] + [("guardrail", g) for g in result["guardrails"]]
    fig = Figure(figsize=(7, 0.75 * len(items) + 0.8))
    axes = fig.subplots(len(items), 1, squeeze=False)[:, 0]
    for ax, (section, e) in zip(axes, items, strict=True):
        scale = 100 if e["kind"] == "share" else 1
        unit = {"share": "pp", "count": e["unit"], "eur": "EUR / player"}[e["kind"]]
        color = "tab:red" if e.get("flagged") else ("tab:gray" if section == "guardrail" else "tab:blue")
        if e["diff"] is not None:
            lo = e["ci_low"] if e["ci_low"] is not None else e["diff"]
            hi = e["ci_high"] if e["ci_high"] is not None else e["diff"]
            # the Agresti-Caffo interval is not centred on the raw difference
            xerr = [[max(e["diff"] - lo, 0) * scale], [max(hi - e["diff"], 0) * scale]]
            ax.errorbar([e["diff"] * scale], [0], xerr=xerr,
                        fmt="o", color=color, capsize=4)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks([])
        ax.set_ylabel(e["label"], rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"treatment - control ({unit})", fontsize=7, loc="right", pad=2)
    fig.suptitle(f"{result['campaign_id']}: effects with 95% CI", fontsize=10)
    fig.tight_layout()

    at = result["attribution"]
    fig2 = Figure(figsize=(5.5, 3.2))
    ax = fig2.subplots()
    bottom = 0
    for kind, color in (("click", "tab:orange"), ("open", "tab:olive"), ("delivery", "tab:gray")):
        n = at["attributed_by_touch"].get(kind, 0)
        ax.bar(["last touch"], [n], bottom=bottom, color=color, label=f"last touch: {kind}")
        bottom += n
    inc = at["incremental_conversions"] or 0.0
    lo = at["incremental_ci_low"] if at["incremental_ci_low"] is not None else inc
    hi = at["incremental_ci_high"] if at["incremental_ci_high"] is not None else inc
    ax.bar(["incremental (holdout)"], [inc], color="tab:blue", yerr=[[max(inc - lo, 0)], [max(hi - inc, 0)]], capsize=6,
           label="incremental, 95% CI")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("conversions (treated group, 7 days)")
    r = at["over_claim_ratio"]
    ax.set_title(f"{result['campaign_id']}: last touch ({at['window_days']:g}-day window) vs incremental"
                 + (f", over-claim {r:.1f}x" if r is not None else ""), fontsize=9)
    ax.legend(fontsize=7)
    fig2.tight_layout()
    return {"effects": fig, "attribution": fig2}


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()
