"""Quoting for the few SQL texts that cannot bind a value.

DuckDB binds values (``?``) everywhere except where the grammar wants a literal or a name:
identifiers (column names from a file or a mapping), ``SET`` options, ``COPY ... TO`` targets
and the path arguments of table functions inside a view. Those go through these two functions
and nothing else; ``tests/test_sql_safety.py`` checks that the code base builds no SQL from
file contents any other way. (DuckDB's Python API has no public quoting helper: these follow
its grammar: a doubled quote inside the quotes, no other escape, NUL refused.)
"""

from __future__ import annotations


def _check(s: str) -> str:
    if not isinstance(s, str):
        raise TypeError(f"expected text to quote, got {type(s).__name__}")
    if "\x00" in s:
        raise ValueError("a NUL character cannot be quoted into SQL")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text that is not valid Unicode (a lone surrogate) cannot be quoted into SQL") from None
    return s


def literal(s: str) -> str:
    """``s`` as a SQL string literal: ``'it''s'``."""
    return "'" + _check(s).replace("'", "''") + "'"


def ident(s: str) -> str:
    """``s`` as a quoted SQL identifier: ``"a""b"`` (any non-empty text is a valid quoted name)."""
    if not _check(s):
        raise ValueError("an empty name cannot be an SQL identifier")
    return '"' + s.replace('"', '""') + '"'
