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
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from crm.config import Paths
from crm.contract import (
    EARLIEST_EVENT_TIME,
    ENVELOPE_REQUIRED,
    EVENT_TYPES,
    INVISIBLE,
    JSON_TYPES,
    MAX_FUTURE_SKEW,
    MAX_ID_CHARS,
    MAX_RECORD_BYTES,
    PAYLOADS,
    PII_FIELDS,
    SELF_EXCLUSION_START,
    STOP_EVENTS,
    VOCABULARIES,
    WHITESPACE,
    Vocabulary,
)
from crm.sql import ident, literal

SUPPORTED_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet")
_JSONL_CHUNK_BYTES = 64 * 1024 * 1024
# A line longer than this is not held whole: its first MAX_KEPT_BYTES and its sha256 are kept.
_MAX_LINE_BYTES = _JSONL_CHUNK_BYTES
_MAX_KEPT_BYTES = 1024 * 1024


def max_record_bytes() -> int:
    """Largest record landed (bytes of its JSON text): ``$CRM_MAX_RECORD_BYTES`` or 64 KiB."""
    return int(os.environ.get("CRM_MAX_RECORD_BYTES") or MAX_RECORD_BYTES)


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


def _pv(name: str) -> str:
    """The text of an enumerated payload field, extracted once per record with the others (``pv``)."""
    return f"pv[{_VOCAB_FIELDS.index(name) + 1}]"


def _id(name: str) -> str:
    """An envelope id as landed: white space and invisible characters around it removed."""
    return "event_type" if name == "event_type" else f"i_{name}"


def _paths_sql(names: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'$.{n}'" for n in names) + "]"


def _rx(chars: str) -> str:
    """A RE2 character class body for ``chars`` (hex escapes: the SQL text stays ASCII)."""
    return "".join(f"\\x{{{ord(c):04X}}}" for c in chars)


def _key_sql(case: str, x: str) -> str:
    """SQL of :meth:`crm.contract.Vocabulary.key` for text ``x`` (NULL where Python gives None)."""
    clean = f"regexp_replace({x}, '[{_rx(INVISIBLE)}]', '', 'g')"
    if case == "upper":
        spaced = f"regexp_replace({clean}, '[{_rx(WHITESPACE)}]+', '', 'g')"
        cased = f"upper({spaced})"
    else:
        spaced = f"regexp_replace({clean}, '[{_rx(WHITESPACE)}._-]+', '_', 'g')"
        cased = f"trim(lower({spaced}), '_')"
    return f"CASE WHEN regexp_matches({spaced}, '[^\\x{{00}}-\\x{{7F}}]') THEN NULL ELSE {cased} END"


def _canonical_sql(v: Vocabulary, k: str) -> str:
    """SQL of the canonical value under ``v`` of the key column ``k``, NULL when unknown."""
    whens = [f"WHEN {literal(val)} THEN {literal(val)}" for val in v.values]
    whens += [f"WHEN {literal(a)} THEN {literal(val)}" for a, val in v.aliases.items()]
    pattern = f"CASE WHEN regexp_full_match({k}, {literal(v.pattern)}) THEN {k} END" if v.pattern else "NULL"
    return f"CASE {k} {' '.join(whens)} ELSE {pattern} END" if whens else pattern


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(literal(v) for v in values) + ")"


_VOCAB_FIELDS = sorted({v.field for v in VOCABULARIES})
_VOCAB_TYPES = sorted({t for v in VOCABULARIES for t in v.event_types})
_STOPS = _in(STOP_EVENTS)


_ENDS = f"'^[{_rx(WHITESPACE + INVISIBLE)}]+|[{_rx(WHITESPACE + INVISIBLE)}]+$'"


def _trimmed(x: str) -> str:
    """Text ``x`` without white space or invisible characters around it. The regular expression
    runs only where the first or last character is not printable ASCII (nearly never): landing
    reads tens of millions of ids."""
    plain = f"(ascii({x}) BETWEEN 33 AND 126 AND ascii(right({x}, 1)) BETWEEN 33 AND 126)"
    return f"CASE WHEN {plain} THEN {x} ELSE regexp_replace({x}, {_ENDS}, '', 'g') END"


def _key_columns() -> str:
    """``k_<field>``: the key of each enumerated payload field sent as text (one case per field)."""
    cols = []
    for name in _VOCAB_FIELDS:
        (case,) = {v.case for v in VOCABULARIES if v.field == name}
        text = _pv(name)
        # a value already in canonical form is its own key: no regular expression for it
        canonical = tuple(sorted({x for v in VOCABULARIES if v.field == name for x in v.values}))
        fast = f"WHEN {text} IN {_in(canonical)} THEN {text} " if canonical else ""
        cols.append(f"CASE WHEN {_pt(name)} <> 'VARCHAR' OR event_type NOT IN {_in(_VOCAB_TYPES)} THEN NULL "
                    f"{fast}ELSE {_key_sql(case, text)} END AS k_{name}")
    return ", ".join(cols)


def _canon_columns() -> str:
    """``n_<field>``: the canonical value of each enumerated field under its event type's
    vocabulary, over the ``k_<field>`` keys (NULL: absent, not text, or unknown)."""
    cols = []
    for name in _VOCAB_FIELDS:
        whens = [f"WHEN event_type IN {_in(v.event_types)} THEN {_canonical_sql(v, f'k_{name}')}"
                 for v in VOCABULARIES if v.field == name]
        cols.append(f"CASE {' '.join(whens)} END AS n_{name}")
    return ", ".join(cols)


def _vocab_columns() -> str:
    """Per enumerated field, over ``n_<field>``: ``c_<field>``, the value landed (canonical, the
    fail-closed replacement, or NULL: dropped / absent), and ``u_<field>``: sent as text but
    unknown to a vocabulary that quarantines."""
    cols = []
    for name in _VOCAB_FIELDS:
        canon, quarantining = [], []
        for v in (v for v in VOCABULARIES if v.field == name):
            fallback = literal(v.on_unknown) if v.on_unknown else "NULL"
            missing = literal(v.when_missing) if v.when_missing else "NULL"
            canon.append(f"WHEN event_type IN {_in(v.event_types)} THEN "
                         f"CASE WHEN coalesce({_pt(name)}, 'NULL') = 'NULL' THEN {missing} "
                         f"ELSE coalesce(n_{name}, {fallback}) END")
            if v.on_unknown is None:
                quarantining += v.event_types
        cols.append(f"CASE {' '.join(canon)} ELSE {_pv(name)} END AS c_{name}")
        cols.append(f"(event_type IN {_in(tuple(quarantining))} AND {_pt(name)} = 'VARCHAR' AND n_{name} IS NULL) "
                    f"AS u_{name}" if quarantining else f"false AS u_{name}")
    return ", ".join(cols)


def _reason_sql() -> str:
    """A CASE expression giving the first contract violation of a record, or NULL.

    It reads the per-record lists ``env``/``et`` (envelope) and ``pt`` (payload field
    types) computed once in the ``shaped`` view, so each record's JSON is parsed a
    handful of times, not once per rule. A stop event (:data:`crm.contract.STOP_EVENTS`)
    with a missing, unreadable or out-of-range time is not quarantined: it lands at the
    landing time (``ts_fallback``), the safe reading.
    """
    whens: list[str] = []
    for name in ENVELOPE_REQUIRED:
        if name == "occurred_at":
            whens.append(f"WHEN ({_et(name)} IS NULL OR {_et(name)} = 'NULL') AND event_type NOT IN {_STOPS} "
                         f"THEN 'missing field {name}'")
            continue
        whens.append(f"WHEN {_et(name)} IS NULL OR {_et(name)} = 'NULL' THEN 'missing field {name}'")
        whens.append(f"WHEN {_et(name)} <> 'VARCHAR' "
                     f"THEN 'wrong type for {name}: expected string, got ' || {_et(name)}")
        whens.append(f"WHEN {_id(name)} = '' THEN 'empty field {name}'")
    whens.append(f"WHEN {_et('trace_id')} NOT IN ('VARCHAR', 'NULL') "
                 f"THEN 'wrong type for trace_id: expected string, got ' || {_et('trace_id')}")
    # one test over the four ids together (tens of millions of records), then which one it was
    ids = ("event_id", "player_id", "brand_id", "trace_id")
    longest = f"greatest({', '.join(f'coalesce(length({_id(n)}), 0)' for n in ids)})"
    too_long = " ".join(f"WHEN length({_id(n)}) > {MAX_ID_CHARS} THEN 'field {n} too long: ' || length({_id(n)}) "
                        f"|| ' characters (at most {MAX_ID_CHARS})'" for n in ids)
    whens.append(f"WHEN {longest} > {MAX_ID_CHARS} THEN CASE {too_long} END")
    bad = f"'[\\x{{00}}-\\x{{1F}}\\x{{7F}}{_rx(INVISIBLE)}]'"
    which = " ".join(f"WHEN regexp_matches(coalesce({_id(n)}, ''), {bad}) THEN 'control or invisible characters "
                     f"in {n}'" for n in ids)
    whens.append(f"WHEN regexp_matches(concat({', '.join(_id(n) for n in ids)}), {bad}) THEN CASE {which} END")
    types = ", ".join(literal(t) for t in PAYLOADS)
    whens.append(f"WHEN event_type NOT IN ({types}) THEN 'unknown event_type: ' || {_env('event_type')}")
    whens.append(f"WHEN ts_fallback AND event_type NOT IN {_STOPS} AND ts IS NULL "
                 f"THEN 'bad timestamp occurred_at: ' || {_env('occurred_at')}")
    whens.append(f"WHEN ts_fallback AND event_type NOT IN {_STOPS} "
                 f"THEN 'occurred_at out of range (from {EARLIEST_EVENT_TIME:%Y-%m-%d} to a day after landing): ' "
                 f"|| {_env('occurred_at')}")
    whens.append("WHEN payload IS NULL THEN 'missing or malformed payload (expected a JSON object)'")
    for event_type, fields in PAYLOADS.items():
        if event_type in STOP_EVENTS:  # read the safe way, never quarantined for the payload
            continue
        et = literal(event_type)
        for f in fields:
            jt = _pt(f.name)
            allowed = ", ".join(literal(t) for t in JSON_TYPES[f.type])
            if f.required:
                whens.append(f"WHEN event_type = {et} AND ({jt} IS NULL OR {jt} = 'NULL') "
                             f"THEN 'missing field payload.{f.name} for {event_type}'")
            whens.append(f"WHEN event_type = {et} AND {jt} NOT IN ('NULL', {allowed}) "
                         f"THEN 'wrong type for payload.{f.name}: expected {f.type}, got ' || {jt}")
            if f.type == "date":
                whens.append(f"WHEN event_type = {et} AND {jt} = 'VARCHAR' AND "
                             f"try_strptime(payload->>'$.{f.name}', '%Y-%m-%d') IS NULL "
                             f"THEN 'bad date payload.{f.name}: ' || (payload->>'$.{f.name}')")
                whens.append(f"WHEN event_type = {et} AND {jt} = 'VARCHAR' AND "
                             f"NOT (try_strptime(payload->>'$.{f.name}', '%Y-%m-%d') BETWEEN DATE '1900-01-01' "
                             f"AND landed_at) THEN 'date payload.{f.name} out of range (1900-01-01 to the landing "
                             f"day): ' || (payload->>'$.{f.name}')")
            if f.type == "timestamp":
                whens.append(f"WHEN event_type = {et} AND {jt} = 'VARCHAR' AND "
                             f"try_cast(payload->>'$.{f.name}' AS TIMESTAMPTZ) IS NULL "
                             f"THEN 'bad timestamp payload.{f.name}: ' || (payload->>'$.{f.name}')")
    for name in _VOCAB_FIELDS:
        whens.append(f"WHEN u_{name} THEN 'unknown {name} for ' || event_type || ': ' || (payload->>'$.{name}')")
    return "CASE\n  " + "\n  ".join(whens) + "\n  ELSE NULL END"


def _payload_out_sql() -> str:
    """The payload as landed: enumerated values normalized, a stop event's unusable time and a
    self-exclusion's unusable ``until`` replaced, each with the value sent kept as ``<field>_received``.
    Records that need none of it (nearly all) keep their payload text as it came."""
    patches, changed = [], []
    for name in _VOCAB_FIELDS:
        sent = f"CASE WHEN {_pt(name)} = 'VARCHAR' THEN {_pv(name)} END"
        ch = f"(event_type IN {_in(_VOCAB_TYPES)} AND c_{name} IS DISTINCT FROM ({sent}))"
        changed.append(ch)
        patches.append(f"CASE WHEN {ch} THEN json_object({literal(name)}, c_{name}, {literal(name + '_received')}, "
                       f"payload->{literal('$.' + name)}) ELSE '{{}}'::JSON END")
    changed += ["ts_fallback", "until_dropped", "sent_payload IS DISTINCT FROM payload"]
    patches.append("CASE WHEN ts_fallback THEN json_object('occurred_at_received', j->'$.occurred_at') "
                   "ELSE '{}'::JSON END")
    patches.append("CASE WHEN until_dropped THEN json_object('until', NULL, 'until_received', payload->'$.until') "
                   "ELSE '{}'::JSON END")
    patches.append("CASE WHEN sent_payload IS DISTINCT FROM payload THEN "
                   "json_object('payload_received', j->'$.payload') ELSE '{}'::JSON END")
    return f"CASE WHEN {' OR '.join(changed)} THEN json_merge_patch(payload, {', '.join(patches)}) ELSE payload END"


_REASON_SQL = _reason_sql()
_PAYLOAD_OUT_SQL = _payload_out_sql()


_RAW_SCHEMA = pa.schema([("record_no", pa.int64()), ("raw", pa.string()), ("raw_bytes", pa.binary()),
                        ("note", pa.string())])


def _load_raw(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Make ``raw(record_no, raw, raw_bytes, note)``: every record of the file as JSON text,
    numbered from 1. ``note``: why the record cannot be read at all (not UTF-8: its bytes are
    kept in ``raw_bytes``; a line too long to hold: its start and checksum are kept), else NULL."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            cols = [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()]
        except duckdb.Error as e:
            raise LandingError(f"{path}: not a readable Parquet file ({e})") from e
        if not cols:
            raise LandingError(f"{path}: a Parquet file without columns")
        # The whole row as one JSON object, so the same checks apply to both formats. A view:
        # file_row_number is stable, so the rows are not copied into memory. Column names come
        # from the file: quoted, never pasted (crm.sql.ident).
        fields = ", ".join(f"{ident(c)} := {ident(c)}" for c in cols)
        con.execute(f"""
            CREATE TEMP VIEW raw AS
            SELECT file_row_number + 1 AS record_no, to_json(struct_pack({fields}))::VARCHAR AS raw,
                   NULL::BLOB AS raw_bytes, NULL::VARCHAR AS note
            FROM read_parquet({literal(str(path))}, file_row_number = true)
        """)
    elif suffix in (".jsonl", ".ndjson", ".json"):
        # Lines are read in Python (C-speed splitlines) so that a malformed line is kept
        # verbatim for quarantine; DuckDB's JSON reader would skip or abort on it.
        con.execute("CREATE TEMP TABLE raw (record_no BIGINT, raw VARCHAR, raw_bytes BLOB, note VARCHAR)")
        record_no = 0
        long_line: _LongLine | None = None  # inside a line longer than _MAX_LINE_BYTES
        with path.open("rb") as f:
            tail = b""
            while True:
                block = f.read(_JSONL_CHUNK_BYTES)
                if not block:
                    break
                if long_line is not None:
                    cut = block.find(b"\n")
                    long_line.add(block if cut < 0 else block[:cut])
                    if cut < 0:
                        continue
                    record_no = _append_rows(con, [long_line.row()], record_no)
                    long_line, block = None, block[cut + 1:]
                block = tail + block
                cut = block.rfind(b"\n")
                if cut < 0:
                    if len(block) > _MAX_LINE_BYTES:
                        long_line, tail = _LongLine(block), b""
                    else:
                        tail = block
                    continue
                record_no = _append_block(con, block[:cut], record_no)
                tail = block[cut + 1:]
            if long_line is not None:
                record_no = _append_rows(con, [long_line.row()], record_no)
            elif tail:
                record_no = _append_block(con, tail, record_no)
    else:
        raise LandingError(f"{path}: unsupported file type {suffix!r}; expected one of "
                           f"{', '.join(SUPPORTED_SUFFIXES)}")


class _LongLine:
    """A line too long to hold: its first bytes, its length and its sha256, fed block by block."""

    def __init__(self, first: bytes) -> None:
        self.head, self.length, self.sha = first[:_MAX_KEPT_BYTES], 0, hashlib.sha256()
        self.add(first)

    def add(self, block: bytes) -> None:
        self.length += len(block)
        self.sha.update(block)

    def row(self) -> tuple[str, bytes | None, str]:
        return (self.head.decode("utf-8", errors="replace"), self.head,
                f"record too large: {self.length:,} bytes (at most {max_record_bytes():,}); only its first "
                f"{len(self.head):,} bytes are kept here, sha256 {self.sha.hexdigest()}")


def _line_row(line: bytes) -> tuple[str, bytes | None, str | None] | None:
    """(text, raw bytes if not UTF-8, note) of one line; None for a blank line (not a record)."""
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line.strip():
        return None
    try:
        return line.decode("utf-8"), None, None
    except UnicodeDecodeError as e:
        # kept as bytes: a replacement character would merge different bad ids into one
        bad = line[e.start:e.start + 1]
        return (line.decode("utf-8", errors="replace"), line,
                f"not valid UTF-8: byte {e.start + 1} is {bad!r}; the bytes are kept in raw_bytes")


def _append_block(con: duckdb.DuckDBPyConnection, block: bytes, start: int) -> int:
    """Append the lines of ``block`` (whole lines): one decode for the block when it is all
    UTF-8 (nearly always), line by line otherwise so that only the bad lines are set apart."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        return _append_rows(con, [_line_row(ln) for ln in block.split(b"\n")], start)
    texts = [t.removesuffix("\r") for t in text.split("\n")]
    texts = [t for t in texts if t.strip()]  # blank lines are not records
    if not texts:
        return start
    n = len(texts)
    batch = pa.table([pa.array(range(start + 1, start + 1 + n), pa.int64()), pa.array(texts, pa.string()),
                      pa.nulls(n, pa.binary()), pa.nulls(n, pa.string())], schema=_RAW_SCHEMA)
    con.register("_lines", batch)
    con.execute("INSERT INTO raw SELECT record_no, raw, raw_bytes, note FROM _lines")
    con.unregister("_lines")
    return start + n


def _append_rows(con: duckdb.DuckDBPyConnection, rows: list, start: int) -> int:
    rows = [r for r in rows if r is not None]
    if not rows:
        return start
    texts, blobs, notes = zip(*rows, strict=True)
    batch = pa.table([pa.array(range(start + 1, start + 1 + len(rows)), pa.int64()), pa.array(texts, pa.string()),
                      pa.array(blobs, pa.binary()), pa.array(notes, pa.string())], schema=_RAW_SCHEMA)
    con.register("_lines", batch)
    con.execute("INSERT INTO raw SELECT record_no, raw, raw_bytes, note FROM _lines")
    con.unregister("_lines")
    return start + len(rows)


def _one(sql: str, params: list | None = None) -> tuple:
    """One row from a fresh in-memory connection (never the shared default one)."""
    with duckdb.connect() as con:
        return con.execute(sql, params or []).fetchone()


def landed_glob(paths: Paths) -> str | None:
    """The glob of the landed batch files, or None when nothing is landed yet."""
    return str(paths.events / "*.parquet") if any(paths.events.glob("*.parquet")) else None


def _rewritten_log(paths: Paths) -> Path:
    return paths.ingest_log.with_name("rewritten_log.jsonl")


def already_ingested(paths: Paths) -> dict[str, dict]:
    """batch_id -> log entry of every file landed so far (a landed file rewritten since, by
    :func:`record_rewritten`, is known by its new content's id too, with the entry it landed as)."""
    out: dict[str, dict] = {}
    if paths.ingest_log.exists():
        for line in paths.ingest_log.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                out[entry["batch_id"]] = entry
    if _rewritten_log(paths).exists():
        for line in _rewritten_log(paths).read_text().splitlines():
            if line.strip():
                alias = json.loads(line)
                if alias["landed_as"] in out:
                    out[alias["batch_id"]] = out[alias["landed_as"]]
    return out


def record_rewritten(paths: Paths, old_digest: str, path: Path) -> None:
    """A landed incoming file was rewritten in place (``crm privacy forget`` cleared identifiers from
    it): its new content is the same landed file, never landed again (its quarantined records would
    be counted twice)."""
    new = file_digest(path)[:16]
    if old_digest[:16] in already_ingested(paths) and new != old_digest[:16]:
        with _rewritten_log(paths).open("a") as f:
            f.write(json.dumps({"batch_id": new, "landed_as": old_digest[:16], "file": path.name}) + "\n")


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


def _connect(paths: Paths, now: dt.datetime) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for one landing: bounded memory (spills to the data home past the
    limit), UTC, and this landing's values bound as variables (getvariable in the SQL), never pasted."""
    con = duckdb.connect()
    spill = paths.home / "tmp" / "duckdb"
    spill.mkdir(parents=True, exist_ok=True)
    con.execute("SET memory_limit = ?", [os.environ.get("CRM_LANDING_MEMORY", "2GB")])
    con.execute("SET temp_directory = ?", [str(spill)])
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET VARIABLE landed_now = ?::TIMESTAMP", [now])
    con.execute("SET VARIABLE landed_latest = ?::TIMESTAMP", [now + MAX_FUTURE_SKEW])
    con.execute("SET VARIABLE max_record_bytes = ?::BIGINT", [max_record_bytes()])
    return con


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    """Views from ``raw`` to ``normalized``: parsed, enveloped, timed, shaped, keyed. Nothing is copied yet."""
    # 1. Parse (a record must be a JSON object of at most max_record_bytes) and shape the
    #    envelope; payload may arrive as an object or as JSON text. Views: nothing is copied yet.
    con.execute("""
        CREATE TEMP VIEW parsed AS
        SELECT record_no, note, size,
               CASE WHEN fits THEN json_valid(raw) END AS is_json,
               CASE WHEN fits AND json_valid(raw) AND json_type(raw) = 'OBJECT' THEN raw::JSON END AS j
        FROM (SELECT *, strlen(raw) AS size,
                     note IS NULL AND strlen(raw) <= getvariable('max_record_bytes') AS fits FROM raw)
    """)
    con.execute(f"""
        CREATE TEMP VIEW enveloped AS
        SELECT record_no, note, size, is_json, j,
               json_extract_string(j, {_paths_sql(_ENVELOPE)}) AS env,
               json_type(j, {_paths_sql(_ENVELOPE)}) AS et
        FROM parsed
    """)
    # event type and ids with white space and invisible characters around them removed; the
    # event time bounded (a stop event outside the bounds: the landing time, ts_fallback)
    ids = ", ".join(f"{_trimmed(_env(n))} AS {_id(n)}" for n in ("event_id", "player_id", "brand_id", "trace_id"))
    con.execute(f"""
        CREATE TEMP VIEW timed AS
        SELECT *, j IS NOT NULL AND NOT coalesce(ts BETWEEN TIMESTAMP '{EARLIEST_EVENT_TIME}'
                                                         AND getvariable('landed_latest'), false) AS ts_fallback
        FROM (
            SELECT record_no, note, size, is_json, j, env, et, {ids},
                   CASE WHEN {_env('event_type')} IN {_in(EVENT_TYPES)} THEN {_env('event_type')}
                        ELSE lower({_trimmed(_env('event_type'))}) END AS event_type,
                   CASE WHEN j IS NOT NULL AND {_et('occurred_at')} = 'VARCHAR'
                        THEN timezone('UTC', try_cast({_env('occurred_at')} AS TIMESTAMPTZ)) END AS ts,
                   CASE
                     WHEN j IS NULL THEN NULL
                     WHEN {_et('payload')} = 'OBJECT' THEN j->'$.payload'
                     WHEN {_et('payload')} = 'VARCHAR' AND json_valid({_env('payload')})
                          AND json_type({_env('payload')}) = 'OBJECT' THEN {_env('payload')}::JSON
                   END AS sent_payload
            FROM enveloped
        )
    """)
    # a stop event's missing or malformed payload reads as {} (every channel, operator-wide)
    con.execute(f"""
        CREATE TEMP VIEW shaped AS
        SELECT *, json_type(payload, {_paths_sql(_PAYLOAD_FIELDS)}) AS pt,
               json_extract_string(payload, {_paths_sql(tuple(_VOCAB_FIELDS))}) AS pv
        FROM (
            SELECT *, CASE WHEN ts_fallback THEN getvariable('landed_now') ELSE ts END AS occurred_at,
                   CASE WHEN sent_payload IS NULL AND j IS NOT NULL AND event_type IN {_STOPS}
                        THEN '{{}}'::JSON ELSE sent_payload END AS payload,
                   CAST(getvariable('landed_now') AS DATE) AS landed_at
            FROM timed
        )
    """)
    until = "payload->>'$.until'"
    con.execute(f"""
        CREATE TEMP VIEW keyed AS SELECT *, {_canon_columns()} FROM (SELECT *, {_key_columns()} FROM shaped)
    """)
    con.execute(f"""
        CREATE TEMP VIEW normalized AS
        SELECT *, {_vocab_columns()},
               event_type = {literal(SELF_EXCLUSION_START)} AND coalesce({_pt('until')}, 'NULL') <> 'NULL'
               AND NOT coalesce({_pt('until')} = 'VARCHAR' AND timezone('UTC', try_cast({until} AS TIMESTAMPTZ))
                                BETWEEN TIMESTAMP '{EARLIEST_EVENT_TIME}' AND TIMESTAMP '9999-12-31', false)
               AS until_dropped
        FROM keyed
    """)


def _checked(con: duckdb.DuckDBPyConnection, replace: bool = False) -> None:
    """``checked``: each record of ``raw`` with its quarantine reason (NULL: it fits the contract) and
    its envelope as landed. The one definition of the contract check, for files
    (:func:`ingest_file`) and for records sent one by one (:func:`validate_records`)."""
    # One pass of the contract checks, materialised once with only what is landed.
    con.execute(f"""
        CREATE {"OR REPLACE " if replace else ""}TEMP TABLE checked AS
        SELECT record_no,
               CASE WHEN note IS NOT NULL THEN note
                    WHEN size > getvariable('max_record_bytes') THEN format(
                         'record too large: {{:,}} bytes (at most {{:,}}; CRM_MAX_RECORD_BYTES)',
                         size, getvariable('max_record_bytes'))
                    WHEN j IS NULL THEN
                      CASE WHEN is_json THEN 'record is not a JSON object' ELSE 'malformed JSON' END
                    ELSE {_REASON_SQL} END AS reason,
               {_id('event_id')} AS event_id, event_type, {_id('trace_id')} AS trace_id,
               {_id('player_id')} AS player_id, {_id('brand_id')} AS brand_id,
               occurred_at, ({_PAYLOAD_OUT_SQL})::VARCHAR AS payload
        FROM normalized
    """)


def _check(con: duckdb.DuckDBPyConnection, paths: Paths) -> None:
    """``checked`` (each record with its quarantine reason or NULL) and ``keep`` (de-duplicated)."""
    _checked(con)
    # 3. De-duplicate valid records: first occurrence in this file wins; ids landed
    #    by earlier batches are duplicates too.
    #    Only this file's ids are looked up among the landed ones (a semi-join probing the file's
    #    ids with the landed ones): a DISTINCT of every landed id per file grew with the history,
    #    file after file (1,000,000 players: 59 M ids, twenty times over).
    landed = landed_glob(paths)
    prior = (f"SELECT DISTINCT event_id FROM read_parquet({literal(landed)}) "
             "WHERE event_id IN (SELECT event_id FROM checked WHERE reason IS NULL)" if landed
             else "SELECT NULL::VARCHAR AS event_id WHERE false")
    con.execute(f"""
        CREATE TEMP TABLE keep AS
        SELECT c.record_no,
               row_number() OVER (PARTITION BY c.event_id ORDER BY c.record_no) = 1 AND p.event_id IS NULL AS keep
        FROM checked AS c LEFT JOIN ({prior}) AS p USING (event_id)
        WHERE c.reason IS NULL
    """)


def _counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int, dict[str, int]]:
    """Records, quarantined, duplicates and the quarantine reasons of this landing."""
    records = con.execute("SELECT count(*) FROM raw").fetchone()[0]
    quarantined = con.execute("SELECT count(*) FROM checked WHERE reason IS NOT NULL").fetchone()[0]
    duplicates = con.execute("SELECT count(*) FROM keep WHERE NOT keep").fetchone()[0]
    reasons = dict(con.execute("""
        SELECT regexp_replace(reason, ': .*$', '') AS r, count(*) FROM checked
        WHERE reason IS NOT NULL GROUP BY r ORDER BY 2 DESC, 1
    """).fetchall())
    return records, quarantined, duplicates, reasons


def _write(con: duckdb.DuckDBPyConnection, paths: Paths, path: Path, batch_id: str,
           loaded: int, quarantined: int, tmp_files: list[tuple[Path, Path]]) -> None:
    """Write the landed and quarantined batch files as temporaries (``tmp_files``: renamed by the caller)."""
    if loaded:
        final = paths.events / f"batch_{batch_id}.parquet"
        tmp = final.with_suffix(".parquet.tmp")
        con.execute(f"""
            COPY (
              SELECT event_id, event_type, trace_id, player_id, brand_id, occurred_at, payload,
                     {literal(batch_id)} AS batch_id, getvariable('landed_now') AS ingested_at
              FROM checked JOIN keep USING (record_no)
              WHERE keep
              ORDER BY occurred_at, event_id
            ) TO {literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd)
        """)
        tmp_files.append((tmp, final))
    if quarantined:
        final = paths.quarantine / f"batch_{batch_id}.parquet"
        tmp = final.with_suffix(".parquet.tmp")
        con.execute(f"""
            COPY (
              SELECT {literal(batch_id)} AS batch_id, {literal(str(path))} AS source_file,
                     c.record_no, r.raw, c.reason, getvariable('landed_now') AS quarantined_at, r.raw_bytes
              FROM checked c JOIN raw r USING (record_no)
              WHERE c.reason IS NOT NULL ORDER BY c.record_no
            ) TO {literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd)
        """)
        tmp_files.append((tmp, final))


def _split_identifiers(con: duckdb.DuckDBPyConnection, paths: Paths) -> dict[str, int]:
    """Move the direct identifiers of the records to land into the PII vault and leave their
    pseudonyms in the payloads (:mod:`crm.store.vault`), before anything is written: the landed
    batch never holds one. Only records whose text names a PII key are read into Python (a text
    search first: registrations and profile updates, a few per player). Quarantined records stay
    as they came (raw, to be repaired; ``crm privacy forget`` clears a player's from them)."""
    import orjson

    from crm.store.vault import Vault

    named = " OR ".join(f"contains(c.payload, {literal(chr(34) + f + chr(34))})" for f in PII_FIELDS)
    rows = con.execute(f"""
        SELECT c.record_no, c.brand_id, c.player_id, c.occurred_at, c.payload
        FROM checked c JOIN keep USING (record_no) WHERE keep AND ({named})
    """).fetchall()
    if not rows:
        return {"stored": 0, "older": 0, "forgotten": 0}
    vault = Vault(paths)
    try:
        gone = vault.forgotten((b, p) for _, b, p, _, _ in rows)
        patched_no, patched, found = [], [], []
        for record_no, brand, player, at, text in rows:
            payload = orjson.loads(text)
            if not isinstance(payload, dict):
                continue
            out, ids = vault.split(payload, brand, player, at, forgotten=(brand, player) in gone)
            if out != payload:
                patched_no.append(record_no)
                patched.append(orjson.dumps(out).decode())
                found += ids
        counts = vault.put(found)
    finally:
        vault.dispose()
    if patched_no:
        con.register("_pseudonymised", pa.table({"record_no": pa.array(patched_no, pa.int64()),
                                                 "payload": pa.array(patched, pa.string())}))
        con.execute("UPDATE checked SET payload = p.payload FROM _pseudonymised p "
                    "WHERE checked.record_no = p.record_no")
        con.unregister("_pseudonymised")
    return counts


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
    tmp_files: list[tuple[Path, Path]] = []
    con = _connect(paths, now)
    try:
        _load_raw(con, path)
        _normalize(con)
        _check(con, paths)
        records, quarantined, duplicates, reasons = _counts(con)
        loaded = records - quarantined - duplicates
        _split_identifiers(con, paths)
        _write(con, paths, path, batch_id, loaded, quarantined, tmp_files)
    except duckdb.Error as e:  # a file DuckDB cannot read as it claims to be: that file fails, nothing is written
        for tmp, _ in tmp_files:
            tmp.unlink(missing_ok=True)
        raise LandingError(f"{path}: cannot be landed: {str(e).splitlines()[0][:500]}") from e
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
        lo, hi = _one("SELECT min(occurred_at), max(occurred_at) FROM read_parquet(?)", [glob])
        out["first_event_at"], out["last_event_at"] = str(lo), str(hi)
    return out


def default_as_of(paths: Paths) -> dt.date:
    """The day after the latest landed data: the as-of date of a run by default.

    Landed events and imported daily aggregates (``crm import-daily``) both count.
    """
    days = []
    # only dates landing and import accept count (files of older versions may hold 'infinity' or
    # 9999-12-31: those would make the default date of every run impossible)
    latest = dt.datetime.now(dt.UTC).replace(tzinfo=None) + MAX_FUTURE_SKEW
    glob = landed_glob(paths)
    with duckdb.connect() as con:
        if glob:
            day = con.execute("SELECT max(occurred_at) FROM read_parquet(?) WHERE occurred_at BETWEEN ? AND ?",
                              [glob, EARLIEST_EVENT_TIME, latest]).fetchone()[0]
            if day is not None:
                days.append(day.date())
        imported = paths.home / "landing" / "imported_daily"
        if any(imported.glob("*.parquet")):
            day = con.execute("SELECT max(activity_date) FROM read_parquet(?) WHERE activity_date BETWEEN ? AND ?",
                              [str(imported / "*.parquet"), EARLIEST_EVENT_TIME.date(), latest.date()]).fetchone()[0]
            if day is not None:
                days.append(day)
    if not days:
        raise LandingError(f"no landed events under {paths.events} and no imported daily aggregates: "
                           "run `crm simulate`, `crm ingest PATH` or `crm import-daily` first")
    return max(days) + dt.timedelta(days=1)


# --------------------------------------------------------------------------- records sent one by one
@dataclass(frozen=True)
class RecordCheck:
    """The contract's verdict on one record (:func:`validate_records`)."""

    reason: str | None  # why it breaks the contract; None: it fits
    field: str | None  # the field the reason names ("record": the record as a whole); None when it fits
    envelope: dict | None  # the envelope as landing would land it (ids trimmed, values normalized); None when bad
    brand_id: str | None  # the brand it names (trimmed), also for a bad record when it has one


_NAMED_FIELD = re.compile(r"^(?:missing field|wrong type for|empty field|field|bad timestamp|bad date|date|"
                          r"control or invisible characters in) ([A-Za-z_][\w.]*)")
_UNKNOWN_VALUE = re.compile(r"^unknown (\w+) for ")


def reason_field(reason: str) -> str:
    """The field a quarantine reason of :func:`_reason_sql` is about ("record": the record as a whole).
    Kept next to the SQL that writes the reasons; tests check every kind of reason maps to a field."""
    if reason.startswith("unknown event_type"):
        return "event_type"
    if reason.startswith("occurred_at out of range"):
        return "occurred_at"
    if reason.startswith("missing or malformed payload"):
        return "payload"
    m = _UNKNOWN_VALUE.match(reason)
    if m:
        return f"payload.{m.group(1)}"
    m = _NAMED_FIELD.match(reason)
    if m and not reason.startswith(("record too large", "malformed JSON")):
        return m.group(1)
    return "record"


_CHECKERS = threading.local()  # per thread (a DuckDB connection is not shared across threads): data home -> connection


def _record_checker(paths: Paths) -> duckdb.DuckDBPyConnection:
    """This thread's connection for :func:`validate_records`, made once: the ``raw`` table and the
    views of :func:`_normalize` stay, so a call costs the contract check, not the set-up (the
    service checks every accepted request this way). DuckDB's in_clause optimizer turns each
    vocabulary IN list into a join with a hash table of its own: for a handful of records that
    set-up was most of a call's cost (300 -> 60 ms, measured), so it is off here; the results are
    the same, only how the lists are searched changes."""
    key = str(paths.home)
    con = _CHECKERS.__dict__.get(key)
    if con is None:
        con = _connect(paths, dt.datetime.now(dt.UTC).replace(tzinfo=None))
        con.execute("SET disabled_optimizers = 'in_clause'")
        con.execute("CREATE TEMP TABLE raw (record_no BIGINT, raw VARCHAR, raw_bytes BLOB, note VARCHAR)")
        _normalize(con)
        _CHECKERS.__dict__[key] = con
    return con


def validate_records(texts: list[str], paths: Paths, now: dt.datetime | None = None) -> list[RecordCheck]:
    """Check records sent one by one (each the JSON text of one record, e.g. from the HTTP API)
    with the very SQL that lands files (:func:`_normalize`, :func:`_checked`): one verdict per
    record, in order. De-duplication is the caller's (the service's store; landing again later)."""
    if not texts:
        return []
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    rows = []
    for t in texts:
        try:
            t.encode("utf-8")
            rows.append((t, None, None))
        except UnicodeEncodeError as e:  # a lone surrogate: not text that can be stored
            rows.append((t.encode("utf-8", errors="replace").decode("utf-8"), None,
                         f"not valid UTF-8: character {e.start + 1} is a lone surrogate"))
    con = _record_checker(paths)
    try:
        con.execute("SET VARIABLE landed_now = ?::TIMESTAMP", [now])
        con.execute("SET VARIABLE landed_latest = ?::TIMESTAMP", [now + MAX_FUTURE_SKEW])
        con.execute("SET VARIABLE max_record_bytes = ?::BIGINT", [max_record_bytes()])
        con.execute("DELETE FROM raw")
        _append_rows(con, rows, 0)
        _checked(con, replace=True)
        out = con.execute("""
            SELECT record_no, reason, event_id, event_type, trace_id, player_id, brand_id,
                   strftime(occurred_at, '%Y-%m-%dT%H:%M:%S.%fZ'), payload
            FROM checked ORDER BY record_no
        """).fetchall()
        con.execute("DELETE FROM raw")
        con.execute("DROP TABLE checked")
    except BaseException:
        _CHECKERS.__dict__.pop(str(paths.home), None)  # a connection in an unknown state is not reused
        con.close()
        raise
    checks = []
    for _, reason, event_id, event_type, trace_id, player_id, brand_id, occurred_at, payload in out:
        if reason is not None:
            checks.append(RecordCheck(reason, reason_field(reason), None, brand_id))
            continue
        envelope = {"event_id": event_id, "event_type": event_type, "trace_id": trace_id, "player_id": player_id,
                    "brand_id": brand_id, "occurred_at": occurred_at, "payload": json.loads(payload)}
        checks.append(RecordCheck(None, None, envelope, brand_id))
    return checks
