"""The Dagster code location: every asset, check, job and schedule of casino-crm."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from dagster import (
    AssetSelection,
    Definitions,
    build_schedule_from_partitioned_job,
    define_asset_job,
    in_process_executor,
)
from dagster_dbt import DbtCliResource

from crm.campaign_spec import load_campaigns
from crm.config import CAMPAIGNS_DIR, export_env
from orchestration.assets.campaigns import campaign_assets
from orchestration.assets.landing import landed_events, landing_counts_add_up
from orchestration.assets.ml import model_assets, player_scores, uplift_assets
from orchestration.assets.readouts import readout_assets
from orchestration.assets.warehouse import warehouse
from orchestration.dbt_project import DBT_PROJECT
from orchestration.resources import DAILY, CrmResource

export_env()
log = logging.getLogger(__name__)

campaign_dir = os.environ.get("CRM_CAMPAIGNS_DIR", str(CAMPAIGNS_DIR))
specs, campaign_errors = load_campaigns(campaign_dir)
for err in campaign_errors:  # one broken campaign does not stop the others
    log.error(err)

# each list after the higher-priority lists of its day (crm.campaign_day.build_one)
campaign_defs = [campaign_assets(s, specs) for s in specs]
campaign_asset_defs = [a for assets, _ in campaign_defs for a in assets]
campaign_checks = [c for _, checks in campaign_defs for c in checks]

daily_refresh = define_asset_job(
    "daily_refresh", selection=AssetSelection.all(), partitions_def=DAILY,
    description="Land new files, build the warehouse, train and score, build, gate and dispatch lists.",
)

defs = Definitions(
    assets=[landed_events, warehouse, *model_assets, *uplift_assets, player_scores, *campaign_asset_defs,
            *readout_assets(specs)],
    asset_checks=[landing_counts_add_up, *campaign_checks],
    jobs=[daily_refresh],
    # 06:00 UTC each day: the refresh for today's as-of date (the day's partition).
    schedules=[build_schedule_from_partitioned_job(daily_refresh, name="daily_refresh_schedule", hour_of_day=6)],
    resources={"crm": CrmResource(), "dbt": DbtCliResource(project_dir=DBT_PROJECT,
                                         dbt_executable=str(Path(sys.executable).with_name("dbt")))},
    # DuckDB allows one writer: steps run one at a time in one process.
    executor=in_process_executor,
)
