"""Bonus abuse and multi-account detection (issue 19): the clusters of linked accounts, drawn from
the identity links dbt builds (crm.risk.linking). Thin: the logic lives in crm/risk."""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from crm.lineage import lineage
from crm.risk import score as risk_score
from crm.risk.linking import build_clusters
from crm.risk.review import write_flags
from ml.abuse import MODEL_NAME
from ml.registry import NoModelError
from ml.retrain import retrain_decision
from orchestration.assets._meta import histogram, md_table, num
from orchestration.resources import DAILY, RETRAIN_TAG, CrmResource
from orchestration.resources import as_of as partition_date


@asset(group_name="risk", kinds={"duckdb"}, partitions_def=DAILY, deps=[AssetKey("fct_identity_links")],
       description="Clusters of accounts of one brand linked by shared identifiers (pseudonyms of at least two "
                   "independent types, frequency-weighted: fct_identity_links): the connected components, one row "
                   "per linked account with its cluster, the cluster's size and its strongest link.")
def player_clusters(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
    summary = build_clusters(crm.paths())
    context.log.info(f"player_clusters: {summary.accounts} accounts in {summary.clusters} clusters "
                     f"(largest {summary.largest}) from {summary.links} links")
    return MaterializeResult(metadata=summary.to_dict())


@asset(group_name="risk", kinds={"lightgbm", "mlflow"}, partitions_def=DAILY,
       deps=[AssetKey("player_abuse_features"), AssetKey("player_abuse_labels"), player_clusters],
       description="Bonus-abuse risk model (ml.abuse, docs/risk_score.md): LightGBM on the bonus-hunter outcome "
                   "(player_abuse_labels) from behaviour and cluster features, time-based holdout; promoted to "
                   "@champion only if its holdout pr_auc beats the champion re-scored on the same rows. Retrained "
                   "on the other models' schedule (ml.retrain).")
def abuse_risk_model(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
    paths = crm.paths()
    as_of = partition_date(context)
    decision = retrain_decision(paths.mlflow_tracking_uri, MODEL_NAME, as_of,
                                force=context.run.tags.get(RETRAIN_TAG) == "true")
    context.log.info(f"{MODEL_NAME}: {'retrain' if decision.due else 'no retrain'}: {decision.reason}")
    if not decision.due:
        return MaterializeResult(metadata=decision.metadata())
    try:
        res = risk_score.train(paths, lineage(as_of_date=as_of.isoformat(), trigger="dagster",
                                              dagster_run_id=context.run.run_id))
    except ValueError as e:  # a young data home: too few labelled outcomes yet
        context.log.warning(f"{MODEL_NAME}: {e}")
        return MaterializeResult(metadata={**decision.metadata(), "trained": False, "reason": str(e)})
    context.log.info(f"model {res.model_name} v{res.model_version}: {res.decision}")
    m = res.metrics
    compare = {k: round(float(m[k]), 4) for k in ("roc_auc", "pr_auc", "baseline_logreg_pr_auc",
                                                  "precision_at_threshold", "recall_at_threshold",
                                                  "baseline_share_rule_precision", "baseline_share_rule_recall",
                                                  "threshold_for_precision_0_9") if k in m}
    return MaterializeResult(metadata={
        **decision.metadata(), "trained": True, "model": f"{res.model_name} v{res.model_version}",
        "run_id": res.run_id, "promoted_to_champion": res.promoted, "decision": res.decision,
        "train_rows": res.train_rows, "valid_rows": res.valid_rows, "valid_from": res.valid_from,
        "holdout_metrics_vs_baselines": md_table(compare, "metric", "value"),
        **{k: num(float(v)) for k, v in m.items()}})


@asset(group_name="risk", kinds={"lightgbm", "duckdb"}, partitions_def=DAILY,
       deps=[AssetKey("player_abuse_features"), player_clusters, abuse_risk_model],
       description="player_risk_scores: every player with a bonus scored by the risk model's @champion as of the "
                   "run's date, with the top reasons (SHAP contributions as text), an evidence key (cluster "
                   "members + binned top features: a cleared flag stays cleared on the same evidence) and "
                   "above_threshold (crm.risk.score.FLAG_THRESHOLD). Read by the review queue and the "
                   "eligibility rule.")
def player_risk_scores(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
    try:
        s = risk_score.score(crm.paths(), partition_date(context))
    except NoModelError as e:
        context.log.warning(f"player_risk_scores: {e}")
        return MaterializeResult(metadata={"scored": 0, "reason": str(e)})
    context.log.info(f"player_risk_scores: {s.scored} players scored with {s.model_name} v{s.model_version}, "
                     f"{s.flagged} above the threshold {risk_score.FLAG_THRESHOLD}")
    d = s.to_dict()
    return MaterializeResult(metadata={
        **{k: v for k, v in d.items() if k != "top_reasons"},
        "score_histogram": histogram(s.deciles, "score", "players"),
        "top_reasons_of_flags": md_table(s.top_reasons, "feature", "flags") if s.top_reasons
        else MetadataValue.text("no flags")})


@asset(group_name="risk", kinds={"duckdb"}, partitions_def=DAILY, deps=[player_risk_scores],
       description="player_risk_flags: the risk scores with the reviewers' decisions applied (crm.risk.review: "
                   "pending flags and confirmed abuse are flagged, a clear holds for the same evidence); what the "
                   "lists' bonus_risk_flagged rule and the service's profile copy read. Review with "
                   "`crm risk queue` / `crm risk review`.")
def player_risk_flags(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
    counts = write_flags(crm.paths())
    context.log.info(f"player_risk_flags: {counts['flagged']} of {counts['scored']} scored players flagged "
                     f"({counts['pending']} waiting for review)")
    return MaterializeResult(metadata={k: num(v) for k, v in counts.items()})


risk_assets = [player_clusters, abuse_risk_model, player_risk_scores, player_risk_flags]
