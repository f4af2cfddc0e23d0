"""One training asset per model configuration (ml/models.py) and the daily scoring asset."""

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from crm.lineage import lineage
from crm.warehouse import (
    MARGIN_DAYS,
    read_scoring_population,
    read_table,
    read_training_data,
    write_scores,
    write_uplift_value,
)
from ml import uplift_score
from ml.models import MODELS, UPLIFT_VALUE_MODEL, UPLIFT_VALUE_SOURCE, ModelConfig
from ml.retrain import retrain_decision
from ml.score import score_model
from ml.train import train_model
from ml.uplift_train import UPLIFT_MODELS, NotEnoughExposures, qini_figure, train_uplift_from_exposures
from orchestration.assets._gates import docs_dir, gate_check_result
from orchestration.assets._meta import histogram, md_figure, md_table, num, table
from orchestration.resources import DAILY, RETRAIN_TAG, CrmResource
from orchestration.resources import as_of as partition_date


def _mlflow_run_url(run_id: str) -> str:
    return f"http://127.0.0.1:5000/#/runs/{run_id}"  # `make ui` serves MLflow there


def model_asset(config: ModelConfig) -> AssetsDefinition:
    @asset(name=f"{config.name}_model", group_name="ml", kinds={"lightgbm", "mlflow"}, partitions_def=DAILY,
           deps=[AssetKey("player_feature_snapshots"), AssetKey("player_labels")],
           description=f"{config.description} Trained on point-in-time snapshots with a time-based holdout; "
                       "promoted to @champion only if it beats the champion on the same holdout.")
    def _train(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
        paths = crm.paths()
        decision = retrain_decision(paths.mlflow_tracking_uri, config.registered_name, partition_date(context),
                                    features=lambda: read_scoring_population(paths), score_config=config,
                                    force=context.run.tags.get(RETRAIN_TAG) == "true")
        context.log.info(f"{config.registered_name}: {'retrain' if decision.due else 'no retrain'}: {decision.reason}")
        if not decision.due:
            return MaterializeResult(metadata=decision.metadata())
        snapshots, labels, share = read_training_data(paths, config.max_training_rows)
        res = train_model(config, snapshots, labels, tracking_uri=paths.mlflow_tracking_uri,
                          artifact_location=paths.mlflow_artifacts.as_uri(),
                          lineage=lineage(as_of_date=partition_date(context).isoformat(), trigger="dagster",
                                          dagster_run_id=context.run.run_id, training_player_share=f"{share:.4f}"))
        context.log.info(f"model {res.model_name} v{res.model_version}: {res.decision}")
        m = res.metrics
        compare = {k: round(float(m[k]), 4) for k in ("roc_auc", "baseline_logreg_roc_auc", "baseline_recency_roc_auc",
                                                     "pr_auc", "log_loss", "brier", "ece", "lift_top_decile") if k in m}
        return MaterializeResult(metadata={
            **decision.metadata(),
            "model": f"{res.model_name} v{res.model_version}",
            "run_id": res.run_id,
            "mlflow_run": MetadataValue.url(_mlflow_run_url(res.run_id)),
            "promoted_to_champion": res.promoted,
            "decision": res.decision,
            "train_rows": res.train_rows, "valid_rows": res.valid_rows, "training_player_share": share,
            "train_range": f"{res.train_range[0]} .. {res.train_range[1]}", "valid_as_of": res.valid_as_of,
            "holdout_metrics_vs_baselines": md_table(compare, "metric", "value"),
            **{k: num(v) for k, v in m.items()},
        })

    return _train


def uplift_model_asset(name: str, outcome: str) -> AssetsDefinition:
    @asset(name=f"{name}_model", group_name="ml", kinds={"lightgbm", "mlflow"}, partitions_def=DAILY,
           deps=[AssetKey("fct_campaign_exposures"), AssetKey("churn_model")],  # churn: the baseline ranking
           description=f"Uplift on {outcome} from past randomized campaigns (fct_campaign_exposures): T-, X-, S- and "
                       "class-transformation learners, selected by Qini on held-out rows; promoted to @champion "
                       "when its Qini is positive and at least the champion's on the same rows.")
    def _train(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
        paths = crm.paths()
        decision = retrain_decision(paths.mlflow_tracking_uri, name, partition_date(context),
                                    force=context.run.tags.get(RETRAIN_TAG) == "true")
        context.log.info(f"{name}: {'retrain' if decision.due else 'no retrain'}: {decision.reason}")
        if not decision.due:
            return MaterializeResult(metadata=decision.metadata())
        exposures = read_table(paths, "fct_campaign_exposures")
        try:
            out = train_uplift_from_exposures(
                exposures, outcome=outcome, model_name=name, tracking_uri=paths.mlflow_tracking_uri,
                artifact_location=paths.mlflow_artifacts.as_uri(),
                lineage=lineage(as_of_date=partition_date(context).isoformat(), trigger="dagster",
                                dagster_run_id=context.run.run_id))
        except NotEnoughExposures as e:  # a young data home: no experiment has finished yet
            context.log.warning(f"{name}: {e}")
            return MaterializeResult(metadata={"trained": False, "reason": str(e),
                                               "exposure_rows": len(exposures)})
        context.log.info(f"model {name} v{out['model_version']} ({out['selected']}): {out['decision']}")
        learners = pd.DataFrame([{"learner": k, **{m: round(float(v), 4) for m, v in ms.items()}}
                                 for k, ms in out["metrics"].items()])
        baseline = out["baseline_churn_qini_auc"]
        result = out["result"]
        return MaterializeResult(metadata={
            **decision.metadata(),
            "trained": True,
            "model": f"{name} v{out['model_version']}",
            "selected_learner": out["selected"],
            "promoted_to_champion": out["promoted"],
            "decision": out["decision"],
            "mlflow_run": MetadataValue.url(_mlflow_run_url(out["run_id"])),
            "exposure_rows": out["exposure_rows"], "train_rows": out["train_rows"], "valid_rows": out["valid_rows"],
            "learners_on_validation": md_table(learners),
            "baseline_churn_qini_auc": num(baseline) if baseline is not None else "no churn champion",
            "qini_curve": md_figure(qini_figure(result, f"Qini, {outcome} ({out['valid_rows']} held-out rows)",
                                                out["baselines"]), "Qini curves"),
            **{k: num(v) for k, v in out["metrics"][out["selected"]].items() if pd.notna(v)},
        })

    return _train


model_assets = [model_asset(c) for c in MODELS.values()]
uplift_assets = [uplift_model_asset(n, o) for n, o in UPLIFT_MODELS.items()]


@asset(group_name="ml", kinds={"lightgbm", "duckdb"}, partitions_def=DAILY,
       deps=[*(a.key for a in model_assets + uplift_assets), AssetKey("player_features"), AssetKey("dim_player")],
       description="Daily scores of every current player with profiling consent, by each model's @champion, "
                   "with score and feature drift (PSI) against the training reference; uplift champions add "
                   "the predicted incremental deposit probability and 14-day NGR (EUR cents).")
def player_scores(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
    paths = crm.paths()
    as_of = partition_date(context)
    features = read_scoring_population(paths)  # profiling consent only
    meta: dict = {"as_of_date": as_of.isoformat(), "players_scored": len(features)}
    drift_rows = []
    for name in MODELS:
        res = score_model(MODELS[name], features, tracking_uri=paths.mlflow_tracking_uri)
        write_scores(paths, res.scores[["player_id", "score", "model_name", "model_version"]], as_of, name)
        s = res.scores["score"]
        d = res.drift
        meta[f"{name}_model"] = f"{res.model_name} v{res.model_version}"
        meta[f"{name}_score_median"] = num(s.median() if len(s) else 0.0)
        meta[f"{name}_score_psi"] = num(d.get("score_psi") or 0.0)
        meta[f"{name}_max_feature_psi"] = num(d.get("max_feature_psi") or 0.0)
        meta[f"{name}_drift_status"] = d.get("status", d.get("reason", "n/a"))
        deciles = pd.cut(s, bins=[i / 10 for i in range(11)], include_lowest=True).value_counts(sort=False)
        # a table with a bar column: the shape shows on the asset page (a plot would hide behind Show Markdown)
        meta[f"{name}_score_histogram"] = histogram({str(k): int(v) for k, v in deciles.items()}, "score", "players")
        for feat, value in (d.get("features") or {}).items():
            drift_rows.append({"model": name, "feature": feat, "psi": round(float(value), 4)})
        context.log.info(f"{name}: scored {len(s)} players with v{res.model_version}; drift {d.get('status')}")
    for name in UPLIFT_MODELS:
        loaded = uplift_score.load(paths.mlflow_tracking_uri, name)
        if loaded is None:
            meta[f"{name}_model"] = "no champion yet: not scored"
            continue
        scores = uplift_score.score_players(loaded, features)
        write_scores(paths, scores, as_of, name)
        u = scores["score"]
        meta[f"{name}_model"] = f"{name} v{loaded.version}"
        meta[f"{name}_median"] = num(u.median() if len(u) else 0.0)
        meta[f"{name}_share_negative"] = num((u < 0).mean() if len(u) else 0.0)
        context.log.info(f"{name}: scored {len(u)} players with v{loaded.version}")
        if name == UPLIFT_VALUE_SOURCE:  # the value campaigns target by: deposit uplift x theoretical win
            value, margin, ggr, stake = write_uplift_value(paths, scores, features, as_of)
            v = value["score"]
            meta["house_margin"] = num(margin)
            meta[f"{UPLIFT_VALUE_MODEL}_median_eur_cents"] = num(v.median() if len(v) else 0.0)
            meta[f"{UPLIFT_VALUE_MODEL}_share_above_5_eur"] = num((v > 500).mean() if len(v) else 0.0)
            context.log.info(f"{UPLIFT_VALUE_MODEL}: house margin {margin:.4f} over the last {MARGIN_DAYS} days "
                             f"(GGR {ggr / 100:,.0f} / stake {stake / 100:,.0f} EUR)")
    meta["feature_drift_psi"] = table(pd.DataFrame(drift_rows).sort_values("psi", ascending=False), limit=20) \
        if drift_rows else MetadataValue.text("no reference")
    return MaterializeResult(metadata=meta)


@asset_check(asset=player_scores, name="scores_gate", blocking=True,
             description="Great Expectations suite on the as-of date's scores: one per player and model, every "
                         "score has a player, probabilities in [0, 1] (uplift: finite), every active player "
                         "(profiling consent + feature row) scored, score PSI against each champion's training "
                         "reference (error above CRM_GATE_PSI_ERROR, warning above CRM_GATE_PSI_WARN).")
def scores_gate(context: AssetCheckExecutionContext, crm: CrmResource) -> AssetCheckResult:
    from expectations.scores import champion_score_psi, gate_scores

    paths = crm.paths()
    as_of = partition_date(context)
    scores = read_table(paths, "player_scores", "WHERE as_of_date = ?", [as_of])
    population = read_scoring_population(paths)
    psi, notes = champion_score_psi(paths.mlflow_tracking_uri, scores, population)
    players = read_table(paths, "dim_player", columns=["player_id"])  # the gate reads only the key
    result = gate_scores(scores, population["player_id"], players, psi=psi, notes=notes, docs_dir=docs_dir(paths))
    return gate_check_result(result, {"as_of_date": as_of.isoformat(),
                                      **{f"{m}_score_psi": num(v) for m, v in psi.items()}})


ml_checks = [scores_gate]
