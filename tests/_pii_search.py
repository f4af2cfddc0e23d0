"""Search every byte under a data home for given strings: raw bytes of every file, plus the decoded
content of what compresses (Parquet and DuckDB columns, zip members such as XLSX, gzip), so a value
cannot hide in a compressed page."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import duckdb


def _parquet_text(con: duckdb.DuckDBPyConnection, path: Path) -> str:
    try:
        rows = con.execute("SELECT to_json(t)::VARCHAR FROM read_parquet(?) t", [str(path)]).fetchall()
    except duckdb.Error:
        return ""
    return "\n".join(r[0] for r in rows)


def _duckdb_text(path: Path) -> str:
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return ""
    out = []
    with con:
        for schema, table in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()"
        ).fetchall():
            rows = con.execute(f'SELECT to_json(t)::VARCHAR FROM "{schema}"."{table}" t').fetchall()
            out += [r[0] for r in rows]
    return "\n".join(out)


def occurrences(home: Path, needles: list[str]) -> list[tuple[str, str]]:
    """(file, needle) for every needle found anywhere under ``home`` (case-insensitive)."""
    wanted = [n.lower() for n in needles]
    found = []
    con = duckdb.connect()
    for f in sorted(p for p in home.rglob("*") if p.is_file() and not p.is_symlink()):
        data = f.read_bytes()
        texts = [data.decode("utf-8", errors="replace").lower(), data.decode("latin-1").lower()]
        if data[:4] == b"PAR1":
            texts.append(_parquet_text(con, f).lower())
        elif data[:2] == b"\x1f\x8b":
            try:
                texts.append(gzip.decompress(data).decode("utf-8", errors="replace").lower())
            except (OSError, EOFError):
                pass
        elif data[:4] == b"PK\x03\x04":
            try:
                with zipfile.ZipFile(f) as z:
                    texts += [z.read(n).decode("utf-8", errors="replace").lower() for n in z.namelist()]
            except zipfile.BadZipFile:
                pass
        elif f.suffix == ".duckdb" or data[8:12] == b"DUCK":
            texts.append(_duckdb_text(f).lower())
        for n in wanted:
            if any(n in t for t in texts):
                found.append((str(f.relative_to(home)), n))
    con.close()
    return found
