"""The dbt project as assets: one asset per model, dbt tests as asset checks."""


import json
from collections.abc import Mapping
from typing import Any

from dagster import AssetExecutionContext, AssetKey
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from orchestration.dbt_project import DBT_PROJECT, ensure_manifest
from orchestration.resources import CrmResource

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


@dbt_assets(manifest=DBT_PROJECT.manifest_path, project=DBT_PROJECT, dagster_dbt_translator=CrmDbtTranslator())
def warehouse(context: AssetExecutionContext, dbt: DbtCliResource, crm: CrmResource):
    paths = crm.paths()
    as_of = crm.as_of(context)
    context.log.info(f"dbt build as of {as_of}")
    dbt_vars = json.dumps({"as_of_date": as_of.isoformat()})
    yield from dbt.cli(["build", "--vars", dbt_vars], context=context,
                       target_path=paths.home / "dbt" / "target").stream()
