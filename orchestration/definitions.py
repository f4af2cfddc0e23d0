"""The Dagster code location: every asset, check, job, schedule and sensor of casino-crm."""

import logging
import sys
from pathlib import Path

from dagster import (
    AssetSelection,
    Definitions,
    build_schedule_from_partitioned_job,
    colored_console_logger,
    define_asset_job,
    in_process_executor,
)
from dagster_dbt import DbtCliResource

from crm.campaigns.spec import load_campaigns
from crm.config import campaigns_dir, export_env
from orchestration.assets.campaigns import campaign_assets
from orchestration.assets.games import game_assets
from orchestration.assets.landing import landed_events, landing_checks
from orchestration.assets.ml import ml_checks, model_assets, player_scores, uplift_assets
from orchestration.assets.readouts import readout_assets
from orchestration.assets.risk import risk_assets
from orchestration.assets.service import journey_entries, online_profiles, realtime_activity
from orchestration.assets.warehouse import warehouse, warehouse_checks
from orchestration.dbt_project import DBT_PROJECT
from orchestration.progress import progress_logger
from orchestration.resources import DAILY, CrmResource
from orchestration.sensors import land_incoming, mart_freshness_checks, sensors

export_env()
log = logging.getLogger(__name__)

campaign_dir = campaigns_dir()
specs, campaign_errors = load_campaigns(campaign_dir)
for err in campaign_errors:  # one broken campaign does not stop the others
    log.error(err)

# each list after the higher-priority lists of its day (crm.campaigns.day.build_one)
campaign_defs = [campaign_assets(s, specs) for s in specs]
campaign_asset_defs = [a for assets, _ in campaign_defs for a in assets]
campaign_checks = [c for _, checks in campaign_defs for c in checks]

daily_refresh = define_asset_job(
    # freshness checks are evaluated by freshness_checks_sensor, not inside the refresh
    "daily_refresh", selection=AssetSelection.all() - AssetSelection.checks(*mart_freshness_checks),
    partitions_def=DAILY,
    description="Land new files, build the warehouse, train and score, build, gate and dispatch lists.",
)

defs = Definitions(
    assets=[landed_events, warehouse, *model_assets, *uplift_assets, player_scores, *game_assets, online_profiles,
            journey_entries,
            realtime_activity, *risk_assets,
            *campaign_asset_defs, *readout_assets(specs)],
    asset_checks=[*landing_checks, *warehouse_checks, *ml_checks, *campaign_checks, *mart_freshness_checks],
    jobs=[daily_refresh, land_incoming],
    # 06:00 UTC each day: the refresh for today's as-of date (the day's partition).
    schedules=[build_schedule_from_partitioned_job(daily_refresh, name="daily_refresh_schedule", hour_of_day=6)],
    # landing, freshness and failure notifications: see orchestration/sensors.py (on by default)
    sensors=sensors,
    resources={"crm": CrmResource(), "dbt": DbtCliResource(project_dir=DBT_PROJECT,
                                         dbt_executable=str(Path(sys.executable).with_name("dbt")))},
    # Dagster's console logger, plus step lines for `crm run` on a terminal (orchestration/progress.py)
    loggers={"console": colored_console_logger, "progress": progress_logger},
    # DuckDB allows one writer: steps run one at a time in one process.
    executor=in_process_executor,
)
