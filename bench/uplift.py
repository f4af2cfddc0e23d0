"""Uplift learners side by side: ours (``ml.uplift``: T, X, class transformation) against
causalml's meta-learners (T, X, R, S) on LightGBM base models, on the same data and split.

    python -m bench.uplift [--home PATH] [--n 20000] [--modes 1,2,3,4] [--no-causalml] [--json]

Two kinds of data, each with known individual effects:

* causalml's synthetic generators (``synthetic_data(mode=1..4)``, Nie & Wager 2018): 1 difficult
  nuisance and an easy effect (observational), 2 a randomized trial, 3 an easy propensity, a
  difficult baseline and a *constant* effect (nothing to rank: oracle fractions are undefined,
  only the effect RMSE says anything), 4 unrelated treatment and control arms (observational);
  and ``make_uplift_classification_logistic``: a randomized campaign with a binary outcome (10%
  base rate, +5 points on average, effects of both signs), where the classifier variants and
  class transformation run.
  In the observational modes our X-learner estimates the propensity (``propensity="estimate"``)
  and causalml's X- and R-learners get the same kind of estimate (a LightGBM classifier on the
  training rows, clipped to [0.05, 0.95]); in mode 2 everyone uses the treated share.
  Class transformation assumes randomization, so it is biased in modes 1, 3 and 4 by design.
* the simulator's past campaigns (``fct_campaign_exposures`` of a data home with a built
  warehouse, outcomes ``deposited_7d`` and ``ngr_eur_14d``): the rows ``ml.uplift_train`` trains
  on, the split ``ml.uplift.train_uplift`` makes, the truth from ``truth/campaign_effects.parquet``.

Reference rows: the oracle (ranking by the true effect) and ``ceiling (fit on tau)``, LightGBM
fitted to the true effects of the training rows: how much of the effect the features can tell
at all (no uplift learner sees the effects; on the simulator's campaigns much of it is latent).

Per learner, on the validation rows: Qini AUC, its fraction of the oracle's Qini on the same
observed outcomes (``frac obs``; only meaningful under randomization), the noise-free fraction
computed from the true effects (``frac true``, see ``ml.uplift.oracle_fractions``), Pearson and
Spearman correlation with the true effect, effect RMSE, and seconds: for ours one
``train_uplift`` call with that learner alone (prepare, split, fit, validate), for causalml fit
and predict (plus the shared propensity fit where one is used). causalml gets the same encoded
feature matrix as ours, categorical features as integer codes (ours uses LightGBM's native
categorical handling), and LightGBM with ``ml.uplift.UPLIFT_PARAMS``.

causalml is a benchmark-only dependency (``requirements-bench.txt``, installed by ``make bench``).
Without it only our learners are measured, and the report says why.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import logging
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ml import uplift as U

MODES: dict[int, str] = {
    1: "difficult nuisance, easy effect; observational",
    2: "randomized trial",
    3: "easy propensity, difficult baseline, constant effect; observational",
    4: "unrelated treatment and control arms; observational",
}
OUTCOMES: tuple[str, ...] = ("deposited_7d", "ngr_eur_14d")
TRUTH_COLUMNS = {"deposited_7d": "true_effect_deposit_prob", "ngr_eur_14d": "true_effect_ngr"}
OURS = {"t": "ours T", "x": "ours X", "s": "ours S", "ct": "ours CT"}
CAUSALML = ("causalml T", "causalml X", "causalml R", "causalml S")
CEILING = "ceiling (fit on tau)"
CLIP = (0.05, 0.95)  # as ml.uplift.XLearner.propensity_of


# ---------------------------------------------------------------------------- causalml


def causalml_status() -> dict:
    """``{"available": bool, "version": str | None, "note": str}`` for the installed causalml."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("causalml")
    except PackageNotFoundError:
        return {"available": False, "version": None,
                "note": "causalml is not installed: `make bench` installs requirements-bench.txt"}
    try:
        with _quiet():
            import causalml.inference.meta  # noqa: F401
    except Exception as e:  # a broken install: say so, measure ours
        return {"available": False, "version": ver, "note": f"causalml {ver} does not import: {e}"}
    return {"available": True, "version": ver, "note": ""}


@contextlib.contextmanager
def _quiet():
    logging.getLogger("causalml").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def causalml_generator(module: str, name: str) -> Callable:
    """A data generator of ``causalml.dataset`` (``regression.synthetic_data``,
    ``classification.make_uplift_classification_logistic``). Importing ``causalml.dataset`` also
    imports causalml's compiled uplift trees, which may be built against another scikit-learn's
    Cython ABI; when that import fails, the generator's module (numpy, scipy, scikit-learn only)
    is loaded from its file on its own."""
    try:
        with _quiet():
            import causalml.dataset as ds
        return getattr(ds, name)
    except Exception:
        spec = importlib.util.find_spec("causalml")
        if spec is None or not spec.submodule_search_locations:
            raise
        path = Path(next(iter(spec.submodule_search_locations))) / "dataset" / f"{module}.py"
        mod_spec = importlib.util.spec_from_file_location(f"_causalml_dataset_{module}", path)
        mod = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(mod)
        return getattr(mod, name)


def synthetic_data_fn() -> Callable:
    """causalml's ``synthetic_data`` (continuous outcome, ``mode`` 1 to 5)."""
    return causalml_generator("regression", "synthetic_data")


def _lgbm(kind: str, seed: int):
    from lightgbm import LGBMClassifier, LGBMRegressor

    params = {**U.UPLIFT_PARAMS, "random_state": int(seed)}
    return (LGBMClassifier if kind == "clf" else LGBMRegressor)(**params)


def causalml_learners(binary: bool, seed: int) -> dict[str, object]:
    """causalml's meta-learners on LightGBM with our parameters (classifier outcome models for a
    binary outcome, regressors for the effect models)."""
    from causalml.inference.meta import (
        BaseRClassifier,
        BaseRRegressor,
        BaseSClassifier,
        BaseSRegressor,
        BaseTClassifier,
        BaseTRegressor,
        BaseXClassifier,
        BaseXRegressor,
    )

    out = "clf" if binary else "reg"
    if binary:
        learners = {
            "causalml T": BaseTClassifier(learner=_lgbm(out, seed)),
            "causalml X": BaseXClassifier(outcome_learner=_lgbm(out, seed), effect_learner=_lgbm("reg", seed)),
            "causalml R": BaseRClassifier(outcome_learner=_lgbm(out, seed), effect_learner=_lgbm("reg", seed),
                                          random_state=seed),
            "causalml S": BaseSClassifier(learner=_lgbm(out, seed)),
        }
    else:
        learners = {
            "causalml T": BaseTRegressor(learner=_lgbm(out, seed)),
            "causalml X": BaseXRegressor(learner=_lgbm(out, seed)),
            "causalml R": BaseRRegressor(learner=_lgbm(out, seed), random_state=seed),
            "causalml S": BaseSRegressor(learner=_lgbm(out, seed)),
        }
    learners["causalml R"].cv_n_jobs = 1  # the regressor's cross_val_predict defaults to every core
    return learners


def _fit_predict_causalml(name: str, learner, Xtr, ttr, ytr, Xva, p_tr, p_va) -> np.ndarray:
    t = ttr.astype(int)
    # BaseRClassifier hard-codes n_jobs=-1 for its out-of-fold outcome model: keep it in this process.
    from joblib import parallel_config

    with _quiet(), parallel_config(backend="sequential"):
        if name == "causalml X":
            learner.fit(Xtr, t, ytr, p=p_tr)
            te = learner.predict(Xva, p=p_va)
        elif name == "causalml R":
            learner.fit(Xtr, t, ytr, p=p_tr, verbose=False)
            te = learner.predict(Xva)
        else:
            learner.fit(Xtr, t, ytr)
            te = learner.predict(Xva)
    return np.asarray(te, dtype=float).reshape(len(Xva), -1)[:, 0]


def numeric_matrix(X: pd.DataFrame) -> np.ndarray:
    """The encoded feature frame as float64; categorical columns as their codes (missing = NaN)."""
    cols = []
    for c in X.columns:
        s = X[c]
        if isinstance(s.dtype, pd.CategoricalDtype):
            codes = s.cat.codes.to_numpy(dtype="float64")
            codes[codes < 0] = np.nan
            cols.append(codes)
        else:
            cols.append(s.to_numpy(dtype="float64", na_value=np.nan))
    return np.column_stack(cols)


# ---------------------------------------------------------------------------- metrics


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def evaluate(y: np.ndarray, t: np.ndarray, score: np.ndarray, tau: np.ndarray | None) -> dict[str, float]:
    """Validation figures of one score; oracle fractions and effect errors where ``tau`` is known
    (rows with a missing true effect are left out of those)."""
    from scipy.stats import rankdata

    m = {"qini_auc": U.qini_auc(y, t, score), "uplift_at_10": U.uplift_at(y, t, score, 0.1)}
    if tau is not None:
        ok = ~np.isnan(tau)
        if ok.sum() >= 3 and t[ok].any() and not t[ok].all():
            fr = U.oracle_fractions(y[ok], t[ok], score[ok], tau[ok])
            m["oracle_fraction_observed"] = fr["observed"]
            m["oracle_fraction_expected"] = fr["expected"]
            m["pearson_tau"] = _corr(score[ok], tau[ok])
            m["spearman_tau"] = _corr(rankdata(score[ok]), rankdata(tau[ok]))
            m["rmse_tau"] = float(np.sqrt(np.mean((score[ok] - tau[ok]) ** 2)))
    return {k: (round(v, 6) if np.isfinite(v) else None) for k, v in m.items()}


# ---------------------------------------------------------------------------- one comparison


def compare(
    df: pd.DataFrame,
    treatment_col: str,
    outcome_col: str,
    features: Sequence[str],
    *,
    control_value,
    treated_value,
    true_effect: np.ndarray | None = None,
    randomized: bool = True,
    seed: int = 0,
    valid_fraction: float = 0.3,
    with_causalml: bool = True,
    log: Callable[[str], None] = print,
    label: str = "",
) -> dict:
    """Every learner on ``df`` with the split ``train_uplift`` makes; ``true_effect`` is aligned
    with the rows of ``df``. ``randomized=False`` makes the X-learners (and the R-learner) use an
    estimated propensity instead of the treated share."""
    t0 = time.perf_counter()
    prep = U.prepare(df, treatment_col, outcome_col, control_value, treated_value, features)
    prepare_seconds = time.perf_counter() - t0
    tr, va = U.split(prep.treatment, valid_fraction, seed)
    yva, tva = prep.y[va], prep.treatment[va]
    tau_va = None
    if true_effect is not None:
        tau_va = np.asarray(true_effect, dtype=float)[np.asarray(prep.index)][va]
    out: dict = {
        "rows": prep.rows, "train_rows": len(tr), "valid_rows": len(va),
        "treated_share": round(float(prep.treatment.mean()), 4),
        "outcome_kind": "binary" if prep.binary else "continuous",
        "propensity": "treated share" if randomized else "estimated (LightGBM, clipped 0.05-0.95)",
        "observed_ate_valid": round(float(yva[tva].mean() - yva[~tva].mean()), 6),
        "prepare_seconds": round(prepare_seconds, 3),
        "learners": {},
    }
    if tau_va is not None:
        out["true_ate_valid"] = round(float(np.nanmean(tau_va)), 6)
        out["truth_missing_valid"] = int(np.isnan(tau_va).sum())
        oracle = tau_va.copy()
        oracle[np.isnan(oracle)] = np.nanmin(tau_va) if (~np.isnan(tau_va)).any() else 0.0
        out["learners"]["oracle (true effect)"] = {**evaluate(yva, tva, oracle, tau_va), "seconds": None}
        # What the features can tell about the effect at all: LightGBM fitted to the true effect
        # of the training rows (a supervised reference no uplift learner can have).
        tau_tr = np.asarray(true_effect, dtype=float)[np.asarray(prep.index)][tr]
        ok = ~np.isnan(tau_tr)
        t0 = time.perf_counter()
        with _quiet():
            ref = _lgbm("reg", seed).fit(prep.X.iloc[tr][ok], tau_tr[ok]).predict(prep.X.iloc[va])
        out["learners"][CEILING] = {**evaluate(yva, tva, np.asarray(ref, dtype=float), tau_va),
                                    "seconds": round(time.perf_counter() - t0, 3)}

    for name, row in OURS.items():
        if name == "ct" and not prep.binary:
            out["learners"][row] = {"skipped": "class transformation needs a binary outcome"}
            continue
        t0 = time.perf_counter()
        res = U.train_uplift(df, treatment_col, outcome_col, control_value=control_value,
                             treated_value=treated_value, features=features, learners=(name,), seed=seed,
                             valid_fraction=valid_fraction, propensity=None if randomized else "estimate")
        secs = time.perf_counter() - t0
        if not np.array_equal(res.valid_index, va):
            raise AssertionError("train_uplift split differs from ml.uplift.split")
        out["learners"][row] = {**evaluate(yva, tva, res.valid_scores[name], tau_va), "seconds": round(secs, 3)}
        log(f"  {label}{row}: {secs:.1f} s")

    if not with_causalml:
        return out
    M = numeric_matrix(prep.X)
    Xtr, Xva, ttr, ytr = M[tr], M[va], prep.treatment[tr], prep.y[tr]
    p_secs = 0.0
    if randomized:
        share = float(ttr.mean())
        p_tr, p_va = np.full(len(tr), share), np.full(len(va), share)
    else:
        t0 = time.perf_counter()
        with _quiet():
            pm = _lgbm("clf", seed + 4).fit(Xtr, ttr.astype(int))
            p_tr = np.clip(pm.predict_proba(Xtr)[:, 1], *CLIP)
            p_va = np.clip(pm.predict_proba(Xva)[:, 1], *CLIP)
        p_secs = time.perf_counter() - t0
        out["causalml_propensity_seconds"] = round(p_secs, 3)
    for row, learner in causalml_learners(prep.binary, seed).items():
        t0 = time.perf_counter()
        score = _fit_predict_causalml(row, learner, Xtr, ttr, ytr, Xva, p_tr, p_va)
        secs = time.perf_counter() - t0 + (p_secs if row in ("causalml X", "causalml R") else 0.0)
        out["learners"][row] = {**evaluate(yva, tva, score, tau_va), "seconds": round(secs, 3)}
        log(f"  {label}{row}: {secs:.1f} s")
    return out


# ---------------------------------------------------------------------------- the data sets


def bench_synthetic(mode: int, *, n: int, p: int, sigma: float, seed: int, valid_fraction: float,
                    with_causalml: bool, log: Callable[[str], None] = print) -> dict:
    """One causalml synthetic data set (seeded), ours vs causalml's on one split."""
    gen = synthetic_data_fn()
    np.random.seed(seed + mode)  # the generators draw from numpy's global state
    y, X, w, tau, _b, e = gen(mode=mode, n=n, p=p, sigma=sigma)
    features = [f"x{i}" for i in range(X.shape[1])]
    df = pd.DataFrame(X, columns=features).assign(w=np.asarray(w, dtype=int), y=np.asarray(y, dtype=float))
    log(f"synthetic mode {mode} ({MODES.get(mode, '')}): n={n:,}, p={p}, sigma={sigma}")
    res = compare(df, "w", "y", features, control_value=0, treated_value=1, true_effect=tau,
                  randomized=bool(np.allclose(e, e[0])), seed=seed, valid_fraction=valid_fraction,
                  with_causalml=with_causalml, log=log, label=f"mode {mode}: ")
    return {"dataset": f"synthetic mode {mode}", "mode": mode, "description": MODES.get(mode, ""),
            "n": n, "p": p, "sigma": sigma, **res}


def bench_synthetic_binary(*, n_per_arm: int, seed: int, valid_fraction: float, with_causalml: bool,
                           log: Callable[[str], None] = print) -> dict:
    """causalml's ``make_uplift_classification_logistic``: a randomized campaign with a binary
    outcome (10% base rate, +5 points on average), the true effect per row known."""
    import random

    gen = causalml_generator("classification", "make_uplift_classification_logistic")
    random.seed(seed)  # it seeds numpy itself but picks feature transformations with `random`
    df, features = gen(n_samples=n_per_arm, treatment_name=["control", "treatment"],
                       n_uplift_dict={"treatment": 2}, n_mix_informative_uplift_dict={"treatment": 1},
                       delta_uplift_dict={"treatment": 0.05}, positive_class_proportion=0.1,
                       random_seed=seed + 20200101)
    tau = df["treatment_true_effect"].to_numpy(dtype=float)
    df = df[[*features, "treatment_group_key", "conversion"]]
    log(f"synthetic binary (make_uplift_classification_logistic): {len(df):,} rows, {len(features)} features")
    res = compare(df, "treatment_group_key", "conversion", features, control_value="control",
                  treated_value="treatment", true_effect=tau, randomized=True, seed=seed,
                  valid_fraction=valid_fraction, with_causalml=with_causalml, log=log, label="binary: ")
    return {"dataset": "synthetic binary", "description": "make_uplift_classification_logistic, randomized",
            "n": len(df), "p": len(features), **res}


def read_exposures(home: Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None, str]:
    """``fct_campaign_exposures`` and the truth file of a data home, or a note why not."""
    from crm.config import Paths
    from crm.warehouse import connect, read_table, table_exists

    paths = Paths(Path(home))
    if not paths.warehouse.exists():
        return None, None, f"no warehouse at {paths.warehouse}: run `crm simulate` and `crm run` first"
    with connect(paths) as con:
        if not table_exists(con, "fct_campaign_exposures"):
            return None, None, f"{paths.warehouse} has no fct_campaign_exposures (an older data home)"
    exposures = read_table(paths, "fct_campaign_exposures")
    truth_file = paths.truth / "campaign_effects.parquet"
    truth = pd.read_parquet(truth_file) if truth_file.exists() else None
    return exposures, truth, "" if truth is not None else f"no truth file {truth_file}: oracle columns left out"


def bench_exposures(exposures: pd.DataFrame, truth: pd.DataFrame | None, outcome: str, *, seed: int,
                    valid_fraction: float, with_causalml: bool, log: Callable[[str], None] = print) -> dict:
    """Ours vs causalml's on the simulator's past campaigns: the rows and split our trainer uses."""
    from ml.uplift_train import CONTROL, TREATED, TREATMENT_COL, exposure_frame

    df, features, counts = exposure_frame(exposures, outcome)
    tau = None
    if truth is not None:
        keys = ["campaign_id", "player_id"]
        col = TRUTH_COLUMNS[outcome]
        t = truth[[*keys, col]].drop_duplicates(keys)
        joined = df[keys].astype(str).merge(t.astype({k: str for k in keys}), on=keys, how="left")
        tau = joined[col].to_numpy(dtype="float64", na_value=np.nan)
    log(f"campaign exposures, {outcome}: {len(df):,} rows, {len(features)} features")
    res = compare(df, TREATMENT_COL, outcome, features, control_value=CONTROL, treated_value=TREATED,
                  true_effect=tau, randomized=True, seed=seed, valid_fraction=valid_fraction,
                  with_causalml=with_causalml, log=log, label=f"{outcome}: ")
    return {"dataset": f"exposures {outcome}", "outcome": outcome, "features": len(features), **counts,
            "campaigns": int(df["campaign_id"].nunique()) if "campaign_id" in df.columns else None, **res}


# ---------------------------------------------------------------------------- run and report


def run(
    home: Path | None,
    *,
    n: int = 20000,
    p: int = 5,
    sigma: float = 1.0,
    modes: Sequence[int] = (1, 2, 3, 4),
    binary_n: int = 10000,
    outcomes: Sequence[str] = OUTCOMES,
    seed: int = 0,
    valid_fraction: float = 0.3,
    with_causalml: bool = True,
    out: Path | None = None,
    write: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """The whole uplift bench: synthetic modes (when causalml, which ships the generators, is
    installed) and the campaign exposures of ``home`` (skipped when ``None``). Writes JSON to
    ``out`` (default ``$CRM_HOME/bench/uplift.json``) unless ``write=False``; returns the figures."""
    status = causalml_status()
    if not with_causalml:
        status = {**status, "used": False, "note": "causalml left out (--no-causalml)"}
    else:
        status["used"] = status["available"]
        if not status["available"]:
            log(f"NOTE: {status['note']}; measuring our learners only (causalml columns skipped)")
    use = status["used"]
    started = time.perf_counter()
    report: dict = {
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "causalml": status,
        "lgbm_params": {k: v for k, v in U.UPLIFT_PARAMS.items()},
        "seed": seed, "valid_fraction": valid_fraction,
        "datasets": [], "notes": [],
    }
    gen_note = ""
    if modes or binary_n:
        try:
            synthetic_data_fn()
        except Exception as e:  # not installed, or broken
            gen_note = f"synthetic data sets skipped: their generators come with causalml ({e})"
    if not gen_note:
        for mode in modes:
            report["datasets"].append(bench_synthetic(mode, n=n, p=p, sigma=sigma, seed=seed,
                                                      valid_fraction=valid_fraction, with_causalml=use, log=log))
        if binary_n:
            report["datasets"].append(bench_synthetic_binary(n_per_arm=binary_n, seed=seed,
                                                             valid_fraction=valid_fraction, with_causalml=use,
                                                             log=log))
    elif gen_note:
        report["notes"].append(gen_note)
        log(f"NOTE: {gen_note}")
    if home is not None:
        exposures, truth, note = read_exposures(Path(home))
        if note:
            report["notes"].append(note)
            log(f"NOTE: {note}")
        if exposures is not None:
            report["home"] = str(Path(home).resolve())
            for outcome in outcomes:
                report["datasets"].append(bench_exposures(exposures, truth, outcome, seed=seed,
                                                          valid_fraction=valid_fraction, with_causalml=use, log=log))
    report["seconds"] = round(time.perf_counter() - started, 1)
    if write:
        from crm.config import crm_home

        path = Path(out) if out else crm_home() / "bench" / "uplift.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n")
        report["written_to"] = str(path)
    return report


def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_table(report: dict) -> str:
    """Per data set a learner table, then the noise-free oracle fraction side by side."""
    st = report["causalml"]
    head = (f"causalml {st['version']}" if st.get("used") else f"causalml not used: {st['note']}")
    lines = [f"Uplift learners, LightGBM {report['lgbm_params'].get('n_estimators')} trees, "
             f"{report['lgbm_params'].get('num_leaves')} leaves; {head}"]
    cols = (f"{'learner':<22}{'qini':>10}{'frac obs':>10}{'frac true':>10}{'pearson':>9}{'spearman':>9}"
            f"{'rmse tau':>10}{'seconds':>9}")
    for d in report["datasets"]:
        truth = ", true ATE " + _f(d.get("true_ate_valid"), ".4g") if "true_ate_valid" in d else ""
        lines += ["", f"{d['dataset']}" + (f" ({d['description']})" if d.get("description") else "")
                  + f": train {d['train_rows']:,} / valid {d['valid_rows']:,}, treated {d['treated_share']:.0%}, "
                  f"propensity {d['propensity'].split(' (')[0]}, observed ATE {d['observed_ate_valid']:.4g}{truth}",
                  cols]
        for name, m in d["learners"].items():
            if "skipped" in m:
                lines.append(f"{name:<22}  skipped: {m['skipped']}")
                continue
            lines.append(
                f"{name:<22}{_f(m['qini_auc'], '.4g'):>10}{_f(m.get('oracle_fraction_observed'), '.3f'):>10}"
                f"{_f(m.get('oracle_fraction_expected'), '.3f'):>10}{_f(m.get('pearson_tau'), '.3f'):>9}"
                f"{_f(m.get('spearman_tau'), '.3f'):>9}{_f(m.get('rmse_tau'), '.4g'):>10}"
                f"{_f(m.get('seconds'), '.2f'):>9}"
            )
    names = [n for n in [CEILING, *OURS.values(), *CAUSALML]
             if any(n in d["learners"] and "skipped" not in d["learners"][n] for d in report["datasets"])]
    if report["datasets"] and names:
        short = [d["dataset"].replace("synthetic mode ", "mode ").replace("synthetic ", "").replace("exposures ", "")
                 for d in report["datasets"]]
        w = max(10, *(len(s) + 2 for s in short))
        lines += ["", "Fraction of the oracle Qini, noise-free (from the true effects), validation rows",
                  f"{'learner':<22}" + "".join(f"{s:>{w}}" for s in short)]
        for name in names:
            vals = [d["learners"].get(name, {}).get("oracle_fraction_expected") for d in report["datasets"]]
            lines.append(f"{name:<22}" + "".join(f"{_f(v, '.3f'):>{w}}" for v in vals))
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    lines.append(f"\nuplift bench: {report['seconds']} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.uplift", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=None,
                    help="data home with a built warehouse (default $CRM_HOME or ./data)")
    ap.add_argument("--no-exposures", action="store_true", help="synthetic data sets only")
    ap.add_argument("--n", type=int, default=20000, help="rows per synthetic data set (default 20000)")
    ap.add_argument("--p", type=int, default=5, help="covariates per synthetic data set (>= 5, default 5)")
    ap.add_argument("--sigma", type=float, default=1.0, help="outcome noise of the synthetic data (default 1)")
    ap.add_argument("--modes", default="1,2,3,4", help="synthetic modes, comma-separated ('' for none)")
    ap.add_argument("--binary-n", type=int, default=10000,
                    help="rows per arm of the synthetic binary-outcome data set (default 10000; 0 for none)")
    ap.add_argument("--outcomes", default=",".join(OUTCOMES), help="exposure outcomes, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--valid-fraction", type=float, default=0.3)
    ap.add_argument("--no-causalml", action="store_true", help="our learners only")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of tables")
    ap.add_argument("--out", type=Path, help="JSON output (default $CRM_HOME/bench/uplift.json)")
    args = ap.parse_args(argv)
    if args.p < 5:
        ap.error("--p must be at least 5 (the generators use five covariates)")
    from crm.config import crm_home

    home = None if args.no_exposures else (args.home or crm_home())
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    report = run(home, n=args.n, p=args.p, sigma=args.sigma,
                 modes=[int(m) for m in args.modes.split(",") if m.strip()], binary_n=args.binary_n,
                 outcomes=[o for o in args.outcomes.split(",") if o.strip()], seed=args.seed,
                 valid_fraction=args.valid_fraction, with_causalml=not args.no_causalml, out=args.out, log=log)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print()
        print(format_table(report))
        print(f"written to {report['written_to']}")
    return report


if __name__ == "__main__":
    main()
