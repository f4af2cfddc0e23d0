"""`crm ml`: train, evaluate, promote, roll back and list models (MLflow registry).

Every command takes --json for a machine-readable summary. Models are configurations
in ml/models.py (`churn`, `deposit_intent`); data comes from the warehouse marts.
"""

from __future__ import annotations

import json

import click

from crm.config import export_env


def _echo(obj: object, as_json: bool, text: str) -> None:
    click.echo(json.dumps(obj, indent=2, default=str) if as_json else text)


def _config(name: str):
    from ml.models import MODELS, get_config

    cfg = get_config(name)
    if cfg is None:
        raise click.BadParameter(f"unknown model {name!r}; expected one of: {', '.join(MODELS)}",
                                 param_hint="MODEL")
    return cfg


def _training_data(cfg):
    """(paths, snapshots, labels, share of players) as the training asset reads them (cfg.max_training_rows)."""
    import duckdb

    from crm.warehouse import read_training_data

    paths = export_env()
    try:
        return paths, *read_training_data(paths, cfg.max_training_rows)
    except (FileNotFoundError, duckdb.CatalogException) as e:
        raise click.ClickException(str(e)) from e


@click.group("ml")
def ml_group() -> None:
    """Models: train, evaluate, promote, roll back, list (MLflow under the data home)."""


@ml_group.command("train")
@click.argument("model", default="churn")
@click.option("--no-promote", is_flag=True, help="register as challenger only; never promote")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")
def train_cmd(model: str, no_promote: bool, as_json: bool) -> None:
    """Train MODEL (churn | deposit_intent) on the warehouse snapshots and register it.

    The new version becomes `challenger`; it becomes `champion` only if it beats the
    champion on the same holdout by the configured margin and passes the sanity checks.
    """
    from crm.lineage import lineage
    from ml.train import train_model

    cfg = _config(model)
    paths, snapshots, labels, share = _training_data(cfg)
    try:
        res = train_model(cfg, snapshots, labels, tracking_uri=paths.mlflow_tracking_uri,
                          artifact_location=paths.mlflow_artifacts.as_uri(), promote=not no_promote,
                          lineage=lineage(trigger="crm ml train", training_player_share=f"{share:.4f}"))
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    m = res.metrics
    _echo(res.to_dict(), as_json,
          f"{res.model_name} v{res.model_version}: roc_auc={m.get('roc_auc', float('nan')):.3f} "
          f"(logreg {m.get('baseline_logreg_roc_auc', float('nan')):.3f}, "
          f"recency {m.get('baseline_recency_roc_auc', float('nan')):.3f}) on {res.valid_rows:,} holdout rows "
          f"as of {res.valid_as_of}\n{res.decision}")


@ml_group.command("evaluate")
@click.argument("model", default="churn")
@click.option("--alias", default="champion", show_default=True, help="registry alias to evaluate")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")
def evaluate_cmd(model: str, alias: str, as_json: bool) -> None:
    """Score the latest labelled holdout with MODEL@ALIAS and print its metrics."""
    from ml.registry import NoModelError
    from ml.train import evaluate

    cfg = _config(model)
    paths, snapshots, labels, _ = _training_data(cfg)
    try:
        out = evaluate(cfg, snapshots, labels, paths.mlflow_tracking_uri, alias)
    except (NoModelError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    keys = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_top_decile", "baseline_recency_roc_auc")
    _echo(out, as_json, f"{out['model_name']}@{alias} = v{out['version']} on {out['rows']:,} rows as of "
          f"{out['holdout_as_of']}:\n" + "\n".join(f"  {k:<26} {out[k]:.4f}" for k in keys if k in out))


@ml_group.command("promote")
@click.argument("model")
@click.argument("version")
@click.option("--reason", required=True, help="why (recorded on the version)")
@click.option("--by", "by", default=None, help="who decides (default: the current user)")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")
def promote_cmd(model: str, version: str, reason: str, by: str | None, as_json: bool) -> None:
    """Make VERSION of MODEL the champion, by hand, with a reason."""
    from ml.registry import promote

    cfg = _config(model)
    paths = export_env()
    try:
        mv = promote(paths.mlflow_tracking_uri, cfg.registered_name, version, reason, by=by)
    except (LookupError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    _echo({"model_name": cfg.registered_name, "champion": str(mv.version), "reason": reason}, as_json,
          f"{cfg.registered_name}@champion -> v{mv.version} ({reason})")


@ml_group.command("rollback")
@click.argument("model")
@click.option("--reason", required=True, help="why (recorded on the version)")
@click.option("--to", "to_version", default=None, help="version to roll back to (default: the previous champion)")
@click.option("--by", "by", default=None, help="who decides (default: the current user)")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")
def rollback_cmd(model: str, reason: str, to_version: str | None, by: str | None, as_json: bool) -> None:
    """Move MODEL's champion back to the previous champion (or --to VERSION), with a reason."""
    from ml.registry import rollback

    cfg = _config(model)
    paths = export_env()
    try:
        mv = rollback(paths.mlflow_tracking_uri, cfg.registered_name, reason, by=by, to_version=to_version)
    except (LookupError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    _echo({"model_name": cfg.registered_name, "champion": str(mv.version), "reason": reason}, as_json,
          f"{cfg.registered_name}@champion -> v{mv.version} (rolled back: {reason})")


@ml_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable listing")
def list_cmd(as_json: bool) -> None:
    """Registered models, their versions, metrics, aliases and promotion decisions."""
    from ml.registry import list_models

    paths = export_env()
    models = list_models(paths.mlflow_tracking_uri)
    if as_json:
        click.echo(json.dumps(models, indent=2, default=str))
        return
    if not models:
        click.echo("no registered models: run `crm run` or `crm ml train`")
        return
    for m in models:
        click.echo(f"{m['name']}  champion=v{m.get('champion')}  challenger=v{m.get('challenger')}")
        for v in m["versions"][:10]:
            auc = v.get("metrics", {}).get("roc_auc")
            aliases = ",".join(v.get("aliases", [])) or "-"
            click.echo(f"  v{v['version']:<4} roc_auc={auc if auc is None else f'{auc:.3f}'}  "
                       f"holdout={v.get('valid_as_of')}  aliases={aliases}  {v.get('decision_reason') or ''}")


def _register_uplift() -> None:
    from crm.cli.uplift import uplift_group

    ml_group.add_command(uplift_group)


_register_uplift()
