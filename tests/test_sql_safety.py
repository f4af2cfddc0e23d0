"""No SQL in the code base is built from file, YAML or request contents without quoting.

Every f-string (and ``str.format``) that builds SQL in crm/, ml/, expectations/ and
orchestration/ is read here. Each value pasted into it must be one of:

* a call of ``crm.sql.literal`` / ``crm.sql.ident`` (quoting: any text becomes data);
* ``?`` placeholders for bound values (``", ".join("?" * n)``);
* built only from module constants and numbers (names in capitals, literals), or a module
  function called with those alone;
* or listed in :data:`REVIEWED` with why it cannot carry outside text.

A new interpolation fails this test until it is quoted or reviewed: that is the point. The
dynamic side is covered by fuzz tests over column names (tests/test_landing_hostile.py for event
files, tests/test_import_daily_hostile.py for imports).
"""

from __future__ import annotations

import ast
import re

import pytest

from crm.config import REPO_ROOT

PACKAGES = ("crm", "ml", "expectations", "orchestration")
SQL = re.compile(r"\b(SELECT|FROM|COPY|CREATE|INSERT|DESCRIBE|WHERE|JOIN|SET|PRAGMA|ATTACH)\b")
QUOTING = {"literal", "ident"}

# file -> interpolated expression (as ast.unparse writes it) -> why no outside text reaches it.
REVIEWED: dict[str, dict[str, str]] = {
    "crm/store/db.py": {
        "prep.format_table(table)": "a table of crm.store.schema, quoted by SQLAlchemy's identifier preparer",
        "', '.join((prep.quote(k) for k in keys))": "the keys of the rows, each a column of that table "
                                                   "(table.c[k] raises otherwise), quoted by SQLAlchemy",
        "', '.join(('?' for _ in keys))": "placeholders: the values are bound",
    },
    "crm/warehouse_spark.py": {
        "select": "the Spark table's own column names (DESCRIBE of its files), each through ident()",
    },
    "crm/campaigns/enqueue.py": {
        "', '.join((ident(c) for c in wanted))": "dim_player's own column names (DESCRIBE), each through ident()",
    },
    "crm/store/profile.py": {
        "picks": "arg_max(...) FILTER (WHERE model = ?) per model: the model bound, the alias through ident()",
        "''.join((', ' + c for c in extra))": "the score columns and net_loss_eur_7d, each through ident()",
        "' '.join(joins)": "constant join text, the scores table through ident()",
        "query": "_warehouse_state's profile query: constant text, the score columns through ident(), models bound",
        "fields": "'name': expression per column of DESCRIBE: the name through literal(), the column through "
                  "ident() inside a constant template of _SQL_JSON",
        "bounds": "min / max of DESCRIBE's date columns, each through ident()",
        "linked_cols": "crm.warehouse.abuse_columns(): module constant column names through ident()",
        "linked_join": "crm.warehouse.abuse_columns(): constant SQL, the clusters table through ident()",
        "', '.join((ident(c) for c in (*keys, *cols)))": "_copy_features: ml.features.FEATURE_NAMES present in "
                                                         "DESCRIBE player_features, and constant keys, each ident()",
        "', '.join((ident(c) for c in wanted))": "constant column names present in the query (DESCRIBE), ident()",
    },
    "crm/campaigns/history.py": {
        "columns": "_read_outbox's column list: literal texts of its two callers in this module",
    },
    "crm/ingest/daily_source.py": {
        "reader": "read_csv(...) built with literal() for the path, delimiter and encoding",
        "aliases": "positional column aliases c0..cN through ident(): the file's names never reach SQL",
        "path": "the file path through literal()",
    },
    "crm/ingest/import_daily.py": {
        "src.relation": "the source relation built from reader / read_parquet(literal(path)) and positional aliases",
        "', '.join(select)": "typed columns built from positional aliases and the mapping's constants (literal())",
        "', '.join(out)": "output columns of the module's constant schema; values through literal()",
        "_output_sql(spec, batch_id, now)": "the output SELECT (see ', '.join(out))",
        "sums": "sums over the module's constant MONEY columns",
        "breaks": "positional aliases through ident()",
        "count": "positional aliases through ident()",
        "in_range": "a date range through literal()",
        "', '.join(aggs)": "aggregates over the checks below",
        "c.where": "a check's condition over typed columns; values through literal()",
        "c.value or 'NULL::VARCHAR'": "a check's value expression over typed columns",
        "ex": "arg_min over the checks' own expressions",
        "anybad": "the checks' own conditions",
        "files": "earlier batch files, each through literal()",
    },
    "crm/ingest/feed.py": {
        "' UNION ALL '.join(parts)": "constant SELECT texts; the paths and dates are bound (?)",
    },
    "crm/ingest/landing.py": {
        "'OR REPLACE ' if replace else ''": "one of two constant texts",
        "named": "contains(payload, literal(...)) per key of crm.contract.PII_FIELDS (the contract's own names)",
        "name": "a field of crm.contract.VOCABULARIES (the contract's own names)",
        "sent": "SQL built in _payload_out_sql from contract field names",
        "fields": "the file's column names, each through ident() (crm.sql)",
        "', '.join(cols)": "read_landed_columns: the caller's column names (constants of expectations.landing), "
                           "kept only if the landed schema has them",
        "where": "read_landed_columns: the caller's SQL filter (a hash chunk built from integers)",
        "ids": "envelope id columns built from the contract's envelope names",
        "until": "the constant JSON path of payload.until",
        "prior": "SELECT over landed_glob, quoted with literal()",
    },
    "crm/measurement/readout.py": {
        "where": "a constant WHERE with a ? placeholder, or nothing",
    },
    "crm/simulator/files.py": {
        "payload": "the simulator's own JSON template per event family (module constants)",
        "pre": "the simulator's id prefix from its integer seed and chunk number",
        "trace": "the simulator's trace-id SQL from module constants",
        "w.pid_width": "an integer (digits of the player id)",
    },
    "crm/risk/review.py": {
        "picked": "latest_scores: a constant list of column names, each through ident()",
    },
    "crm/warehouse.py": {
        "where": "read_table: the caller's SQL filter with ? placeholders (callers: orchestration, literal text)",
        "', '.join((ident(c) for c in columns)) if columns else '*'": "read_table: each column name through ident()",
        "', '.join(_SCORES_COLUMNS)": "module constant column names",
        "m": "SCORE_MODELS (module constant names)",
        "pivot": "built from SCORE_MODELS",
        "score_join": "built from SCORE_MODELS and SCORES_TABLE; the date is bound ($as_of)",
        "score_cols": "built from SCORE_MODELS",
        "select_features": "player_features column names, each through ident()",
        "rec_col": "constant SQL text",
        "rec_join": "built from RECS_TABLE through ident(); the date is bound ($as_of)",
        "linked_cols": "abuse_columns(): LINKED_EXCLUSION_COLUMNS (module constants) through ident()",
        "linked_join": "abuse_columns(): constant SQL, CLUSTERS_TABLE through ident()",
    },
    "crm/campaigns/next_game.py": {
        "pick": "module constant column names, each through ident()",
        "', '.join(_RECS_COLUMNS)": "module constant column names",
    },
    "expectations/campaign_list.py": {
        "_typed('lst_raw', frame, _LIST_COLUMNS)": "column names and types of the module's constant dict",
        "_typed('profile_raw', profile, _PROFILE_COLUMNS)": "column names and types of the module's constant dict",
    },
}


def _safe(node: ast.expr) -> bool:
    if isinstance(node, ast.Call):
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if name in QUOTING:
            return True
        # ", ".join("?" * n): placeholders for bound values
        if name == "join" and node.args and isinstance(node.args[0], ast.BinOp) and \
                isinstance(node.args[0].left, ast.Constant) and node.args[0].left.value == "?":
            return True
        # a module's own SQL builder called with constants only (e.g. _env('payload'))
        return isinstance(f, ast.Name) and all(_safe(a) for a in [*node.args, *(k.value for k in node.keywords)])
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Name):
        return node.id.lstrip("_").isupper()
    if isinstance(node, ast.Attribute):
        return node.attr.lstrip("_").isupper()
    if isinstance(node, ast.BinOp):
        return _safe(node.left) and _safe(node.right)
    return False


def sql_interpolations() -> list[tuple[str, int, str]]:
    """(file, line, expression) of every value pasted into an SQL f-string that is not safe on its face."""
    out = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            rel = str(path.relative_to(REPO_ROOT))
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.JoinedStr):
                    text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                    if SQL.search(text):
                        out += [(rel, node.lineno, ast.unparse(v.value)) for v in node.values
                                if isinstance(v, ast.FormattedValue) and not _safe(v.value)]
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                        and node.func.attr == "format" and isinstance(node.func.value, ast.Constant) \
                        and isinstance(node.func.value.value, str) and SQL.search(node.func.value.value):
                    out += [(rel, node.lineno, ast.unparse(a)) for a in [*node.args, *(k.value for k in node.keywords)]
                            if not _safe(a)]
    return out


def test_every_value_pasted_into_sql_is_quoted_bound_constant_or_reviewed():
    unreviewed = [f"{f}:{line}: {{{expr}}}" for f, line, expr in sql_interpolations()
                  if expr not in REVIEWED.get(f, {})]
    assert not unreviewed, ("SQL built from a value that is neither quoted (crm.sql.literal / ident), bound (?) "
                            "nor a constant; quote it, or add it to REVIEWED with why no outside text reaches it:\n"
                            + "\n".join(unreviewed))


def test_the_reviewed_list_has_no_stale_entries():
    seen = {(f, expr) for f, _, expr in sql_interpolations()}
    stale = [f"{f}: {expr}" for f, exprs in REVIEWED.items() for expr in exprs if (f, expr) not in seen]
    assert not stale, "REVIEWED entries no longer in the code (remove them):\n" + "\n".join(stale)


def test_the_scanner_catches_a_pasted_value(tmp_path):
    """The check itself can fail: a file name pasted into SQL is reported."""
    tree = ast.parse('con.execute(f"SELECT * FROM read_parquet(\'{path}\')")')
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.JoinedStr))
    assert [ast.unparse(v.value) for v in node.values if isinstance(v, ast.FormattedValue) and not _safe(v.value)] \
        == ["path"]


def test_quoting_makes_any_text_data():
    import duckdb
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from crm.sql import ident, literal

    @settings(max_examples=200, deadline=None)
    @given(st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"])))
    def check(text: str) -> None:
        con = duckdb.connect()
        assert con.execute(f"SELECT {literal(text)}").fetchone()[0] == text
        if text:
            assert [d[0] for d in con.execute(f"SELECT 1 AS {ident(text)}").description] == [text]

    check()
    for bad in ("", "a\x00b", "\ud800"):
        with pytest.raises(ValueError):
            ident(bad)
