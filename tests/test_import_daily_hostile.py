"""`crm import-daily` on hostile input (issues 11.12 and 11.7).

Every bad file or mapping gets an ImportDailyError (the CLI: a one-line error, never a traceback)
that names the file, the column and the line, and leaves what is already stored untouched. CSV is
parsed strictly: an unbalanced quote or a wrong number of fields rejects the file, naming the line;
nothing is imported with a mangled id. Dates must lie in 1990-01-01 .. tomorrow (UTC).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import tempfile
import unicodedata
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_import_daily import GOOD_ROWS, HEADER, _csv, _mapping, _read, _state

import crm.ingest.import_daily as import_daily_module
from crm.cli import main
from crm.config import Paths
from crm.ingest.import_daily import ImportDailyError, batch_id_for, import_daily, import_log_path, load_mapping

COLS = {"player_id": "id", "date": "d", "stake": "s"}
TOMORROW = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
HYPOTHESIS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture
def stored(tmp_path) -> Paths:
    """A data home holding one good batch: hostile imports must leave it exactly as it is."""
    paths = Paths(tmp_path / "home")
    import_daily(_csv(tmp_path / "ok.csv", GOOD_ROWS), _mapping(tmp_path / "ok.yaml"), paths)
    return paths


def _fails(file: Path, mapping: Path, paths: Paths, *expected: str) -> str:
    """Import must fail with every ``expected`` text in the message and change nothing."""
    before = _state(paths)
    with pytest.raises(ImportDailyError) as e:
        import_daily(file, mapping, paths)
    msg = str(e.value)
    for text in expected:
        assert text in msg, (text, msg)
    assert _state(paths) == before
    return msg


def _raw_csv(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


# --------------------------------------------------------------------------- the mapping file


@pytest.mark.parametrize("fmt, expected", [
    ("%Q", "unsupported directive '%Q'"),
    ("%Y-%m-%Q", "unsupported directive '%Q'"),
    ("%Y-%m-%d %c", "unsupported directive '%c'"),
    ("%s", "unsupported directive '%s'"),
    ("%Y-%m-%d%", "a lone '%'"),
    ("%Y-%m", "must give the year"),
    ("%H:%M", "must give the year"),
    ("", "is empty"),
    ("%Y-%m-%d" + "x" * 100, "longer than"),
    ("%Y-%m-%d\u200b", "control or invisible"),
    ("%Y-%m-%d\x00", "control or invisible"),
])
def test_a_bad_date_format_is_a_mapping_error(tmp_path, stored, fmt, expected):
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump({"columns": COLS, "date_format": fmt}))
    _fails(_csv(tmp_path / "x.csv", ["a,2025-06-01,1"], "id,d,s"), m, stored, "m.yaml", "field 'date_format'",
           expected)


@pytest.mark.parametrize("fmt, text, day", [
    ("%d/%m/%Y", "31/12/2024", dt.date(2024, 12, 31)),
    ("%-d.%-m.%y", "1.6.25", dt.date(2025, 6, 1)),
    ("%Y%j", "2025152", dt.date(2025, 6, 1)),
    ("%b %d %Y", "Jun 01 2025", dt.date(2025, 6, 1)),
    ("%Y-%m-%d %H:%M:%S", "2025-06-01 23:59:59", dt.date(2025, 6, 1)),
    ("%Y-%m-%d'; DROP TABLE fx; --", "2025-06-01'; DROP TABLE fx; --", dt.date(2025, 6, 1)),
])
def test_good_date_formats_still_import(tmp_path, fmt, text, day):
    src = tmp_path / "x.csv"
    src.write_text(f'id,d,s\na,"{text}",1\n')
    r = import_daily(src, _mapping(tmp_path / "m.yaml", COLS, date_format=fmt), Paths(tmp_path / "home"))
    assert _read(r.output)[0]["activity_date"] == day


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(  # 10^8 values once expanded
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True))


@pytest.mark.parametrize("content, expected", [
    (b"\xff\xfe\x00\x01\x89PNG\r\n\x1a\n", "not UTF-8"),
    (b"columns: {player_id: id, date: d, stake: s}\x00", "NUL"),
    (BOMB.encode(), "alias"),
    (b"- columns\n- units\n", "expected a mapping with 'columns:'"),
    (b"just text", "expected a mapping with 'columns:'"),
    (b"", "expected a mapping with 'columns:'"),
    (b"columns: {player_id: id, date: d, stake: s}\nunit: major\n", "unknown key; did you mean 'units'?"),
    (b"columns: {player_id: id, date: d, stake: s}\n? [1, 2]\n: x\n", "not valid YAML"),
    (b"columns: {player_id: id, date: d, stake: 5}\n", "field 'columns.stake'"),
    (b'columns: {player_id: "i\\0d", date: d, stake: s}\n', "NUL"),
    (b"columns: !!python/object:os.system {player_id: id}\n", "not valid YAML"),
    (b"columns: {player_id: id, date: d, stake: s}\n" + b"#" * (2 << 20), "larger than"),
    (b"[" * 500 + b"]" * 500, "nested"),
    (b"columns: {player_id: id, date: d, stake: s}\ndelimiter: ':'\n", "field 'delimiter'"),
])
def test_hostile_mapping_files_give_a_clear_error(tmp_path, stored, content, expected):
    m = tmp_path / "m.yaml"
    m.write_bytes(content)
    msg = _fails(_csv(tmp_path / "x.csv", ["a,2025-06-01,1"], "id,d,s"), m, stored, "m.yaml", expected)
    assert len(msg) < 4000


def test_mapping_errors_quote_hostile_names_briefly(tmp_path, stored):
    long_key = "k" * 100_000
    m = tmp_path / "m.yaml"
    m.write_text(yaml.safe_dump({"columns": {**COLS, long_key + "\n; DROP": "x"}}))
    msg = _fails(_csv(tmp_path / "x.csv", ["a,2025-06-01,1"], "id,d,s"), m, stored, "unknown column mapping")
    assert len(msg) < 4000 and "\n; DROP" not in msg


@pytest.mark.parametrize("args, mapping, data", [
    ([], {"columns": COLS, "date_format": "%Q"}, "id,d,s\na,2025-06-01,1\n"),
    ([], b"\x00\xff\xfe binary", "id,d,s\na,2025-06-01,1\n"),
    ([], {"columns": COLS}, 'id,d,s\n"C-1,2025-06-01,1\nC-2,2025-06-01,1\n'),
    ([], {"columns": COLS}, "id,d,s\nC-1,9999-12-31,1\n"),
])
def test_cli_shows_an_error_never_a_traceback(tmp_path, monkeypatch, args, mapping, data):
    monkeypatch.setenv("CRM_HOME", str(tmp_path / "home"))
    m = tmp_path / "m.yaml"
    m.write_bytes(mapping if isinstance(mapping, bytes) else json.dumps(mapping).encode())
    src = _raw_csv(tmp_path / "x.csv", data)
    r = CliRunner().invoke(main, ["import-daily", "--file", str(src), "--mapping", str(m), *args])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
    assert r.output.startswith("Error: ") and "Traceback" not in r.output
    assert "x.csv" in r.output or "m.yaml" in r.output


# --------------------------------------------------------------------------- CSV structure


@pytest.mark.parametrize("rows, expected", [
    (['"C-1,2025-06-01,1', "C-2,2025-06-01,2"], ["line 3", 'double quote (")']),
    (['"C-1,2025-06-01,1'], ["line 3", 'double quote (")']),
    (['"C-1"x,2025-06-01,1'], ["line 3", 'double quote (")']),
    (['"C-1,2025-06-01,1', 'C-2",2025-06-01,2'], ["line 3", "more than one line"]),
    (['C"-1,2025-06-01,1'], ["column 'id'", "first at lines 3", "double quotes"]),
    (["C-1,2025-06-01,1,5"], ["1 lines have a different number of fields than the header (3;",
                              "first at lines 3 (more than 3 fields)"]),
    (["C-1,2025-06-01"], ["first at lines 3 (2 fields)"]),
    # DuckDB's strict mode drops surplus empty fields at the end of a line: a stray delimiter
    # earlier in such a line would shift every later value.
    (["C-1,2025-06-01,1,"], ["first at lines 3 (more than 3 fields)"]),
    (["C-1,,2025-06-01,"], ["first at lines 3 (more than 3 fields)"]),
    (["C-1,2025-06-01,1,,"], ["line 3: 5 fields, but the header has 3"]),
    (['"C-1",2025-06-01,1,""'], ["first at lines 3 (more than 3 fields)"]),
    (["C-1,2025-06-01,1,x,y"], ["line 3: 5 fields, but the header has 3"]),
])
def test_broken_csv_rows_reject_the_file_naming_the_line(tmp_path, stored, rows, expected):
    src = _csv(tmp_path / "x.csv", ["C-0,2025-06-01,1", *rows], "id,d,s")
    _fails(src, _mapping(tmp_path / "m.yaml", COLS), stored, "x.csv", *expected)


@pytest.mark.parametrize("text, expected", [
    ("id,d,s\nC-1,2025-06-01,1\n\nC-2,2025-06-01,1\n", ["line 3 is blank"]),
    ("\nid,d,s\nC-1,2025-06-01,1\n", ["line 1 is blank"]),
    ("id,d,s\r\nC-1,2025-06-01,1\nC-2,2025-06-01,1\r\n", ["line 2 ends with \\n", "line 1 with \\r\\n"]),
    ("id,d,s\nC-1,2025-06-01,1\rC-2,2025-06-01,1\n", ["line 2 ends with \\r", "line 1 with \\n"]),
    ("id,d,s\nC-1,2025-06-01,1\r\nC-2,2025-06-01,1\n", ["line 2 ends with \\r\\n", "line 1 with \\n"]),
    ("id,d,s\nC-1,2025-06-01,1\nC\x00-2,2025-06-01,1\n", ["line 3", "NUL"]),
    ("i\x00d,d,s\nC-1,2025-06-01,1\n", ["line 1", "NUL"]),
    ('"i\nd",d,s\nC-1,2025-06-01,1\n', ["line 1", "header"]),
    ("id,d,s\nC-1,2025-06-01," + "9" * (2 << 20) + "\n", ["line 2", "longer than"]),
    ("id,d,s\n" + "C-1,2025-06-01,1\n" * 3 + "C-4,2025-06-01,\xff\n", []),
])
def test_blank_lines_mixed_line_endings_nul_and_long_lines(tmp_path, stored, text, expected):
    src = tmp_path / "x.csv"
    src.write_bytes(text.encode("utf-8", "surrogateescape") if "\xff" not in text else text.encode("latin-1"))
    if not expected:  # latin-1 bytes in a UTF-8 file: the line is named
        expected = ["line 5", "not valid utf-8", "encoding: latin-1"]
    _fails(src, _mapping(tmp_path / "m.yaml", COLS), stored, "x.csv", *expected)


@pytest.mark.parametrize("text", [
    "id,d,s\r\nC-1,2025-06-01,1\r\nC-2,2025-06-01,2\r\n",
    "id,d,s\rC-1,2025-06-01,1\rC-2,2025-06-01,2\r",
    "id,d,s\nC-1,2025-06-01,1\nC-2,2025-06-01,2",
    "id,d,s\nC-1,2025-06-01,1\nC-2,2025-06-01,2\n\n\n",
    '\ufeffid,d,s\nC-1,2025-06-01,1\n"C-2",2025-06-01,"2"\n',
])
def test_line_endings_trailing_blank_lines_and_bom_are_fine(tmp_path, text):
    src = tmp_path / "x.csv"
    src.write_bytes(text.encode())
    r = import_daily(src, _mapping(tmp_path / "m.yaml", COLS), Paths(tmp_path / "home"))
    assert [(x["player_id"], x["stake_eur"]) for x in _read(r.output)] == [("C-1", 100), ("C-2", 200)]


def test_line_numbers_stay_exact_after_quoted_values(tmp_path, stored):
    rows = ['"C,1",2025-06-01,1', '"C-""2""",2025-06-01,1', "C-3,2025-06-01,1", "C-4,2025-06-01,x"]
    _fails(_csv(tmp_path / "x.csv", rows, "id,d,s"), _mapping(tmp_path / "m.yaml", COLS), stored,
           "first at lines 3: 'C-\"2\"'", "first at lines 5: 'x'")


def test_delimiter_is_fixed_not_guessed(tmp_path):
    paths = Paths(tmp_path / "home")
    src = _csv(tmp_path / "x.csv", ["C-1;2025-06-01;1"], "id;d;s")
    _fails(src, _mapping(tmp_path / "m.yaml", COLS), paths, "column 'id'", "not found", "delimiter: ';'")
    r = import_daily(src, _mapping(tmp_path / "m.yaml", COLS, delimiter=";"), paths)
    assert _read(r.output)[0]["player_id"] == "C-1"
    tsv = tmp_path / "x.tsv"
    tsv.write_text("id\td\ts\nC-1\t2025-06-01\t1\n")
    assert _read(import_daily(tsv, _mapping(tmp_path / "m.yaml", COLS), paths).output)[0]["stake_eur"] == 100
    # Rows with a different number of fields are not re-guessed into another dialect:
    _fails(_csv(tmp_path / "y.csv", ["C-1,2025-06-01,1,5", "C-2,2025-06-01"], "id,d,s"),
           _mapping(tmp_path / "m2.yaml", COLS), paths, "first at lines 2 (more than 3 fields), 3 (2 fields)")


def test_too_many_columns(tmp_path, stored):
    header = ",".join(["id", "d", "s", *(f"x{i}" for i in range(2000))])
    _fails(_csv(tmp_path / "x.csv", [], header), _mapping(tmp_path / "m.yaml", COLS), stored, "2,003 columns")


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("pid", ["\u200bC-9", "C-9\ufeff", "C-9\u00a0", "\tC-9", "C\x01-9", "C-9\u2028", "C\ufffd9",
                                 "C" * 257])
def test_ids_with_invisible_or_control_characters_are_bad_values(tmp_path, stored, pid):
    src = tmp_path / "x.csv"
    with src.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([["id", "d", "s"], ["C-1", "2025-06-01", "1"],
                                                      [pid, "2025-06-01", "1"]])
    _fails(src, _mapping(tmp_path / "m.yaml", COLS), stored, "column 'id' (mapped from canonical 'player_id')",
           "x.csv", "first at lines 3: " + repr(pid if len(pid) < 60 else pid[:60])[:-1])


def test_plain_spaces_around_ids_are_trimmed(tmp_path):
    r = import_daily(_csv(tmp_path / "x.csv", ["  C-1 ,2025-06-01,1"], "id,d,s"), _mapping(tmp_path / "m.yaml", COLS),
                     Paths(tmp_path / "home"))
    assert _read(r.output)[0]["player_id"] == "C-1"


@pytest.mark.parametrize("value", ["9999-12-31", "infinity", "-infinity", "epoch", "today", "now", "allballs",
                                   "1989-12-31", "0001-01-01", "2025-06-01 (BC)", "99999-01-01",
                                   str(TOMORROW + dt.timedelta(days=1))])
def test_dates_out_of_range_and_special_values_are_rejected(tmp_path, stored, value):
    src = _csv(tmp_path / "x.csv", ["C-1,2025-06-01,1", f"C-2,{value},1"], "id,d,s")
    msg = _fails(src, _mapping(tmp_path / "m.yaml", COLS), stored, "column 'd' (mapped from canonical 'date')",
                 "x.csv", f"first at lines 3: '{value}'")
    assert "bad dates" in msg or f"outside 1990-01-01 .. {TOMORROW}" in msg


def test_date_bounds_are_inclusive(tmp_path):
    src = _csv(tmp_path / "x.csv", ["C-1,1990-01-01,1", f"C-2,{TOMORROW},1"], "id,d,s")
    r = import_daily(src, _mapping(tmp_path / "m.yaml", COLS), Paths(tmp_path / "home"))
    assert (r.date_from, r.date_to) == ("1990-01-01", str(TOMORROW))


def test_parquet_infinite_and_extreme_dates_are_rejected(tmp_path, stored):
    src = tmp_path / "x.parquet"
    with duckdb.connect() as con:
        con.execute(f"""COPY (SELECT * FROM (VALUES ('a', DATE '2025-06-01', 1.0), ('b', 'infinity'::DATE, 1.0),
                        ('c', DATE '9999-12-31', 1.0), ('d', '-infinity'::DATE, 1.0)) t(id, d, s))
                        TO '{src}' (FORMAT parquet)""")
    msg = _fails(src, _mapping(tmp_path / "m.yaml", COLS), stored, "x.parquet", "2 bad dates",
                 "first at rows 2, 4: 'infinity', '-infinity'", "1 dates outside", "first at rows 3: '9999-12-31'")
    assert "Traceback" not in msg


def test_country_is_normalized_like_landing(tmp_path, stored):
    cols = {**COLS, "country": "c"}
    r = import_daily(_csv(tmp_path / "x.csv", ["a,2025-06-01,1, gb", "b,2025-06-01,1,se", "c,2025-06-01,1,Uk ",
                                               "d,2025-06-01,1,"], "id,d,s,c"),
                     _mapping(tmp_path / "m.yaml", cols), stored)
    assert [x["country"] for x in _read(r.output)] == ["UK", "SE", "UK", None]
    _fails(_csv(tmp_path / "y.csv", ["a,2025-06-01,1,GBR", "b,2025-06-01,1,X1", "c,2025-06-01,1,DE"], "id,d,s,c"),
           _mapping(tmp_path / "m.yaml", cols), stored, "column 'c' (mapped from canonical 'country')",
           "2 values that are not a two-letter country code", "first at lines 2, 3: 'GBR', 'X1'")


def test_parquet_column_names_never_reach_sql(tmp_path):
    names = ['we"ird', "semi;colon'", "new\nline", "__crm_row_no"]
    src = tmp_path / "x.parquet"
    pq.write_table(pa.table({names[0]: ["p1"], names[1]: ["2025-06-01"], names[2]: [2.5], names[3]: [7]}), src)
    cols = {"player_id": names[0], "date": names[1], "stake": names[2], "sessions": names[3]}
    r = import_daily(src, _mapping(tmp_path / "m.yaml", cols), Paths(tmp_path / "home"))
    (row,) = _read(r.output)
    assert (row["player_id"], row["stake_eur"], row["sessions"]) == ("p1", 250, 7)


def test_parquet_duplicate_and_nested_columns(tmp_path, stored):
    dup = tmp_path / "dup.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array(["a"]), pa.array(["2025-06-01"]), pa.array([1.0]), pa.array([2.0])],
                                        names=["id", "d", "s", "s"]), dup)
    _fails(dup, _mapping(tmp_path / "m.yaml", COLS), stored, "column 's'", "2 times", "dup.parquet")
    nested = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"id": [{"x": 1}], "d": ["2025-06-01"], "s": [[1.0]]}), nested)
    _fails(nested, _mapping(tmp_path / "m.yaml", COLS), stored, "nested.parquet", "column 'id'", "STRUCT",
           "column 's'", "DOUBLE[]")


def test_unwritable_home_and_corrupt_log_change_nothing(tmp_path, stored):
    src, m = _csv(tmp_path / "x.csv", ["C-7,2025-06-01,1"], "id,d,s"), _mapping(tmp_path / "m.yaml", COLS)
    log = import_log_path(stored)
    good = log.read_bytes()
    log.write_bytes(good + b'{"batch_id": "torn\n')
    _fails(src, m, stored, "import_log.jsonl", "line 2")
    log.write_bytes(good)
    other = Paths(tmp_path / "home2")
    import_daily_module.imported_daily_dir(other).parent.mkdir(parents=True)
    import_daily_module.imported_daily_dir(other).write_text("not a folder")
    _fails(src, m, other, "cannot write")


def test_batch_ids_of_existing_mappings_are_unchanged(tmp_path):
    """A mapping written before `delimiter` existed keeps its batch id: its re-import stays a no-op."""
    src = tmp_path / "x.csv"
    src.write_text("id,d,s\na,2025-06-01,1\n")
    m = tmp_path / "m.yaml"
    m.write_text('columns: {player_id: id, date: d, stake: s}\ndate_format: "%Y-%m-%d"\n')
    assert batch_id_for(src, load_mapping(m)) == "d4a453e1a0d53de9"
    m.write_text("columns: {player_id: id, date: d, stake: s}\n")
    assert batch_id_for(src, load_mapping(m)) == "f6332d3c8e95c6f5"


# --------------------------------------------------------------------------- properties


class _Recording:
    """A DuckDB connection that keeps the text of every statement it runs."""

    def __init__(self, con: duckdb.DuckDBPyConnection, log: list[str]):
        self._con, self._log = con, log

    def execute(self, sql: str, *args: object) -> duckdb.DuckDBPyConnection:
        self._log.append(sql)
        return self._con.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._con, name)


class _RecordingDuckDB:
    """The duckdb module as import_daily sees it, with connections that record their statements."""

    def __init__(self, log: list[str]):
        self._log = log

    def connect(self, *args: object, **kwargs: object) -> _Recording:
        return _Recording(duckdb.connect(*args, **kwargs), self._log)

    def __getattr__(self, name: str) -> object:
        return getattr(duckdb, name)


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    return path


def _plain(s: str) -> bool:
    """Text a CSV cell can hold on one line and a YAML mapping can name (YAML folds its own line
    breaks, e.g. U+0085, U+2028, into spaces)."""
    return "\x00" not in s and "\r" not in s and "\n" not in s and \
        yaml.safe_load(yaml.safe_dump(s, allow_unicode=True)) == s


NAMES = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(HYPOTHESIS, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.tuples(NAMES, NAMES), st.tuples(NAMES, NAMES), st.tuples(NAMES, NAMES))
@example(('a"', "; DROP TABLE fx; --"), ("'", ")"), ("\n", '"'))
@example(("", ""), (" ", " "), ("\\", "\u200b"))
def test_any_column_names_import_or_fail_clearly_and_never_reach_sql(monkeypatch, a, b, c):
    names = [a[0] + "\u24b6" + a[1], b[0] + "\u24b7" + b[1], c[0] + "\u24b8" + c[1]]  # markers: found in SQL?
    statements: list[str] = []
    monkeypatch.setattr(import_daily_module, "duckdb", _RecordingDuckDB(statements))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = _write_csv(tmp / "x.csv", [names, ["p1", "2025-06-01", "1.5"], ["p2", "2025-06-02", "2"]])
        m = tmp / "m.yaml"
        m.write_text(yaml.safe_dump({"columns": dict(zip(("player_id", "date", "stake"), names, strict=True))},
                                    allow_unicode=True))
        try:
            r = import_daily(src, m, Paths(tmp / "home"))
        except ImportDailyError as e:
            assert not all(_plain(n) for n in names), (names, str(e))  # only names a CSV line cannot hold fail
        else:
            assert [(x["player_id"], x["stake_eur"]) for x in _read(r.output)] == [("p1", 150), ("p2", 200)]
    assert not any(mark in s for s in statements for mark in "\u24b6\u24b7\u24b8")


def _ok_id(pid: str) -> bool:
    """The oracle for ids: kept (spaces trimmed) unless empty, too long or holding a character that is never
    part of an id (control, invisible/format, private use, separators other than the space, ", U+FFFD)."""
    v = pid.strip(" ")
    bad = any(unicodedata.category(ch)[0] == "C" or (unicodedata.category(ch)[0] == "Z" and ch != " ")
              or ch in '"\ufffd' for ch in v)
    return bool(v) and len(v) <= 256 and not bad


@HYPOTHESIS
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cn")), min_size=1, max_size=10), min_size=1,
                max_size=4, unique_by=lambda s: s.strip(" ")))
@example(['"C-1', "C-2"])
@example(["\u200bC-1", "C-1"])
@example(["C,1", " C-2 "])
def test_any_player_ids_are_kept_exactly_or_rejected(ids):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = _write_csv(tmp / "x.csv", [["id", "d", "s"], *([pid, "2025-06-01", "1"] for pid in ids)])
        m = _mapping(tmp / "m.yaml", COLS)
        try:
            r = import_daily(src, m, Paths(tmp / "home"))
        except ImportDailyError as e:
            assert not all(_ok_id(p) for p in ids), (ids, str(e))
            assert "x.csv" in str(e) and "line" in str(e)
        else:
            assert all(_ok_id(p) for p in ids)
            assert sorted(x["player_id"] for x in _read(r.output)) == sorted(p.strip(" ") for p in ids)


SPECIAL_DATES = ["infinity", "-infinity", "epoch", "today", "now", "allballs", "2025-06-01 (BC)", "99999-01-01",
                 "2025-6-1", "2025-06-01T00:00", "20250601", "0000-01-01", " 2025-06-01 "]


@HYPOTHESIS
@given(st.lists(st.one_of(st.dates().map(dt.date.isoformat), st.sampled_from(SPECIAL_DATES)), min_size=1, max_size=4))
@example(["9999-12-31"])
@example(["1990-01-01", str(TOMORROW)])
def test_any_dates_import_in_range_or_fail_naming_the_line(days):
    def ok(text: str) -> bool:
        try:
            d = dt.date.fromisoformat(text.strip())
        except ValueError:
            return False
        return len(text.strip()) == 10 and dt.date(1990, 1, 1) <= d <= TOMORROW

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = _write_csv(tmp / "x.csv", [["id", "d", "s"], *([f"p{i}", d, "1"] for i, d in enumerate(days))])
        try:
            r = import_daily(src, _mapping(tmp / "m.yaml", COLS), Paths(tmp / "home"))
        except ImportDailyError as e:
            first_bad = next(i for i, d in enumerate(days) if not ok(d))
            assert f"first at lines {first_bad + 2}" in str(e), (days, str(e))
        else:
            assert all(ok(d) for d in days)
            got = {x["player_id"]: x["activity_date"] for x in _read(r.output)}
            assert got == {f"p{i}": dt.date.fromisoformat(d.strip()) for i, d in enumerate(days)}


@HYPOTHESIS
@given(st.lists(st.dates(), min_size=1, max_size=4), st.booleans())
@example([dt.date(9999, 12, 31), dt.date(1, 1, 1)], True)
def test_any_parquet_dates_and_timestamps(days, as_timestamps):
    values, typ = days, pa.date32()
    if as_timestamps:
        values, typ = [dt.datetime.combine(d, dt.time(23, 59, 59)) for d in days], pa.timestamp("us")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "x.parquet"
        pq.write_table(pa.table({"id": [f"p{i}" for i in range(len(values))], "d": pa.array(values, typ),
                                 "s": [1.0] * len(values)}), src)
        try:
            r = import_daily(src, _mapping(tmp / "m.yaml", COLS), Paths(tmp / "home"))
        except ImportDailyError as e:
            first_bad = next(i for i, d in enumerate(days) if not dt.date(1990, 1, 1) <= d <= TOMORROW)
            assert f"first at rows {first_bad + 1}" in str(e), (values, str(e))
        else:
            assert all(dt.date(1990, 1, 1) <= d <= TOMORROW for d in days)
            assert [x["activity_date"] for x in _read(r.output)] == days


GOOD_TEXT = "\n".join([HEADER, *GOOD_ROWS]) + "\n"


@HYPOTHESIS
@given(st.lists(st.tuples(st.integers(0, len(GOOD_TEXT)), st.sampled_from(['"', ",", "\n", "\r", "\x00", "\t",
                                                                          "\ufeff", "\u200b"])),
                min_size=1, max_size=2))
@example([(len(HEADER) + 1, '"')])  # the probe's case: an opening quote before the first id
@example([(len(HEADER) + 1, '"'), (len(HEADER) + 5, '"')])
@example([(len(GOOD_TEXT), "\n")])
@example([(GOOD_TEXT.rindex(",SE,") + 1, ",")])  # found by hypothesis: one field more, the last empty
def test_damaged_csv_never_imports_mangled_rows(edits):
    text = GOOD_TEXT
    for pos, ch in sorted(edits, reverse=True):
        text = text[:pos] + ch + text[pos:]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        home = Paths(tmp / "home")
        good = import_daily(_csv(tmp / "good.csv", GOOD_ROWS), _mapping(tmp / "m.yaml"), home)
        expected = _read(good.output)
        src = tmp / "x.csv"
        src.write_bytes(text.encode())
        before = _state(home)
        try:
            r = import_daily(src, tmp / "m.yaml", home)
        except ImportDailyError as e:
            assert "x.csv" in str(e) and _state(home) == before
        else:  # only harmless edits import, and then exactly the original rows
            strip = ("batch_id", "imported_at")
            assert [{k: v for k, v in x.items() if k not in strip} for x in _read(r.output)] == \
                [{k: v for k, v in x.items() if k not in strip} for x in expected]


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["x.csv", "x.parquet", "x.csv.gz", "x.tsv"]), st.booleans())
@example(b"PAR1\x00\x00PAR1", "x.parquet", False)
@example(b"\x1f\x8b\x08\x00garbage", "x.csv.gz", False)
def test_random_bytes_never_give_a_traceback(data, name, as_mapping):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = Paths(tmp / "home")
        if as_mapping:
            src, m = _csv(tmp / "x.csv", GOOD_ROWS), tmp / "m.yaml"
            m.write_bytes(data)
        else:
            src, m = tmp / name, _mapping(tmp / "m.yaml", COLS)
            src.write_bytes(data)
        with pytest.raises(ImportDailyError):
            import_daily(src, m, paths)
        assert _state(paths) == []


def test_gzip_csv_is_checked_the_same_way(tmp_path, stored):
    import gzip

    src = tmp_path / "x.csv.gz"
    src.write_bytes(gzip.compress(b'id,d,s\nC-1,2025-06-01,1\n"C-2,2025-06-01,1\n'))
    _fails(src, _mapping(tmp_path / "m.yaml", COLS), stored, "x.csv.gz", "line 3")
    src.write_bytes(gzip.compress(b"id,d,s\nC-1,2025-06-01,1\n")[:-6])
    _fails(src, _mapping(tmp_path / "m.yaml", COLS), stored, "x.csv.gz")


def test_utf16_file_is_checked_after_decoding(tmp_path):
    src = tmp_path / "x.csv"
    src.write_bytes("id,d,s\nJos\u00e9,2025-06-01,1\n".encode("utf-16"))
    r = import_daily(src, _mapping(tmp_path / "m.yaml", COLS, encoding="utf-16"), Paths(tmp_path / "home"))
    assert _read(r.output)[0]["player_id"] == "Jos\u00e9"
    src.write_bytes("id,d,s\nJos\u00e9,2025-06-01,1\n\nx,2025-06-01,1\n".encode("utf-16"))
    _fails(src, tmp_path / "m.yaml", Paths(tmp_path / "home2"), "line 3 is blank")

