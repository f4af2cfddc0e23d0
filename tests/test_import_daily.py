"""Bring your own data: `crm import-daily` loads per-player daily aggregates through a mapping."""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from crm.cli import main
from crm.config import REPO_ROOT, Paths
from crm.ingest.import_daily import (
    OUTPUT_SCHEMA,
    ImportDailyError,
    _cents,
    import_daily,
    import_log_path,
    imported_daily_dir,
    read_fx_rates,
)

HEADER = "customer_ref,day,deposits,withdrawals,turnover,winnings,ngr,bonus_cost,logins,brand,market,sex"
GOOD_ROWS = [
    "C-1,2025-06-01,12.34,0,100,80.5,19.50,2.00,3,casino_a,UK,F",
    "C-1,2025-06-02,0,40,,10,-10,,1,casino_a,UK,F",
    "C-2,2025-06-01,50,0,20.005,0,20.005,0,,casino_b,SE,",
]
FULL_COLUMNS = {
    "player_id": "customer_ref", "date": "day", "deposit_amount": "deposits", "withdrawal_amount": "withdrawals",
    "stake": "turnover", "win": "winnings", "ngr": "ngr", "bonus_amount": "bonus_cost", "sessions": "logins",
    "brand_id": "brand", "country": "market", "gender": "sex",
}
RATES = read_fx_rates()


@pytest.fixture
def paths(tmp_path) -> Paths:
    return Paths(tmp_path / "home")


def _csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _mapping(path: Path, columns: dict | None = None, **extra) -> Path:
    path.write_text(json.dumps({"columns": FULL_COLUMNS if columns is None else columns, **extra}))  # JSON is YAML
    return path


def _read(path: str) -> list[dict]:
    with duckdb.connect() as con:
        cur = con.execute(f"SELECT * FROM read_parquet('{path}') ORDER BY player_id, activity_date")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _state(paths: Paths) -> list[tuple[str, bytes]]:
    d = imported_daily_dir(paths)
    files = sorted((p.name, p.read_bytes()) for p in d.rglob("*")) if d.exists() else []
    log = import_log_path(paths)
    return files + ([("log", log.read_bytes())] if log.exists() else [])


def _cents_of(amount: str, ccy: str, minor: bool = False) -> int:
    exact = Decimal(amount) * RATES[ccy] * (1 if minor else 100)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))  # half away from zero


# --------------------------------------------------------------------------- good imports


def test_csv_major_units_eur_to_cents_with_the_exact_schema(tmp_path, paths):
    r = import_daily(_csv(tmp_path / "export.csv", GOOD_ROWS), _mapping(tmp_path / "m.yaml"), paths)
    assert (r.rows, r.players, r.date_from, r.date_to) == (3, 2, "2025-06-01", "2025-06-02")
    assert r.missing_measures == [] and not r.already_imported
    assert Path(r.output) == imported_daily_dir(paths) / f"import_{r.batch_id}.parquet"
    with duckdb.connect() as con:
        schema = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{r.output}')").fetchall()
    assert [(c[0], c[1]) for c in schema] == list(OUTPUT_SCHEMA)
    a, b, c = _read(r.output)
    assert (a["player_id"], a["activity_date"], a["brand_id"], a["country"], a["gender"]) == \
        ("C-1", dt.date(2025, 6, 1), "casino_a", "UK", "F")
    assert (a["deposit_eur"], a["withdrawal_eur"], a["stake_eur"], a["win_eur"], a["ngr_eur"], a["bonus_eur"],
            a["sessions"]) == (1234, 0, 10000, 8050, 1950, 200, 3)
    assert (b["stake_eur"], b["bonus_eur"], b["ngr_eur"]) == (0, 0, -1000)  # empty money cell -> 0
    assert c["sessions"] is None and c["gender"] is None  # empty sessions -> NULL, empty attribute -> NULL
    assert c["stake_eur"] == 2001  # 20.005 EUR = 2000.5 cents, rounded half away from zero
    assert {x["batch_id"] for x in (a, b, c)} == {r.batch_id}
    assert r.totals_eur_cents["deposit_eur"] == 1234 + 5000
    log = [json.loads(x) for x in import_log_path(paths).read_text().splitlines()]
    assert len(log) == 1
    assert {k: log[0][k] for k in ("batch_id", "rows", "players", "date_from", "date_to", "missing_measures")} == \
        {"batch_id": r.batch_id, "rows": 3, "players": 2, "date_from": "2025-06-01", "date_to": "2025-06-02",
         "missing_measures": []}
    assert log[0]["file"].endswith("export.csv") and log[0]["imported_at"]


def test_minor_units_and_gbp_sek_conversion(tmp_path, paths):
    cols = {"player_id": "customer_ref", "date": "day", "deposit_amount": "deposits", "ngr": "ngr"}
    header = "customer_ref,day,deposits,ngr"
    gbp = import_daily(_csv(tmp_path / "gbp.csv", ["g1,2025-06-01,1000,-1250", "g2,2025-06-01,1250,1"], header),
                       _mapping(tmp_path / "gbp.yaml", cols, units="minor", currency="GBP"), paths)
    rows = _read(gbp.output)
    # 10.00 GBP x 1.17 = 11.70 EUR; -12.50 GBP = -14.625 EUR -> -1463 cents (half away from zero)
    assert [(x["deposit_eur"], x["ngr_eur"]) for x in rows] == [(1170, -1463), (1463, 1)]
    assert [(x["deposit_eur"], x["ngr_eur"]) for x in rows] == \
        [(_cents_of(d, "GBP", True), _cents_of(n, "GBP", True)) for d, n in (("1000", "-1250"), ("1250", "1"))]
    sek = import_daily(_csv(tmp_path / "sek.csv", ["s1,2025-06-01,123.45,100"], header),
                       _mapping(tmp_path / "sek.yaml", cols, units="major", currency="sek"), paths)
    (row,) = _read(sek.output)
    assert (row["deposit_eur"], row["ngr_eur"]) == (1086, 880)  # 123.45 SEK x 0.088 = 10.8636 EUR; 100 SEK = 8.80
    assert sek.missing_measures == ["withdrawal_amount", "stake", "win", "bonus_amount", "sessions"]
    assert (row["stake_eur"], row["win_eur"], row["sessions"]) == (0, 0, None)  # unmapped: 0 / NULL
    assert sek.currency == "SEK"


def test_currency_column_converts_each_row(tmp_path, paths):
    cols = {"player_id": "id", "date": "d", "stake": "s"}
    src = _csv(tmp_path / "x.csv", ["1,2025-06-01,10.00,EUR", "2,2025-06-01,10.00,gbp", "3,2025-06-01,10.00, SEK"],
               "id,d,s,ccy")
    r = import_daily(src, _mapping(tmp_path / "m.yaml", cols, currency_column="ccy"), paths)
    assert [(x["player_id"], x["stake_eur"]) for x in _read(r.output)] == [("1", 1000), ("2", 1170), ("3", 88)]
    assert r.currency == "column ccy"


def test_reimport_is_a_no_op(tmp_path, paths):
    src, m = _csv(tmp_path / "export.csv", GOOD_ROWS), _mapping(tmp_path / "m.yaml")
    first = import_daily(src, m, paths)
    before = _state(paths)
    again = import_daily(src, m, paths)
    assert again.already_imported and again.batch_id == first.batch_id and again.rows == first.rows
    assert _state(paths) == before
    # Same mapping written differently: same batch. Different mapping: a new batch.
    m.write_text("# comment\n" + m.read_text())
    assert import_daily(src, m, paths).already_imported
    other = import_daily(src, _mapping(tmp_path / "m2.yaml", currency="GBP"), paths)
    assert not other.already_imported and other.batch_id != first.batch_id
    assert other.overlapping_rows == 3  # same (player, date) pairs as the first batch: reported
    assert len(import_log_path(paths).read_text().splitlines()) == 2


def test_parquet_input_with_typed_columns(tmp_path, paths):
    src = tmp_path / "export.parquet"
    pq.write_table(pa.table({
        "cust": pa.array([101, 102], pa.int64()),  # integer ids are kept, as text
        "day": pa.array([dt.date(2025, 6, 1), dt.date(2025, 6, 2)], pa.date32()),
        "dep": pa.array([12.5, 0.1], pa.float64()),
        "stake": pa.array(["7.25", None], pa.string()),
        "visits": pa.array([2, None], pa.int32()),
    }), src)
    cols = {"player_id": "cust", "date": "day", "deposit_amount": "dep", "stake": "stake", "sessions": "visits"}
    r = import_daily(src, _mapping(tmp_path / "m.yaml", cols), paths)
    rows = _read(r.output)
    assert [(x["player_id"], x["activity_date"], x["deposit_eur"], x["stake_eur"], x["sessions"]) for x in rows] == \
        [("101", dt.date(2025, 6, 1), 1250, 725, 2), ("102", dt.date(2025, 6, 2), 10, 0, None)]
    assert import_daily(src, tmp_path / "m.yaml", paths).already_imported


def test_date_format_and_timestamps(tmp_path, paths):
    cols = {"player_id": "id", "date": "d", "stake": "s"}
    r = import_daily(_csv(tmp_path / "x.csv", ["a,31/12/2025,1"], "id,d,s"),
                     _mapping(tmp_path / "m.yaml", cols, date_format="%d/%m/%Y"), paths)
    assert _read(r.output)[0]["activity_date"] == dt.date(2025, 12, 31)
    src = tmp_path / "ts.parquet"
    pq.write_table(pa.table({"id": ["b"], "d": pa.array([dt.datetime(2025, 7, 1, 23, 0)], pa.timestamp("us")),
                             "s": [1.0]}), src)
    assert _read(import_daily(src, tmp_path / "m.yaml", paths).output)[0]["activity_date"] == dt.date(2025, 7, 1)


def test_latin1_csv_needs_the_encoding_option(tmp_path, paths):
    src = tmp_path / "latin1.csv"
    src.write_bytes("id,d,s\nJos\u00e9,2025-06-01,1\n".encode("latin-1"))
    cols = {"player_id": "id", "date": "d", "stake": "s"}
    with pytest.raises(ImportDailyError, match="latin1.csv: line 2: not valid utf-8 text.*encoding: latin-1"):
        import_daily(src, _mapping(tmp_path / "m.yaml", cols), paths)
    r = import_daily(src, _mapping(tmp_path / "m.yaml", cols, encoding="latin-1"), paths)
    assert _read(r.output)[0]["player_id"] == "Jos\u00e9"


def test_the_documented_example_imports(paths):
    examples = REPO_ROOT / "docs" / "examples"
    r = import_daily(examples / "daily_export.csv", examples / "daily_mapping.yaml", paths)
    assert r.rows > 0 and r.missing_measures == []


def test_cents_rounding_matches_exact_decimal_arithmetic():
    """The DOUBLE fast path never differs from exact decimal rounding (ties, large values)."""
    rng = random.Random(7)
    cases = [(f"{rng.randint(-10**7, 10**7) / 100:.2f}", rng.choice(list(RATES)), rng.random() < 0.5)
             for _ in range(3000)]
    cases += [("12.50", "GBP", False), ("-12.50", "GBP", False), ("0.05", "SEK", True), ("20.005", "EUR", False),
              ("999999999999.99", "GBP", False), ("123456789.125", "EUR", False), ("-0.005", "EUR", False)]
    factors = [RATES[c] * (1 if minor else 100) for _, c, minor in cases]
    t = pa.table({"i": list(range(len(cases))), "v": [v for v, _, _ in cases],
                  "f": [str(f) for f in factors], "fd": [float(f) for f in factors]})
    with duckdb.connect() as con:
        con.register("t", t)
        got = [r[0] for r in con.execute(f"""
            SELECT {_cents('v', 'f', 'fd')} FROM (
                SELECT i, CAST(v AS DECIMAL(18, 6)) AS v, CAST(f AS DECIMAL(18, 8)) AS f, fd FROM t) ORDER BY i
        """).fetchall()]
    assert got == [_cents_of(v, c, minor) for v, c, minor in cases]


# --------------------------------------------------------------------------- errors: nothing is written


BAD_CASES = {
    "unknown canonical name": (
        GOOD_ROWS, {**FULL_COLUMNS, "stakes": "turnover2"}, {},
        ["m.yaml", "unknown column mapping 'stakes'", "did you mean 'stake'", "expected one of: player_id"]),
    "mapped column missing": (
        GOOD_ROWS, {**FULL_COLUMNS, "stake": "turnover_eur"}, {},
        ["column 'turnover_eur' (mapped from canonical 'stake') not found in", "export.csv",
         "available: 'customer_ref', 'day'", "did you mean 'turnover'"]),
    "non-numeric money": (
        [GOOD_ROWS[0], "C-1,2025-06-02,0,40,abc,10,-10,,1,a,UK,F", 'C-2,2025-06-01,50,0,"1,5",0,0,0,,b,SE,'],
        FULL_COLUMNS, {},
        ["column 'turnover' (mapped from canonical 'stake') in", "export.csv", "2 non-numeric",
         "first at lines 3, 4: 'abc', '1,5'"]),
    "bad dates": (
        [GOOD_ROWS[0], "C-1,2025-13-01,0,40,1,10,-10,,1,a,UK,F", "C-2,,50,0,1,0,0,0,,b,SE,"], FULL_COLUMNS, {},
        ["column 'day' (mapped from canonical 'date') in", "export.csv", "2 bad dates (expected YYYY-MM-DD)",
         "first at lines 3, 4: '2025-13-01', ''"]),
    "unknown currency": (
        GOOD_ROWS, FULL_COLUMNS, {"currency": "USD"},
        ["m.yaml", "field 'currency'", "unknown currency 'USD'", "fx_rates.csv", "known: EUR, GBP, SEK"]),
    "unknown currency in a column": (
        ["1,2025-06-01,10,EUR", "2,2025-06-01,10,USD", "3,2025-06-01,10,"], {"player_id": "id", "date": "d",
                                                                            "stake": "s"},
        {"currency_column": "ccy", "_header": "id,d,s,ccy"},
        ["column 'ccy' (currency_column) in", "export.csv", "2 values that are not a currency in fx_rates.csv",
         "first at lines 3, 4: 'USD', ''"]),
    "negative deposits and stakes": (
        [GOOD_ROWS[0], "C-1,2025-06-02,-5,40,-1,10,-10,,1,a,UK,F"], FULL_COLUMNS, {},
        ["column 'deposits' (mapped from canonical 'deposit_amount') in", "1 negative values; first at lines 3: '-5'",
         "column 'turnover' (mapped from canonical 'stake') in", "export.csv"]),
    "duplicate player and date": (
        [*GOOD_ROWS, "C-1,2025-06-01,1,1,1,1,1,1,1,a,UK,F"], FULL_COLUMNS, {},
        ["export.csv has 1 duplicate (player_id, date) pairs (columns 'customer_ref', 'day')",
         "'C-1' on 2025-06-01 at lines 2, 5"]),
    "fractional minor units": (
        GOOD_ROWS, FULL_COLUMNS, {"units": "minor"},
        ["column 'deposits' (mapped from canonical 'deposit_amount') in", "export.csv",
         "fractional values but units is 'minor'", "first at lines 2: '12.34'"]),
    "empty player id": (
        [GOOD_ROWS[0], " ,2025-06-02,0,40,1,10,-10,,1,a,UK,F"], FULL_COLUMNS, {},
        ["column 'customer_ref' (mapped from canonical 'player_id') in", "export.csv", "is empty in 1 lines",
         "first at lines 3"]),
    "sessions not whole": (
        [GOOD_ROWS[0], "C-1,2025-06-02,0,40,1,10,-10,,1.5,a,UK,F"], FULL_COLUMNS, {},
        ["column 'logins' (mapped from canonical 'sessions') in", "values that are not whole numbers",
         "first at lines 3: '1.5'"]),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_names_the_column_and_file_and_writes_nothing(tmp_path, paths, case):
    rows, columns, extra, expected = BAD_CASES[case]
    import_daily(_csv(tmp_path / "ok.csv", GOOD_ROWS), _mapping(tmp_path / "ok.yaml"), paths)
    before = _state(paths)
    header = extra.pop("_header", HEADER)
    src = _csv(tmp_path / "export.csv", rows, header)
    with pytest.raises(ImportDailyError) as e:
        import_daily(src, _mapping(tmp_path / "m.yaml", columns, **extra), paths)
    for text in expected:
        assert text in str(e.value), (text, str(e.value))
    assert _state(paths) == before
    assert not list(imported_daily_dir(paths).glob("*.tmp"))


def test_every_problem_is_reported_at_once(tmp_path, paths):
    rows = ["C-1,2025-06-01,-1,0,x,0,0,0,1,a,UK,F", "C-1,2025-06-01,1,0,1,0,0,0,1,a,UK,F", "C-2,junk,1,0,1,0,0,0,1,,,"]
    with pytest.raises(ImportDailyError) as e:
        import_daily(_csv(tmp_path / "export.csv", rows), _mapping(tmp_path / "m.yaml"), paths)
    assert len(e.value.problems) == 4  # negative deposit, non-numeric stake, bad date, duplicate
    assert str(e.value).startswith("4 problems; nothing was imported:")
    assert _state(paths) == []


def test_empty_and_header_only_files(tmp_path, paths):
    m = _mapping(tmp_path / "m.yaml")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ImportDailyError, match="empty.csv is empty"):
        import_daily(tmp_path / "empty.csv", m, paths)
    with pytest.raises(ImportDailyError, match="header.csv has no data rows"):
        import_daily(_csv(tmp_path / "header.csv", []), m, paths)
    with pytest.raises(ImportDailyError, match="unsupported file type"):
        import_daily(_csv(tmp_path / "export.xlsx", GOOD_ROWS), m, paths)
    assert _state(paths) == []


def test_bad_mapping_files(tmp_path, paths):
    src = _csv(tmp_path / "export.csv", GOOD_ROWS)
    for text, expected in [
        ("columns: {player_id: customer_ref, deposit_amount: deposits}", "'player_id' and 'date' must be mapped"),
        ("columns: {player_id: customer_ref, date: day, brand_id: brand}", "map at least one measure"),
        ("columns: {player_id: a, date: b, stake: c}\nunits: cents", "field 'units'"),
        ("columns: {player_id: a, date: b, stake: c}\ncurrency: EUR\ncurrency_column: ccy", "not both"),
        ("columns: {player_id: a, date: b, stake: a}", "mapped from more than one canonical name"),
        ("columns: {player_id: a, date: b, stake: c}\nunit: major", "field 'unit'"),
        ("- just a list", "expected a mapping"),
        ("columns: {player_id: [", "not valid YAML"),
    ]:
        m = tmp_path / "bad.yaml"
        m.write_text(text)
        with pytest.raises(ImportDailyError) as e:
            import_daily(src, m, paths)
        assert "bad.yaml" in str(e.value) and expected in str(e.value), (text, str(e.value))
    assert _state(paths) == []


# --------------------------------------------------------------------------- CLI


def test_cli_import_daily(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    r = runner.invoke(main, ["import-daily", "--help"])
    assert r.exit_code == 0 and "docs/examples/daily_mapping.yaml" in r.output and "units" in r.output
    src, m = _csv(tmp_path / "export.csv", GOOD_ROWS), _mapping(tmp_path / "m.yaml")
    r = runner.invoke(main, ["import-daily", "--file", str(src), "--mapping", str(m), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["rows"] == 3 and Path(report["output"]).exists()
    assert Path(report["output"]).parent == tmp_path / "home" / "landing" / "imported_daily"
    r = runner.invoke(main, ["import-daily", "--file", str(src), "--mapping", str(m)])
    assert r.exit_code == 0 and "already imported" in r.output
    bad = _csv(tmp_path / "bad.csv", ["C-9,2025-06-01,abc,0,0,0,0,0,0,,,"])
    r = runner.invoke(main, ["import-daily", "--file", str(bad), "--mapping", str(m)])
    assert r.exit_code != 0 and "column 'deposits'" in r.output and "bad.csv" in r.output
    r = runner.invoke(main, ["import-daily", "--file", str(tmp_path / "nope.csv"), "--mapping", str(m)])
    assert r.exit_code != 0 and "nope.csv: no such file" in r.output


def test_unmapped_ngr_is_null_so_the_warehouse_derives_it(tmp_path, paths):
    cols = {"player_id": "customer_ref", "date": "day", "stake": "turnover", "win": "winnings"}
    r = import_daily(_csv(tmp_path / "n.csv", ["n1,2025-06-01,10,4"], "customer_ref,day,turnover,winnings"),
                     _mapping(tmp_path / "n.yaml", cols), paths)
    (row,) = _read(r.output)
    assert "ngr" in r.missing_measures and row["ngr_eur"] is None and row["stake_eur"] == 1000
