"""Shared fixtures: a real pipeline run on a small simulated casino in a temp data home."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

TEST_CAMPAIGN = """\
# Test-only campaign: everyone in scope, so the list draws from every profile row.
id: everyone_push
name: Everyone by push (test)
channel: push
offer: {template: free_spins, value_eur: 5, wagering: 5}
experiment: {holdout: 0.2, variants: {A: 1}}
"""


@pytest.fixture(scope="session")
def pipeline_home(tmp_path_factory) -> Path:
    """A data home with a small simulated casino, before any pipeline run.

    The environment points every tool (dbt, MLflow, Dagster) at it for the session.
    """
    from crm.config import CAMPAIGNS_DIR, Paths
    from crm.simulate import simulate

    home = tmp_path_factory.mktemp("crm_home")
    campaigns = home / "campaigns"
    campaigns.mkdir()
    for p in CAMPAIGNS_DIR.glob("*.yaml"):
        shutil.copy(p, campaigns / p.name)
    (campaigns / "everyone_push.yaml").write_text(TEST_CAMPAIGN)
    # everyone_push may cost more than the approval threshold: a second person approves it (four eyes),
    # so the pipeline tests dispatch it through the approval check (tests/test_audit.py covers the rules)
    from crm.approvals import approve
    from crm.campaign_spec import load_campaign

    approve(Paths(home), load_campaign(campaigns / "everyone_push.yaml"), by="qa-approver", reason="test fixture")
    os.environ["CRM_HOME"] = str(home)
    os.environ["CRM_CAMPAIGNS_DIR"] = str(campaigns)
    simulate(Paths(home), players=800, days=100, seed=11, progress=False)
    return home
