"""Reading and writing the DuckDB warehouse from Python (dbt owns the SQL models).

DuckDB allows one writing process at a time: open read-only where you only read, and
keep writes short.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import duckdb
import numpy as np
import pandas as pd

from crm.config import Paths
from crm.sql import ident
from ml import models as _models

SCORES_TABLE = "player_scores"
RECS_TABLE = "game_recommendations"  # next best game per player and as-of date (crm.campaigns.next_game)
CLUSTERS_TABLE = "player_clusters"  # linked accounts (crm.risk.linking): one row per account with a link
RISK_FLAGS_TABLE = "player_risk_flags"  # abuse risk flags after review (crm.risk.review)
# What a list reads of the risk flags: whether the player is flagged for bonus abuse (pending review or
# confirmed), and the review's state.
RISK_FLAG_COLUMNS = ("risk_flagged", "risk_review")
# What a list reads of an account's cluster: whether another account of it is self-excluded (now, or
# ended and not played since: the person's own exclusion rules) or cooling off, and one such account.
LINKED_EXCLUSION_COLUMNS = ("linked_self_excluded", "linked_excluded_player", "cluster_id")


# The other account's own state that stops the player: excluded now, ended and not played since, or
# cooling off (a break the person asked for is theirs on every account, as an exclusion is)
_STOPPED = ("(coalesce(o.self_excluded_now, false) OR coalesce(o.cooling_off_now, false) "
            "OR (coalesce(o.ever_self_excluded, false) AND NOT coalesce(o.returned_after_exclusion, false)))")


def abuse_columns(con: duckdb.DuckDBPyConnection, dim: str) -> tuple[str, str]:
    """(select columns, joins) that add :data:`LINKED_EXCLUSION_COLUMNS` and
    :data:`RISK_FLAG_COLUMNS` to a query over ``dim_player`` aliased ``dim`` (``p`` or ``d``), by
    brand and player: NULL for an account with no link or no risk score (also when the linking or
    scoring step has not run yet). The risk flag is :mod:`crm.risk.review`'s (a score above the
    threshold, reviewed or waiting).

    An account is linked to another when the linking step put them in one cluster (pairs sharing
    identifiers of two independent kinds, docs/abuse.md): the same person, so the other account's
    self-exclusion is theirs too (the ``linked_self_excluded`` rule of the rule table)."""
    if dim not in ("p", "d"):  # an alias of the callers' constant SQL, never outside text
        raise ValueError(f"dim_player's alias must be p or d, not {dim!r}")
    on = "ON {a}.brand_id = " + dim + ".brand_id AND {a}.player_id = " + dim + ".player_id"
    if table_exists(con, RISK_FLAGS_TABLE):
        flag_cols = ", rf.risk_flagged, rf.risk_review"
        flag_join = (" LEFT JOIN (SELECT brand_id, player_id, bool_or(flagged) AS risk_flagged, "
                     f"min(review) AS risk_review FROM {ident(RISK_FLAGS_TABLE)} GROUP BY brand_id, player_id) rf "
                     + on.format(a="rf"))
    else:
        flag_cols, flag_join = ", NULL::BOOLEAN AS risk_flagged, NULL::VARCHAR AS risk_review", ""
    cols = ", ".join(f"lx.{ident(c)}" for c in LINKED_EXCLUSION_COLUMNS)
    if not table_exists(con, CLUSTERS_TABLE):
        return (", NULL::BOOLEAN AS linked_self_excluded, NULL::VARCHAR AS linked_excluded_player, "
                "NULL::VARCHAR AS cluster_id" + flag_cols,
                flag_join)
    return ", " + cols + flag_cols, flag_join + f"""
        LEFT JOIN (
            SELECT c.brand_id, c.player_id,
                   bool_or({_STOPPED}) AS linked_self_excluded,
                   min(o.player_id) FILTER (WHERE {_STOPPED}) AS linked_excluded_player,
                   any_value(c.cluster_id) AS cluster_id
            FROM {ident(CLUSTERS_TABLE)} c
            JOIN {ident(CLUSTERS_TABLE)} m ON m.brand_id = c.brand_id AND m.cluster_id = c.cluster_id
                 AND m.player_id <> c.player_id
            JOIN dim_player o ON o.brand_id = m.brand_id AND o.player_id = m.player_id
            GROUP BY c.brand_id, c.player_id
        ) lx """ + on.format(a="lx")


@contextmanager
def connect(paths: Paths, read_only: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    if read_only and not paths.warehouse.exists():
        raise FileNotFoundError(f"no warehouse at {paths.warehouse}: run the pipeline first (`crm run`)")
    con = duckdb.connect(str(paths.warehouse), read_only=read_only)
    try:
        yield con
    finally:
        con.close()


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    # fetchall: a fetchone leaves the result open, and DuckDB refuses register() on the connection until it is done
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()[0][0])


def _nullable_int(t):
    import pyarrow as pa

    return {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
            pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
            pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype()}.get(t)


def _covered(field, nulls: int) -> bool:
    """Whether :func:`fetch_df` converts an Arrow column of this type as DuckDB's ``df()`` would."""
    import pyarrow as pa

    t = field.type
    return (pa.types.is_string(t) or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_date32(t)
            or (pa.types.is_boolean(t) and not nulls) or (pa.types.is_timestamp(t) and t.tz is None and t.unit == "us"))


def fetch_df(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> pd.DataFrame:
    """The frame ``con.execute(sql, params).df()`` gives (same columns, dtypes and values), by way of Arrow.

    DuckDB's own pandas conversion builds a Python object per string: 11-13 s for the 1 M-player
    audience (118 columns), where its Arrow table takes 3.1 s and Arrow's conversion 1.7 s. The
    columns get the dtypes ``df()`` gives them (nullable integers only where there is a NULL,
    dates as datetime64[us], an all-NULL text column as object); a result holding a type not
    covered here, or duplicate column names, is converted by ``df()`` itself."""
    import pyarrow as pa

    try:
        table = con.sql(sql, params=params or None).to_arrow_table()
    except duckdb.ResourceInUseException:
        # the connection still holds a result of execute() (a fetchone() left unfinished): execute()
        # replaces it; its Arrow output only costs one more copy of the rows
        table = con.execute(sql, params or []).to_arrow_table()
    names = table.column_names
    nulls = [table.column(i).null_count for i in range(table.num_columns)]
    if (not table.num_rows or len(set(names)) != len(names)
            or not all(_covered(f, n) for f, n in zip(table.schema, nulls, strict=True))):
        with duckdb.connect() as mem:
            return mem.from_arrow(table).df()
    df = table.to_pandas(types_mapper=_nullable_int, date_as_object=False)
    for field, n in zip(table.schema, nulls, strict=True):
        if pa.types.is_integer(field.type) and not n:  # df(): numpy integers where no value is NULL
            df[field.name] = df[field.name].to_numpy(dtype=field.type.to_pandas_dtype())
        elif pa.types.is_date32(field.type):
            df[field.name] = df[field.name].astype("datetime64[us]")
        elif pa.types.is_string(field.type) and n == table.num_rows:  # df(): an all-NULL text column is object
            df[field.name] = pd.Series([None] * n, dtype=object)
    return df


def isin(values: pd.Series, candidates) -> np.ndarray:
    """Per row of ``values``: whether it is one of ``candidates`` (a missing value never is), as booleans.

    pandas' ``isin`` on Arrow-backed strings (what :func:`fetch_df` hands over) turns every
    candidate into an Arrow scalar one at a time in Python: 3.6 s for the million player ids a
    referential check looks up. Here the candidates become one Arrow array and Arrow's hash lookup
    does the rest; a candidate that is not a string can match no string, as in pandas. Other dtypes
    go through pandas.
    """
    if not (isinstance(values.dtype, pd.StringDtype) and getattr(values.dtype, "storage", None) == "pyarrow"):
        found = values.isin(candidates if isinstance(candidates, pd.Series | pd.Index | np.ndarray | list)
                            else list(candidates)).to_numpy(dtype=bool)
        return found & values.notna().to_numpy()
    import pyarrow as pa
    import pyarrow.compute as pc

    arrow = pa.array(values.array)
    if isinstance(candidates, pd.Series | pd.Index) and isinstance(candidates.dtype, pd.StringDtype) \
            and getattr(candidates.dtype, "storage", None) == "pyarrow":
        wanted = pa.array(candidates.array).cast(arrow.type)
    else:
        wanted = pa.array([c for c in candidates if isinstance(c, str)], type=arrow.type)
    return pc.is_in(arrow, value_set=wanted, skip_nulls=True).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def read_table(paths: Paths, name: str, where: str = "", params: list | None = None,
               columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Every row of table ``name``; ``where``: the caller's own SQL filter, values bound through
    ``params``; ``columns``: only these (default all)."""
    with connect(paths) as con:
        return fetch_df(con, f"SELECT {', '.join(ident(c) for c in columns) if columns else '*'} FROM {ident(name)} "
                             f"{where}", params)


# Training reads a fixed share of the players once the snapshots outgrow ``max_rows``: which players
# is decided by DuckDB's hash of the id in SAMPLE_BUCKETS buckets, so the same players are drawn every
# day (until a DuckDB upgrade changes the hash) and each drawn player keeps their whole history, which
# the time split and the labels need.
SAMPLE_BUCKETS = 10_000


def read_training_data(paths: Paths, max_rows: int | None) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """(``player_feature_snapshots``, ``player_labels``, share of players read) for training.

    Every row while the snapshots hold at most ``max_rows`` rows (``None``: no cap); beyond, the
    rows of a pseudo-random share of the players sized to hold about ``max_rows`` snapshot rows.
    """
    with connect(paths) as con:
        # fetchall: a fetchone would leave the result open, beside which fetch_df's relation cannot run
        total = con.execute("SELECT count(*) FROM player_feature_snapshots").fetchall()[0][0]
        capped = bool(max_rows) and total > max_rows
        buckets = max(1, int(SAMPLE_BUCKETS * max_rows / total)) if capped else SAMPLE_BUCKETS
        snapshots, labels = (fetch_df(con, f"SELECT * FROM {ident(t)} WHERE hash(player_id) % {SAMPLE_BUCKETS} < ?",
                                      [buckets]) for t in ("player_feature_snapshots", "player_labels"))
    return snapshots, labels, buckets / SAMPLE_BUCKETS


def row_counts(paths: Paths, tables: list[str]) -> dict[str, int]:
    with connect(paths) as con:
        return {t: con.execute(f"SELECT count(*) FROM {ident(t)}").fetchone()[0]
                for t in tables if table_exists(con, t)}


# The score-model vocabulary (ml.models, re-exported by crm.contract). UPLIFT_SCORE_MODEL: predicted
# incremental NGR if treated (EUR cents over 14 days, net of the bonus cost; may be negative, not a
# probability), written to player_scores by the uplift scoring. SCORE_MODELS: models whose scores
# campaigns can use; read_audience pivots each to <model>_score / <model>_model_version.
UPLIFT_SCORE_MODEL = _models.UPLIFT_SCORE_MODEL
SCORE_MODELS: tuple[str, ...] = _models.SCORE_MODELS
_SCORES_COLUMNS = ("player_id", "as_of_date", "model", "score", "model_name", "model_version", "scored_at")


def write_scores(paths: Paths, scores: pd.DataFrame, as_of: dt.date, model: str) -> int:
    """Replace one model's scores of one as-of date (idempotent) in table ``player_scores``.

    ``scores``: player_id, score, model_name, model_version. The table is long: one row
    per (player, as-of date, model).
    """
    df = scores.assign(as_of_date=as_of, model=model, scored_at=dt.datetime.now(dt.UTC).replace(tzinfo=None))
    with connect(paths, read_only=False) as con:
        if table_exists(con, SCORES_TABLE):
            cols = tuple(r[0] for r in con.execute(f"DESCRIBE {ident(SCORES_TABLE)}").fetchall())
            if cols != _SCORES_COLUMNS:  # an older layout: scores are recomputable, start again
                con.execute(f"DROP TABLE {ident(SCORES_TABLE)}")
        con.execute(f"""CREATE TABLE IF NOT EXISTS {ident(SCORES_TABLE)} (
            player_id VARCHAR, as_of_date DATE, model VARCHAR, score DOUBLE, model_name VARCHAR,
            model_version VARCHAR, scored_at TIMESTAMP)""")
        con.execute("BEGIN")
        con.execute(f"DELETE FROM {ident(SCORES_TABLE)} WHERE as_of_date = ? AND model = ?", [as_of, model])
        con.register("_scores", df)
        con.execute(f"INSERT INTO {ident(SCORES_TABLE)} SELECT {', '.join(_SCORES_COLUMNS)} FROM _scores")
        con.execute("COMMIT")
    return len(df)


def read_audience(paths: Paths, as_of: dt.date) -> pd.DataFrame:
    """Profile + current features + scores of the as-of date: what campaigns select from.

    Every player in the profile is present; players without a feature row (inactive for
    90 days) or without a score have NULLs there, which segment rules treat as no match.
    Each model of :data:`SCORE_MODELS` gives ``<model>_score`` and
    ``<model>_model_version`` columns; ``recommended_game`` is the date's first next best game
    (:data:`RECS_TABLE`, written by :mod:`crm.campaigns.next_game`).
    """
    with connect(paths) as con:
        has_scores = table_exists(con, SCORES_TABLE)
        profile_cols = {r[0] for r in con.execute("DESCRIBE dim_player").fetchall()}
        # Feature columns the profile does not already have (the profile wins on overlap,
        # e.g. tenure_days, and covers players without a feature row).
        feature_cols = [r[0] for r in con.execute("DESCRIBE player_features").fetchall()
                        if r[0] not in profile_cols]
        if has_scores and "model" not in {r[0] for r in con.execute(f"DESCRIBE {ident(SCORES_TABLE)}").fetchall()}:
            has_scores = False  # an older layout, replaced at the next scoring
        pivot = ", ".join(
            f"max(score) FILTER (WHERE model = '{m}') AS {m}_score, "
            f"max(model_version) FILTER (WHERE model = '{m}') AS {m}_model_version" for m in SCORE_MODELS)
        score_join = (f"LEFT JOIN (SELECT player_id, {pivot} FROM {ident(SCORES_TABLE)} WHERE as_of_date = $as_of "
                      "GROUP BY player_id) s USING (player_id)") if has_scores else ""
        score_cols = "".join(
            f", s.{m}_score, s.{m}_model_version" if has_scores
            else f", NULL::DOUBLE AS {m}_score, NULL::VARCHAR AS {m}_model_version" for m in SCORE_MODELS)
        select_features = "".join(f", f.{ident(c)}" for c in feature_cols)
        linked_cols, linked_join = abuse_columns(con, "p")
        has_recs = table_exists(con, RECS_TABLE)
        rec_col = ", r.game AS recommended_game" if has_recs else ", NULL::VARCHAR AS recommended_game"
        rec_join = (f"LEFT JOIN (SELECT player_id, game FROM {ident(RECS_TABLE)} WHERE as_of_date = $as_of "
                    "AND rank = 1) r USING (player_id)") if has_recs else ""
        return fetch_df(con, f"""
            SELECT p.* {select_features} {score_cols} {rec_col} {linked_cols}
            FROM dim_player p
            LEFT JOIN player_features f USING (player_id)
            {score_join}
            {rec_join}
            {linked_join}
            ORDER BY p.player_id
        """, {"as_of": as_of} if has_scores or has_recs else None)


def read_scoring_population(paths: Paths) -> pd.DataFrame:
    """Current features of the players who may be scored: only those with profiling consent.

    ML targeting needs `profiling` consent (DESIGN.md); players without it are not scored
    at all, so no score of theirs can reach a list.
    """
    with connect(paths) as con:
        return fetch_df(con, """
            SELECT f.* FROM player_features f
            JOIN dim_player p USING (player_id)
            WHERE p.consent_profiling
            ORDER BY f.player_id
        """)


MARGIN_DAYS = 90  # the house margin is observed over this many days up to the as-of date


def observed_house_margin(paths: Paths, as_of: dt.date, days: int = MARGIN_DAYS) -> tuple[float, float, float]:
    """(margin, GGR, stake) over the ``days`` days before ``as_of`` (``fct_player_daily``, EUR cents):
    :func:`ml.policy.house_margin` of the totals (0 when nothing was staked)."""
    from ml.policy import house_margin

    with connect(paths) as con:
        ggr, stake = con.execute(
            "SELECT coalesce(sum(ggr_eur), 0)::DOUBLE, coalesce(sum(stake_eur), 0)::DOUBLE FROM fct_player_daily "
            "WHERE activity_date < ? AND activity_date >= ?",
            [as_of, as_of - dt.timedelta(days=days)]).fetchone()
    return house_margin(ggr, stake), ggr, stake


def write_uplift_value(paths: Paths, deposit: pd.DataFrame, features: pd.DataFrame,
                       as_of: dt.date) -> tuple[pd.DataFrame, float, float, float]:
    """Derive and write the as-of date's ``uplift_value`` scores (what ``target: by: uplift`` ranks by)
    from the ``uplift_deposit`` champion's scores ``deposit`` (rows aligned with ``features``), at the
    house margin observed before ``as_of`` (:func:`ml.uplift_score.value_scores`). Returns the scores
    written and (margin, GGR, stake)."""
    from ml.uplift_score import value_scores

    margin, ggr, stake = observed_house_margin(paths, as_of)
    value = value_scores(deposit, features, margin)
    write_scores(paths, value, as_of, _models.UPLIFT_VALUE_MODEL)
    return value, margin, ggr, stake


# ---- the incremental build: when the dbt project changes, the next build is a full one ----------
def dbt_project_fingerprint() -> str:
    """SHA-256 over the dbt project's SQL, YAML and seeds: incremental tables built by other code
    would mix two definitions of a row, so a changed project rebuilds everything once."""
    import hashlib

    from crm.config import DBT_PROJECT_DIR

    h = hashlib.sha256()
    files = sorted(p for pattern in ("models/**/*", "macros/**/*", "seeds/**/*", "dbt_project.yml")
                   for p in DBT_PROJECT_DIR.glob(pattern) if p.is_file())
    for p in files:
        h.update(str(p.relative_to(DBT_PROJECT_DIR)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _fingerprint_file(paths: Paths):
    return paths.home / "dbt" / "built_project.sha256"


def needs_full_refresh(paths: Paths) -> str | None:
    """Why the next dbt build must rebuild every day (None: an incremental build is exact)."""
    if not paths.warehouse.exists():
        return None  # the first build is a full one anyway
    f = _fingerprint_file(paths)
    if not f.exists():
        return "no record of the dbt project the warehouse was built with"
    if f.read_text().strip() != dbt_project_fingerprint():
        return "the dbt project changed since the last build"
    return None


def record_build(paths: Paths) -> None:
    """After a successful build: the project the warehouse now holds."""
    f = _fingerprint_file(paths)
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp")
    tmp.write_text(dbt_project_fingerprint() + "\n")
    tmp.replace(f)


def forget_build(paths: Paths) -> None:
    """The warehouse's tables were replaced by other means (the Spark hand-off): the next DuckDB
    build is a full one."""
    _fingerprint_file(paths).unlink(missing_ok=True)
