"""`crm ml uplift`: train and score uplift models on any randomized campaign export.

    crm ml uplift train --data F.csv --treatment COL --outcome COL [--control-value V]
                        [--treated-value W] [--features a,b,c] [--out MODEL] [--json]
    crm ml uplift score --model MODEL --data F.csv --out OUT.csv [--json]

Learners, metrics and data rules are in ml/uplift.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

METRIC_KEYS = ("qini_auc", "auuc", "uplift_at_10", "uplift_at_20", "uplift_at_30")


def _echo(obj: object, as_json: bool, text: str) -> None:
    click.echo(json.dumps(obj, indent=2, default=str) if as_json else text)


def _read(path: str):
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise click.ClickException(f"data file {p} does not exist")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(p)
        return pd.read_csv(p)
    except Exception as e:  # empty file, bad quoting, unreadable parquet, ...
        raise click.ClickException(f"cannot read data file {p}: {e}") from e


def default_model_path(data: str) -> Path:
    """``$CRM_HOME/models/uplift/<data file stem>.joblib``."""
    from crm.config import paths

    return paths().home / "models" / "uplift" / f"{Path(data).stem}.joblib"


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _fmt(v: float) -> str:
    return "     n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:8.4f}"


@click.group("uplift")
def uplift_group() -> None:
    """Uplift models for randomized campaigns: train (T-, X-, S-learner, class transformation) and score."""


@uplift_group.command("train")
@click.option("--data", "data", required=True, help="campaign export (CSV or Parquet): one row per player")
@click.option("--treatment", "treatment", required=True, help="column with the arm of each row")
@click.option("--outcome", "outcome", required=True, help="outcome column (0/1 or continuous)")
@click.option("--control-value", default=None, help="value of the control arm in the treatment column")
@click.option("--treated-value", default=None, help="value of the treated arm (needed with more than two arms)")
@click.option("--features", default=None,
              help="comma-separated feature columns (default: all but treatment, outcome and id-like columns)")
@click.option("--learners", default="t,x,s,ct", show_default=True, help="learners to compare: t, x, s, ct")
@click.option("--seed", default=0, show_default=True, type=int, help="split and model seed")
@click.option("--out", "out", default=None,
              help="model path (default: $CRM_HOME/models/uplift/<data file stem>.joblib)")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary with the metrics")
def train_cmd(data: str, treatment: str, outcome: str, control_value: str | None, treated_value: str | None,
              features: str | None, learners: str, seed: int, out: str | None, as_json: bool) -> None:
    """Train uplift learners on a randomized campaign export and keep the best by Qini.

    Splits 70/30 stratified by treatment, fits each learner on 70%, reports Qini AUC, AUUC
    and observed uplift in the top 10/20/30% on the other 30%, and saves the best learner.
    """
    from ml.uplift import save_model, train_uplift

    df = _read(data)
    feats = [f.strip() for f in features.split(",") if f.strip()] if features is not None else None
    names = tuple(n.strip() for n in learners.split(",") if n.strip())
    try:
        res = train_uplift(df, treatment, outcome, control_value=control_value, treated_value=treated_value,
                           features=feats, learners=names, seed=seed)
    except ValueError as e:
        raise click.ClickException(f"{data}: {e}") from e
    path = Path(out) if out else default_model_path(data)
    try:
        save_model(res, path)
    except OSError as e:
        raise click.ClickException(f"cannot write the model to {path}: {e}") from e
    summary = res.summary()
    summary["metrics"] = {n: {k: _jsonable(v) for k, v in m.items()} for n, m in summary["metrics"].items()}
    summary["model_path"] = str(path)
    summary["data"] = str(data)
    if as_json:
        _echo(summary, True, "")
        return
    lines = [
        f"{data}: {res.prepared.rows:,} rows ({treatment} {res.prepared.treated_value!r} vs "
        f"{res.prepared.control_value!r}), {summary['outcome_kind']} outcome {outcome!r}, "
        f"observed ATE {res.metrics[res.selected]['ate']:+.4f}; "
        f"{res.train_rows:,} training / {res.valid_rows:,} validation rows",
        f"  {'learner':<8}" + "".join(f"{k:>14}" for k in METRIC_KEYS),
    ]
    for name, m in res.metrics.items():
        mark = " *" if name == res.selected else ""
        lines.append(f"  {name + mark:<8}" + "".join(f"{_fmt(m[k]):>14}" for k in METRIC_KEYS))
    for name, why in res.skipped.items():
        lines.append(f"  {name:<8}  skipped: {why}")
    lines.append(f"selected: {res.selected} (best qini_auc on validation); model saved to {path}")
    click.echo("\n".join(lines))


@uplift_group.command("score")
@click.option("--model", "model", required=True,
              help="model file written by `uplift train`, or a registered model: models:/uplift_ngr@champion, "
                   "models:/uplift_deposit/3")
@click.option("--data", "data", required=True, help="rows to score (CSV or Parquet) with the model's feature columns")
@click.option("--out", "out", required=True, help="output CSV: the id-like columns of the input plus `uplift`")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")
def score_cmd(model: str, data: str, out: str, as_json: bool) -> None:
    """Score DATA with an uplift model: predicted uplift per row, written to OUT.

    The output keeps the input's id-like columns (id, *_id, ...) or, without any, the row
    number (`row`), then `uplift` (treated minus control expected outcome).
    """
    import pandas as pd

    from ml.uplift import id_columns, load_model

    try:
        if model.startswith("models:/"):
            from crm.config import paths
            from ml.uplift_score import load_uri

            m = load_uri(paths().mlflow_tracking_uri, model).model
        else:
            m = load_model(model)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    df = _read(data)
    try:
        scores = m.predict_uplift(df)
    except ValueError as e:
        raise click.ClickException(f"{data}: {e}") from e
    ids = [c for c in id_columns(df) if c not in m.schema.names]
    res = df[ids].copy() if ids else pd.DataFrame({"row": range(len(df))})
    res["uplift"] = scores
    out_path = Path(out)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        res.to_csv(out_path, index=False)
    except OSError as e:
        raise click.ClickException(f"cannot write {out_path}: {e}") from e
    summary = {
        "model": str(model),
        "learner": m.name,
        "data": str(data),
        "out": str(out_path),
        "rows": len(res),
        "id_columns": ids or ["row"],
        "mean_uplift": _jsonable(float(scores.mean())) if len(scores) else None,
        "share_negative": _jsonable(float((scores < 0).mean())) if len(scores) else None,
    }
    mean = summary["mean_uplift"]
    _echo(summary, as_json,
          f"scored {len(res):,} rows with {m.name} ({model}) -> {out_path}"
          + (f"; mean uplift {mean:+.4f}, {summary['share_negative']:.1%} negative" if mean is not None else ""))
