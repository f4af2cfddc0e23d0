"""The Dagster instance and MLflow's tracking store on PostgreSQL ($CRM_DAGSTER_DATABASE_URL,
$CRM_MLFLOW_TRACKING_URI): a real run recorded in PostgreSQL, a model registered and promoted there.
Runs when $CRM_TEST_DATABASE_URL names a server (.ci/run starts one); each store gets a fresh database."""

from __future__ import annotations

import datetime as dt
import os

import pytest
import sqlalchemy as sa

from crm.config import DAGSTER_DATABASE_ENV, MLFLOW_DATABASE_ENV, Paths, external_url
from tests._stores import fresh_store_url

pytestmark = pytest.mark.postgresql


def test_a_bare_postgresql_url_is_refused_with_the_reason(monkeypatch):
    monkeypatch.setenv(DAGSTER_DATABASE_ENV, "postgresql://u:secret@localhost/dagster")
    with pytest.raises(ValueError, match=r"postgresql\+psycopg2://.*psycopg 3") as e:
        external_url(DAGSTER_DATABASE_ENV)
    assert "secret" not in str(e.value)
    monkeypatch.delenv(DAGSTER_DATABASE_ENV)
    assert external_url(DAGSTER_DATABASE_ENV) is None


def test_dagster_runs_and_the_mlflow_registry_live_in_postgresql(tmp_path, monkeypatch):
    from dagster import AssetKey, DagsterInstance
    from dagster_postgres import PostgresRunStorage

    from crm.backup import backup
    from crm.config import export_env
    from crm.simulator.casino import simulate
    from ml import registry
    from ml.retrain import retrain_decision
    from ml.train import train_model
    from orchestration.run import run_refresh
    from tests.test_ml import CHURN, make_labels, make_snapshots

    home = tmp_path / "home"
    with fresh_store_url("postgresql", Paths(home)) as dagster_url, \
            fresh_store_url("postgresql", Paths(home)) as mlflow_url:
        monkeypatch.setenv("CRM_HOME", str(home))
        monkeypatch.setenv(DAGSTER_DATABASE_ENV, dagster_url)
        monkeypatch.setenv(MLFLOW_DATABASE_ENV, mlflow_url)
        monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
        paths = export_env()
        assert paths.mlflow_tracking_uri == mlflow_url and os.environ["MLFLOW_TRACKING_URI"] == mlflow_url
        assert "postgres_url:\n      env: CRM_DAGSTER_DATABASE_URL" in (paths.dagster_home / "dagster.yaml").read_text()
        assert "@" not in (paths.dagster_home / "dagster.yaml").read_text()  # no password in the home
        simulate(paths, players=200, days=30, seed=2, progress=False)

        with DagsterInstance.get() as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            result, as_of = run_refresh(instance, asset_selection=[AssetKey("landed_events")])
            assert result.success
            runs = instance.get_runs()
            assert {r.job_name for r in runs} >= {"daily_refresh"} and len(runs) >= 2  # landing + refresh
        with sa.create_engine(dagster_url, poolclass=sa.NullPool).connect() as conn:
            stored = conn.exec_driver_sql("SELECT count(*) FROM runs").scalar()
            events = conn.exec_driver_sql("SELECT count(*) FROM event_logs").scalar()
        assert stored == len(runs) and events > 10

        snaps = make_snapshots()
        res = train_model(CHURN, snaps, make_labels(snaps), tracking_uri=paths.mlflow_tracking_uri,
                          artifact_location=paths.mlflow_artifacts.as_uri(), lineage={"as_of_date": as_of})
        assert res.promoted
        client = registry.get_client(paths.mlflow_tracking_uri)
        assert str(registry.champion_version(client, CHURN.registered_name).version) == str(res.model_version)
        decision = retrain_decision(paths.mlflow_tracking_uri, CHURN.registered_name, dt.date.fromisoformat(as_of))
        assert not decision.due and decision.champion_version == str(res.model_version)
        with sa.create_engine(mlflow_url, poolclass=sa.NullPool).connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM model_versions").scalar() >= 1
        assert (paths.mlflow_dir / "mlflow.db").exists() is False  # nothing fell back to SQLite

        report = backup(paths, tmp_path / "home.tar")
        assert any("MLflow tracking is on PostgreSQL" in n for n in report.external)
        assert any("Dagster instance is on PostgreSQL" in n for n in report.external)
