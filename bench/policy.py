"""Targeting policies at the same bonus budget, judged against the simulator's truth.

    python -m bench.policy --home PATH [--budget-share 0.2] [--json]

The question a CRM manager asks: with a budget for N bonuses, whom should we give them to?
On a simulated data home (``crm simulate`` + ``crm run``), the latest past campaign with a
bonus is the campaign to target; everything before its send day is the past we learn from:

* uplift models (``ml.uplift.train_uplift``, learner chosen by validation Qini) trained on
  the exposures of the earlier campaigns only: on 14-day NGR (what ``target: uplift`` ranks
  by), and on the 7-day deposit, turned into a value as deposit uplift x the player's 30-day
  theoretical win (stake x the house margin) - the bonus;
* churn model (``ml.train.train_model``, the production config) trained on the snapshots
  whose churn window ended before the send day, in a throw-away MLflow store;
* candidates: every player assigned to the target campaign (both arms: the truth says what
  the offer would have done to each), with the features as of its send day;
* policies at the same budget (``ml.policy.compare_policies``): uplift targeting (the
  campaign lists' rule) on either value, highest churn score first, random, and the oracle.

The measure is the true incremental NGR (``truth/campaign_effects.parquet``
``true_effect_ngr``, EUR cents, net of the bonus) per cent of bonus spent.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _target_campaign(paths) -> tuple[str, int]:
    """(campaign id, bonus cost in EUR cents) of the latest simulated campaign with a bonus."""
    from crm.simulator.world import campaign_plan

    exports = pd.read_parquet(paths.exports / "campaign_assignments.parquet")
    days = (pd.to_datetime(exports["sent_at"]).max().normalize() - pd.to_datetime(exports["sent_at"]).min()
            .normalize()).days
    sent = exports.groupby("campaign_id")["sent_at"].min()
    # the plan is a function of the simulated period; match it by the campaign ids present
    for n_days in range(days, days + 400):
        plan = {c.campaign_id: c for c in campaign_plan(n_days)}
        if set(plan) >= set(sent.index):
            break
    bonus = [c for c in plan.values() if c.cost_eur > 0 and c.campaign_id in sent.index]
    if not bonus:
        raise ValueError("no past campaign with a bonus in this data home")
    target = max(bonus, key=lambda c: sent[c.campaign_id])
    return target.campaign_id, int(target.cost_eur)


def run(home: Path, budget_share: float = 0.2, seed: int = 0, log=print) -> dict:
    from crm.config import Paths
    from crm.warehouse import read_table
    from ml import uplift as U
    from ml.models import MODELS
    from ml.policy import compare_policies
    from ml.score import score_model
    from ml.train import train_model
    from ml.uplift_train import CONTROL, TREATED, TREATMENT_COL, exposure_frame

    paths = Paths(Path(home))
    campaign, cost = _target_campaign(paths)
    exposures = read_table(paths, "fct_campaign_exposures")
    truth = pd.read_parquet(paths.truth / "campaign_effects.parquet")
    sent_day = pd.to_datetime(exposures.loc[exposures["campaign_id"] == campaign, "sent_at"]).min().normalize()
    log(f"target: {campaign} (bonus {cost / 100:.2f} EUR, sent {sent_day.date()})")

    past = exposures[pd.to_datetime(exposures["sent_at"]) < sent_day]
    # outcomes of the past campaigns must be final before the target's send day
    past = past[pd.to_datetime(past["sent_at"]).dt.normalize() + pd.Timedelta(days=14) <= sent_day]
    fits = {}
    for outcome in ("ngr_eur_14d", "deposited_7d"):
        df, features, _ = exposure_frame(past, outcome)
        t0 = time.perf_counter()
        fits[outcome] = U.train_uplift(df, TREATMENT_COL, outcome, control_value=CONTROL, treated_value=TREATED,
                                       features=features, seed=seed)
        log(f"uplift on {outcome}: {fits[outcome].selected} on {len(df):,} past exposures "
            f"({', '.join(sorted(df['campaign_id'].unique()))}) in {time.perf_counter() - t0:.1f} s")
    up = fits["ngr_eur_14d"]

    snaps = read_table(paths, "player_feature_snapshots")
    labels = read_table(paths, "player_labels")
    window = pd.Timedelta(days=30)  # dbt var churn_window_days
    snaps = snaps[pd.to_datetime(snaps["as_of_date"]) + window <= sent_day]
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        t0 = time.perf_counter()
        churn = train_model(MODELS["churn"], snaps, labels, tracking_uri=uri,
                            artifact_location=(Path(tmp) / "artifacts").as_uri())
        churn_seconds = time.perf_counter() - t0
        cand = exposures[exposures["campaign_id"] == campaign].reset_index(drop=True)
        churn_scores = score_model(MODELS["churn"], cand, tracking_uri=uri, drift=False).scores["score"]
    log(f"churn: roc_auc {churn.metrics['roc_auc']:.3f} on snapshots up to {snaps['as_of_date'].max()}")

    cand = cand.merge(truth[["campaign_id", "player_id", "true_effect_ngr"]], on=["campaign_id", "player_id"],
                      how="left", validate="one_to_one")
    frame = pd.DataFrame({
        "player_id": cand["player_id"].astype(str),
        "offer_cost_eur_cents": float(cost),
        "uplift_ngr_score": up.model.predict_uplift(cand),
        "churn_score": churn_scores.to_numpy(),
        "true_effect_ngr": cand["true_effect_ngr"].to_numpy(),
    })
    budget = budget_share * len(frame) * cost
    table = compare_policies(frame, budget, seed=seed)
    # A lower-variance value: the deposit uplift times the player's 30-day theoretical win
    # (stake x the house margin observed in the data), minus the bonus. Realized NGR carries
    # the players' gambling luck, which swamps campaign effects at these sample sizes.
    daily = read_table(paths, "fct_player_daily")
    margin = float(daily["ggr_eur"].sum() / max(daily["stake_eur"].sum(), 1))
    deposit_value = (fits["deposited_7d"].model.predict_uplift(cand)
                     * cand["stake_eur_30d"].clip(lower=0).to_numpy() * margin - cost)
    alt = compare_policies(frame.assign(uplift_ngr_score=deposit_value), budget, seed=seed)
    table.loc["uplift_deposit_value"] = alt.loc["uplift"]
    table = table.reindex(["uplift", "uplift_deposit_value", "churn", "random", "oracle"])
    per_cost = table["ngr_per_cost"]
    corr = float(np.corrcoef(frame["uplift_ngr_score"], frame["true_effect_ngr"])[0, 1])
    corr_value = float(np.corrcoef(deposit_value, frame["true_effect_ngr"])[0, 1])
    return {
        "campaign_id": campaign, "bonus_cost_cents": cost, "candidates": len(frame),
        "budget_share": budget_share, "budget_cents": budget,
        "past_exposures": len(fits["ngr_eur_14d"].prepared.y), "uplift_learner": up.selected,
        "deposit_uplift_learner": fits["deposited_7d"].selected, "house_margin": round(margin, 4),
        "churn_train_seconds": round(churn_seconds, 2), "churn_roc_auc": float(churn.metrics["roc_auc"]),
        "uplift_truth_correlation": corr, "deposit_value_truth_correlation": corr_value,
        "policies": json.loads(table.reset_index().to_json(orient="records")),
        "ratios": {
            "uplift_vs_churn": float(per_cost["uplift"] - per_cost["churn"]),
            "deposit_value_vs_churn": float(per_cost["uplift_deposit_value"] - per_cost["churn"]),
            "uplift_share_of_oracle": float(table.loc["uplift", "incremental_ngr_cents"]
                                            / table.loc["oracle", "incremental_ngr_cents"]),
        },
    }


def format_table(res: dict) -> str:
    rows = pd.DataFrame(res["policies"]).set_index("policy")
    lines = [f"policies at the same budget ({res['budget_share']:.0%} of {res['candidates']:,} candidates of "
             f"{res['campaign_id']} x {res['bonus_cost_cents'] / 100:.2f} EUR = {res['budget_cents'] / 100:,.0f} EUR):",
             f"  {'policy':<21} {'players':>8} {'spend EUR':>10} {'incr. NGR EUR':>14} {'NGR per EUR':>12} "
             f"{'gross per EUR':>14}"]
    for name, r in rows.iterrows():
        lines.append(f"  {name:<21} {r['players']:>8,.0f} {r['spend_cents'] / 100:>10,.0f} "
                     f"{r['incremental_ngr_cents'] / 100:>14,.0f} {r['ngr_per_cost']:>12.2f} "
                     f"{r['gross_ngr_per_cost']:>14.2f}")
    lines.append(f"  correlation with the true effect: NGR uplift {res['uplift_truth_correlation']:.2f}, "
                 f"deposit uplift x theoretical win {res['deposit_value_truth_correlation']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.policy", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", required=True, type=Path, help="a simulated data home after `crm run`")
    ap.add_argument("--budget-share", type=float, default=0.2,
                    help="budget as the share of candidates that could get the bonus (default 0.2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    res = run(args.home, args.budget_share, args.seed, log=(lambda s: None) if args.json else print)
    res["date"] = dt.date.today().isoformat()
    print(json.dumps(res, indent=1) if args.json else format_table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
