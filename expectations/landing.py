"""The landing suite: the batch of events landed by one run, and the quarantine rate of its files.

Schema of the landed Parquet (exactly the columns landing writes, each of its type in every
batch file), envelope fields not
null, event ids unique, event types known to the contract (:data:`crm.contract.EVENT_TYPES`),
event time not after the ingest time (with ``max_future_seconds`` of clock skew), and per
landed file the share of records quarantined at most ``max_quarantine_rate``. The contract
check in :mod:`crm.landing` already quarantines bad records: this gate is the second line
that catches a contract or loader change letting them through.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import great_expectations as gx
import pandas as pd

from crm.contract import EVENT_TYPES
from expectations.thresholds import threshold
from expectations.validate import GateResult, combine, validate

SUITE = "landing"
# Columns and DuckDB types of a landed batch file (crm.landing writes them; dbt staging reads them).
LANDED_TYPES = {"event_id": "VARCHAR", "event_type": "VARCHAR", "trace_id": "VARCHAR", "player_id": "VARCHAR",
                "brand_id": "VARCHAR", "occurred_at": "TIMESTAMP", "payload": "VARCHAR", "batch_id": "VARCHAR",
                "ingested_at": "TIMESTAMP"}
LANDED_COLUMNS = tuple(LANDED_TYPES)
FILE_COLUMNS = ("batch_id", "source_file", "records", "quarantined")


def gate_landing(events: pd.DataFrame, files: pd.DataFrame, *, now: dt.datetime | None = None,
                 max_quarantine_rate: float | None = None, max_future_seconds: float | None = None,
                 schemas: dict[str, dict[str, str]] | None = None, docs_dir: str | Path | None = None) -> GateResult:
    """``events``: the landed rows of the batch; ``files``: one row per landed file (its ingest log
    entry: batch_id, source_file, records, quarantined); ``schemas``: batch id -> column -> DuckDB
    type of each landed batch file (:func:`crm.landing.landed_schema`; types are checked only when
    given). Event time is compared with the row's ``ingested_at`` (``now``, default the current UTC
    time, when the column is absent)."""
    max_q = threshold("max_quarantine_rate") if max_quarantine_rate is None else max_quarantine_rate
    skew = threshold("max_future_seconds") if max_future_seconds is None else max_future_seconds
    df = events.copy()
    occurred = pd.to_datetime(df["occurred_at"], errors="coerce") if "occurred_at" in df else pd.Series(
        pd.NaT, index=df.index, dtype="datetime64[ns]")
    if "ingested_at" in df:
        ref = pd.to_datetime(df["ingested_at"], errors="coerce")
    else:
        ref = pd.Timestamp(now or dt.datetime.now(dt.UTC).replace(tzinfo=None))
    df["seconds_after_ingest"] = (occurred - ref).dt.total_seconds()
    exps = [
        gx.expectations.ExpectTableColumnsToMatchSet(column_set=[*LANDED_COLUMNS, "seconds_after_ingest"],
                                                     exact_match=True),
        *[gx.expectations.ExpectColumnValuesToNotBeNull(column=c)
          for c in ("event_id", "event_type", "player_id", "brand_id", "occurred_at")],
        gx.expectations.ExpectColumnValuesToBeUnique(column="event_id"),
        gx.expectations.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
        gx.expectations.ExpectColumnValuesToBeBetween(column="seconds_after_ingest", max_value=float(skew)),
    ]
    desc = {0: "schema of the landed batch", 6: "event id unique", 7: "known event types (crm.contract)",
            8: f"event time not in the future (ingest time + {skew:g} s)"}
    events_result = validate(df, f"{SUITE}_events", exps, id_column="event_id", descriptions=desc, docs_dir=docs_dir)

    f = files.copy() if len(files) else pd.DataFrame({c: [] for c in FILE_COLUMNS})
    f["quarantine_rate"] = (pd.to_numeric(f["quarantined"]) / pd.to_numeric(f["records"]).where(
        pd.to_numeric(f["records"]) > 0)).fillna(0.0).astype(float)
    files_result = validate(
        f, f"{SUITE}_files",
        [gx.expectations.ExpectColumnValuesToBeBetween(column="quarantine_rate", min_value=0.0, max_value=max_q)],
        id_column="batch_id", descriptions={0: f"share of a file's records quarantined at most {max_q:g}"},
        docs_dir=docs_dir)
    parts = [events_result, files_result]
    if schemas is not None:
        rows = [{"column": f"{b}.{c}", "type": t, "expected_type": LANDED_TYPES[c]}
                for b, cols in schemas.items() for c, t in cols.items() if c in LANDED_TYPES]
        types = pd.DataFrame(rows or None, columns=["column", "type", "expected_type"])
        parts.append(validate(
            types, f"{SUITE}_types",
            [gx.expectations.ExpectColumnPairValuesToBeEqual(column_A="type", column_B="expected_type")],
            id_column="column", descriptions={0: "column types of each landed batch file (batch.column)"},
            docs_dir=docs_dir))
    return combine(SUITE, parts)
