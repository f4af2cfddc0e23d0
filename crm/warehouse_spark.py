"""The warehouse built on Apache Spark (`crm run --target spark`) and handed over to DuckDB.

dbt builds the same project on Spark (dbt-spark, profile output `spark`: a local Spark in the dbt
process, tables as Parquet files under ``$CRM_HOME/spark/warehouse``; a cluster is a profile
setting). Everything after the warehouse (training, scoring, lists, gates, the service) reads
the DuckDB file, so a successful Spark build is published into it: each Spark table's Parquet
files become a DuckDB table of the same name, in one transaction. Models, lists and checks then
run unchanged. At 10 M players and beyond the hand-off is the place where the marts move rather
than the events (docs/architecture.md, "Spark").
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from crm.config import Paths
from crm.sql import ident

TARGETS = ("duckdb", "spark")
# dbt profile output per target (dbt_project/profiles.yml)
PROFILE_OUTPUTS = {"duckdb": "dev", "spark": "spark"}
# landing patterns the staging models ask about (dbt_project/macros/cross_engine.sql)
LANDING_PATTERNS = ("events/*.parquet", "imported_daily/*.parquet", "exports/campaign_assignments*.parquet")
SPARK_SCHEMA = "main"  # the profile's schema: a database of Spark's catalog


def spark_tables_dir(paths: Paths) -> Path:
    return paths.home / "spark" / "warehouse" / f"{SPARK_SCHEMA}.db"


def landing_patterns_present(paths: Paths) -> list[str]:
    """The landing patterns with at least one file (Spark SQL cannot list a folder)."""
    root = paths.home / "landing"
    return [p for p in LANDING_PATTERNS if next(root.glob(p), None) is not None]


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"unknown warehouse target {target!r}: expected one of {', '.join(TARGETS)}")


def dbt_vars(paths: Paths, as_of: dt.date, target: str = "duckdb") -> dict:
    """The vars of a dbt build for one as-of date on one target."""
    _check_target(target)
    out: dict = {"as_of_date": as_of.isoformat()}
    if target == "spark":
        out["landing_files"] = landing_patterns_present(paths)
    return out


def dbt_args(paths: Paths, as_of: dt.date, target: str = "duckdb", full_refresh: bool = False) -> list[str]:
    """The arguments of a `dbt build` (after the command) for one as-of date on one target."""
    _check_target(target)
    return ["--target", PROFILE_OUTPUTS[target], "--vars", json.dumps(dbt_vars(paths, as_of, target)),
            *(["--full-refresh"] if full_refresh else [])]


def full_refresh_reason(paths: Paths, target: str, asked: bool) -> str | None:
    """Why the build rebuilds every day (None: incremental). On DuckDB when asked or when the dbt
    project changed since the last build; on Spark every build is a full one anyway (its day facts
    are tables), so no reason is needed."""
    from crm.warehouse import needs_full_refresh

    _check_target(target)
    if asked:
        return "asked for (crm run --full-refresh)"
    return needs_full_refresh(paths) if target == "duckdb" else None


def spark_tables(paths: Paths) -> list[str]:
    """The tables a Spark build left (one folder of Parquet files each)."""
    root = spark_tables_dir(paths)
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if d.is_dir() and next(d.glob("*.parquet"), None) is not None)


def publish_to_duckdb(paths: Paths) -> dict[str, int]:
    """Copy every table of the Spark build into the DuckDB warehouse (replacing the tables of the
    same name) in one transaction: a failure leaves the previous warehouse as it was. Spark
    writes timestamps as UTC instants; they become naive UTC TIMESTAMPs as on DuckDB.
    Returns the row count per table."""
    import duckdb

    tables = spark_tables(paths)
    if not tables:
        raise FileNotFoundError(f"no Spark tables under {spark_tables_dir(paths)}: build with --target spark first")
    paths.warehouse.parent.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    con = duckdb.connect(str(paths.warehouse))
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("BEGIN TRANSACTION")
        for name in tables:
            files = str(spark_tables_dir(paths) / name / "*.parquet")
            cols = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [files]).fetchall()
            select = ", ".join(
                f"CAST({ident(c)} AS TIMESTAMP) AS {ident(c)}" if t == "TIMESTAMP WITH TIME ZONE" else ident(c)
                for c, t, *_ in cols)
            # a view of the same name (a staging model built by DuckDB before) goes first
            kind = con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = ?",
                               [name]).fetchall()
            if kind and kind[0][0] == "VIEW":
                con.execute(f"DROP VIEW {ident(name)}")
            con.execute(f"CREATE OR REPLACE TABLE {ident(name)} AS SELECT {select} FROM read_parquet(?)", [files])
            counts[name] = con.execute(f"SELECT count(*) FROM {ident(name)}").fetchone()[0]
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    # the next DuckDB build is a full one: its incremental tables were just replaced
    from crm.warehouse import forget_build

    forget_build(paths)
    return counts
