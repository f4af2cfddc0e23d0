"""ML benchmarks: each model config against its baselines on the same split, training time,
and scoring throughput of ``ml.score.score_model`` against a bare ``Booster.predict``.

    python -m bench.ml --home PATH [--repeats 5] [--scale-rows 1000000] [--json] [--out FILE]

reads ``player_feature_snapshots``, ``player_labels`` and ``player_features`` from
``PATH/warehouse.duckdb`` (read-only) and trains into a throw-away MLflow store, so the data
home's own registry is never touched. Per model config (churn, deposit intent):

* holdout ROC AUC / PR AUC of LightGBM, the logistic regression on RFM features and the
  recency rule (same time split: train on earlier as-of dates, holdout = latest labelled);
* LightGBM fit seconds, logistic regression fit seconds, and the whole ``train_model``
  (data prep, fit, baselines, artifacts, MLflow logging, registry) in seconds;
* scoring the current ``player_features`` with the champion: ``score_model`` with and
  without the drift report, and a bare ``Booster.predict`` on the same, prebuilt matrix
  (rows/s, best of ``repeats`` warm calls taken in turns; the ratio is score_model time /
  bare time), plus the first
  (cold) call that loads the model, its schema and drift reference; then the same at
  ``--scale-rows`` (the players replicated, default 1,000,000), where the per-call costs (alias
  lookup) fade and the per-row ones (matrix, drift) show.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

TABLES = ("player_feature_snapshots", "player_labels", "player_features")


def _best(fns: dict, repeats: int) -> dict[str, float]:
    """Best wall time of each function; the functions take turns, so a busy spell on the
    machine hits all of them alike."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def run_ml_bench(
    snapshots: pd.DataFrame,
    labels: pd.DataFrame,
    features: pd.DataFrame,
    *,
    configs: tuple[str, ...] = ("churn", "deposit_intent"),
    repeats: int = 10,
    scale_rows: int | None = None,
) -> dict:
    """Train every config in ``configs`` into a temporary MLflow store and measure it.

    Features of the spec that the warehouse does not have yet are left out (listed under
    ``missing_features``), so an older data home can still be measured.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from ml import registry
    from ml import score as scoring
    from ml.features import FEATURES
    from ml.models import MODELS
    from ml.train import train_model

    spec = [f for f in FEATURES if f.name in snapshots.columns and f.name in features.columns]
    missing = [f.name for f in FEATURES if f not in spec]
    out: dict = {
        "snapshot_rows": len(snapshots),
        "label_rows": len(labels),
        "scored_rows": len(features),
        "features": len(spec),
        "missing_features": missing,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench_ml_") as tmp:
        uri = f"sqlite:///{Path(tmp).resolve() / 'mlflow.db'}"
        t0 = time.perf_counter()
        with registry.quiet():
            registry.get_client(uri).search_experiments()  # creates the SQLite schema (migrations)
        out["mlflow_store_init_seconds"] = round(time.perf_counter() - t0, 2)
        for name in configs:
            config = MODELS[name]
            t0 = time.perf_counter()
            res = train_model(config, snapshots, labels, tracking_uri=uri, artifact_location=f"{tmp}/artifacts",
                              spec=spec, lineage={"trigger": "bench"})
            train_seconds = time.perf_counter() - t0
            m = res.metrics

            scoring._CACHE.clear()
            t0 = time.perf_counter()
            first = scoring.score_model(config, features, tracking_uri=uri)
            cold = time.perf_counter() - t0
            score = _scoring(config, features, uri, repeats) | {
                "cold_first_call_seconds": round(cold, 3),
                "drift_max_psi": round(first.drift.get("max_psi", float("nan")), 4),
                "drift_status": first.drift.get("status"),
                "drift_max_feature": first.drift.get("max_feature"),
            }
            scaled = (_scoring(config, _replicate(features, scale_rows), uri, max(3, repeats // 2))
                      if scale_rows and scale_rows > len(features) else None)
            out["models"][name] = {
                "registered_name": config.registered_name,
                "train_rows": res.train_rows,
                "valid_rows": res.valid_rows,
                "valid_as_of": res.valid_as_of,
                "base_rate": round(m["base_rate"], 4),
                "roc_auc": {
                    "lightgbm": round(m["roc_auc"], 4),
                    "logreg_rfm": round(m.get("baseline_logreg_roc_auc", float("nan")), 4),
                    "recency_rule": round(m.get("baseline_recency_roc_auc", float("nan")), 4),
                },
                "pr_auc": {
                    "lightgbm": round(m["pr_auc"], 4),
                    "logreg_rfm": round(m.get("baseline_logreg_pr_auc", float("nan")), 4),
                    "recency_rule": round(m.get("baseline_recency_pr_auc", float("nan")), 4),
                },
                "ece": round(m["ece"], 4),
                "lift_top_decile": round(m["lift_top_decile"], 2),
                "decision": res.decision,
                "fit_seconds": round(m["fit_seconds"], 2),
                "logreg_fit_seconds": round(m.get("baseline_logreg_fit_seconds", float("nan")), 3),
                "train_model_seconds": round(train_seconds, 2),
                "scoring": score,
                **({"scoring_scaled": scaled} if scaled else {}),
            }
    return out


def _replicate(features: pd.DataFrame, rows: int) -> pd.DataFrame:
    """``features`` repeated to ``rows`` rows, each copy's players renamed (``<id>_<copy>``)."""
    copies = -(-rows // len(features))
    parts = [features.assign(player_id=features["player_id"].astype(str) + f"_{k}") for k in range(copies)]
    return pd.concat(parts, ignore_index=True).iloc[:rows]


def _scoring(config, features: pd.DataFrame, uri: str, repeats: int) -> dict:
    """``score_model`` with and without drift against a bare ``Booster.predict`` of the same matrix."""
    from ml import score as scoring

    loaded = scoring.resolve(uri, config.registered_name)
    matrix = loaded.schema.matrix(features)
    t = _best({"score": lambda: scoring.score_model(config, features, tracking_uri=uri),
               "plain": lambda: scoring.score_model(config, features, tracking_uri=uri, drift=False),
               "bare": lambda: loaded.booster.predict(matrix)}, repeats)
    n = len(features)
    return {"rows": n, "score_model_rows_per_s": round(n / t["score"]),
            "score_model_no_drift_rows_per_s": round(n / t["plain"]),
            "booster_predict_rows_per_s": round(n / t["bare"]),
            "ratio_bare_vs_score_model": round(t["score"] / t["bare"], 2),
            "ratio_bare_vs_score_model_no_drift": round(t["plain"] / t["bare"], 2),
            "overhead_ms": round((t["score"] - t["bare"]) * 1000, 1),
            "overhead_no_drift_ms": round((t["plain"] - t["bare"]) * 1000, 1)}


def format_table(r: dict) -> str:
    lines = [
        f"ML bench: {r['snapshot_rows']:,} snapshot rows, {r['scored_rows']:,} players scored, "
        f"{r['features']} features" + (f" ({len(r['missing_features'])} spec features not in the warehouse)"
                                       if r["missing_features"] else ""),
        "",
        f"{'model':<16}{'train/holdout':>16}{'base':>7}{'ROC AUC: lgbm':>15}{'logreg':>8}{'recency':>9}"
        f"{'PR AUC lgbm':>12}{'ECE':>7}{'fit s':>7}{'logreg s':>9}{'train_model s':>14}",
    ]
    for name, m in r["models"].items():
        a, p = m["roc_auc"], m["pr_auc"]
        lines.append(
            f"{name:<16}{m['train_rows']:>9,}/{m['valid_rows']:<6,}{m['base_rate']:>7.3f}{a['lightgbm']:>15.4f}"
            f"{a['logreg_rfm']:>8.4f}{a['recency_rule']:>9.4f}{p['lightgbm']:>12.4f}{m['ece']:>7.3f}"
            f"{m['fit_seconds']:>7.2f}{m['logreg_fit_seconds']:>9.3f}{m['train_model_seconds']:>14.2f}"
        )
    lines += ["", f"{'scoring':<16}{'rows':>8}{'cold s':>8}{'score_model r/s':>17}{'no drift r/s':>14}"
                  f"{'Booster r/s':>13}{'ratio':>7}{'(no drift)':>11}{'+ms':>6}{'max PSI (feature)':>26}"]
    for name, m in r["models"].items():
        for s in (m["scoring"], m.get("scoring_scaled")):
            if not s:
                continue
            cold = f"{s['cold_first_call_seconds']:>8.2f}" if "cold_first_call_seconds" in s else f"{'':>8}"
            psi = (f"{s['drift_max_psi']:>9.4f} ({s['drift_max_feature'] or '-'})" if "drift_max_psi" in s
                   else "  (replicated players)")
            lines.append(
                f"{name:<16}{s['rows']:>8,}{cold}{s['score_model_rows_per_s']:>17,}"
                f"{s['score_model_no_drift_rows_per_s']:>14,}{s['booster_predict_rows_per_s']:>13,}"
                f"{s['ratio_bare_vs_score_model']:>7.2f}{s['ratio_bare_vs_score_model_no_drift']:>11.2f}"
                f"{s['overhead_ms']:>6.0f}{psi}"
            )
    lines.append(f"\nMLflow SQLite store creation (once per store): {r['mlflow_store_init_seconds']} s")
    return "\n".join(lines)


def read_home(home: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three tables from ``home/warehouse.duckdb``, opened read-only."""
    import duckdb

    path = Path(home) / "warehouse.duckdb"
    if not path.exists():
        raise SystemExit(f"no warehouse at {path}: run `crm simulate` and `crm run` first")
    con = duckdb.connect(str(path), read_only=True)
    try:
        snapshots, labels, features = (con.execute(f"SELECT * FROM {t}").df() for t in TABLES)
    finally:
        con.close()
    return snapshots, labels, features


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.ml", description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", type=Path, default=Path(os.environ.get("CRM_HOME", "data")),
                    help="data home holding warehouse.duckdb (default $CRM_HOME or ./data)")
    ap.add_argument("--repeats", type=int, default=10, help="warm scoring calls per variant (best is kept)")
    ap.add_argument("--scale-rows", type=int, default=1_000_000,
                    help="also score the players replicated to this many rows (0: not; default 1,000,000)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    ap.add_argument("--out", type=Path, help="also write the figures as JSON to this file")
    args = ap.parse_args(argv)
    snapshots, labels, features = read_home(args.home)
    result = run_ml_bench(snapshots, labels, features, repeats=args.repeats, scale_rows=args.scale_rows)
    result["home"] = str(args.home.resolve())
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
