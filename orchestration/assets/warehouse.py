"""The dbt project as assets: one asset per model, dbt tests as asset checks."""


from collections.abc import Mapping
from typing import Any

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetExecutionContext, AssetKey, asset_check
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from crm import warehouse_spark
from crm.warehouse import record_build
from orchestration.assets._gates import docs_dir, gate_check_result
from orchestration.dbt_project import DBT_PROJECT, ensure_manifest
from orchestration.resources import DAILY, FULL_REFRESH_TAG, WAREHOUSE_TARGET_TAG, CrmResource
from orchestration.resources import as_of as partition_date

ensure_manifest()


class CrmDbtTranslator(DagsterDbtTranslator):
    """The landed-events source is the `landed_events` asset; models group by layer."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        if dbt_resource_props["resource_type"] == "source" and dbt_resource_props["name"] == "events":
            return AssetKey("landed_events")
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        return f"warehouse_{fqn[1]}" if len(fqn) > 2 else "warehouse"


# One partition per as-of date, handed to dbt as its `as_of_date` var (as in dagster's project_dbt example).
@dbt_assets(manifest=DBT_PROJECT.manifest_path, project=DBT_PROJECT, dagster_dbt_translator=CrmDbtTranslator(),
            partitions_def=DAILY)
def warehouse(context: AssetExecutionContext, dbt: DbtCliResource, crm: CrmResource):
    paths = crm.paths()
    as_of = partition_date(context)
    target = context.run.tags.get(WAREHOUSE_TARGET_TAG, "duckdb")
    # incremental on DuckDB (dbt_project/macros/incremental_days.sql); on Spark a full build handed
    # over to DuckDB after it (crm.warehouse_spark)
    why = warehouse_spark.full_refresh_reason(paths, target, context.run.tags.get(FULL_REFRESH_TAG) == "true")
    context.log.info(f"dbt build as of {as_of} on {target}"
                     + (f", full refresh: {why}" if why else ", incremental" if target == "duckdb" else ""))
    invocation = dbt.cli(["build", *warehouse_spark.dbt_args(paths, as_of, target, full_refresh=bool(why))],
                         context=context, target_path=paths.home / "dbt" / "target")
    yield from invocation.stream()
    if invocation.is_successful():
        if target == "spark":
            counts = warehouse_spark.publish_to_duckdb(paths)
            context.log.info(f"Spark tables handed over to DuckDB: {len(counts)} tables, "
                             f"{sum(counts.values()):,} rows")
        else:
            record_build(paths)


# Quality gates on the marts (expectations/): blocking, so nothing downstream of a broken mart runs.
@asset_check(asset=AssetKey("dim_player"), name="marts_dim_player_gate", blocking=True,
             description="Great Expectations suite: player_id unique and not null; each channel's consent "
                         "version is the player's latest; consent versions only increase (int_consents_versioned).")
def marts_dim_player_gate(crm: CrmResource) -> AssetCheckResult:
    from crm.warehouse import read_table
    from expectations.marts import CONSENT_COLUMNS, dim_player_columns, gate_dim_player

    paths = crm.paths()
    result = gate_dim_player(read_table(paths, "dim_player", columns=dim_player_columns()),
                             read_table(paths, "int_consents_versioned", columns=CONSENT_COLUMNS),
                             docs_dir=docs_dir(paths))
    return gate_check_result(result)


@asset_check(asset=AssetKey("fct_player_daily"), name="marts_fct_player_daily_gate", blocking=True,
             description="Great Expectations suite: (player_id, activity_date) unique and not null; every fact "
                         "has a player in dim_player.")
def marts_fct_player_daily_gate(crm: CrmResource) -> AssetCheckResult:
    from crm.warehouse import connect, fetch_df, read_table
    from expectations.marts import gate_player_daily

    paths = crm.paths()
    with connect(paths) as con:
        daily = fetch_df(con, "SELECT player_id, activity_date FROM fct_player_daily")
    players = read_table(paths, "dim_player", columns=["player_id"])  # the gate reads only the key
    result = gate_player_daily(daily, players, docs_dir=docs_dir(paths))
    return gate_check_result(result)


@asset_check(asset=AssetKey("player_features"), name="features_gate", blocking=True,
             description="Great Expectations suite: key unique, every row has a player, value ranges per feature "
                         "kind (ml/features.py), null rates, feature PSI against each champion's training "
                         "reference (error above CRM_GATE_PSI_ERROR, warning above CRM_GATE_PSI_WARN).")
def features_gate(context: AssetCheckExecutionContext, crm: CrmResource) -> AssetCheckResult:
    from crm.warehouse import read_scoring_population, read_table
    from expectations.features import champion_feature_psi, gate_features

    paths = crm.paths()
    psi, notes = champion_feature_psi(paths.mlflow_tracking_uri, read_scoring_population(paths))
    players = read_table(paths, "dim_player", columns=["player_id"])  # the gate reads only the key
    result = gate_features(read_table(paths, "player_features"), players, psi=psi,
                           notes=notes, docs_dir=docs_dir(paths))
    worst = {m: max(v.values()) for m, v in psi.items() if v}
    return gate_check_result(result, {f"{m}_max_feature_psi": float(v) for m, v in worst.items()})


warehouse_checks = [marts_dim_player_gate, marts_fct_player_daily_gate, features_gate]
