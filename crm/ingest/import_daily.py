"""Bring your own data: import per-player daily aggregates from a warehouse export.

Many operators have a warehouse export rather than an event stream. :func:`import_daily`
loads one CSV or Parquet file of per-player daily aggregates through a mapping file
(YAML) that names *their* column for each of *our* canonical names::

    columns:                     # canonical: their column name
      player_id: customer_ref    # required
      date: day                  # required
      deposit_amount: deposits   # measures: map at least one
      withdrawal_amount: withdrawals
      stake: turnover
      win: winnings
      ngr: ngr
      bonus_amount: bonus_cost
      sessions: logins
      brand_id: brand            # optional attributes
      country: market
      gender: sex
    units: major                 # money columns in major (12.50) or minor (1250) units
    currency: EUR                # currency of the money columns (default EUR) ...
    # currency_column: ccy       # ... or a column of the file holding it per row
    date_format: "%Y-%m-%d"      # optional (strptime); default ISO dates (YYYY-MM-DD)
    encoding: utf-8              # CSV only: utf-8 (default) | latin-1 | utf-16
    delimiter: ","               # CSV only: , ; | or "\t" (default: tab for .tsv, else comma)

Rules:

* A canonical measure that is not mapped is recorded in the report and the import log as
  *missing* and stored as 0 (money), or NULL for ``ngr`` (the warehouse then derives it as
  stake - win - bonus) and ``sessions``. An empty cell in a mapped money
  column is 0; an empty ``sessions`` cell is NULL.
* Money is converted to EUR cents: minor units are divided by 100, multiplied by
  ``eur_per_unit`` from ``dbt_project/seeds/fx_rates.csv`` (the single source of FX),
  multiplied by 100 and rounded half away from zero. Amounts are read exactly to 6
  decimals; an amount of 10^12 or more (in the file's units) is reported as a bad value.
  ``units: minor`` assumes 1/100 minor units and rejects fractional values (a sign the
  column is in major units).
* Deposits, withdrawals, stakes, wins and sessions must not be negative; NGR and bonus
  cost may be (losing days, bonus forfeits).
* Dates must lie in 1990-01-01 .. tomorrow (UTC); ``infinity``, ``epoch`` and other
  special values are bad dates.
* Player ids are kept as given (as text, surrounding spaces removed). An id, brand or
  gender holding a control or invisible character (tab, NUL, zero-width space, byte-order
  mark, ...), a space other than the plain one, a double quote (a sign of broken CSV
  quoting) or more than 256 characters is a bad value.
* ``country`` is trimmed and upper-cased, ``GB`` becomes ``UK``; anything but two letters
  A-Z is a bad value.
* ``(player_id, date)`` must be unique within the file.

The file and the mapping are untrusted input. The mapping is read with
:mod:`crm.safe_yaml`. CSV is read strictly (RFC 4180 with the mapping's delimiter, never
guessed): a value with an unbalanced quote, a value running over several lines, a line with
a different number of fields than the header, a blank line between data lines, mixed line
endings, a NUL character or text that is not in the mapping's encoding rejects the file,
naming the line. Column names from the file never enter SQL: columns are addressed by
position.

Everything is validated first, in DuckDB SQL over the file (CSV is read with every column
as text, so bad values are reported with their line numbers). Only then is one Parquet file
written under a temporary name and renamed to
``$CRM_HOME/landing/imported_daily/import_<batch_id>.parquet``, and the import log line
(``$CRM_HOME/landing/import_log.jsonl``) is appended last, so a failed import leaves
nothing behind. ``batch_id`` is a sha256 prefix of the file bytes and the mapping:
importing the same file with the same mapping again changes nothing. (player_id, date)
pairs that an earlier batch already holds are not rejected; they are counted as
``overlapping_rows`` in the report and the log (the warehouse, stg_imported__player_daily,
keeps the latest batch per pair, by ``imported_at``).

Line/row numbers in errors: for CSV, line numbers in the file (the header is line 1);
for Parquet, row numbers (the first row is row 1).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from pathlib import Path

import duckdb

from crm.config import Paths
from crm.ingest.daily_mapping import (
    ATTRIBUTES,
    BAD_TEXT,
    EXAMPLES,
    FX_RATES_CSV,
    MAX_SESSIONS,
    MAX_TEXT,
    MEASURES,
    MIN_DATE,
    MONEY,
    NON_NEGATIVE,
    OUTPUT_SCHEMA,
    DailyMapping,
    ImportDailyError,
    absolute,
    excerpt,
    is_file,
    load_mapping,
    read_fx_rates,
)
from crm.ingest.daily_source import (
    Source,
    duckdb_error_head,
    file_kind,
    open_csv,
    open_parquet,
    read_error,
)
from crm.safe_yaml import short
from crm.sql import ident, literal

# --------------------------------------------------------------------------- report, log


@dataclass
class ImportReport:
    file: str
    mapping: str
    batch_id: str
    rows: int
    players: int
    date_from: str | None
    date_to: str | None
    missing_measures: list[str]
    units: str
    currency: str  # "EUR", or "column <name>"
    output: str
    totals_eur_cents: dict[str, int] = field(default_factory=dict)
    overlapping_rows: int = 0  # (player_id, date) pairs an earlier batch already holds
    already_imported: bool = False
    imported_at: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def imported_daily_dir(paths: Paths) -> Path:
    return paths.home / "landing" / "imported_daily"


def import_log_path(paths: Paths) -> Path:
    return paths.home / "landing" / "import_log.jsonl"


def imported_batches(paths: Paths) -> dict[str, dict]:
    """batch_id -> import log entry of every batch imported so far."""
    out: dict[str, dict] = {}
    log = import_log_path(paths)
    if log.exists():
        for n, line in enumerate(log.read_text().splitlines(), 1):
            if line.strip():
                try:
                    entry = json.loads(line)
                    out[entry["batch_id"]] = entry
                except (ValueError, KeyError, TypeError) as e:
                    raise ImportDailyError(f"{log}: line {n} is not an import log entry ({short(e, 200)}); "
                                           "restore the file from a backup or remove that line") from None
    return out


def _append_log(log: Path, entry: dict) -> None:
    """Append one line to the import log; on failure cut the log back, so no torn line stays."""
    data = memoryview((json.dumps(entry) + "\n").encode())
    with log.open("ab", buffering=0) as f:
        start = f.tell()
        try:
            while data:
                data = data[f.write(data):]
        except OSError:
            f.truncate(start)
            raise


def batch_id_for(file: Path, mapping: DailyMapping) -> str:
    h = hashlib.sha256()
    with Path(file).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    h.update(b"\0mapping\0" + mapping.canonical_json().encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- typing the columns in SQL


def _text(col: str) -> str:
    return f"NULLIF(trim(CAST({col} AS VARCHAR)), '')"


def _bad_text(raw: str, value: str) -> str:
    """SQL: the ``raw`` text holds a character never part of an id (:data:`BAD_TEXT`) or the trimmed
    ``value`` is too long."""
    return f"(regexp_matches({raw}, {literal(BAD_TEXT)}) OR length({value}) > {MAX_TEXT})"


def _country(col: str) -> str:
    """SQL: the country as event landing stores it: trimmed, upper-case, GB -> UK (checked elsewhere:
    two letters A-Z)."""
    c = f"upper({_text(col)})"
    return f"CASE WHEN {c} = 'GB' THEN 'UK' ELSE {c} END"


def _number(col: str, typ: str) -> str:
    # DECIMAL(18, 6): exact, 64-bit; magnitudes of 10^12 and more do not parse (reported as bad).
    if typ == "VARCHAR":
        return f"try_cast({_text(col)} AS DECIMAL(18, 6))"
    return f"try_cast({col} AS DECIMAL(18, 6))"


def _cents(v: str, factor: str, factor_double: str) -> str:
    """EUR cents = v x factor (factor = EUR cents per unit of the file), rounded half away from zero.

    Exact decimal arithmetic is 128-bit and slow at tens of millions of rows, so the product is
    taken in DOUBLE when that cannot change the result: |x| < 1e9 keeps the double error below
    1e-6, and values within 1e-6 of a .5 tie (or larger) take the exact DECIMAL path.
    """
    x = f"(CAST({v} AS DOUBLE) * {factor_double})"
    return (f"CASE WHEN {v} IS NULL THEN 0 "
            f"WHEN abs({x}) < 1e9 AND abs(abs({x} % 1) - 0.5) > 1e-6 THEN CAST(round({x}) AS BIGINT) "
            f"ELSE CAST(CAST({v} AS DECIMAL(38, 6)) * {factor} AS BIGINT) END")


def _date(col: str, typ: str, fmt: str | None) -> str:
    if typ == "DATE":
        return col
    if typ.startswith("TIMESTAMP WITH TIME ZONE"):
        return f"CAST(timezone('UTC', {col}) AS DATE)"
    if typ.startswith("TIMESTAMP"):
        return f"CAST({col} AS DATE)"
    if fmt:
        return f"CAST(try_strptime({_text(col)}, {literal(fmt)}) AS DATE)"
    # ISO only: DuckDB's date cast also takes 'infinity', 'epoch', '2025-06-01 (BC)', timestamps.
    return f"CASE WHEN regexp_full_match({_text(col)}, '[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}') " \
           f"THEN try_cast({_text(col)} AS DATE) END"


_INTEGER = "TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT"


def _type_problem(canonical: str, typ: str) -> str | None:
    """Why a Parquet column of type ``typ`` cannot hold ``canonical`` (None: it can)."""
    if typ == "VARCHAR":
        return None
    if canonical == "date":
        ok, want = typ == "DATE" or re.fullmatch(r"TIMESTAMP(_S|_MS|_NS| WITH TIME ZONE)?", typ), "a date or text"
    elif canonical in MEASURES:
        ok, want = re.fullmatch(rf"{_INTEGER}|FLOAT|DOUBLE|DECIMAL\(\d+,\s*\d+\)", typ), "a number or text"
    else:
        ok, want = re.fullmatch(_INTEGER, typ), "text or a whole number"
    return None if ok else f"is of type {short(typ, 100)}; expected {want}"


@dataclass
class _Check:
    where: str  # SQL condition over `typed` marking a bad row
    value: str | None  # SQL of the value quoted in the message (the raw text), or None
    message: str  # "... has {n} <what>"; the first bad rows are appended


def _col(canonical: str, source: str, file: Path) -> str:
    return f"column {excerpt(source, 100)} (mapped from canonical {canonical!r}) in {file}"


def _examples(at: str, examples: list[dict] | None, with_values: bool = True) -> str:
    examples = examples or []
    rows = ", ".join(str(e["row"]) for e in examples)
    if not with_values:
        return f"first at {at} {rows}"
    values = ", ".join(excerpt(e["value"] if e["value"] is not None else "") for e in examples)
    return f"first at {at} {rows}: {values}"


# --------------------------------------------------------------------------- import


def import_daily(file: str | Path, mapping: str | Path, paths: Paths) -> ImportReport:
    """Validate and import one file of per-player daily aggregates. See the module docstring.

    Raises :class:`ImportDailyError` (listing every problem, each naming the file and the
    column) and writes nothing if the mapping or any row is bad. Importing the same file
    with the same mapping again returns the earlier report with ``already_imported=True``.
    """
    file, mapping_path = absolute(file), absolute(mapping)
    rates = read_fx_rates()
    spec = load_mapping(mapping_path, rates)
    if not is_file(file):
        raise ImportDailyError(f"{file}: no such file")
    is_csv = file_kind(file)
    try:
        if file.stat().st_size == 0:
            raise ImportDailyError(f"{file} is empty")
        batch_id = batch_id_for(file, spec)
    except OSError as e:
        raise ImportDailyError(f"{file}: cannot be read ({e.strerror or e})") from None
    seen = imported_batches(paths)
    if batch_id in seen:
        known = {f.name for f in fields(ImportReport)}
        prev = {k: v for k, v in seen[batch_id].items() if k in known}
        prev.update(already_imported=True, file=str(file))
        return ImportReport(**prev)
    source = open_csv(file, spec) if is_csv else None

    out_dir = imported_daily_dir(paths)
    final = out_dir / f"import_{batch_id}.parquet"
    tmp = final.with_name(final.name + ".tmp")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # microseconds: the warehouse keeps the latest batch
    latest = now.date() + dt.timedelta(days=1)
    con = duckdb.connect()
    try:
        # Bounded memory: DuckDB spills to the data home past the limit.
        spill = paths.home / "tmp" / "duckdb"
        spill.mkdir(parents=True, exist_ok=True)
        limit = os.environ.get("CRM_IMPORT_MEMORY") or os.environ.get("CRM_LANDING_MEMORY", "2GB")
        con.execute(f"SET memory_limit = {literal(limit)}")
        con.execute(f"SET temp_directory = {literal(str(spill))}")
        con.execute("SET preserve_insertion_order = false")  # row order does not matter; saves memory
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")

        source = source or open_parquet(con, file)
        _create_typed_view(con, source, spec, rates, mapping_path)
        stats = _validate(con, source, spec, rates, latest)
        overlapping = _overlapping_rows(con, out_dir, stats["date_from"], stats["date_to"])

        out_dir.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY ({_output_sql(spec, batch_id, now)}) "
                    f"TO {literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd)")
        sums = ", ".join(f"coalesce(sum({c}), 0)::BIGINT" for c in MONEY.values())
        totals = dict(zip(MONEY.values(), con.execute(
            f"SELECT {sums} FROM read_parquet({literal(str(tmp))})").fetchone(), strict=True))
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, duckdb.Error):
            raise ImportDailyError(f"{file}: cannot be imported ({duckdb_error_head(e)})") from e
        if isinstance(e, OSError):
            raise ImportDailyError(f"{file}: cannot write the batch under {out_dir} ({e.strerror or e})") from e
        raise
    finally:
        con.close()

    report = ImportReport(
        file=str(file), mapping=str(mapping_path), batch_id=batch_id, rows=stats["rows"],
        players=stats["players"], date_from=str(stats["date_from"]), date_to=str(stats["date_to"]),
        missing_measures=spec.missing_measures, units=spec.units,
        currency=spec.fixed_currency or f"column {spec.currency_column}", output=str(final),
        totals_eur_cents=totals, overlapping_rows=overlapping, imported_at=now.isoformat() + "Z")
    entry = report.to_dict()
    del entry["already_imported"]
    try:
        os.replace(tmp, final)
        _append_log(import_log_path(paths), entry)  # written last: the batch is complete
    except OSError as e:
        for p in (tmp, final):
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)
        raise ImportDailyError(f"{file}: cannot write the batch ({e.strerror or e}); nothing was imported") from e
    return report


def _create_typed_view(con: duckdb.DuckDBPyConnection, src: Source, spec: DailyMapping,
                       rates: dict[str, Decimal], mapping_path: Path) -> None:
    """Check the mapped columns exist (once, with a type that fits); create view ``typed`` over the
    file and table ``fx``.

    ``typed`` has ``row_no`` (what errors quote), ``raw_<canonical>`` (the text as given),
    the parsed values and ``currency``. It is a view: nothing is copied.
    """
    file = src.file
    wanted = list(spec.columns.items())
    if spec.currency_column:
        wanted.append(("currency_column", spec.currency_column))
    problems = []
    for canon, col in wanted:
        what = "currency_column" if canon == "currency_column" else f"mapped from canonical {canon!r}"
        n = src.names.count(col)
        if n == 0:
            close = difflib.get_close_matches(col[:200], [x[:200] for x in src.names], n=1, cutoff=0.6)
            shown = ", ".join(excerpt(x, 40) for x in src.names[:30]) + (", ..." if len(src.names) > 30 else "")
            hint = f" (did you mean {excerpt(close[0])}?)" if close else ""
            if src.is_csv and len(src.names) == 1:
                hint += "".join(f"; the header looks separated by {d!r}: set `delimiter: "
                                f"{chr(34) + chr(92) + 't' + chr(34) if d == chr(9) else repr(d)}` in "
                                f"{mapping_path.name}" for d in ";\t|," if d in src.names[0])
            problems.append(f"column {excerpt(col, 100)} ({what}) not found in {file}; available: {shown}{hint}")
        elif n > 1:
            problems.append(f"column {excerpt(col, 100)} ({what}) appears {n} times in {file}; rename one")
        elif bad := _type_problem("player_id" if canon == "currency_column" else canon,
                                  src.types[src.names.index(col)]):
            problems.append(f"column {excerpt(col, 100)} ({what}) in {file} {bad}")
    if problems:
        raise ImportDailyError(problems)

    # EUR cents per unit of the file's money columns.
    scale = 1 if spec.units == "minor" else 100
    con.execute("CREATE TEMP TABLE fx (currency VARCHAR, factor DECIMAL(18, 8), factor_double DOUBLE)")
    for ccy, rate in rates.items():
        con.execute(f"INSERT INTO fx SELECT {literal(ccy)}, CAST({literal(str(rate * scale))} AS DECIMAL(18, 8)), "
                    f"CAST({literal(str(rate * scale))} AS DOUBLE)")

    cols = {canon: src.column(name) for canon, name in spec.columns.items()}
    typ = {canon: src.types[src.names.index(name)] for canon, name in spec.columns.items()}
    select = ["row_no", "fields_ok"]
    for canon, col in cols.items():
        select.append(f"CAST({col} AS VARCHAR) AS {ident('raw_' + canon)}")
    select.append(f"{_text(cols['player_id'])} AS player_id")
    select.append(f"{_date(cols['date'], typ['date'], spec.date_format)} AS activity_date")
    for canon in MEASURES:
        if canon in cols:
            select.append(f"{_number(cols[canon], typ[canon])} AS {ident('v_' + canon)}")
    for canon in ATTRIBUTES:
        expr = (_country if canon == "country" else _text)(cols[canon]) if canon in cols else "NULL::VARCHAR"
        select.append(f"{expr} AS {canon}")
    if spec.currency_column:
        ccy = src.column(spec.currency_column)
        select.append(f"CAST({ccy} AS VARCHAR) AS raw_currency")
        select.append(f"upper({_text(ccy)}) AS currency")
    else:
        select.append(f"{literal(spec.fixed_currency)} AS currency")
    con.execute(f"CREATE TEMP VIEW typed AS SELECT {', '.join(select)} FROM {src.relation}")


def _checks(src: Source, spec: DailyMapping, rates: dict[str, Decimal], latest: dt.date) -> list[_Check]:
    file, at, c = src.file, src.at, spec.columns
    checks = [_Check("player_id IS NULL", None, f"{_col('player_id', c['player_id'], file)} is empty in {{n}} {at}")]
    for canon in ("player_id", "brand_id", "gender"):
        if canon in c:
            checks.append(_Check(
                f"{canon} IS NOT NULL AND {_bad_text(ident('raw_' + canon), canon)}", ident("raw_" + canon),
                f"{_col(canon, c[canon], file)} has {{n}} values with control or invisible characters, spaces other "
                f"than the plain one, double quotes or more than {MAX_TEXT} characters"))
    if "country" in c:
        checks.append(_Check("country IS NOT NULL AND NOT regexp_full_match(country, '[A-Z]{2}')", "raw_country",
                             f"{_col('country', c['country'], file)} has {{n}} values that are not a two-letter "
                             "country code (GB is stored as UK)"))
    fmt = f"format {excerpt(spec.date_format)}" if spec.date_format else "YYYY-MM-DD"
    checks.append(_Check("activity_date IS NULL OR NOT isfinite(activity_date)", "raw_date",
                         f"{_col('date', c['date'], file)} has {{n}} bad dates (expected {fmt})"))
    checks.append(_Check(f"isfinite(activity_date) AND activity_date NOT BETWEEN DATE {literal(str(MIN_DATE))} "
                         f"AND DATE {literal(str(latest))}", "raw_date",
                         f"{_col('date', c['date'], file)} has {{n}} dates outside {MIN_DATE} .. {latest} "
                         "(tomorrow, UTC)"))
    for canon in MEASURES:
        if canon not in c:
            continue
        raw, v = ident("raw_" + canon), ident("v_" + canon)
        where = _col(canon, c[canon], file)
        too_big = f" OR abs({v}) > {MAX_SESSIONS}" if canon == "sessions" else ""
        checks.append(_Check(f"NULLIF(trim({raw}), '') IS NOT NULL AND ({v} IS NULL{too_big})", raw,
                             f"{where} has {{n}} non-numeric (or out-of-range) values"))
        if canon == "sessions":
            checks.append(_Check(f"{v} <> round({v})", raw, f"{where} has {{n}} values that are not whole numbers"))
        elif spec.units == "minor":
            checks.append(_Check(f"{v} <> round({v})", raw,
                                 f"{where} has {{n}} fractional values but units is 'minor' (whole minor "
                                 "units expected; use units: major for amounts like 12.50)"))
        if canon in NON_NEGATIVE:
            checks.append(_Check(f"{v} < 0", raw, f"{where} has {{n}} negative values"))
    if spec.currency_column:
        known = ", ".join(literal(x) for x in rates)
        checks.append(_Check(f"currency IS NULL OR currency NOT IN ({known})", "raw_currency",
                             f"column {excerpt(spec.currency_column, 100)} (currency_column) in {file} "
                             "has {n} values "
                             f"that are not a currency in {FX_RATES_CSV.name} (known: {', '.join(sorted(rates))})"))
    return checks


def _line_break_error(con: duckdb.DuckDBPyConnection, src: Source, records: int) -> ImportDailyError:
    """The CSV has more lines than records: name the first record holding a line break."""
    breaks = " OR ".join(f"strpos({ident(f'c{i}')}, chr(10)) > 0 OR strpos({ident(f'c{i}')}, chr(13)) > 0"
                         for i in range(len(src.names)))
    line = con.execute(f"SELECT min(row_no) FROM {src.relation} WHERE {breaks}").fetchone()[0]
    if line is None:
        return ImportDailyError(f"{src.file}: {src.lines:,} lines hold {records:,} records; cannot tell which line "
                                "is which")
    return ImportDailyError(f"{src.file}: line {line}: a quoted value runs over more than one line (a line break "
                            "inside quotes, or an unbalanced double quote); values must fit on their line")


def _field_count_error(con: duckdb.DuckDBPyConnection, src: Source, n_bad: int) -> ImportDailyError:
    """Lines with more or fewer fields than the header: name the first few."""
    n = len(src.names)
    count = " + ".join(f"CAST({ident(f'c{i}')} IS NOT NULL AS INTEGER)" for i in range(n + 1))
    bad = con.execute(f"SELECT row_no, {count} FROM {src.relation} WHERE NOT fields_ok ORDER BY row_no "
                      f"LIMIT {EXAMPLES}").fetchall()
    eg = ", ".join(f"{line} ({f'more than {n}' if k > n else k} fields)" for line, k in bad)
    return ImportDailyError(f"{src.file}: {n_bad:,} lines have a different number of fields than the header "
                            f"({n}; check the delimiter and quoting); first at lines {eg}")


def _validate(con: duckdb.DuckDBPyConnection, src: Source, spec: DailyMapping, rates: dict[str, Decimal],
              latest: dt.date) -> dict:
    """Every row check in one pass, then uniqueness; raise with every problem found."""
    file, at = src.file, src.at
    checks = _checks(src, spec, rates, latest)
    in_range = f"activity_date BETWEEN DATE {literal(str(MIN_DATE))} AND DATE {literal(str(latest))}"
    aggs = ["count(*)", "count(DISTINCT player_id)", f"min(activity_date) FILTER (WHERE {in_range})",
            f"max(activity_date) FILTER (WHERE {in_range})"]
    aggs += ["count_if(NOT fields_ok)", *(f"count_if({c.where})" for c in checks)]
    try:
        res = con.execute(f"SELECT {', '.join(aggs)} FROM typed").fetchone()
    except duckdb.Error as e:
        raise read_error(file, e, src.is_csv) from None
    stats = dict(zip(("rows", "players", "date_from", "date_to"), res[:4], strict=True))
    # Broken lines first, alone: line numbers (or the values of the line) would be wrong.
    if src.is_csv and stats["rows"] + 1 != src.lines:
        raise _line_break_error(con, src, stats["rows"] + 1)
    if res[4]:
        raise _field_count_error(con, src, res[4])
    problems: list[str] = []
    if stats["rows"] == 0:
        problems.append(f"{file} has no data rows")
    failed = [(c, n) for c, n in zip(checks, res[5:], strict=True) if n]
    if failed:  # the first bad rows of each failed check: only read when something is wrong
        ex = ", ".join(f"arg_min({{'row': row_no, 'value': {c.value or 'NULL::VARCHAR'}}}, row_no, {EXAMPLES}) "
                       f"FILTER (WHERE {c.where})" for c, _ in failed)
        anybad = " OR ".join(f"({c.where})" for c, _ in failed)
        examples = con.execute(f"SELECT {ex} FROM typed WHERE {anybad}").fetchone()
        for (c, n), e in zip(failed, examples, strict=True):
            problems.append(c.message.format(n=f"{n:,}") + "; " + _examples(at, e, c.value is not None))

    # (player_id, date) is unique: a plain count per key (spills to disk at scale); the rows
    # of a few offending keys are looked up only when there are any.
    con.execute("""
        CREATE TEMP TABLE dup_keys AS
        SELECT player_id, activity_date FROM typed
        WHERE player_id IS NOT NULL AND activity_date IS NOT NULL
        GROUP BY player_id, activity_date HAVING count(*) > 1
    """)
    n_dups = con.execute("SELECT count(*) FROM dup_keys").fetchone()[0]
    if n_dups:
        dups = con.execute("""
            SELECT t.player_id, CAST(t.activity_date AS VARCHAR), min(t.row_no, 3) AS rows_
            FROM typed t JOIN dup_keys d ON t.player_id = d.player_id AND t.activity_date = d.activity_date
            GROUP BY t.player_id, t.activity_date ORDER BY rows_[1] LIMIT 3
        """).fetchall()
        eg = "; ".join(f"{excerpt(p)} on {d} at {at} {', '.join(map(str, r))}" for p, d, r in dups)
        problems.append(f"{file} has {n_dups:,} duplicate (player_id, date) pairs (columns "
                        f"{excerpt(spec.columns['player_id'])}, {excerpt(spec.columns['date'])}); e.g. {eg}")
    if problems:
        raise ImportDailyError(problems)
    return stats


def _overlapping_rows(con: duckdb.DuckDBPyConnection, out_dir: Path, lo: dt.date, hi: dt.date) -> int:
    """(player_id, date) pairs of this file that earlier batches already hold."""
    earlier = sorted(out_dir.glob("import_*.parquet")) if out_dir.is_dir() else []
    if not earlier:
        return 0
    files = "[" + ", ".join(literal(str(p)) for p in earlier) + "]"
    return con.execute(f"""
        SELECT count(*) FROM typed t SEMI JOIN (
            SELECT player_id, activity_date FROM read_parquet({files})
            WHERE activity_date BETWEEN DATE {literal(str(lo))} AND DATE {literal(str(hi))}
        ) o ON t.player_id = o.player_id AND t.activity_date = o.activity_date
    """).fetchone()[0]


def _output_sql(spec: DailyMapping, batch_id: str, now: dt.datetime) -> str:
    """The batch in the contract's columns and types (see OUTPUT_SCHEMA)."""
    money_out = {v: k for k, v in MONEY.items()}
    out = []
    for name, typ in OUTPUT_SCHEMA:
        if name in ("player_id", "activity_date", *ATTRIBUTES):
            expr = f"t.{name}"
        elif name in money_out:
            canon = money_out[name]
            expr = _cents(f"t.{ident('v_' + canon)}", "fx.factor", "fx.factor_double") \
                if canon in spec.columns else ("NULL" if canon == "ngr" else "0")  # unmapped NGR: derived in dbt
        elif name == "sessions":
            expr = "t.v_sessions" if "sessions" in spec.columns else "NULL"
        elif name == "batch_id":
            expr = literal(batch_id)
        else:  # imported_at
            expr = f"TIMESTAMP {literal(str(now))}"
        out.append(f"CAST({expr} AS {typ}) AS {name}")
    return f"SELECT {', '.join(out)} FROM typed t JOIN fx ON fx.currency = t.currency"

