"""Targeting policies at the same bonus budget, judged against the simulator's truth.

    python -m bench.policy --home PATH [--budget-share 0.2] [--json]
    python -m bench.policy --sizes 20000,200000 --seeds 5 [--work DIR] [--out FILE]

The question a CRM manager asks: with a budget for N bonuses, whom should we give them to?
On a simulated data home (``crm simulate`` + the warehouse), the latest past campaign with a
bonus is the campaign to target; everything before its send day is the past we learn from:

* uplift models (``ml.uplift.train_uplift``, learner chosen by validation Qini) trained on
  the exposures of the earlier campaigns only: on the 7-day deposit, turned into the value
  ``target: uplift`` ranks by (``ml.policy.deposit_value_cents``: deposit uplift x the player's
  theoretical win at the house margin observed before the send day, net of the bonus:
  ``value_uplift``), and on 14-day realized NGR (``ngr_uplift``, the earlier rule);
* churn model (``ml.train.train_model``, the production config) trained on the snapshots
  whose churn window ended before the send day, in a throw-away MLflow store;
* candidates: every player assigned to the target campaign (both arms: the truth says what
  the offer would have done to each), with the features as of its send day;
* policies at the same budget (``ml.policy.compare_policies``): the two uplift values, highest
  churn score first, random, and the oracle (the true effects).

The measure is the true incremental NGR (``truth/campaign_effects.parquet``
``true_effect_ngr``, EUR cents, net of the bonus) per cent of bonus spent. Model quality apart
from the simulator's ceiling: each deposit-uplift learner's noise-free Qini on its validation
rows (from the true effects) as a fraction of that of a LightGBM model fitted on the true
effects of the training rows (the best these features can do) and of the oracle ordering.

With ``--sizes`` / ``--seeds``, a data home per (size, seed) is simulated under ``--work`` and
its warehouse built (the models the bench reads: landing, then ``dbt run`` of the exposures,
snapshots and labels), reused on later runs; the table gives each policy's mean over the seeds
with a 95 % t-interval.
"""

from __future__ import annotations

import argparse
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


POLICY_ROWS = ("value_uplift", "value_truth_fit", "ngr_uplift", "churn", "random", "oracle")


def _truth_fitted_uplift(past: pd.DataFrame, cand: pd.DataFrame, truth: pd.DataFrame, features: list[str],
                         seed: int) -> np.ndarray:
    """The deposit uplift these features can tell at best: a LightGBM regressor fitted on the true
    effects (``true_effect_deposit_prob``) of the past exposures, predicting the candidates'."""
    from lightgbm import LGBMRegressor

    rows = past.merge(truth[["campaign_id", "player_id", "true_effect_deposit_prob"]], how="inner",
                      on=["campaign_id", "player_id"], validate="one_to_one")
    rows = rows[rows["true_effect_deposit_prob"].notna()]

    def matrix(df: pd.DataFrame) -> pd.DataFrame:
        out = df[features].copy()
        for name in features:
            if not pd.api.types.is_numeric_dtype(out[name]) or pd.api.types.is_bool_dtype(out[name]):
                categories = sorted(rows[name].dropna().astype(str).unique())
                out[name] = pd.Categorical(df[name].astype("string"), categories=categories)
            else:
                out[name] = out[name].astype("float64")
        return out

    model = LGBMRegressor(n_estimators=300, learning_rate=0.05, num_leaves=31, min_child_samples=50,
                          random_state=seed, verbose=-1, n_jobs=1)
    return model.fit(matrix(rows), rows["true_effect_deposit_prob"]).predict(matrix(cand))


def _truth_model_fractions(fit, df: pd.DataFrame, truth: pd.DataFrame, seed: int) -> dict:
    """Each learner's noise-free Qini on its validation rows as a fraction of a LightGBM model fitted
    on the training rows' true effects (``truth_model``) and of the oracle ordering (``oracle``)."""
    from lightgbm import LGBMRegressor

    from bench.uplift import numeric_matrix
    from ml import uplift as U

    prep = fit.prepared
    rows = df.loc[prep.index, ["campaign_id", "player_id"]].reset_index(drop=True)
    tau = rows.merge(truth[["campaign_id", "player_id", "true_effect_deposit_prob"]], how="left",
                     on=["campaign_id", "player_id"], validate="one_to_one")["true_effect_deposit_prob"].to_numpy()
    va = fit.valid_index
    tr = np.setdiff1d(np.arange(len(tau)), va)
    X = numeric_matrix(prep.X)
    ok_tr = tr[~np.isnan(tau[tr])]
    model = LGBMRegressor(n_estimators=200, learning_rate=0.05, num_leaves=15, min_child_samples=50,
                          random_state=seed, verbose=-1, n_jobs=1).fit(X[ok_tr], tau[ok_tr])
    ok = ~np.isnan(tau[va])
    t_va = tau[va][ok]
    best = U.expected_qini_auc(model.predict(X[va][ok]), t_va)
    oracle = U.expected_qini_auc(t_va, t_va)
    out = {}
    for learner, score in fit.valid_scores.items():
        q = U.expected_qini_auc(np.asarray(score)[ok], t_va)
        out[learner] = {"truth_model": q / best if best > 0 else float("nan"),
                        "oracle": q / oracle if oracle > 0 else float("nan")}
    out["truth_model_vs_oracle"] = best / oracle if oracle > 0 else float("nan")
    return out


def run(home: Path, budget_share: float = 0.2, seed: int = 0, log=print) -> dict:
    from crm.config import Paths
    from crm.warehouse import observed_house_margin, read_table
    from ml import uplift as U
    from ml.models import MODELS
    from ml.policy import compare_policies, deposit_value_cents, expected_theoretical_win_cents, net_value_cents
    from ml.score import score_model
    from ml.train import train_model
    from ml.uplift_score import STAKE_FEATURE
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
    fits, frames = {}, {}
    for outcome in ("ngr_eur_14d", "deposited_7d"):
        df, features, _ = exposure_frame(past, outcome)
        t0 = time.perf_counter()
        fits[outcome] = U.train_uplift(df, TREATMENT_COL, outcome, control_value=CONTROL, treated_value=TREATED,
                                       features=features, seed=seed)
        frames[outcome] = df
        log(f"uplift on {outcome}: {fits[outcome].selected} on {len(df):,} past exposures "
            f"({', '.join(sorted(df['campaign_id'].unique()))}) in {time.perf_counter() - t0:.1f} s")

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
    costs = np.full(len(cand), float(cost))
    # the value the lists rank by (ml.policy), at the house margin observed before the send day
    margin, _, _ = observed_house_margin(paths, sent_day.date())
    win = expected_theoretical_win_cents(cand[STAKE_FEATURE].to_numpy(dtype="float64", na_value=np.nan), margin)
    value = net_value_cents(deposit_value_cents(fits["deposited_7d"].model.predict_uplift(cand), win), costs)
    ngr = fits["ngr_eur_14d"].model.predict_uplift(cand)  # realized NGR nets the bonus already
    frame = pd.DataFrame({
        "player_id": cand["player_id"].astype(str),
        "offer_cost_eur_cents": costs,
        "predicted_value_eur_cents": value,
        "churn_score": churn_scores.to_numpy(),
        "true_effect_ngr": cand["true_effect_ngr"].to_numpy(),
    })
    budget = budget_share * len(frame) * cost
    table = compare_policies(frame, budget, seed=seed)
    alt = compare_policies(frame.assign(predicted_value_eur_cents=ngr), budget, seed=seed)
    # the same value rule with the best deposit uplift the features allow: the ceiling of model quality
    best_u = _truth_fitted_uplift(past, cand, truth, list(fits["deposited_7d"].prepared.schema.names), seed)
    best = compare_policies(frame.assign(predicted_value_eur_cents=net_value_cents(deposit_value_cents(best_u, win),
                                                                                   costs)), budget, seed=seed)
    table = table.rename(index={"uplift": "value_uplift"})
    table.loc["ngr_uplift"] = alt.loc["uplift"]
    table.loc["value_truth_fit"] = best.loc["uplift"]
    table = table.reindex(list(POLICY_ROWS))
    truth_fit = _truth_model_fractions(fits["deposited_7d"], frames["deposited_7d"], truth, seed)
    return {
        "campaign_id": campaign, "bonus_cost_cents": cost, "candidates": len(frame),
        "budget_share": budget_share, "budget_cents": budget, "seed": seed,
        "past_exposures": len(fits["ngr_eur_14d"].prepared.y), "ngr_uplift_learner": fits["ngr_eur_14d"].selected,
        "deposit_uplift_learner": fits["deposited_7d"].selected, "house_margin": round(margin, 4),
        "churn_train_seconds": round(churn_seconds, 2), "churn_roc_auc": float(churn.metrics["roc_auc"]),
        "value_truth_correlation": _corr(value, frame["true_effect_ngr"]),
        "ngr_uplift_truth_correlation": _corr(ngr, frame["true_effect_ngr"]),
        "deposit_qini_fraction": truth_fit,
        "policies": json.loads(table.reset_index().to_json(orient="records")),
    }


def _corr(a, b) -> float:
    """bench.uplift's correlation over the rows where both are finite (a value is NaN without a score)."""
    from bench.uplift import _corr as corr

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    return corr(a[ok], b[ok])


def format_table(res: dict) -> str:
    rows = pd.DataFrame(res["policies"]).set_index("policy")
    lines = [f"policies at the same budget ({res['budget_share']:.0%} of {res['candidates']:,} candidates of "
             f"{res['campaign_id']} x {res['bonus_cost_cents'] / 100:.2f} EUR = {res['budget_cents'] / 100:,.0f} EUR), "
             f"seed {res.get('seed', 0)}:",
             f"  {'policy':<14} {'players':>8} {'spend EUR':>10} {'incr. NGR EUR':>14} {'NGR per EUR':>12} "
             f"{'gross per EUR':>14}"]
    for name, r in rows.iterrows():
        lines.append(f"  {name:<14} {r['players']:>8,.0f} {r['spend_cents'] / 100:>10,.0f} "
                     f"{r['incremental_ngr_cents'] / 100:>14,.0f} {r['ngr_per_cost']:>12.2f} "
                     f"{r['gross_ngr_per_cost']:>14.2f}")
    q = res["deposit_qini_fraction"]
    lines.append(f"  correlation with the true effect: value {res['value_truth_correlation']:.2f}, "
                 f"NGR uplift {res['ngr_uplift_truth_correlation']:.2f}; house margin {res['house_margin']:.4f}")
    lines.append("  deposit-uplift learners' Qini as a share of a model fitted on the true effects (of the oracle): "
                 + ", ".join(f"{k} {v['truth_model']:.2f} ({v['oracle']:.2f})"
                             for k, v in q.items() if isinstance(v, dict))
                 + f"; that model {q['truth_model_vs_oracle']:.2f} of the oracle")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- seeds and sizes


def build_home(home: Path, players: int, seed: int, days: int = 120, log=print) -> Path:
    """A simulated data home with the warehouse the bench reads (made once; reused when complete)."""
    import shutil
    import subprocess
    import sys

    from bench.run import home_env
    from crm.config import DBT_PROJECT_DIR, Paths
    from crm.ingest.landing import default_as_of

    done = home / "policy_bench_ready"
    if done.exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    env = home_env(home)
    bin_dir = Path(sys.executable).parent
    t0 = time.perf_counter()
    for cmd in ([str(bin_dir / "crm"), "simulate", "--players", str(players), "--days", str(days), "--seed", str(seed),
                 "--json"],
                [str(bin_dir / "crm"), "ingest", str(Paths(home).incoming), "--json"]):
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    as_of = default_as_of(Paths(home))
    dbt_args = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path",
                str(home / "dbt" / "target"), "--vars", json.dumps({"as_of_date": as_of.isoformat()})]
    # the seeds (fx rates, ...), then the models the bench reads and what they need; no data tests
    for step in (["seed", "--quiet"], ["run", "--quiet", "--select", "+fct_campaign_exposures",
                                       "+player_feature_snapshots", "+player_labels"]):
        subprocess.run([str(bin_dir / "dbt"), *step, *dbt_args], env=env, check=True, capture_output=True, text=True)
    done.write_text(f"{players} players, seed {seed}, as of {as_of}\n")
    log(f"  made {home} ({players:,} players, seed {seed}) in {time.perf_counter() - t0:.0f} s")
    return home


def interval(values, level: float = 0.95) -> dict:
    """Mean and a t-interval of the mean over seeds (NaN values left out)."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    mean = float(v.mean())
    if len(v) < 2:
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "n": 1}
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(v)}


def summarize(runs: list[dict]) -> dict:
    """Per policy: the mean and interval of NGR per euro of bonus over the runs; per learner, of the
    Qini fractions."""
    per = {name: interval([next(p["ngr_per_cost"] for p in r["policies"] if p["policy"] == name) for r in runs])
           for name in POLICY_ROWS}
    learners = sorted({k for r in runs for k, v in r["deposit_qini_fraction"].items() if isinstance(v, dict)})
    qini = {k: interval([r["deposit_qini_fraction"].get(k, {}).get("truth_model", float("nan")) for r in runs])
            for k in learners}
    value, churn = per["value_uplift"], per["churn"]
    # "at least twice churn's": where churn targeting loses money, twice a loss is no bar; positive, then
    twice = value["mean"] >= 2 * churn["mean"] if churn["mean"] > 0 else value["mean"] > 0
    return {"ngr_per_cost": per, "qini_fraction_of_truth_model": qini,
            "truth_model_vs_oracle": interval([r["deposit_qini_fraction"]["truth_model_vs_oracle"] for r in runs]),
            "goal_value_positive": bool(value["low"] > 0),
            "goal_twice_churn_apart": bool(twice and value["low"] > churn["high"])}


def format_summary(size: int, summary: dict) -> str:
    lines = [f"{size:,} players, {summary['ngr_per_cost']['oracle']['n']} seeds: true incremental NGR per euro of "
             "bonus, mean [95 % interval]"]
    for name, v in summary["ngr_per_cost"].items():
        lines.append(f"  {name:<14} {v['mean']:>7.2f}  [{v['low']:.2f}, {v['high']:.2f}]")
    lines.append("  deposit-uplift learners' Qini as a share of a model fitted on the true effects: "
                 + ", ".join(f"{k} {v['mean']:.2f} [{v['low']:.2f}, {v['high']:.2f}]"
                             for k, v in summary["qini_fraction_of_truth_model"].items())
                 + f"; that model {summary['truth_model_vs_oracle']['mean']:.2f} of the oracle")
    lines.append(f"  goal: value targeting positive: {'met' if summary['goal_value_positive'] else 'NOT met'}; "
                 f"at least twice churn's with intervals apart: "
                 f"{'met' if summary['goal_twice_churn_apart'] else 'NOT met'}")
    return "\n".join(lines)


def run_seeds(work: Path, sizes: list[int], seeds: int, budget_share: float = 0.2, log=print) -> dict:
    out = {}
    for size in sizes:
        runs = []
        for seed in range(seeds):
            home = build_home(work / f"policy_{size}_s{seed}", size, seed, log=log)
            res = run(home, budget_share, seed, log=lambda s: None)
            log(format_table(res))
            runs.append(res)
        summary = summarize(runs)
        log(format_summary(size, summary))
        out[str(size)] = {"runs": runs, "summary": summary}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.policy", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, help="a simulated data home after `crm run` (one run, one seed)")
    ap.add_argument("--sizes", help="comma-separated player counts: simulate a home per size and seed")
    ap.add_argument("--seeds", type=int, default=5, help="simulator seeds per size (with --sizes; default 5)")
    ap.add_argument("--work", type=Path, default=None,
                    help="where the simulated homes go (default $CRM_HOME/bench/work); reused when complete")
    ap.add_argument("--budget-share", type=float, default=0.2,
                    help="budget as the share of candidates that could get the bonus (default 0.2)")
    ap.add_argument("--seed", type=int, default=0, help="with --home: the learners' seed")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--out", type=Path, help="also write the result as JSON to this file")
    args = ap.parse_args(argv)
    if bool(args.home) == bool(args.sizes):
        ap.error("give either --home or --sizes")
    log = (lambda s: None) if args.json else (lambda s: print(s, flush=True))
    if args.home:
        res = run(args.home, args.budget_share, args.seed, log=log)
        text = format_table(res)
    else:
        from crm.config import crm_home

        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
        work = args.work or crm_home() / "bench" / "work"
        res = run_seeds(work, sizes, args.seeds, args.budget_share, log=log)
        text = ""
    res_json = json.dumps(res, indent=1, default=float)
    if args.out:
        args.out.write_text(res_json)
    if args.json:
        print(res_json)
    elif text:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
