"""The mapping of a daily-aggregates file: its YAML (columns, units, currency, date
format, encoding), validated with a message naming the file and the key, and the FX rates
that turn amounts into EUR cents. See :mod:`crm.ingest.import_daily`."""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import json
import os
import unicodedata
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from crm.config import DBT_PROJECT_DIR
from crm.safe_yaml import YamlInputError, short
from crm.safe_yaml import load as load_yaml

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
MIN_DATE = dt.date(1990, 1, 1)  # the latest allowed date is tomorrow (UTC)
EXAMPLES = 5  # bad rows quoted per problem
MAX_SESSIONS = 2**31 - 1
MAX_TEXT = 256  # characters in a player id, brand or gender
MAX_LINE = 1 << 20  # bytes in one CSV line
MAX_COLUMNS = 1_000
_MAX_NAME = 1_000  # characters in a mapped column name
EOL = {"\r\n": r"\r\n", "\n": r"\n", "\r": r"\r"}
# Never part of an id, brand or gender: control, format (zero-width space, BOM, bidi marks),
# private-use and separator characters (every space but U+0020: DuckDB's trim() drops the
# others silently, so they are checked on the raw text), the double quote and U+FFFD (text
# mis-decoded upstream).
BAD_TEXT = ('[\\p{C}\\p{Zl}\\p{Zp}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{202F}\\x{205F}\\x{3000}'
             '"\\x{FFFD}]')
# strptime directives a date_format may use (DuckDB's; no locale- or week-based ones).
_DATE_DIRECTIVES = ("Y", "y", "-y", "m", "-m", "b", "B", "d", "-d", "j", "-j", "a", "A",
                    "H", "-H", "I", "-I", "p", "M", "-M", "S", "-S", "f", "g", "n", "z", "Z", "%")


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


def excerpt(value: object, limit: int = 60) -> str:
    """``value`` quoted for a message: escapes visible, cut to ``limit`` characters."""
    return repr(short(str(value), limit))


# --------------------------------------------------------------------------- mapping


def _check_date_format(fmt: str) -> str:
    """A strptime format that gives a whole date, with only the directives of :data:`_DATE_DIRECTIVES`."""
    if not fmt.strip():
        raise ValueError("is empty")
    if len(fmt) > 64:
        raise ValueError("is longer than 64 characters")
    if any(unicodedata.category(ch)[0] == "C" for ch in fmt):
        raise ValueError("contains control or invisible characters")
    found: set[str] = set()
    i = fmt.find("%")
    while i >= 0:
        d = fmt[i + 1:i + 3] if fmt[i + 1:i + 2] == "-" else fmt[i + 1:i + 2]
        if not d:
            raise ValueError("ends with a lone '%' (write %% for a percent sign)")
        if d not in _DATE_DIRECTIVES:
            raise ValueError(f"unsupported directive {excerpt('%' + d)}; supported: "
                             + " ".join("%" + x for x in _DATE_DIRECTIVES))
        found.add(d.lstrip("-"))
        i = fmt.find("%", i + 1 + len(d))
    if not ("Y" in found or "y" in found) or not ("j" in found or "d" in found and found & {"m", "b", "B"}):
        raise ValueError("must give the year (%Y or %y), month (%m, %b or %B) and day (%d), "
                         "or the year and the day of the year (%j)")
    return fmt


class DailyMapping(BaseModel):
    """The mapping file: canonical name -> the column name in the operator's file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[str, str]
    units: Literal["major", "minor"] = "major"
    currency: str | None = None
    currency_column: str | None = None
    date_format: str | None = None
    encoding: Literal["utf-8", "utf-16", "latin-1"] = "utf-8"  # CSV only
    delimiter: Literal[",", ";", "\t", "|"] | None = None  # CSV only; None: tab for .tsv, else comma

    @field_validator("columns")
    @classmethod
    def _columns(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = [k for k in v if k not in CANONICAL]
        if unknown:
            parts = []
            for k in unknown[:5]:
                close = difflib.get_close_matches(k[:100], CANONICAL, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                parts.append(f"unknown column mapping {excerpt(k)}{hint}")
            raise ValueError("; ".join(parts) + f"; expected one of: {', '.join(CANONICAL)}")
        missing = [k for k in KEYS if k not in v]
        if missing:
            raise ValueError(f"'player_id' and 'date' must be mapped; missing: {', '.join(missing)}")
        if not any(k in v for k in MEASURES):
            raise ValueError(f"map at least one measure; expected some of: {', '.join(MEASURES)}")
        blank = [k for k, col in v.items() if not col.strip()]
        if blank:
            raise ValueError(f"empty column name for {', '.join(map(repr, blank))}")
        for k, col in v.items():
            if "\x00" in col:
                raise ValueError(f"the column name for {k!r} contains a NUL character")
            if len(col) > _MAX_NAME:
                raise ValueError(f"the column name for {k!r} is longer than {_MAX_NAME:,} characters")
        by_source: dict[str, list[str]] = {}
        for k, col in v.items():
            by_source.setdefault(col, []).append(k)
        shared = {col: ks for col, ks in by_source.items() if len(ks) > 1}
        if shared:
            raise ValueError("; ".join(f"column {excerpt(col)} is mapped from more than one canonical name "
                                       f"({', '.join(ks)})" for col, ks in shared.items()))
        return v

    @field_validator("currency")
    @classmethod
    def _upper(cls, v: str | None) -> str | None:
        return v.strip().upper() if v is not None else None

    @field_validator("currency_column")
    @classmethod
    def _column_name(cls, v: str | None) -> str | None:
        if v is not None and ("\x00" in v or len(v) > _MAX_NAME):
            raise ValueError(f"contains a NUL character or is longer than {_MAX_NAME:,} characters")
        return v

    @field_validator("date_format")
    @classmethod
    def _date_format(cls, v: str | None) -> str | None:
        return None if v is None else _check_date_format(v)

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

    def csv_delimiter(self, file: Path) -> str:
        """The CSV delimiter: the mapping's, else tab for .tsv files and comma for the rest."""
        return self.delimiter or ("\t" if file.name.lower().endswith((".tsv", ".tsv.gz")) else ",")

    def canonical_json(self) -> str:
        data = self.model_dump(mode="json")
        if data["delimiter"] is None:  # mappings written before `delimiter` keep their batch ids
            del data["delimiter"]
        return json.dumps(data, sort_keys=True)


def _format_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid mapping"]
    for e in err.errors()[:10]:
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden" and len(e["loc"]) == 1:
            close = difflib.get_close_matches(loc[:100], list(DailyMapping.model_fields), n=1)
            msg = "unknown key" + (f"; did you mean {close[0]!r}?" if close else "") + \
                f" expected one of: {', '.join(DailyMapping.model_fields)}"
        lines.append(f"  - field {excerpt(loc, 100)}: {short(msg, 500)}")
    if len(err.errors()) > 10:
        lines.append(f"  - ... and {len(err.errors()) - 10} more")
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


def absolute(path: str | Path) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop, a name too long: reported as missing later
        return Path(os.path.abspath(path))


def is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a name too long
        return False


def load_mapping(path: str | Path, fx_rates: dict[str, Decimal] | None = None) -> DailyMapping:
    """Read and validate a mapping file; errors name the file and the field."""
    path = Path(path)
    if not is_file(path):
        raise ImportDailyError(f"{path}: no such mapping file")
    try:
        data = load_yaml(path)
    except YamlInputError as e:
        raise ImportDailyError(str(e)) from None
    if not isinstance(data, dict):
        raise ImportDailyError(f"{path}: expected a mapping with 'columns:' at the top level "
                               "(see docs/examples/daily_mapping.yaml)")
    try:
        mapping = DailyMapping.model_validate(data)
    except ValidationError as e:
        raise ImportDailyError(_format_error(path, e)) from None
    rates = read_fx_rates() if fx_rates is None else fx_rates
    if mapping.fixed_currency and mapping.fixed_currency not in rates:
        raise ImportDailyError(f"{path}: field 'currency': unknown currency {excerpt(mapping.fixed_currency)}: not in "
                               f"{FX_RATES_CSV.name}; known: {', '.join(sorted(rates))}")
    return mapping


