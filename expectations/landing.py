"""The landing suite: the batch of events landed by one run, and the quarantine rate of its files.

Schema of the landed Parquet (exactly the columns landing writes, each of its type in every
batch file), envelope fields not
null, event ids unique, event types known to the contract (:data:`crm.contract.EVENT_TYPES`),
event time not after the ingest time (with ``max_future_seconds`` of clock skew), and per
landed file the share of records quarantined at most ``max_quarantine_rate``. The contract
check in :mod:`crm.ingest.landing` already quarantines bad records: this gate is the second line
that catches a contract or loader change letting them through.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import great_expectations as gx
import pandas as pd

from crm.contract import EVENT_TYPES
from expectations.thresholds import threshold
from expectations.validate import GateResult, combine, merge_chunks, validate

SUITE = "landing"
# Columns and DuckDB types of a landed batch file (crm.ingest.landing writes them; dbt staging reads them).
LANDED_TYPES = {"event_id": "VARCHAR", "event_type": "VARCHAR", "trace_id": "VARCHAR", "player_id": "VARCHAR",
                "brand_id": "VARCHAR", "occurred_at": "TIMESTAMP", "payload": "VARCHAR", "batch_id": "VARCHAR",
                "ingested_at": "TIMESTAMP"}
LANDED_COLUMNS = tuple(LANDED_TYPES)
FILE_COLUMNS = ("batch_id", "source_file", "records", "quarantined")


# What the row expectations read; with ``schemas`` given, the events frame needs only these
# (the payload, the largest column, is left in the file: at 12 M events it would cost GBs).
ROW_COLUMNS = ("event_id", "event_type", "player_id", "brand_id", "occurred_at", "ingested_at")
MISSING, NOT_IN_CONTRACT = "(missing)", "(not in the contract)"


def schema_frame(schemas: dict[str, dict[str, str]]) -> pd.DataFrame:
    """One row per batch file and column (``batch.column``) with its DuckDB type and the contract's:
    a missing column, an extra one and a wrong type all show as the two types differing."""
    rows = [{"column": f"{b}.{c}", "type": cols.get(c, MISSING), "expected_type": LANDED_TYPES.get(c, NOT_IN_CONTRACT)}
            for b, cols in schemas.items() for c in dict.fromkeys([*LANDED_TYPES, *cols])]
    return pd.DataFrame(rows or None, columns=["column", "type", "expected_type"])


def gate_landing(events: pd.DataFrame, files: pd.DataFrame, *, now: dt.datetime | None = None,
                 max_quarantine_rate: float | None = None, max_future_seconds: float | None = None,
                 schemas: dict[str, dict[str, str]] | None = None, docs_dir: str | Path | None = None) -> GateResult:
    """``events``: the landed rows of the batches; ``files``: one row per landed file (its ingest
    log entry: batch_id, source_file, records, quarantined); ``schemas``: batch id -> column ->
    DuckDB type of each landed batch file (:func:`crm.ingest.landing.landed_schema`). With ``schemas``
    the schema is checked on them (columns and types, per file) and ``events`` needs only
    :data:`ROW_COLUMNS`; without, the columns of ``events`` are the schema (names only). Event
    time is compared with the row's ``ingested_at`` (``now``, default the current UTC time, when
    the column is absent)."""
    rows = validate_events(events, now=now, max_future_seconds=max_future_seconds,
                           check_columns=schemas is None, docs_dir=docs_dir)
    return combine(SUITE, [rows, *validate_files(files, schemas, max_quarantine_rate=max_quarantine_rate,
                                                 docs_dir=docs_dir)])


def validate_events(events: pd.DataFrame, *, now: dt.datetime | None = None, max_future_seconds: float | None = None,
                    check_columns: bool = True, docs_dir: str | Path | None = None) -> GateResult:
    """The row expectations of the landing suite on ``events`` (and its column set if ``check_columns``).
    Each verdict is per row, event-id uniqueness per value: disjoint chunks split by event id
    compose (:func:`expectations.validate.merge_chunks`)."""
    skew = threshold("max_future_seconds") if max_future_seconds is None else max_future_seconds
    occurred = pd.to_datetime(events["occurred_at"], errors="coerce") if "occurred_at" in events else pd.Series(
        pd.NaT, index=events.index, dtype="datetime64[ns]")
    if "ingested_at" in events:
        ref = pd.to_datetime(events["ingested_at"], errors="coerce")
    else:
        ref = pd.Timestamp(now or dt.datetime.now(dt.UTC).replace(tzinfo=None))
    df = events.assign(seconds_after_ingest=(occurred - ref).dt.total_seconds())  # no copy of the rows
    exps, desc = [], {}
    if check_columns:
        desc[len(exps)] = "schema of the landed batch"
        exps.append(gx.expectations.ExpectTableColumnsToMatchSet(
            column_set=[*LANDED_COLUMNS, "seconds_after_ingest"], exact_match=True))
    exps += [gx.expectations.ExpectColumnValuesToNotBeNull(column=c)
             for c in ("event_id", "event_type", "player_id", "brand_id", "occurred_at")]
    desc[len(exps)] = "event id unique"
    exps.append(gx.expectations.ExpectColumnValuesToBeUnique(column="event_id"))
    desc[len(exps)] = "known event types (crm.contract)"
    exps.append(gx.expectations.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)))
    desc[len(exps)] = f"event time not in the future (ingest time + {skew:g} s)"
    exps.append(gx.expectations.ExpectColumnValuesToBeBetween(column="seconds_after_ingest", max_value=float(skew)))
    return validate(df, f"{SUITE}_events", exps, id_column="event_id", descriptions=desc, docs_dir=docs_dir)


def validate_files(files: pd.DataFrame, schemas: dict[str, dict[str, str]] | None, *,
                   max_quarantine_rate: float | None = None, docs_dir: str | Path | None = None) -> list[GateResult]:
    """The per-file expectations: each file's schema (when given) and its quarantine rate."""
    max_q = threshold("max_quarantine_rate") if max_quarantine_rate is None else max_quarantine_rate
    parts = []
    if schemas is not None:
        parts.append(validate(
            schema_frame(schemas), f"{SUITE}_schema",
            [gx.expectations.ExpectColumnPairValuesToBeEqual(column_A="type", column_B="expected_type")],
            id_column="column", descriptions={0: "schema of each landed batch file: columns and their types "
                                                 "(sample: batch.column)"}, docs_dir=docs_dir))
    f = files.copy() if len(files) else pd.DataFrame({c: [] for c in FILE_COLUMNS})
    f["quarantine_rate"] = (pd.to_numeric(f["quarantined"]) / pd.to_numeric(f["records"]).where(
        pd.to_numeric(f["records"]) > 0)).fillna(0.0).astype(float)
    parts.append(validate(
        f, f"{SUITE}_files",
        [gx.expectations.ExpectColumnValuesToBeBetween(column="quarantine_rate", min_value=0.0, max_value=max_q)],
        id_column="batch_id", descriptions={0: f"share of a file's records quarantined at most {max_q:g}"},
        docs_dir=docs_dir))
    return parts


def gate_batches(paths, batch_ids: list[str], *, docs_dir: str | Path | None = None,
                 chunk_rows: int | None = None) -> GateResult:
    """The suite on landed batches of a data home (``paths``: :class:`crm.config.Paths`): their
    ingest log entries, each file's schema, and the row columns of their events.

    The events are validated in chunks of about ``chunk_rows`` (default the threshold
    ``landing_chunk_rows``), split by a hash of the event id so that equal ids share a chunk
    (uniqueness stays exact) and memory stays bounded on a first landing of years of history.
    With several chunks, Data Docs show the events validation of the first failing chunk (else
    the last one): that chunk is validated again with Data Docs on.
    """
    from crm.ingest.landing import already_ingested, landed_rows, landed_schema, read_landed_columns

    log = already_ingested(paths)
    files = pd.DataFrame([log[b] for b in batch_ids if b in log])
    landed = {b: paths.events / f"batch_{b}.parquet" for b in batch_ids
              if (paths.events / f"batch_{b}.parquet").exists()}
    schemas = {b: landed_schema(f) for b, f in landed.items()}
    for b in batch_ids:  # rows were landed but the file is gone: every column shows as missing
        if b not in landed and int((log.get(b) or {}).get("loaded") or 0) > 0:
            schemas[b] = {}
    limit = int(threshold("landing_chunk_rows") if chunk_rows is None else chunk_rows)
    sources = list(landed.values())
    present = {c for cols in schemas.values() for c in cols}
    total = landed_rows(sources)  # from the files, so a batch without a log line counts too
    k = max(1, -(-total // max(limit, 1))) if "event_id" in present else 1

    def chunk(i: int) -> pd.DataFrame:
        where = f"coalesce(hash(event_id), 0) % {k} = {i}" if k > 1 else None
        return read_landed_columns(sources, ROW_COLUMNS, where=where, present=present)

    if k == 1:
        rows = validate_events(chunk(0), check_columns=False, docs_dir=docs_dir)
    else:
        results = [validate_events(chunk(i), check_columns=False) for i in range(k)]
        rows = merge_chunks(results)
        if docs_dir is not None:
            shown = next((i for i, r in enumerate(results) if not r.success), k - 1)
            rows = replace(rows, docs=validate_events(chunk(shown), check_columns=False, docs_dir=docs_dir).docs)
    return combine(SUITE, [rows, *validate_files(files, schemas, docs_dir=docs_dir)])
