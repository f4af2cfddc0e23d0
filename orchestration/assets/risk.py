"""Bonus abuse and multi-account detection (issue 19): the clusters of linked accounts, drawn from
the identity links dbt builds (crm.risk.linking). Thin: the logic lives in crm/risk."""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, asset

from crm.risk.linking import build_clusters
from orchestration.resources import DAILY, CrmResource


@asset(group_name="risk", kinds={"duckdb"}, partitions_def=DAILY, deps=[AssetKey("fct_identity_links")],
       description="Clusters of accounts of one brand linked by shared identifiers (pseudonyms of at least two "
                   "independent types, frequency-weighted: fct_identity_links): the connected components, one row "
                   "per linked account with its cluster, the cluster's size and its strongest link.")
def player_clusters(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
    summary = build_clusters(crm.paths())
    context.log.info(f"player_clusters: {summary.accounts} accounts in {summary.clusters} clusters "
                     f"(largest {summary.largest}) from {summary.links} links")
    return MaterializeResult(metadata=summary.to_dict())


risk_assets = [player_clusters]
