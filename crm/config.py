"""Where everything lives: one data home (``CRM_HOME``) holds all the platform writes.

Configuration comes from environment variables with sensible defaults; nothing here
creates directories except :func:`ensure`.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
CAMPAIGNS_DIR = REPO_ROOT / "campaigns"


@dataclass(frozen=True)
class Paths:
    """All locations under one data home."""

    home: Path

    @property
    def incoming(self) -> Path:
        """Raw contract files waiting to be landed (the simulator writes here)."""
        return self.home / "landing" / "incoming"

    @property
    def events(self) -> Path:
        """Validated, de-duplicated events: one Parquet file per landed batch."""
        return self.home / "landing" / "events"

    @property
    def quarantine(self) -> Path:
        """Records that broke the contract, each with its reason."""
        return self.home / "landing" / "quarantine"

    @property
    def ingest_log(self) -> Path:
        """One JSON line per ingested file: counts that always add up."""
        return self.home / "landing" / "ingest_log.jsonl"

    @property
    def exports(self) -> Path:
        """Operator exports that are not events (e.g. past campaign assignments)."""
        return self.home / "landing" / "exports"

    @property
    def truth(self) -> Path:
        """Simulator ground truth. The pipeline never reads it; benchmarks do."""
        return self.home / "truth"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        """``$CRM_MLFLOW_TRACKING_URI`` (a PostgreSQL database) when set, else SQLite in the home."""
        return external_url(MLFLOW_DATABASE_ENV) or f"sqlite:///{(self.mlflow_dir / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.mlflow_dir / "artifacts"

    @property
    def lists(self) -> Path:
        """Published campaign lists: lists/<campaign_id>/<as_of>/..."""
        return self.home / "lists"

    @property
    def outbox(self) -> Path:
        """Messages handed to dispatch: outbox/<channel>/<campaign_id>/<as_of>.jsonl"""
        return self.home / "outbox"

    @property
    def ledger(self) -> Path:
        """The spend ledger (spend.duckdb): what each campaign committed and sent per as-of date
        (:mod:`crm.campaigns.budget`)."""
        return self.home / "ledger"

    @property
    def audit(self) -> Path:
        """The hash-chained audit log (audit.jsonl) and its HEAD: approvals, rejections, campaign changes."""
        return self.home / "audit"

    @property
    def simulation_file(self) -> Path:
        """Written by ``crm simulate``: this home holds a simulated casino (its days are history)."""
        return self.home / "simulation.json"

    @property
    def service_db(self) -> Path:
        """The service's embedded store (SQLite) when ``$CRM_DATABASE_URL`` is not set (:mod:`crm.store`)."""
        return self.home / "service" / "service.db"

    @property
    def feature_copy(self) -> Path:
        """The warehouse's ``player_features`` of the profile copy's date, written with the copy
        (:func:`crm.store.profile.sync_profiles`): what the web page's dry run reads the model
        features from (Parquet; the service never opens the DuckDB warehouse)."""
        return self.home / "service" / "features.parquet"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def bench(self) -> Path:
        return self.home / "bench"

    def ensure(self) -> Paths:
        for p in (self.incoming, self.events, self.quarantine, self.exports, self.truth,
                  self.mlflow_artifacts, self.lists, self.outbox, self.dagster_home):
            p.mkdir(parents=True, exist_ok=True)
        dagster_yaml = self.dagster_home / "dagster.yaml"
        # no network here: no telemetry; DuckDB has one writer: one run at a time (a UI
        # backfill or the sensor queues its runs behind the running one)
        # ours (one of the texts below) is kept in step with $CRM_DAGSTER_DATABASE_URL; a hand-written one is left
        wanted = DAGSTER_YAML_POSTGRES if external_url(DAGSTER_DATABASE_ENV) else DAGSTER_YAML
        if not dagster_yaml.exists() or (dagster_yaml.read_text() in _MANAGED_DAGSTER_YAML
                                         and dagster_yaml.read_text() != wanted):
            dagster_yaml.write_text(wanted)
        return self


DAGSTER_YAML = "telemetry:\n  enabled: false\nconcurrency:\n  runs:\n    max_concurrent_runs: 1\n"
_OLD_DAGSTER_YAML = "telemetry:\n  enabled: false\n"  # written before runs were limited: upgraded in place

# The Dagster instance (runs, event logs, schedules) and MLflow's tracking store on PostgreSQL, when set.
# psycopg2 explicitly: with SQLAlchemy 2.1 a bare postgresql:// picks psycopg 3, which dagster-postgres fails on.
DAGSTER_DATABASE_ENV = "CRM_DAGSTER_DATABASE_URL"
MLFLOW_DATABASE_ENV = "CRM_MLFLOW_TRACKING_URI"
POSTGRES_SCHEME = "postgresql+psycopg2://"
# the URL stays in the environment (Dagster reads it there): no password in a file of the home
DAGSTER_YAML_POSTGRES = DAGSTER_YAML + f"storage:\n  postgres:\n    postgres_url:\n      env: {DAGSTER_DATABASE_ENV}\n"
_MANAGED_DAGSTER_YAML = (_OLD_DAGSTER_YAML, DAGSTER_YAML, DAGSTER_YAML_POSTGRES)


def external_url(env: str) -> str | None:
    """The PostgreSQL URL in ``$env``, or None when unset; anything but postgresql+psycopg2:// is refused."""
    url = (os.environ.get(env) or "").strip()
    if not url:
        return None
    if not url.startswith(POSTGRES_SCHEME):
        scheme = url.split("://", 1)[0] if "://" in url else url[:20]
        raise ValueError(f"{env} must be a {POSTGRES_SCHEME}user:password@host:port/database URL, got scheme "
                         f"{scheme!r} (SQLAlchemy 2.1 picks psycopg 3 for a bare postgresql://, which Dagster's "
                         "storage fails on)")
    return url


def crm_home() -> Path:
    """The data home: ``$CRM_HOME`` or ``data/`` in the checkout, always absolute."""
    return Path(os.environ.get("CRM_HOME") or REPO_ROOT / "data").expanduser().resolve()


def paths() -> Paths:
    return Paths(crm_home())


def dispatch_clock(p: Paths) -> dt.datetime | None:
    """The instant a dispatch sends at (naive UTC), or None: on time, each message at its planned
    send time (a replay of history).

    ``$CRM_NOW``: ``wall`` (the wall clock), ``planned`` (on time), or an ISO-8601 instant. Unset:
    on time in a simulated home (``crm simulate`` writes :attr:`Paths.simulation_file`: its days
    are history, not now), else the wall clock.
    """
    value = (os.environ.get("CRM_NOW") or "").strip()
    if value == "planned" or (not value and p.simulation_file.exists()):
        return None
    if not value or value == "wall":
        return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"CRM_NOW={value!r}: expected wall, planned or an ISO-8601 instant") from e
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


def campaigns_dir() -> Path:
    """The campaign YAML folder: ``$CRM_CAMPAIGNS_DIR`` or ``campaigns/`` in the checkout."""
    return Path(os.environ.get("CRM_CAMPAIGNS_DIR") or CAMPAIGNS_DIR)


def export_env() -> Paths:
    """Set the environment the tools read (dbt profile, MLflow, Dagster, GX) and return paths."""
    p = paths().ensure()
    os.environ["CRM_HOME"] = str(p.home)
    os.environ["DAGSTER_HOME"] = str(p.dagster_home)
    os.environ["MLFLOW_TRACKING_URI"] = p.mlflow_tracking_uri
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ["DBT_LOG_PATH"] = str(p.home / "dbt" / "logs")
    return p
