"""The feature spec, the feature marts and their point-in-time guarantee, on real dbt builds.

A small simulated casino is landed and built twice (module fixtures):

1. ``base``: the simulated events only (no imported-daily folder at all);
2. ``later``: data on and after an earlier snapshot date D is added — a second landed
   file (bets, deposits, a country and time-zone change, a self-exclusion, a limit, a new
   player, an event exactly at D 00:00) and operator daily aggregates as Parquet (an
   import-only player, a re-imported day, a day on top of an event player's events, days
   after the as-of date) — and nothing before D.

Then: the snapshot at D is unchanged to the last value; the late data does show up in the
run-as-of marts; imported aggregates reach dim_player, the daily fact, features and labels;
every player the new data does not touch is unchanged everywhere. Plus the spec <->
contract <-> mart checks (columns, order, kinds, descriptions, no NULLs) and the label
completeness rule.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml
from _dbt import dbt_build

from crm.config import DBT_PROJECT_DIR, Paths
from ml.features import CATEGORICAL, FEATURE_NAMES, FEATURES, KEY_COLUMNS, NONE_CATEGORY

AS_OF = dt.date(2025, 8, 30)  # simulation: 2025-06-01 .. 2025-08-29
D = dt.date(2025, 7, 21)  # an earlier weekly snapshot date (the grid: Mondays, dbt var snapshot_grid_anchor)
LAST_DAY = dt.date(2025, 8, 29)  # last simulated day: labels end at LAST_DAY + 1
MART_COLUMNS = [*KEY_COLUMNS, *FEATURE_NAMES]
NUMERIC_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE"}
IMPORT_ONLY = "imp_0001"
IMPORT_DAYS = [D + dt.timedelta(days=3 * i) for i in range(14)]  # D .. 2025-08-27, every 3rd day
NEWBIE = "p_late_new"


# --------------------------------------------------------------------------- helpers
def _read(home: Path) -> dict[str, pd.DataFrame]:
    """The marts (sorted by key) and the feature marts' column types."""
    keys = {"dim_player": ["player_id"], "fct_player_daily": ["player_id", "activity_date"],
            "player_feature_snapshots": ["player_id", "as_of_date"], "player_features": ["player_id"],
            "player_labels": ["player_id", "as_of_date"]}
    out = {}
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        for table, key in keys.items():
            df = con.execute(f"SELECT * FROM {table}").df().sort_values(key).reset_index(drop=True)
            # loaded_at is when an incremental build last rewrote the row, not data of the row
            out[table] = df.drop(columns=["loaded_at"], errors="ignore")
        for table in ("player_feature_snapshots", "player_features"):
            out[f"describe {table}"] = con.execute(f"DESCRIBE {table}").df()
    return out


def _ts(day: dt.date, hh: int = 12, mm: int = 0) -> str:
    return dt.datetime.combine(day, dt.time(hh, mm)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event(n: int, event_type: str, player: dict, occurred_at: str, **payload) -> dict:
    return {"event_id": f"late_{n:04d}", "event_type": event_type, "player_id": player["player_id"],
            "brand_id": player["brand_id"], "occurred_at": occurred_at, "payload": payload}


def _imported(player_id, days, *, batch, imported_at, brand="A", country="MT", stake=10_000, sessions=2):
    n = len(days)
    return pd.DataFrame({
        "player_id": [player_id] * n, "activity_date": list(days), "brand_id": [brand] * n,
        "country": [country] * n, "gender": ["F"] * n,
        "deposit_eur": [5_000] * n, "withdrawal_eur": [0] * n, "stake_eur": [stake] * n,
        "win_eur": [stake // 2] * n, "ngr_eur": [stake // 2 - 100] * n, "bonus_eur": [100] * n,
        "sessions": [sessions] * n, "batch_id": [batch] * n, "imported_at": [pd.Timestamp(imported_at)] * n,
    }).astype({"deposit_eur": "int64", "withdrawal_eur": "int64", "stake_eur": "int64", "win_eur": "int64",
               "ngr_eur": "int64", "bonus_eur": "int64", "sessions": "Int32"})


def _at(df: pd.DataFrame, player_id: str, day: dt.date | None = None, col: str = "as_of_date") -> pd.Series:
    rows = df[df["player_id"] == player_id]
    if day is not None:
        rows = rows[pd.to_datetime(rows[col]) == pd.Timestamp(day)]
    assert len(rows) == 1, (player_id, day, len(rows))
    return rows.iloc[0]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    from crm.ingest.landing import ingest_pending
    from crm.simulator.casino import simulate

    home = tmp_path_factory.mktemp("features_home")
    paths = Paths(home)
    simulate(paths, players=300, days=90, seed=3, progress=False)
    reports = ingest_pending(paths)
    assert reports and sum(r.loaded for r in reports) > 10_000
    return home


@pytest.fixture(scope="module")
def base(home) -> dict[str, pd.DataFrame]:
    """First build: the simulated events only; no imported_daily folder exists."""
    assert not (home / "landing" / "imported_daily").exists()
    dbt_build(home, AS_OF)
    return _read(home)


@pytest.fixture(scope="module")
def later(home, base) -> dict:
    """Second build: late events and imported aggregates, all on or after D."""
    from crm.ingest.landing import ingest_pending

    snaps = base["player_feature_snapshots"]
    snap_d = snaps[snaps["as_of_date"] == pd.Timestamp(D)]
    dim = base["dim_player"].set_index("player_id")
    fct = base["fct_player_daily"]

    def player(pid):
        return {"player_id": pid, "brand_id": dim.loc[pid, "brand_id"], "currency": dim.loc[pid, "currency"],
                "country": dim.loc[pid, "country"]}

    # a, b, c: in D's population and active in the week before D
    a, b, c = (player(p) for p in snap_d[snap_d["active_days_7d"] > 0]["player_id"].iloc[:3])
    new_country = "SE" if a["country"] != "SE" else "DE"
    newbie = {"player_id": NEWBIE, "brand_id": "A"}
    day = D + dt.timedelta(days=3)
    ev = [
        # exactly at D 00:00: outside every window of the snapshot at D
        _event(1, "bet.settled", a, _ts(D, 0, 0), stake=5_000_000, win=0, currency=a["currency"],
               provider="LateProvider", game_category="crash", rounds=10),
        _event(2, "session.started", a, _ts(day, 21), session_id="late_s1"),
        _event(3, "bet.settled", a, _ts(day, 21, 5), stake=90_000, win=1_000, currency=a["currency"],
               provider="LateProvider", game_category="crash", rounds=30, session_id="late_s1"),
        _event(4, "session.ended", a, _ts(day, 22), session_id="late_s1", duration_s=3600),
        _event(5, "payment.captured", a, _ts(day, 20), amount=25_000, currency=a["currency"],
               psp="late_psp", method="late_method"),
        _event(6, "payment.failed", a, _ts(day, 19), amount=25_000, currency=a["currency"],
               psp="late_psp", method="late_method", reason_code="insufficient_funds"),
        _event(7, "player.updated", a, _ts(D, 0, 0), country=new_country, timezone="Asia/Tokyo"),
        _event(8, "rg.self_exclusion.started", b, _ts(day, 10), scope="operator"),
        _event(9, "rg.limit.set", c, _ts(D, 0, 0), kind="late_test_limit", value=10_000),
        _event(10, "crm.delivery", c, _ts(day, 9), delivery_id="late_d1", campaign_id="late_c", channel="email"),
        _event(11, "crm.open", c, _ts(day, 10), delivery_id="late_d1", campaign_id="late_c", channel="email"),
        _event(12, "bonus.issued", c, _ts(day, 9), offer_id="late_o", template="free_spins", cost=500,
               currency=c["currency"]),
        _event(13, "player.registered", newbie, _ts(D, 8), country="MT", locale="en-MT", timezone="Europe/Malta",
               birth_date="1990-01-01", currency="EUR", age_verified=True),
        _event(14, "session.started", newbie, _ts(D, 9), session_id="late_s2"),
        _event(15, "bet.settled", newbie, _ts(D, 9, 5), stake=1_000, win=0, currency="EUR",
               provider="LateProvider", game_category="slots"),
        # an offer POST /v1/offers/generate issued, credited and consumed by the casino; another never taken
        _event(16, "offer.issued", c, _ts(day, 8), offer_id="of_late", template="tournament", cost=200,
               currency="EUR", campaign_id="offer_any", intent="any", offer_name="tour", channel="email",
               expires_at=_ts(day + dt.timedelta(days=7), 8)),
        _event(17, "bonus.issued", c, _ts(day, 9, 30), offer_id="of_late", template="tournament", cost=200,
               currency=c["currency"]),
        _event(18, "bonus.consumed", c, _ts(day, 11), offer_id="of_late", template="tournament", cost=200,
               currency=c["currency"]),
        _event(19, "offer.issued", a, _ts(day, 8), offer_id="of_late_2", template="cashback", cost=1_000,
               currency="EUR", intent="winback", offer_name="cash", channel="sms"),
    ]
    paths = Paths(home)
    with open(paths.incoming / "zz_late_events.jsonl", "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in ev)
    reports = ingest_pending(paths)
    assert [(r.loaded, r.quarantined) for r in reports] == [(len(ev), 0)], reports

    # e: an event player with stake on a day after D, who gets an imported row that day
    used = {a["player_id"], b["player_id"], c["player_id"]}
    cand = fct[(pd.to_datetime(fct["activity_date"]) > pd.Timestamp(day)) & (fct["stake_eur"] > 0)
               & ~fct["player_id"].isin(used)].iloc[0]
    e, e_day = cand["player_id"], pd.Timestamp(cand["activity_date"]).date()
    folder = home / "landing" / "imported_daily"
    folder.mkdir(parents=True)
    pd.concat([
        _imported(IMPORT_ONLY, IMPORT_DAYS, batch="b1", imported_at="2025-09-01 06:00"),
        _imported(e, [e_day], batch="b1", imported_at="2025-09-01 06:00", brand=None, country=None,
                  stake=7_700, sessions=None),
        # on or after the as-of date: cut like events
        _imported(IMPORT_ONLY, [AS_OF, AS_OF + dt.timedelta(days=1)], batch="b1", imported_at="2025-09-01 06:00"),
    ]).to_parquet(folder / "batch_b1.parquet", index=False)
    # a later batch re-imports the import-only player's first day: it replaces b1's row
    _imported(IMPORT_ONLY, IMPORT_DAYS[:1], batch="b2", imported_at="2025-09-02 06:00",
              stake=99_900).to_parquet(folder / "batch_b2.parquet", index=False)

    dbt_build(home, AS_OF)
    return {"marts": _read(home), "a": a["player_id"], "b": b["player_id"], "c": c["player_id"],
            "e": e, "e_day": e_day, "new_country": new_country}


# --------------------------------------------------------------------------- the spec
def test_spec_is_well_formed():
    assert 40 <= len(FEATURES) <= 60
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    for name in ("days_since_last_active", "deposit_eur_90d", "net_loss_eur_7d", "active_days_7d"):
        assert name in FEATURE_NAMES  # used by campaigns/*.yaml
    for f in FEATURES:
        assert f.kind in ("numeric", "categorical") and f.description.strip(), f
        assert f.window_days in (None, 7, 30, 90), f
        if f.window_days and not f.name.startswith("days_since_"):
            assert f.name.endswith(f"_{f.window_days}d"), f"{f.name}: the name does not show its window"


def _model_yml(model: str) -> dict:
    """The properties of ``model`` from the ``<model>.yml`` beside its ``<model>.sql``."""
    [sql] = (DBT_PROJECT_DIR / "models").rglob(f"{model}.sql")
    doc = yaml.safe_load(sql.with_suffix(".yml").read_text())
    [props] = [m for m in doc["models"] if m["name"] == model]
    return props


def test_dbt_contract_matches_spec():
    """The enforced contracts of the feature marts (player_feature_snapshots.yml,
    player_features.yml: column names, order, types) mirror the spec."""
    for model in ("player_feature_snapshots", "player_features"):
        cols = _model_yml(model)["columns"]
        if model == "player_feature_snapshots":  # the incremental watermark, last; not a feature
            assert cols[-1]["name"] == "loaded_at"
            cols = cols[:-1]
        assert [c["name"] for c in cols] == MART_COLUMNS, model
        for f, c in zip(FEATURES, cols[len(KEY_COLUMNS):], strict=True):
            window = ("whole history before as_of_date" if f.window_days is None
                      else f"{f.window_days} days before as_of_date")
            assert c["description"] == f"{f.description} [{f.kind}; window: {window}]", c["name"]
            # text is `string` in the contracts: VARCHAR on DuckDB, STRING on Spark (cross_engine.sql)
            types = {"string"} if f.kind == CATEGORICAL else {"integer", "bigint", "double"}
            assert c["data_type"] in types, (c["name"], c["data_type"])
            assert c.get("constraints") == [{"type": "not_null"}], c["name"]


MODELS_DIR = DBT_PROJECT_DIR / "models"
FEATURIZED = ("int_campaign_sends_featurized", "fct_campaign_exposures")  # key columns + the spec's features


def test_every_model_has_its_yml_beside_it():
    """One ``<model>.yml`` beside each ``<model>.sql`` (sources in ``_sources.yml``), describing
    that model only; every intermediate model and all its columns are described."""
    sql = {p.stem: p for p in MODELS_DIR.rglob("*.sql")}
    assert len(sql) >= 29
    ymls = {p for p in MODELS_DIR.rglob("*.yml") if p.name != "_sources.yml"}
    assert {p.with_suffix(".sql") for p in ymls} == set(sql.values()), "a model without its yml or the reverse"
    for name, path in sql.items():
        doc = yaml.safe_load(path.with_suffix(".yml").read_text())
        assert [m["name"] for m in doc["models"]] == [name], path
        assert set(doc) <= {"version", "models", "unit_tests"}, path
        assert all(u["model"] == name for u in doc.get("unit_tests", [])), path
        props = doc["models"][0]
        assert len(props.get("description", "").strip()) > 40, f"{name}: no description (or a placeholder)"
        assert props.get("columns"), f"{name}: no columns documented"
        if path.parent.name == "intermediate":
            bare = [c["name"] for c in props["columns"] if not c.get("description", "").strip()]
            assert not bare, f"{name}: columns without a description: {bare}"
    # the point-in-time join is written once, in a macro both feature models call
    for name in ("player_feature_snapshots", "int_campaign_sends_featurized"):
        text = sql[name].read_text()
        assert "point_in_time_feature_rows(" in text, name
        assert text.count("ref('int_players_historized')") == 1, name
        assert "players=ref('int_players_historized')" in text, name


def test_documented_columns_are_the_built_columns(home, base):
    """Every built model's yml lists its columns in order; the featurized models list theirs
    and end with exactly the spec's features."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        built_tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        checked = 0
        for path in MODELS_DIR.rglob("*.sql"):
            if path.stem not in built_tables:  # ephemeral
                continue
            documented = [c["name"] for c in _model_yml(path.stem)["columns"]]
            built = con.execute(f'SELECT column_name FROM (DESCRIBE "{path.stem}")').df()["column_name"].tolist()
            if path.stem in FEATURIZED:  # the documented columns, the features, then a documented loaded_at
                tail = 1 if documented[-1:] == ["loaded_at"] else 0
                head = len(documented) - tail
                assert built[head:len(built) - tail] == list(FEATURE_NAMES), path.stem
                built = built[:head] + built[len(built) - tail:]
            assert documented == built, path.stem
            checked += 1
    assert checked >= 28


def test_marts_have_exactly_the_spec_columns(base):
    kinds = {f.name: f.kind for f in FEATURES}
    for table in ("player_feature_snapshots", "player_features"):
        described = base[f"describe {table}"]
        if table == "player_feature_snapshots":  # the incremental watermark, last; not a feature
            assert described["column_name"].iloc[-1] == "loaded_at"
            described = described.iloc[:-1]
        assert described["column_name"].tolist() == MART_COLUMNS, table
        for name, typ in described[["column_name", "column_type"]].iloc[len(KEY_COLUMNS):].itertuples(index=False):
            assert typ == "VARCHAR" if kinds[name] == CATEGORICAL else typ in NUMERIC_TYPES, (table, name, typ)
        nulls = base[table][list(FEATURE_NAMES)].isna().sum()
        assert not nulls.any(), nulls[nulls > 0].to_dict()
    snaps = base["player_feature_snapshots"]
    assert len(snaps) > 1000 and snaps["as_of_date"].nunique() == 12
    for name in (f.name for f in FEATURES if f.kind == CATEGORICAL):
        assert len(set(snaps[name]) - {NONE_CATEGORY}) >= 2, name  # real values, not only the default
    flat = [f.name for f in FEATURES if f.kind != CATEGORICAL and snaps[f.name].nunique() < 2]
    assert not flat, f"features constant over the whole simulated casino: {flat}"


# --------------------------------------------------------------------------- point in time
def test_snapshot_at_d_ignores_everything_on_or_after_d(base, later):
    after = later["marts"]
    snap = base["player_feature_snapshots"]
    before_d = snap[snap["as_of_date"] == pd.Timestamp(D)].reset_index(drop=True)
    snap_after = after["player_feature_snapshots"]
    after_d = snap_after[snap_after["as_of_date"] == pd.Timestamp(D)].reset_index(drop=True)
    assert len(before_d) > 100
    pd.testing.assert_frame_equal(before_d, after_d, check_exact=True)
    # earlier snapshots too
    early = snap[snap["as_of_date"] < pd.Timestamp(D)].reset_index(drop=True)
    early_after = snap_after[snap_after["as_of_date"] < pd.Timestamp(D)].reset_index(drop=True)
    pd.testing.assert_frame_equal(early, early_after, check_exact=True)

    # ... while the late data did reach the warehouse and the later snapshots
    a, b, c = later["a"], later["b"], later["c"]
    dim = after["dim_player"].set_index("player_id")
    assert dim.loc[a, "country"] == later["new_country"] and dim.loc[a, "timezone"] == "Asia/Tokyo"
    assert bool(dim.loc[b, "self_excluded_now"])
    assert NEWBIE in dim.index and NEWBIE not in set(after_d["player_id"])
    f0, f1 = base["player_features"].set_index("player_id"), after["player_features"].set_index("player_id")
    assert f1.loc[a, "payment_methods_90d"] == f0.loc[a, "payment_methods_90d"] + 1
    assert f1.loc[a, "stake_eur_90d"] > f0.loc[a, "stake_eur_90d"] and f1.loc[a, "country"] == later["new_country"]
    assert f1.loc[c, "rg_limits_set"] == f0.loc[c, "rg_limits_set"] + 1
    nxt = _at(after["player_feature_snapshots"], a, D + dt.timedelta(days=7))
    assert nxt["favourite_game_category_90d"] == "crash" and nxt["country"] == later["new_country"]
    assert _at(after["player_feature_snapshots"], NEWBIE, D + dt.timedelta(days=7))["tenure_days"] == 7

    # every player the new data does not touch is unchanged, in every mart
    touched = {a, b, c, later["e"], NEWBIE, IMPORT_ONLY}
    for table in ("fct_player_daily", "player_feature_snapshots", "player_labels", "dim_player"):
        x, y = base[table], after[table]
        # (dtypes may differ: an import-only player brings NULLs into e.g. dim_player.birth_year)
        pd.testing.assert_frame_equal(x[~x["player_id"].isin(touched)].reset_index(drop=True),
                                      y[~y["player_id"].isin(touched)].reset_index(drop=True),
                                      check_exact=True, check_dtype=False, obj=table)


# --------------------------------------------------------------------------- labels
def test_labels_have_their_own_completeness(base):
    labels, snaps = base["player_labels"], base["player_feature_snapshots"]
    data_end = LAST_DAY + dt.timedelta(days=1)
    for d, rows in labels.groupby("as_of_date"):
        d = pd.Timestamp(d).date()
        churn_complete = d + dt.timedelta(days=30) <= data_end
        deposit_complete = d + dt.timedelta(days=7) <= data_end
        assert rows["churned"].notna().all() == churn_complete and rows["churned"].notna().any() == churn_complete
        assert rows["deposited_7d"].notna().all() and deposit_complete
        assert len(rows) == (snaps["as_of_date"] == pd.Timestamp(d)).sum()  # every snapshot row is labelled
    dates = {pd.Timestamp(d).date() for d in labels["as_of_date"].unique()}
    # the snapshot dates: AS_OF and the 11 Mondays before it (the weekly grid)
    last_monday = AS_OF - dt.timedelta(days=(AS_OF.weekday() or 7))
    grid = [AS_OF] + [last_monday - dt.timedelta(days=7 * k) for k in range(11)]
    assert {pd.Timestamp(d).date() for d in snaps["as_of_date"].unique()} <= set(grid)
    assert max(dates) == max(d for d in grid if d + dt.timedelta(days=7) <= data_end)  # deposit-only rows exist
    assert AS_OF not in dates and labels["churned"].isna().any() and labels["churned"].notna().any()


# --------------------------------------------------------------------------- imports
def test_imported_daily_aggregates_reach_dim_fct_features_and_labels(base, later):
    after = later["marts"]
    p = after["dim_player"].set_index("player_id").loc[IMPORT_ONLY]
    assert (p["brand_id"], p["country"]) == ("A", "MT")
    assert pd.Timestamp(p["registered_at"]) == pd.Timestamp(IMPORT_DAYS[0])
    assert not any(bool(p[f"consent_{ch}"]) for ch in ("email", "push", "sms", "in_app", "profiling"))
    assert not bool(p["age_verified"]) and not bool(p["is_adult"]) and pd.isna(p["age_years"])

    fct = after["fct_player_daily"]
    mine = fct[fct["player_id"] == IMPORT_ONLY]
    assert [pd.Timestamp(d).date() for d in mine["activity_date"]] == IMPORT_DAYS  # as-of cut on imports too
    assert mine["is_active"].all() and mine["has_imported"].all() and (mine["deposits"] == 1).all()
    assert mine["stake_eur"].tolist() == [99_900] + [10_000] * (len(IMPORT_DAYS) - 1)  # batch b2 wins day 1
    assert (mine["ngr_eur"].iloc[1:] == 10_000 // 2 - 100).all() and (mine["bets"] == 0).all()

    # an event player's imported day adds to that day's events
    e, e_day = later["e"], later["e_day"]
    ev = _at(base["fct_player_daily"], e, e_day, "activity_date")
    both = _at(fct, e, e_day, "activity_date")
    assert both["stake_eur"] == ev["stake_eur"] + 7_700 and both["win_eur"] == ev["win_eur"] + 7_700 // 2
    assert both["deposit_eur"] == ev["deposit_eur"] + 5_000 and both["deposits"] == ev["deposits"] + 1
    assert both["ngr_eur"] == ev["ngr_eur"] + 7_700 // 2 - 100 and both["bonus_cost_eur"] == ev["bonus_cost_eur"] + 100
    assert both["sessions"] == ev["sessions"] and both["bets"] == ev["bets"]
    assert bool(both["has_imported"]) and not bool(ev["has_imported"])

    # features for the import-only player
    at = _at(after["player_features"], IMPORT_ONLY)
    window = [d for d in IMPORT_DAYS if AS_OF - dt.timedelta(days=30) <= d]
    assert at["stake_eur_30d"] == 10_000 * len(window) and at["active_days_30d"] == len(window)
    assert at["deposits_30d"] == len(window) and at["sessions_30d"] == 2 * len(window)
    assert at["tenure_days"] == (AS_OF - IMPORT_DAYS[0]).days and at["country"] == "MT"
    assert at["favourite_provider_90d"] == NONE_CATEGORY
    assert at["days_since_last_active"] == (AS_OF - IMPORT_DAYS[-1]).days
    # ... and labels: churn where complete (D + 7), deposits where complete
    labels = after["player_labels"]
    mine = labels[labels["player_id"] == IMPORT_ONLY].set_index("as_of_date")
    first = mine.loc[pd.Timestamp(D + dt.timedelta(days=7))]
    assert not bool(first["churned"]) and bool(first["deposited_7d"])
    assert mine["deposited_7d"].notna().all() and mine["deposited_7d"].astype(bool).all()


def test_offers_join_the_bonus_events_that_carry_their_id(home, later):
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        df = con.execute("SELECT * FROM fct_offers ORDER BY offer_id").df().set_index("offer_id")
    assert df.index.tolist() == ["of_late", "of_late_2"]
    taken, never = df.loc["of_late"], df.loc["of_late_2"]
    assert taken["player_id"] == later["c"] and taken["status"] == "consumed" and taken["cost_eur_cents"] == 200
    assert taken["credited_cost_minor"] == 200 and taken["intent"] == "any" and taken["offer_name"] == "tour"
    assert pd.Timestamp(taken["consumed_at"]) > pd.Timestamp(taken["credited_at"]) > pd.Timestamp(taken["issued_at"])
    assert pd.Timestamp(taken["expires_at"]) - pd.Timestamp(taken["issued_at"]) == pd.Timedelta(days=7)
    assert never["player_id"] == later["a"] and never["status"] == "issued" and pd.isna(never["credited_at"])
    from crm.measurement.offers import offer_report

    report = offer_report(Paths(home)).set_index("offer")
    assert report.loc["tour", "issued"] == 1 and report.loc["tour", "consumed"] == 1
    assert report.loc["tour", "consumed_share"] == 1.0 and report.loc["tour", "cost_consumed_eur"] == 2.0
    assert report.loc["cash", "consumed"] == 0 and report.loc["cash", "cost_issued_eur"] == 10.0
    assert offer_report(Paths(home), since="2030-01-01").empty
