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
    date_format: "%Y-%m-%d"      # optional (strptime); default ISO dates
    encoding: utf-8              # CSV only: utf-8 (default) | latin-1 | utf-16

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
* Player ids are kept as given (as text, surrounding whitespace removed).
* ``(player_id, date)`` must be unique within the file.

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

import csv
import datetime as dt
import difflib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

import duckdb
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from crm.config import DBT_PROJECT_DIR, Paths

FX_RATES_CSV = DBT_PROJECT_DIR / "seeds" / "fx_rates.csv"

KEYS = ("player_id", "date")
# canonical money measure -> output column (EUR cents)
MONEY = {
    "deposit_amount": "deposit_eur",
    "withdrawal_amount": "withdrawal_eur",
    "stake": "stake_eur",
    "win": "win_eur",
    "ngr": "ngr_eur",
    "bonus_amount": "bonus_eur",
}
MEASURES = (*MONEY, "sessions")
ATTRIBUTES = ("brand_id", "country", "gender")
CANONICAL = (*KEYS, *MEASURES, *ATTRIBUTES)
NON_NEGATIVE = ("deposit_amount", "withdrawal_amount", "stake", "win", "sessions")

# The contract the warehouse reads: exactly these columns, in this order.
OUTPUT_SCHEMA = (
    ("player_id", "VARCHAR"),
    ("activity_date", "DATE"),
    ("brand_id", "VARCHAR"),
    ("country", "VARCHAR"),
    ("gender", "VARCHAR"),
    *((col, "BIGINT") for col in MONEY.values()),
    ("sessions", "INTEGER"),
    ("batch_id", "VARCHAR"),
    ("imported_at", "TIMESTAMP"),
)

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
_EXAMPLES = 5  # bad rows quoted per problem
_MAX_SESSIONS = 2**31 - 1
_ROW = "__crm_row_no"


class ImportDailyError(ValueError):
    """A file or mapping that cannot be imported; nothing was written.

    ``problems`` lists every problem found (each names the file and the column).
    """

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            msg = self.problems[0]
        else:
            msg = f"{len(self.problems)} problems; nothing was imported:\n" + \
                "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(msg)


# --------------------------------------------------------------------------- mapping


class DailyMapping(BaseModel):
    """The mapping file: canonical name -> the column name in the operator's file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[str, str]
    units: Literal["major", "minor"] = "major"
    currency: str | None = None
    currency_column: str | None = None
    date_format: str | None = None
    encoding: Literal["utf-8", "utf-16", "latin-1"] = "utf-8"  # CSV only

    @field_validator("columns")
    @classmethod
    def _columns(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = [k for k in v if k not in CANONICAL]
        if unknown:
            parts = []
            for k in unknown:
                close = difflib.get_close_matches(k, CANONICAL, n=1)
                parts.append(f"unknown column mapping {k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError("; ".join(parts) + f"; expected one of: {', '.join(CANONICAL)}")
        missing = [k for k in KEYS if k not in v]
        if missing:
            raise ValueError(f"'player_id' and 'date' must be mapped; missing: {', '.join(missing)}")
        if not any(k in v for k in MEASURES):
            raise ValueError(f"map at least one measure; expected some of: {', '.join(MEASURES)}")
        blank = [k for k, col in v.items() if not col.strip()]
        if blank:
            raise ValueError(f"empty column name for {', '.join(map(repr, blank))}")
        by_source: dict[str, list[str]] = {}
        for k, col in v.items():
            by_source.setdefault(col, []).append(k)
        shared = {col: ks for col, ks in by_source.items() if len(ks) > 1}
        if shared:
            raise ValueError("; ".join(f"column {col!r} is mapped from more than one canonical name "
                                       f"({', '.join(ks)})" for col, ks in shared.items()))
        return v

    @field_validator("currency")
    @classmethod
    def _upper(cls, v: str | None) -> str | None:
        return v.strip().upper() if v is not None else None

    @model_validator(mode="after")
    def _one_currency(self) -> DailyMapping:
        if self.currency and self.currency_column:
            raise ValueError("give either 'currency' (one currency for the file) or 'currency_column' "
                             "(a column holding it per row), not both")
        if self.currency_column is not None and not self.currency_column.strip():
            raise ValueError("'currency_column' is empty")
        return self

    @property
    def fixed_currency(self) -> str | None:
        """The currency of every money column, or None when it comes from ``currency_column``."""
        return None if self.currency_column else (self.currency or "EUR")

    @property
    def missing_measures(self) -> list[str]:
        return [k for k in MEASURES if k not in self.columns]

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


def _format_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid mapping"]
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  - field '{loc}': {msg}")
    return "\n".join(lines)


def read_fx_rates(path: Path = FX_RATES_CSV) -> dict[str, Decimal]:
    """currency -> EUR per unit, from the dbt seed (the single source of FX)."""
    rates: dict[str, Decimal] = {}
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                rate = Decimal(row["eur_per_unit"].strip())
            except (InvalidOperation, AttributeError) as e:
                raise ImportDailyError(f"{path}: bad eur_per_unit {row.get('eur_per_unit')!r} "
                                       f"for {row.get('currency')!r}") from e
            rates[row["currency"].strip().upper()] = rate
    return rates


def load_mapping(path: str | Path, fx_rates: dict[str, Decimal] | None = None) -> DailyMapping:
    """Read and validate a mapping file; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise ImportDailyError(f"{path}: no such mapping file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ImportDailyError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ImportDailyError(f"{path}: expected a mapping with 'columns:' at the top level "
                               "(see docs/examples/daily_mapping.yaml)")
    try:
        mapping = DailyMapping.model_validate(data)
    except ValidationError as e:
        raise ImportDailyError(_format_error(path, e)) from e
    rates = read_fx_rates() if fx_rates is None else fx_rates
    if mapping.fixed_currency and mapping.fixed_currency not in rates:
        raise ImportDailyError(f"{path}: field 'currency': unknown currency {mapping.fixed_currency!r}: not in "
                               f"{FX_RATES_CSV.name}; known: {', '.join(sorted(rates))}")
    return mapping


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
        for line in log.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                out[entry["batch_id"]] = entry
    return out


def batch_id_for(file: Path, mapping: DailyMapping) -> str:
    h = hashlib.sha256()
    with Path(file).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    h.update(b"\0mapping\0" + mapping.canonical_json().encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- SQL helpers


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def _text(col: str) -> str:
    return f"NULLIF(trim(CAST({col} AS VARCHAR)), '')"


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
        return f"CAST(try_strptime({_text(col)}, {_q(fmt)}) AS DATE)"
    return f"try_cast({_text(col)} AS DATE)"


def _csv_reader(file: Path, encoding: str) -> str:
    # Every column as text: we type the values ourselves and can quote the bad ones.
    return f"read_csv({_q(str(file))}, all_varchar = true, header = true, encoding = {_q(encoding)})"


def _source_sql(file: Path, names: list[str], is_csv: bool, encoding: str) -> str:
    aliases = ", ".join([*(_ident(n) for n in names), _ident(_ROW)])
    if is_csv:
        return f"{_csv_reader(file, encoding)} WITH ORDINALITY AS src({aliases})"
    return f"read_parquet({_q(str(file))}, file_row_number = true) AS src({aliases})"


def _short(e: Exception) -> str:
    """The informative head of a DuckDB error (not its list of reader settings)."""
    lines = []
    for line in str(e).splitlines():
        if line.startswith(("Possible Solution", "  file =", "LINE ")):
            break
        if line.strip():
            lines.append(line.strip())
    return " / ".join(lines[:3])


def _read_error(file: Path, e: Exception, is_csv: bool) -> ImportDailyError:
    hint = ""
    if is_csv and "unicode" in str(e).lower():
        hint = "; if the file is not UTF-8, set 'encoding: latin-1' (or utf-16) in the mapping"
    return ImportDailyError(f"{file}: not a readable {'CSV' if is_csv else 'Parquet'} file ({_short(e)}){hint}")


def _describe(con: duckdb.DuckDBPyConnection, file: Path, is_csv: bool, encoding: str) -> list[tuple[str, str]]:
    if file.stat().st_size == 0:
        raise ImportDailyError(f"{file} is empty")
    reader = _csv_reader(file, encoding) if is_csv else f"read_parquet({_q(str(file))})"
    try:
        return [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()]
    except duckdb.Error as e:
        raise _read_error(file, e, is_csv) from e


def _file_kind(file: Path) -> bool:
    """True for CSV, False for Parquet."""
    name = file.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return True
    if name.endswith(PARQUET_SUFFIXES):
        return False
    raise ImportDailyError(f"{file}: unsupported file type; expected CSV ({', '.join(CSV_SUFFIXES)}) "
                           f"or Parquet ({', '.join(PARQUET_SUFFIXES)})")


@dataclass
class _Check:
    where: str  # SQL condition over `typed` marking a bad row
    value: str | None  # SQL of the value quoted in the message (the raw text), or None
    message: str  # "... has {n} <what>"; the first bad rows are appended


def _col(canonical: str, source: str, file: Path) -> str:
    return f"column {source!r} (mapped from canonical {canonical!r}) in {file}"


def _examples(at: str, examples: list[dict] | None, with_values: bool = True) -> str:
    examples = examples or []
    rows = ", ".join(str(e["row"]) for e in examples)
    if not with_values:
        return f"first at {at} {rows}"
    values = ", ".join(repr(e["value"] if e["value"] is not None else "") for e in examples)
    return f"first at {at} {rows}: {values}"


# --------------------------------------------------------------------------- import


def import_daily(file: str | Path, mapping: str | Path, paths: Paths) -> ImportReport:
    """Validate and import one file of per-player daily aggregates. See the module docstring.

    Raises :class:`ImportDailyError` (listing every problem, each naming the file and the
    column) and writes nothing if the mapping or any row is bad. Importing the same file
    with the same mapping again returns the earlier report with ``already_imported=True``.
    """
    file = Path(file).resolve()
    mapping_path = Path(mapping).resolve()
    rates = read_fx_rates()
    spec = load_mapping(mapping_path, rates)
    if not file.is_file():
        raise ImportDailyError(f"{file}: no such file")
    is_csv = _file_kind(file)
    batch_id = batch_id_for(file, spec)
    seen = imported_batches(paths)
    if batch_id in seen:
        known = {f.name for f in fields(ImportReport)}
        prev = {k: v for k, v in seen[batch_id].items() if k in known}
        prev.update(already_imported=True, file=str(file))
        return ImportReport(**prev)

    out_dir = imported_daily_dir(paths)
    final = out_dir / f"import_{batch_id}.parquet"
    tmp = final.with_name(final.name + ".tmp")
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # microseconds: the warehouse keeps the latest batch
    con = duckdb.connect()
    try:
        # Bounded memory: DuckDB spills to the data home past the limit.
        spill = paths.home / "tmp" / "duckdb"
        spill.mkdir(parents=True, exist_ok=True)
        limit = os.environ.get("CRM_IMPORT_MEMORY") or os.environ.get("CRM_LANDING_MEMORY", "2GB")
        con.execute(f"SET memory_limit = {_q(limit)}")
        con.execute(f"SET temp_directory = {_q(str(spill))}")
        con.execute("SET preserve_insertion_order = false")  # row order does not matter; saves memory
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")

        _create_typed_view(con, file, is_csv, spec, rates)
        stats = _validate(con, file, is_csv, spec, rates)
        overlapping = _overlapping_rows(con, out_dir, stats["date_from"], stats["date_to"])

        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            con.execute(f"COPY ({_output_sql(spec, rates, batch_id, now)}) "
                        f"TO {_q(str(tmp))} (FORMAT parquet, COMPRESSION zstd)")
            sums = ", ".join(f"coalesce(sum({c}), 0)::BIGINT" for c in MONEY.values())
            totals = dict(zip(MONEY.values(), con.execute(
                f"SELECT {sums} FROM read_parquet({_q(str(tmp))})").fetchone(), strict=True))
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            if isinstance(e, duckdb.Error):
                raise ImportDailyError(f"{file}: cannot write the batch ({_short(e)})") from e
            raise
    finally:
        con.close()

    os.replace(tmp, final)
    report = ImportReport(
        file=str(file), mapping=str(mapping_path), batch_id=batch_id, rows=stats["rows"],
        players=stats["players"], date_from=str(stats["date_from"]), date_to=str(stats["date_to"]),
        missing_measures=spec.missing_measures, units=spec.units,
        currency=spec.fixed_currency or f"column {spec.currency_column}", output=str(final),
        totals_eur_cents=totals, overlapping_rows=overlapping, imported_at=now.isoformat() + "Z")
    entry = report.to_dict()
    del entry["already_imported"]
    with import_log_path(paths).open("a") as f:  # written last: the batch is complete
        f.write(json.dumps(entry) + "\n")
    return report


def _create_typed_view(con: duckdb.DuckDBPyConnection, file: Path, is_csv: bool, spec: DailyMapping,
                       rates: dict[str, Decimal]) -> None:
    """Check the mapped columns exist; create views ``typed`` over the file and table ``fx``.

    ``typed`` has ``row_no`` (what errors quote), ``raw_<canonical>`` (the text as given),
    the parsed values and ``currency``. It is a view: nothing is copied.
    """
    described = _describe(con, file, is_csv, spec.encoding)
    types = dict(described)
    wanted = list(spec.columns.items())
    if spec.currency_column:
        wanted.append(("currency_column", spec.currency_column))
    missing = []
    for canon, col in wanted:
        if col not in types:
            close = difflib.get_close_matches(col, list(types), n=1, cutoff=0.6)
            what = "currency_column" if canon == "currency_column" else f"mapped from canonical {canon!r}"
            missing.append(f"column {col!r} ({what}) not found in {file}; available: {', '.join(types)}"
                           + (f" (did you mean {close[0]!r}?)" if close else ""))
    if missing:
        raise ImportDailyError(missing)

    # EUR cents per unit of the file's money columns.
    scale = 1 if spec.units == "minor" else 100
    con.execute("CREATE TEMP TABLE fx (currency VARCHAR, factor DECIMAL(18, 8), factor_double DOUBLE)")
    for ccy, rate in rates.items():
        con.execute(f"INSERT INTO fx SELECT {_q(ccy)}, CAST({_q(str(rate * scale))} AS DECIMAL(18, 8)), "
                    f"CAST({_q(str(rate * scale))} AS DOUBLE)")

    cols = {canon: _ident(col) for canon, col in spec.columns.items()}
    select = [f"{_ident(_ROW)} + 1 AS row_no"]  # CSV: line (header = line 1); Parquet: row from 1
    for canon, col in cols.items():
        select.append(f"CAST({col} AS VARCHAR) AS {_ident('raw_' + canon)}")
    select.append(f"{_text(cols['player_id'])} AS player_id")
    select.append(f"{_date(cols['date'], types[spec.columns['date']], spec.date_format)} AS activity_date")
    for canon in MEASURES:
        if canon in cols:
            select.append(f"{_number(cols[canon], types[spec.columns[canon]])} AS {_ident('v_' + canon)}")
    for canon in ATTRIBUTES:
        select.append(f"{_text(cols[canon]) if canon in cols else 'NULL::VARCHAR'} AS {canon}")
    if spec.currency_column:
        ccy = _ident(spec.currency_column)
        select.append(f"CAST({ccy} AS VARCHAR) AS raw_currency")
        select.append(f"upper({_text(ccy)}) AS currency")
    else:
        select.append(f"{_q(spec.fixed_currency)} AS currency")
    con.execute(f"CREATE TEMP VIEW typed AS SELECT {', '.join(select)} "
                f"FROM {_source_sql(file, [n for n, _ in described], is_csv, spec.encoding)}")


def _checks(file: Path, is_csv: bool, spec: DailyMapping, rates: dict[str, Decimal]) -> list[_Check]:
    at = "lines" if is_csv else "rows"
    c = spec.columns
    checks = [_Check("player_id IS NULL", None, f"{_col('player_id', c['player_id'], file)} is empty in {{n}} {at}")]
    fmt = f"format {spec.date_format!r}" if spec.date_format else "YYYY-MM-DD"
    checks.append(_Check("activity_date IS NULL", "raw_date",
                         f"{_col('date', c['date'], file)} has {{n}} bad dates (expected {fmt})"))
    for canon in MEASURES:
        if canon not in c:
            continue
        raw, v = _ident("raw_" + canon), _ident("v_" + canon)
        where = _col(canon, c[canon], file)
        too_big = f" OR abs({v}) > {_MAX_SESSIONS}" if canon == "sessions" else ""
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
        known = ", ".join(_q(x) for x in rates)
        checks.append(_Check(f"currency IS NULL OR currency NOT IN ({known})", "raw_currency",
                             f"column {spec.currency_column!r} (currency_column) in {file} has {{n}} values that "
                             f"are not a currency in {FX_RATES_CSV.name} (known: {', '.join(sorted(rates))})"))
    return checks


def _validate(con: duckdb.DuckDBPyConnection, file: Path, is_csv: bool, spec: DailyMapping,
              rates: dict[str, Decimal]) -> dict:
    """Every row check in one pass, then uniqueness; raise with every problem found."""
    checks = _checks(file, is_csv, spec, rates)
    at = "lines" if is_csv else "rows"
    aggs = ["count(*)", "count(DISTINCT player_id)", "min(activity_date)", "max(activity_date)"]
    aggs += [f"count_if({c.where})" for c in checks]
    try:
        res = con.execute(f"SELECT {', '.join(aggs)} FROM typed").fetchone()
    except duckdb.Error as e:
        raise _read_error(file, e, is_csv) from e
    stats = dict(zip(("rows", "players", "date_from", "date_to"), res[:4], strict=True))
    problems: list[str] = []
    if stats["rows"] == 0:
        problems.append(f"{file} has no data rows")
    failed = [(c, n) for c, n in zip(checks, res[4:], strict=True) if n]
    if failed:  # the first bad rows of each failed check: only read when something is wrong
        ex = ", ".join(f"arg_min({{'row': row_no, 'value': {c.value or 'NULL::VARCHAR'}}}, row_no, {_EXAMPLES}) "
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
            SELECT t.player_id, t.activity_date, min(t.row_no, 3) AS rows_
            FROM typed t JOIN dup_keys d ON t.player_id = d.player_id AND t.activity_date = d.activity_date
            GROUP BY t.player_id, t.activity_date ORDER BY rows_[1] LIMIT 3
        """).fetchall()
        eg = "; ".join(f"{p!r} on {d} at {at} {', '.join(map(str, r))}" for p, d, r in dups)
        problems.append(f"{file} has {n_dups:,} duplicate (player_id, date) pairs (columns "
                        f"{spec.columns['player_id']!r}, {spec.columns['date']!r}); e.g. {eg}")
    if problems:
        raise ImportDailyError(problems)
    return stats


def _overlapping_rows(con: duckdb.DuckDBPyConnection, out_dir: Path, lo: dt.date, hi: dt.date) -> int:
    """(player_id, date) pairs of this file that earlier batches already hold."""
    earlier = sorted(out_dir.glob("import_*.parquet")) if out_dir.exists() else []
    if not earlier:
        return 0
    files = "[" + ", ".join(_q(str(p)) for p in earlier) + "]"
    return con.execute(f"""
        SELECT count(*) FROM typed t SEMI JOIN (
            SELECT player_id, activity_date FROM read_parquet({files})
            WHERE activity_date BETWEEN DATE '{lo}' AND DATE '{hi}'
        ) o ON t.player_id = o.player_id AND t.activity_date = o.activity_date
    """).fetchone()[0]


def _output_sql(spec: DailyMapping, rates: dict[str, Decimal], batch_id: str, now: dt.datetime) -> str:
    """The batch in the contract's columns and types (see OUTPUT_SCHEMA)."""
    money_out = {v: k for k, v in MONEY.items()}
    out = []
    for name, typ in OUTPUT_SCHEMA:
        if name in ("player_id", "activity_date", *ATTRIBUTES):
            expr = f"t.{name}"
        elif name in money_out:
            canon = money_out[name]
            expr = _cents(f"t.{_ident('v_' + canon)}", "fx.factor", "fx.factor_double") \
                if canon in spec.columns else ("NULL" if canon == "ngr" else "0")  # unmapped NGR: derived in dbt
        elif name == "sessions":
            expr = "t.v_sessions" if "sessions" in spec.columns else "NULL"
        elif name == "batch_id":
            expr = _q(batch_id)
        else:  # imported_at
            expr = f"TIMESTAMP '{now}'"
        out.append(f"CAST({expr} AS {typ}) AS {name}")
    return f"SELECT {', '.join(out)} FROM typed t JOIN fx ON fx.currency = t.currency"
