"""The dbt project object, kept apart from the module that defines ``@dbt_assets``.

The manifest is produced here when missing or older than the project's sources, so
tests, CI and `crm run` work without `dagster dev` (STACK.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from crm.config import DBT_PROJECT_DIR, export_env

DBT_PROJECT = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def _newest_source_mtime(root: Path) -> float:
    files = [root / "dbt_project.yml", *[p for d in ("models", "seeds", "macros", "tests")
                                         for p in (root / d).rglob("*") if p.is_file()]]
    return max((p.stat().st_mtime for p in files if p.exists()), default=0.0)


def ensure_manifest() -> Path:
    """Run `dbt parse` if the manifest is missing or stale; return its path."""
    manifest = DBT_PROJECT.manifest_path
    if manifest.exists() and manifest.stat().st_mtime >= _newest_source_mtime(DBT_PROJECT_DIR):
        return manifest
    paths = export_env()
    env = os.environ | {"DBT_LOG_PATH": str(paths.home / "dbt" / "logs")}
    dbt = Path(sys.executable).with_name("dbt")
    subprocess.run([str(dbt), "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
                    "--profiles-dir", str(DBT_PROJECT_DIR)], check=True, env=env)
    return manifest
