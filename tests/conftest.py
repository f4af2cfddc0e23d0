"""Shared fixtures: a real pipeline run on a small simulated casino in a temp data home."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests._stores import BACKENDS, fresh_store_url

# A pytest-xdist worker's __main__ has neither __spec__ nor __file__, which pyspark.sql.connect (imported
# by Great Expectations when PySpark is installed) takes for a doctest run: without Spark Connect's
# optional dependencies it then calls sys.exit(0) at import, and the test importing GE first in that
# worker fails with SystemExit. Give the worker's main module a file, an empty one: a "spawn" process
# pool started by a test runs its parent's main file first.
_main = sys.modules.get("__main__")
if _main is not None and getattr(_main, "__spec__", None) is None and not hasattr(_main, "__file__"):
    _main.__file__ = str(Path(__file__).with_name("_worker_main.py"))

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Dispatches in tests send on time (each list at its planned send time), whatever the wall clock
# says; the tests of late sends pass their own clock (crm.config.dispatch_clock).
os.environ.setdefault("CRM_NOW", "planned")
# The daily partitions start on the first day of the home's data, read when orchestration.resources is
# imported: once per process. Tests use several homes in one process, so they pin the start where landing
# accepts data; the derivation is tested on its own and by the subprocess of test_import_only.
os.environ.setdefault("CRM_PARTITIONS_START", "1990-01-01")

TEST_CAMPAIGN = """\
# Test-only campaign: everyone in scope, so the list draws from every profile row.
id: everyone_push
name: Everyone by push (test)
channel: push
offer: {template: free_spins, value_eur: 5, wagering: 5}
experiment: {holdout: 0.2, variants: {A: 1}}
"""


def make_home(home: Path, players: int, days: int = 100, seed: int = 11, reason: str = "test fixture") -> Path:
    """A data home with the shipped campaigns plus ``everyone_push`` (approved by a second person:
    it may cost more than the approval threshold) and a simulated casino, before any pipeline
    run. Returns its campaigns folder; the caller points CRM_HOME / CRM_CAMPAIGNS_DIR at them."""
    from crm.campaigns.approvals import approve
    from crm.campaigns.spec import load_campaign
    from crm.config import CAMPAIGNS_DIR, Paths
    from crm.simulator.casino import simulate

    campaigns = home / "campaigns"
    campaigns.mkdir()
    for p in CAMPAIGNS_DIR.glob("*.yaml"):
        shutil.copy(p, campaigns / p.name)
    (campaigns / "everyone_push.yaml").write_text(TEST_CAMPAIGN)
    approve(Paths(home), load_campaign(campaigns / "everyone_push.yaml"), by="qa-approver", reason=reason)
    simulate(Paths(home), players=players, days=days, seed=seed, progress=False)
    return campaigns


@pytest.fixture(scope="session")
def pipeline_home(tmp_path_factory) -> Path:
    """A data home with a small simulated casino, before any pipeline run.

    The environment points every tool (dbt, MLflow, Dagster) at it for the session.
    """
    home = tmp_path_factory.mktemp("crm_home")
    campaigns = make_home(home, players=800)
    os.environ["CRM_HOME"] = str(home)
    os.environ["CRM_CAMPAIGNS_DIR"] = str(campaigns)
    return home


# The store (crm/store) on each backend: SQLite always, PostgreSQL when $CRM_TEST_DATABASE_URL answers
# (.ci/postgres starts one; otherwise those runs skip and say why). `-m postgresql` picks those runs alone.
@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path) -> str:
    """The URL of a fresh empty store for this test (SQLite: the default file of ``Paths(tmp_path)``)."""
    from crm.config import Paths

    with fresh_store_url(request.param, Paths(tmp_path)) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def module_store_url(request, tmp_path_factory) -> str:
    """A fresh empty store shared by the tests of a module (a module's tests run once per backend)."""
    from crm.config import Paths

    with fresh_store_url(request.param, Paths(tmp_path_factory.mktemp("store"))) as url:
        yield url


@pytest.fixture
def engine(store_url, tmp_path):
    """An engine on ``store_url``, migrated to head."""
    from crm.config import Paths
    from crm.store.db import make_engine, upgrade_to_head

    eng = make_engine(Paths(tmp_path), store_url)
    upgrade_to_head(eng)
    yield eng
    eng.dispose()
