"""Landing: check every record against the contract, quarantine the bad ones, de-duplicate.

One call to :func:`ingest_file` lands one JSONL or Parquet file of contract events:

* records that break the contract go to ``landing/quarantine`` with the reason,
* records whose ``event_id`` was already landed (in this file or earlier) are counted
  as duplicates and dropped (a replayed event is a no-op),
* the rest go to ``landing/events`` as one Parquet batch.

The counts always add up: ``records = loaded + quarantined + duplicates``. Files are
written under a temporary name and renamed, and the ingest log line is written last,
so a crash never leaves a half-written batch. Re-ingesting the same file (same bytes)
changes nothing.

Validation is vectorised SQL in an in-memory DuckDB generated from
:data:`crm.contract.PAYLOADS`, so the contract is written down once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from crm.config import Paths
from crm.contract import ENVELOPE_REQUIRED, JSON_TYPES, PAYLOADS

SUPPORTED_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet")
_JSONL_CHUNK_BYTES = 64 * 1024 * 1024


class LandingError(ValueError):
    """A file cannot be landed at all (unreadable, unsupported format)."""


@dataclass
class IngestReport:
    source_file: str
    batch_id: str
    records: int
    loaded: int
    quarantined: int
    duplicates: int
    reasons: dict[str, int]
    already_ingested: bool = False
    ingested_at: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def balanced(self) -> bool:
        return self.records == self.loaded + self.quarantined + self.duplicates


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


# Envelope keys, read with one JSON parse per record: env[i] (text) and et[i] (JSON type).
_ENVELOPE = ("event_id", "event_type", "player_id", "brand_id", "occurred_at", "trace_id", "payload")
# Every payload field of the contract, typed with one parse per record: pt[i].
_PAYLOAD_FIELDS = tuple(sorted({f.name for fields in PAYLOADS.values() for f in fields}))


def _env(name: str) -> str:
    return f"env[{_ENVELOPE.index(name) + 1}]"


def _et(name: str) -> str:
    return f"et[{_ENVELOPE.index(name) + 1}]"


def _pt(name: str) -> str:
    return f"pt[{_PAYLOAD_FIELDS.index(name) + 1}]"


def _paths_sql(names: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'$.{n}'" for n in names) + "]"


def _reason_sql() -> str:
    """A CASE expression giving the first contract violation of a record, or NULL.

    It reads the per-record lists ``env``/``et`` (envelope) and ``pt`` (payload field
    types) computed once in the ``shaped`` view, so each record's JSON is parsed a
    handful of times, not once per rule.
    """
    whens: list[str] = []
    for name in ENVELOPE_REQUIRED:
        whens.append(f"WHEN {_et(name)} IS NULL OR {_et(name)} = 'NULL' THEN 'missing field {name}'")
        if name != "occurred_at":
            whens.append(f"WHEN {_et(name)} <> 'VARCHAR' "
                         f"THEN 'wrong type for {name}: expected string, got ' || {_et(name)}")
            whens.append(f"WHEN trim({_env(name)}) = '' THEN 'empty field {name}'")
    types = ", ".join(_sql_str(t) for t in PAYLOADS)
    whens.append(f"WHEN event_type NOT IN ({types}) THEN 'unknown event_type: ' || event_type")
    whens.append(f"WHEN occurred_at IS NULL THEN 'bad timestamp occurred_at: ' || {_env('occurred_at')}")
    whens.append(f"WHEN {_et('trace_id')} NOT IN ('VARCHAR', 'NULL') "
                 f"THEN 'wrong type for trace_id: expected string, got ' || {_et('trace_id')}")
    whens.append("WHEN payload IS NULL THEN 'missing or malformed payload (expected a JSON object)'")
    for event_type, fields in PAYLOADS.items():
        et = _sql_str(event_type)
        for f in fields:
            jt = _pt(f.name)
            allowed = ", ".join(_sql_str(t) for t in JSON_TYPES[f.type])
            if f.required:
                whens.append(f"WHEN event_type = {et} AND ({jt} IS NULL OR {jt} = 'NULL') "
                             f"THEN 'missing field payload.{f.name} for {event_type}'")
            whens.append(f"WHEN event_type = {et} AND {jt} NOT IN ('NULL', {allowed}) "
                         f"THEN 'wrong type for payload.{f.name}: expected {f.type}, got ' || {jt}")
            if f.type == "date":
                whens.append(f"WHEN event_type = {et} AND {jt} = 'VARCHAR' AND "
                             f"try_strptime(payload->>'$.{f.name}', '%Y-%m-%d') IS NULL "
                             f"THEN 'bad date payload.{f.name}: ' || (payload->>'$.{f.name}')")
            if f.type == "timestamp":
                whens.append(f"WHEN event_type = {et} AND {jt} = 'VARCHAR' AND "
                             f"try_cast(payload->>'$.{f.name}' AS TIMESTAMPTZ) IS NULL "
                             f"THEN 'bad timestamp payload.{f.name}: ' || (payload->>'$.{f.name}')")
    return "CASE\n  " + "\n  ".join(whens) + "\n  ELSE NULL END"


_REASON_SQL = _reason_sql()


def _load_raw(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Make ``raw(record_no, raw)``: every record of the file as JSON text, numbered from 1."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            cols = [r[0] for r in con.execute(
                f"DESCRIBE SELECT * FROM read_parquet({_sql_str(str(path))})").fetchall()]
        except duckdb.Error as e:
            raise LandingError(f"{path}: not a readable Parquet file ({e})") from e
        # The whole row as one JSON object, so the same checks apply to both formats. A view:
        # file_row_number is stable, so the rows are not copied into memory.
        fields = ", ".join(f'"{c}" := "{c}"' for c in cols)
        con.execute(f"""
            CREATE TEMP VIEW raw AS
            SELECT file_row_number + 1 AS record_no, to_json(struct_pack({fields}))::VARCHAR AS raw
            FROM read_parquet({_sql_str(str(path))}, file_row_number = true)
        """)
    elif suffix in (".jsonl", ".ndjson", ".json"):
        # Lines are read in Python (C-speed splitlines) so that a malformed line is kept
        # verbatim for quarantine; DuckDB's JSON reader would skip or abort on it.
        con.execute("CREATE TEMP TABLE raw (record_no BIGINT, raw VARCHAR)")
        record_no = 0
        with path.open("rb") as f:
            tail = b""
            while True:
                block = f.read(_JSONL_CHUNK_BYTES)
                if not block:
                    break
                block = tail + block
                cut = block.rfind(b"\n")
                if cut < 0:
                    tail = block
                    continue
                lines, tail = block[:cut].split(b"\n"), block[cut + 1:]
                record_no = _append_lines(con, lines, record_no)
            if tail:
                record_no = _append_lines(con, [tail], record_no)
    else:
        raise LandingError(f"{path}: unsupported file type {suffix!r}; expected one of "
                           f"{', '.join(SUPPORTED_SUFFIXES)}")


def _append_lines(con: duckdb.DuckDBPyConnection, lines: list[bytes], start: int) -> int:
    texts = [ln.decode("utf-8", errors="replace").rstrip("\r") for ln in lines]
    texts = [t for t in texts if t.strip()]  # blank lines are not records
    if not texts:
        return start
    batch = pa.table({"record_no": pa.array(range(start + 1, start + 1 + len(texts)), pa.int64()),
                      "raw": pa.array(texts, pa.string())})
    con.register("_lines", batch)
    con.execute("INSERT INTO raw SELECT record_no, raw FROM _lines")
    con.unregister("_lines")
    return start + len(texts)


def _one(sql: str) -> tuple:
    """One row from a fresh in-memory connection (never the shared default one)."""
    with duckdb.connect() as con:
        return con.execute(sql).fetchone()


def landed_glob(paths: Paths) -> str | None:
    """The glob of the landed batch files, or None when nothing is landed yet."""
    return str(paths.events / "*.parquet") if any(paths.events.glob("*.parquet")) else None


def already_ingested(paths: Paths) -> dict[str, dict]:
    """batch_id -> log entry of every file landed so far."""
    out: dict[str, dict] = {}
    if paths.ingest_log.exists():
        for line in paths.ingest_log.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                out[entry["batch_id"]] = entry
    return out


def _gate_log(paths: Paths) -> Path:
    return paths.ingest_log.with_name("gate_log.jsonl")


def batches_to_gate(paths: Paths) -> list[str]:
    """Batch ids of landed files (with rows landed or quarantined) that have not passed the landing
    gate yet, in landing order: new batches, batches whose last verdict was a failure, and batches
    whose file changed (size or modification time) since it passed.

    The gate ledger (``landing/gate_log.jsonl``, one verdict per line, the last one counts) keeps a
    failed batch in front of the gate on every later run until it passes (repaired in place, or
    waived by a gate override): a batch is landed once, so the ledger, not the latest landing
    run, says what still has to be checked.
    """
    verdicts: dict[str, tuple[bool, str | None]] = {}
    log = _gate_log(paths)
    if log.exists():
        for line in log.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                verdicts[entry["batch_id"]] = (bool(entry["passed"]), entry.get("file"))
    logged = already_ingested(paths)
    # a batch file with no log line (a crash between the rename and the log, or a file put there
    # by hand) is read by dbt all the same: it is gated too
    on_disk = sorted(f.stem.removeprefix("batch_") for f in paths.events.glob("batch_*.parquet"))
    ids = [b for b, e in logged.items() if e["loaded"] or e["quarantined"]] + [b for b in on_disk if b not in logged]
    # a pass counts only for the file as it was checked (rewritten since: checked again)
    return [b for b in ids if verdicts.get(b, (False, None)) != (True, _file_state(paths, b))]


def _file_state(paths: Paths, batch_id: str) -> str:
    """Size and modification time of a batch file (cheap, unlike a checksum of every file each run)."""
    f = paths.events / f"batch_{batch_id}.parquet"
    if not f.exists():
        return "absent"
    st = f.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def record_landing_gate(paths: Paths, batch_ids: list[str], passed: bool, summary: str = "") -> None:
    """Append the landing gate's verdict on ``batch_ids`` to the gate ledger (see :func:`batches_to_gate`)."""
    if not batch_ids:
        return
    at = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat() + "Z"
    lines = "".join(json.dumps({"batch_id": b, "passed": bool(passed), "checked_at": at,
                                "file": _file_state(paths, b), "summary": summary[:500]}) + "\n" for b in batch_ids)
    with _gate_log(paths).open("a") as f:  # one write: a batch's verdict is never half-recorded
        f.write(lines)


def landed_schema(path: Path) -> dict[str, str]:
    """Column -> DuckDB type of a landed batch file (what dbt's staging will read)."""
    with duckdb.connect() as con:
        return {r[0]: r[1] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()}


def landed_rows(files: list[Path]) -> int:
    """Rows of the landed batch ``files``, from their Parquet footers (no data is read)."""
    if not files:
        return 0
    with duckdb.connect() as con:
        return int(con.execute("SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata(?)",
                               [[str(f) for f in files]]).fetchone()[0])


def read_landed_columns(files: list[Path], columns: tuple[str, ...], where: str | None = None,
                        present: set[str] | None = None) -> pd.DataFrame:
    """``columns`` of the landed batch ``files`` (by name; a column a file lacks is NULL there, one
    no file has is all NULL), low-cardinality text as categoricals to keep big batches small;
    ``where``: an optional SQL filter on the rows (e.g. a chunk by event id hash); ``present``:
    the columns the files have, when the caller knows them (else read from each file's schema)."""
    if present is None:
        present = {c for f in files for c in landed_schema(f)}
    cols = [c for c in columns if c in present]
    if files and cols:
        with duckdb.connect() as con:
            df = con.execute(f"SELECT {', '.join(cols)} FROM read_parquet(?, union_by_name = true)"
                             + (f" WHERE {where}" if where else ""), [[str(f) for f in files]]).df()
    else:
        df = pd.DataFrame({c: [] for c in cols})
    for c in columns:
        if c not in df:
            df[c] = None
    for c in ("event_type", "brand_id"):
        if c in df:
            df[c] = df[c].astype("category")
    return df[list(columns)]


def ingest_file(path: str | Path, paths: Paths) -> IngestReport:
    """Land one file of contract events. Returns the counts; never loses a record."""
    path = Path(path).resolve()
    if not path.exists():
        raise LandingError(f"{path}: no such file")
    paths.ensure()
    batch_id = file_digest(path)[:16]
    seen = already_ingested(paths)
    if batch_id in seen:
        prev = dict(seen[batch_id])
        prev.update(already_ingested=True, source_file=str(path))
        return IngestReport(**prev)

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    con = duckdb.connect()
    try:
        # Bounded memory: DuckDB spills to the data home past the limit.
        spill = paths.home / "tmp" / "duckdb"
        spill.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET memory_limit = '{os.environ.get('CRM_LANDING_MEMORY', '2GB')}'")
        con.execute(f"SET temp_directory = {_sql_str(str(spill))}")
        con.execute("SET TimeZone = 'UTC'")
        _load_raw(con, path)
        # 1. Parse (a record must be a JSON object) and shape the envelope; payload may
        #    arrive as an object or as JSON text. Views: nothing is copied yet.
        con.execute("""
            CREATE TEMP VIEW parsed AS
            SELECT record_no, json_valid(raw) AS is_json,
                   CASE WHEN json_valid(raw) AND json_type(raw) = 'OBJECT' THEN raw::JSON END AS j
            FROM raw
        """)
        con.execute(f"""
            CREATE TEMP VIEW enveloped AS
            SELECT record_no, is_json, j,
                   json_extract_string(j, {_paths_sql(_ENVELOPE)}) AS env,
                   json_type(j, {_paths_sql(_ENVELOPE)}) AS et
            FROM parsed
        """)
        con.execute(f"""
            CREATE TEMP VIEW payloaded AS
            SELECT record_no, is_json, j, env, et,
                   CASE
                     WHEN j IS NULL THEN NULL
                     WHEN {_et('payload')} = 'OBJECT' THEN j->'$.payload'
                     WHEN {_et('payload')} = 'VARCHAR' AND json_valid({_env('payload')})
                          AND json_type({_env('payload')}) = 'OBJECT' THEN {_env('payload')}::JSON
                   END AS payload,
                   {_env('event_type')} AS event_type,
                   CASE WHEN j IS NOT NULL
                        THEN timezone('UTC', try_cast({_env('occurred_at')} AS TIMESTAMPTZ)) END AS occurred_at
            FROM enveloped
        """)
        con.execute(f"""
            CREATE TEMP VIEW shaped AS
            SELECT *, json_type(payload, {_paths_sql(_PAYLOAD_FIELDS)}) AS pt FROM payloaded
        """)
        # 2. One pass of the contract checks, materialised once with only what is landed.
        con.execute(f"""
            CREATE TEMP TABLE checked AS
            SELECT record_no,
                   CASE WHEN j IS NULL THEN
                          CASE WHEN is_json THEN 'record is not a JSON object' ELSE 'malformed JSON' END
                        ELSE {_REASON_SQL} END AS reason,
                   {_env('event_id')} AS event_id, event_type, {_env('trace_id')} AS trace_id,
                   {_env('player_id')} AS player_id, {_env('brand_id')} AS brand_id,
                   occurred_at, payload::VARCHAR AS payload
            FROM shaped
        """)
        # 3. De-duplicate valid records: first occurrence in this file wins; ids landed
        #    by earlier batches are duplicates too.
        landed = landed_glob(paths)
        prior = (f"SELECT DISTINCT event_id FROM read_parquet({_sql_str(landed)})" if landed
                 else "SELECT NULL::VARCHAR AS event_id WHERE false")
        con.execute(f"""
            CREATE TEMP TABLE keep AS
            SELECT record_no,
                   row_number() OVER (PARTITION BY event_id ORDER BY record_no) = 1
                   AND event_id NOT IN ({prior}) AS keep
            FROM checked WHERE reason IS NULL
        """)
        records = con.execute("SELECT count(*) FROM raw").fetchone()[0]
        quarantined = con.execute("SELECT count(*) FROM checked WHERE reason IS NOT NULL").fetchone()[0]
        duplicates = con.execute("SELECT count(*) FROM keep WHERE NOT keep").fetchone()[0]
        reasons = dict(con.execute("""
            SELECT regexp_replace(reason, ': .*$', '') AS r, count(*) FROM checked
            WHERE reason IS NOT NULL GROUP BY r ORDER BY 2 DESC, 1
        """).fetchall())
        loaded = records - quarantined - duplicates

        tmp_files: list[tuple[Path, Path]] = []
        if loaded:
            final = paths.events / f"batch_{batch_id}.parquet"
            tmp = final.with_suffix(".parquet.tmp")
            con.execute(f"""
                COPY (
                  SELECT event_id, event_type, trace_id, player_id, brand_id, occurred_at, payload,
                         {_sql_str(batch_id)} AS batch_id, TIMESTAMP '{now}' AS ingested_at
                  FROM checked JOIN keep USING (record_no)
                  WHERE keep
                  ORDER BY occurred_at, event_id
                ) TO {_sql_str(str(tmp))} (FORMAT parquet, COMPRESSION zstd)
            """)
            tmp_files.append((tmp, final))
        if quarantined:
            final = paths.quarantine / f"batch_{batch_id}.parquet"
            tmp = final.with_suffix(".parquet.tmp")
            con.execute(f"""
                COPY (
                  SELECT {_sql_str(batch_id)} AS batch_id, {_sql_str(str(path))} AS source_file,
                         c.record_no, r.raw, c.reason, TIMESTAMP '{now}' AS quarantined_at
                  FROM checked c JOIN raw r USING (record_no)
                  WHERE c.reason IS NOT NULL ORDER BY c.record_no
                ) TO {_sql_str(str(tmp))} (FORMAT parquet, COMPRESSION zstd)
            """)
            tmp_files.append((tmp, final))
    finally:
        con.close()

    for tmp, final in tmp_files:
        os.replace(tmp, final)
    report = IngestReport(source_file=str(path), batch_id=batch_id, records=records, loaded=loaded,
                          quarantined=quarantined, duplicates=duplicates, reasons=reasons,
                          ingested_at=now.isoformat() + "Z")
    assert report.balanced, report
    with paths.ingest_log.open("a") as f:  # written last: the batch is complete
        f.write(json.dumps(report.to_dict()) + "\n")
    return report


def pending_files(paths: Paths) -> list[Path]:
    """Files in the incoming folder whose content has not been landed yet."""
    seen = already_ingested(paths)
    files = sorted(p for p in paths.incoming.glob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES)
    return [p for p in files if file_digest(p)[:16] not in seen]


def ingest_pending(paths: Paths, progress: bool = False) -> list[IngestReport]:
    """Land every new file in ``landing/incoming`` (in name order)."""
    files = pending_files(paths)
    if progress and files:
        from tqdm import tqdm
        files = tqdm(files, desc="landing", unit="file")
    return [ingest_file(p, paths) for p in files]


def landed_summary(paths: Paths) -> dict:
    """Totals over the ingest log plus the event time range of landed data."""
    entries = list(already_ingested(paths).values())
    out = {k: sum(e[k] for e in entries) for k in ("records", "loaded", "quarantined", "duplicates")}
    out["files"] = len(entries)
    glob = landed_glob(paths)
    if glob:
        lo, hi = _one(f"SELECT min(occurred_at), max(occurred_at) FROM read_parquet({_sql_str(glob)})")
        out["first_event_at"], out["last_event_at"] = str(lo), str(hi)
    return out


def default_as_of(paths: Paths) -> dt.date:
    """The day after the latest landed data: the as-of date of a run by default.

    Landed events and imported daily aggregates (``crm import-daily``) both count.
    """
    days = []
    glob = landed_glob(paths)
    if glob:
        days.append(_one(f"SELECT max(occurred_at) FROM read_parquet({_sql_str(glob)})")[0].date())
    imported = paths.home / "landing" / "imported_daily"
    if any(imported.glob("*.parquet")):
        days.append(_one(f"SELECT max(activity_date) FROM read_parquet({_sql_str(str(imported / '*.parquet'))})")[0])
    if not days:
        raise LandingError(f"no landed events under {paths.events} and no imported daily aggregates: "
                           "run `crm simulate`, `crm ingest PATH` or `crm import-daily` first")
    return max(days) + dt.timedelta(days=1)
