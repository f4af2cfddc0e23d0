"""Run the real dbt project on a test's own data home (one helper for every test that builds)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from crm.config import DBT_PROJECT_DIR


def dbt_build(home: Path, as_of: dt.date, *extra: str, target: str = "duckdb", check: bool = True,
              command: str = "build") -> subprocess.CompletedProcess:
    """`dbt build` into ``home``'s warehouse as of ``as_of``; target and logs stay in ``home``.
    ``target``: the engine (crm.warehouse_spark.TARGETS); ``check``: fail the test when dbt fails;
    ``command``: another dbt command taking the same arguments (``test``)."""
    from crm.config import Paths
    from crm.warehouse_spark import dbt_args

    dbt = Path(sys.executable).with_name("dbt")
    env = os.environ | {"CRM_HOME": str(home), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
    cmd = [str(dbt), command, "--quiet", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
           "--target-path", str(home / "dbt" / "target"), "--log-path", str(home / "dbt" / "logs"),
           *dbt_args(Paths(home), as_of, target), *extra]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 or not check, f"dbt {command} failed:\n{res.stdout[-6000:]}\n{res.stderr[-3000:]}"
    return res
