"""Reading a daily-aggregates file safely: CSV (encoding, delimiter, line lengths, the
header) or Parquet, as DuckDB relations with columns by position, never by their untrusted
names. See :mod:`crm.ingest.import_daily`."""

from __future__ import annotations

import codecs
import csv
import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import duckdb

from crm.ingest.daily_mapping import (
    CSV_SUFFIXES,
    EOL,
    MAX_COLUMNS,
    MAX_LINE,
    PARQUET_SUFFIXES,
    DailyMapping,
    ImportDailyError,
    excerpt,
)
from crm.safe_yaml import short
from crm.sql import ident, literal


@dataclass
class Source:
    """The file as DuckDB reads it: columns by position, never by their (untrusted) names."""

    file: Path
    is_csv: bool
    names: list[str]  # column names as the file spells them
    types: list[str]  # DuckDB types (CSV: all VARCHAR)
    relation: str  # SQL: columns "c0", "c1", ... and row_no (CSV: line number; Parquet: row from 1)
    lines: int = 0  # CSV: number of the last line with content

    @property
    def at(self) -> str:
        return "lines" if self.is_csv else "rows"

    def column(self, name: str) -> str:
        return ident(f"c{self.names.index(name)}")


def _lines_in(text: str) -> int:
    """Line terminators in ``text`` (\\r\\n, \\n or \\r)."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _scan_csv(file: Path, encoding: str, delimiter: str) -> tuple[list[str], int]:
    """Check the text of a CSV file before DuckDB parses it; return the header's column names
    and the number of the last line with content.

    Rejects, naming the line, what would make DuckDB's line numbers wrong or its parse unsafe:
    text not in ``encoding``, NUL characters, a blank line before the last data line, line
    endings that differ from the header's, and an over-long or malformed header. Streams: one
    pass over the (decompressed) text in 1 MiB blocks.
    """
    codec = {"utf-8": "utf-8-sig", "utf-16": "utf-16", "latin-1": "latin-1"}[encoding]
    decoder = codecs.getincrementaldecoder(codec)()
    line = 0  # line terminators before the current block
    eol: str | None = None  # the header's line ending
    head: str | None = ""  # the header's text so far; None once complete
    names: list[str] = []
    blank = last = 0  # the first blank line; the last line with content
    ended, carry = True, ""  # the text so far ends a line; a held-back "\r" (maybe half of "\r\n")
    opener = gzip.open if file.name.lower().endswith(".gz") else open
    try:
        with opener(file, "rb") as f:
            while True:
                raw = f.read(1 << 20)
                try:
                    text = carry + decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as e:
                    n = line + _lines_in(carry + e.object[:e.start].decode(codec, "replace")) + 1
                    raise ImportDailyError(
                        f"{file}: line {n}: not valid {encoding} text (byte 0x{e.object[e.start]:02x}); if the "
                        "file is not UTF-8, set 'encoding: latin-1' (or utf-16) in the mapping") from None
                carry = ""
                if raw and text.endswith("\r"):
                    text, carry = text[:-1], "\r"
                if "\x00" in text:
                    n = line + _lines_in(text[:text.index("\x00")]) + 1
                    raise ImportDailyError(f"{file}: line {n} holds a NUL character: is it a text file?")
                if eol is None and (m := re.search(r"\r\n|\r|\n", text)):
                    eol = m.group()
                crlf = text.count("\r\n")
                kinds = {"\r\n": crlf, "\n": text.count("\n") - crlf, "\r": text.count("\r") - crlf}
                if eol is not None and sum(kinds.values()) != kinds[eol]:
                    for i, m in enumerate(re.finditer(r"\r\n|\r|\n", text)):
                        if m.group() != eol:
                            raise ImportDailyError(
                                f"{file}: line {line + i + 1} ends with {EOL[m.group()]} but line 1 with "
                                f"{EOL[eol]} (mixed line endings, or a line break inside a quoted value)")
                s = text.replace(eol, "\n") if eol and eol != "\n" else text
                if not blank:
                    if ended and s.startswith("\n"):
                        blank = line + 1
                    elif (i := s.find("\n\n")) >= 0:
                        blank = line + s.count("\n", 0, i + 1) + 1
                if content := s.rstrip("\n"):
                    last = line + content.count("\n") + 1
                if blank and last > blank:
                    raise ImportDailyError(f"{file}: line {blank} is blank; remove blank lines (only the end of "
                                           "the file may have them)")
                if head is not None:
                    head += s.split("\n", 1)[0]
                    if len(head) > MAX_LINE:
                        raise ImportDailyError(f"{file}: line 1 (the header) is longer than {MAX_LINE:,} characters")
                    if "\n" in s or not raw:
                        names, head = _parse_header(file, head, delimiter), None
                line += s.count("\n")
                ended = s.endswith("\n") if s else ended
                if not raw:
                    break
    except (OSError, EOFError, zlib.error) as e:
        raise ImportDailyError(f"{file}: cannot be read ({short(e, 200)})") from None
    return names, last


def _parse_header(file: Path, text: str, delimiter: str) -> list[str]:
    """The column names on line 1, split like DuckDB's strict CSV parser does."""
    if not text.strip():
        raise ImportDailyError(f"{file}: line 1 (the header) is blank")
    try:
        names = next(csv.reader([text], delimiter=delimiter, quotechar='"', doublequote=True, strict=True))
    except csv.Error as e:
        raise ImportDailyError(f"{file}: line 1 (the header) is not valid CSV ({e}; a quoted column name must "
                               "close on its line)") from None
    if len(names) > MAX_COLUMNS:
        raise ImportDailyError(f"{file}: the header (line 1) has {len(names):,} columns; at most "
                               f"{MAX_COLUMNS:,} are supported")
    return names


def open_csv(file: Path, spec: DailyMapping) -> Source:
    """Strict RFC 4180 with the mapping's delimiter, nothing guessed; the header is read as line 1.

    Even in strict mode DuckDB drops surplus *empty* fields at the end of a line, which would
    shift a line with a stray delimiter. So one column more than the header is declared, padded
    with NULL, and the null string is NUL (never in the file, see :func:`_scan_csv`): an empty
    field reads as '', a missing one as NULL, and ``fields_ok`` says whether the line has
    exactly the header's number of fields.
    """
    delimiter = spec.csv_delimiter(file)
    names, lines = _scan_csv(file, spec.encoding, delimiter)
    n = len(names)
    cols = ", ".join(f"{literal(f'c{i}')}: 'VARCHAR'" for i in range(n + 1))
    aliases = ", ".join(ident(f"c{i}") for i in range(n + 1))
    reader = (f"read_csv({literal(str(file))}, header = false, auto_detect = false, columns = {{{cols}}}, "
              f"delim = {literal(delimiter)}, quote = '\"', escape = '\"', strict_mode = true, "
              f"null_padding = true, nullstr = chr(0), max_line_size = {MAX_LINE}, "
              f"encoding = {literal(spec.encoding)})")
    relation = (f"(SELECT *, {ident(f'c{n - 1}')} IS NOT NULL AND {ident(f'c{n}')} IS NULL AS fields_ok "
                f"FROM {reader} WITH ORDINALITY AS src({aliases}, row_no) WHERE row_no > 1)")
    return Source(file, True, names, ["VARCHAR"] * n, relation, lines)


def _parquet_names(schema: list[tuple[str, int | None]]) -> list[str]:
    """The top-level column names of a Parquet schema (``parquet_schema`` rows: name, num_children)."""
    names: list[str] = []
    open_: list[int] = []  # children still to come, per level; the first row is the root
    for i, (name, children) in enumerate(schema):
        if i:
            if len(open_) == 1:
                names.append(name)
            open_[-1] -= 1
        if children:
            open_.append(children)
        while len(open_) > 1 and open_[-1] == 0:
            open_.pop()
    return names


def open_parquet(con: duckdb.DuckDBPyConnection, file: Path) -> Source:
    path = literal(str(file))
    try:
        types = [r[1] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({path})").fetchall()]
        # DuckDB renames duplicate columns (x, x_1); match the mapping against the names as written.
        names = _parquet_names(con.execute(f"SELECT name, num_children FROM parquet_schema({path})").fetchall())
    except duckdb.Error as e:
        raise read_error(file, e, False) from None
    if len(names) != len(types):
        raise ImportDailyError(f"{file}: not a readable Parquet file (its schema lists {len(names)} columns, "
                               f"its data {len(types)})")
    if len(names) > MAX_COLUMNS:
        raise ImportDailyError(f"{file} has {len(names):,} columns; at most {MAX_COLUMNS:,} are supported")
    aliases = ", ".join(ident(f"c{i}") for i in range(len(names)))
    relation = (f"(SELECT * REPLACE (row_no + 1 AS row_no), true AS fields_ok FROM read_parquet({path}, "
                f"file_row_number = true) AS src({aliases}, row_no))")
    return Source(file, False, names, types, relation)


# --------------------------------------------------------------------------- SQL helpers


def duckdb_error_head(e: Exception) -> str:
    """The informative head of a DuckDB error (not its list of reader settings)."""
    lines = []
    for line in str(e).splitlines():
        if line.startswith(("Possible Solution", "Possible fixes", "  file =", "LINE ")):
            break
        if line.strip():
            lines.append(short(line.strip(), 200))
    return " / ".join(lines[:3])


def read_error(file: Path, e: Exception, is_csv: bool) -> ImportDailyError:
    """A DuckDB read error as a message naming the file and, for CSV, the line and what is wrong."""
    text = str(e)
    if not is_csv:
        return ImportDailyError(f"{file}: not a readable Parquet file ({duckdb_error_head(e)})")
    at = re.search(r"CSV Error on Line: (\d+)", text)
    where = f"{file}: line {at.group(1)}" if at else f"{file}"
    original = re.search(r"Original Line: ?([^\n]*)", text)
    quoted = f": {excerpt(original.group(1), 80)}" if original else ""
    if "unterminated quote" in text:
        reason = 'a double quote (") opens a value that is not closed, or text follows a closing quote'
    elif m := re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text):  # one more is declared
        reason = f"{m.group(2)} fields, but the header has {int(m.group(1)) - 1} (check the delimiter and quoting)"
    elif "quoted new lines" in text:
        reason = ("a quoted value runs over more than one line (a line break inside quotes, or an unbalanced "
                  "double quote); values must fit on their line")
    elif m := re.search(r"Maximum line size of (\d+) bytes exceeded", text):
        reason = f"the line is longer than {int(m.group(1)):,} bytes"
    elif "unicode" in text.lower():
        reason = "text that is not in the mapping's encoding; set 'encoding: latin-1' (or utf-16) in the mapping"
    else:
        return ImportDailyError(f"{where}: not a readable CSV file ({duckdb_error_head(e)})")
    return ImportDailyError(f"{where}: {reason}{quoted}")


def file_kind(file: Path) -> bool:
    """True for CSV, False for Parquet."""
    name = file.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return True
    if name.endswith(PARQUET_SUFFIXES):
        return False
    raise ImportDailyError(f"{file}: unsupported file type; expected CSV ({', '.join(CSV_SUFFIXES)}) "
                           f"or Parquet ({', '.join(PARQUET_SUFFIXES)})")


