"""Next best game per player (the model: :mod:`ml.games`), under the product's rules.

A game may be recommended to a player only when:

* its provider is licensed in the player's jurisdiction (seed ``provider_licences``; an unknown or
  missing jurisdiction has none: no recommendation, fail closed), and
* the player has no responsible-gambling marker (:func:`has_harm_marker`: the offer generator's
  markers, an unknown one counting as present), or the game is of low or medium volatility and
  not a long-session format (seed ``games``; an unknown volatility or format counts as risky).

Players with profiling consent get the model's discovery ranking (games they have not played in
90 days); the others the most popular allowed game they have not played (no profile used). The
top :data:`TOP` per player are written to ``game_recommendations`` in the warehouse; lists carry
the first as ``recommended_game`` (a template's ``{{ recommended_game }}``).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from crm.campaigns.offer_generation import HARM_FLAGS
from crm.config import Paths
from crm.sql import ident
from crm.warehouse import RECS_TABLE, connect, fetch_df

TOP = 3
RG_SAFE_VOLATILITY = ("low", "medium")  # an allowlist: any other (or no) volatility is not shown to an RG marker
_RECS_COLUMNS = ("player_id", "as_of_date", "rank", "game", "score", "basis", "model_version")


def has_harm_marker(players: pd.DataFrame) -> np.ndarray:
    """Per row: any responsible-gambling marker (:func:`crm.campaigns.offer_generation.harm_markers`,
    vectorised): a flag that is not exactly False, or a limit-hit count that is not a number <= 0."""
    out = np.zeros(len(players), dtype=bool)
    for col in HARM_FLAGS:
        if col not in players:
            return np.ones(len(players), dtype=bool)
        out |= ~players[col].map(lambda v: v is False or (isinstance(v, np.bool_) and not v)).to_numpy(dtype=bool)
    hits = players["rg_limit_hits_30d"] if "rg_limit_hits_30d" in players else pd.Series(np.nan, index=players.index)
    numeric = hits.map(lambda v: isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool))
    values = pd.to_numeric(hits.where(numeric), errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        return out | ~(values <= 0)


def allowed_games(players: pd.DataFrame, games: pd.DataFrame, licences: pd.DataFrame) -> np.ndarray:
    """(players x games) bool, games in ``games``' row order: licensed in the player's
    jurisdiction, and not high-volatility or long-session for a player with an RG marker."""
    licensed = set(zip(licences["provider"].astype(str), licences["jurisdiction"].astype(str), strict=True))
    countries = players["country"].astype(object).where(players["country"].notna(), None).to_numpy()
    codes, distinct = pd.factorize(pd.Series(countries, dtype=object).fillna("\x00"))
    providers = games["provider"].astype(str).to_numpy()
    per_country = np.asarray([[(p, c) in licensed for p in providers] for c in distinct], dtype=bool).reshape(
        len(distinct), len(providers))
    out = per_country[codes] if len(codes) else np.zeros((0, len(providers)), dtype=bool)
    safe = games["volatility"].isin(RG_SAFE_VOLATILITY).to_numpy(dtype=bool) & games["long_session"].map(
        lambda v: v is False or (isinstance(v, np.bool_) and not v)).to_numpy(dtype=bool)
    risky = ~safe
    marked = has_harm_marker(players)
    return out & ~(marked[:, None] & risky[None, :])


def has_profiling_consent(players: pd.DataFrame) -> np.ndarray:
    """Per row: profiling consent for certain (True; anything else, missing included, is no)."""
    return players["consent_profiling"].map(lambda v: v is True or (isinstance(v, np.bool_) and bool(v))
                                            ).to_numpy(dtype=bool)


def read_inputs(paths: Paths) -> dict[str, pd.DataFrame]:
    """The play history (``fct_player_game_daily``), the catalogue (``games``, in game order), the
    licences and the players (jurisdiction, RG state, profiling consent) from the warehouse."""
    cols = ("player_id", "country", "consent_profiling", *HARM_FLAGS, "rg_limit_hits_30d")
    with connect(paths) as con:
        have = {r[0] for r in con.execute("DESCRIBE dim_player").fetchall()}
        pick = ", ".join(ident(c) if c in have else f"NULL AS {ident(c)}" for c in cols)
        return {
            "plays": fetch_df(con, "SELECT player_id, activity_date, game, rounds FROM fct_player_game_daily"),
            # in the catalogue's order (ml.games.Catalogue sorts by name)
            "games": fetch_df(con, "SELECT game, provider, game_category, volatility, long_session FROM games"
                              ).drop_duplicates("game").sort_values("game").reset_index(drop=True),
            "licences": fetch_df(con, "SELECT provider, jurisdiction FROM provider_licences"),
            "players": fetch_df(con, f"SELECT {pick} FROM dim_player ORDER BY player_id"),
        }


def allowed_for_players(players: pd.DataFrame, games: pd.DataFrame, licences: pd.DataFrame):
    """``allowed_for(player_ids)``: :func:`allowed_games` for those players (one not in ``players``: none)."""
    by_id = players.set_index(players["player_id"].astype(str))

    def allowed_for(ids: np.ndarray) -> np.ndarray:
        known = by_id.reindex(pd.Index(ids, dtype=object)).reset_index(drop=True)  # not in the profile: none
        return allowed_games(known, games, licences) & known["country"].notna().to_numpy()[:, None]

    return allowed_for


def last_day_of(plays: pd.DataFrame, as_of: dt.date) -> dt.date:
    """The last day with play data before ``as_of``."""
    if not len(plays):
        raise ValueError("no game play in the warehouse (fct_player_game_daily is empty)")
    return min(pd.Timestamp(plays["activity_date"].max()).date(), as_of - dt.timedelta(days=1))


def train(paths: Paths, as_of: dt.date, *, tracking_uri: str, artifact_location: str,
          lineage: dict[str, str] | None = None) -> dict:
    """Train, evaluate against the baselines and register next best game (:func:`ml.games.train_and_log`)."""
    from ml.games import train_and_log

    data = read_inputs(paths)
    allowed_for = allowed_for_players(data["players"], data["games"], data["licences"])
    return train_and_log(data["plays"], data["games"], allowed_for, last_day_of(data["plays"], as_of),
                         tracking_uri=tracking_uri,
                         artifact_location=artifact_location, lineage=lineage)


def write_recommendations(paths: Paths, as_of: dt.date, *, tracking_uri: str) -> dict:
    """Recommend with the champion and write the top :data:`TOP` per player of ``as_of`` to
    ``game_recommendations`` (the date's rows replaced). Returns counts for the asset's metadata."""
    import mlflow

    from ml import registry
    from ml.games import MODEL_NAME, Catalogue, recommend

    client = registry.connect(tracking_uri)
    mv = registry.require_version(client, MODEL_NAME)
    model = mlflow.lightgbm.load_model(f"models:/{MODEL_NAME}/{mv.version}")
    data = read_inputs(paths)
    players, games = data["players"], data["games"]
    catalogue = Catalogue.of(games)  # the same order as games (read_inputs)
    ids = players["player_id"].astype(str).to_numpy()
    allowed = allowed_games(players, games, data["licences"])
    personal = has_profiling_consent(players)
    top, scores = recommend(model, data["plays"], catalogue, ids, allowed, personal, as_of, TOP)
    rows = [(ids[i], as_of, j + 1, catalogue.games[top[i, j]], float(scores[i, j]),
             "model" if personal[i] else "popular", str(mv.version))
            for i, j in zip(*np.nonzero(top >= 0), strict=True)]
    df = pd.DataFrame(rows, columns=list(_RECS_COLUMNS))
    with connect(paths, read_only=False) as con:
        con.execute(f"CREATE TABLE IF NOT EXISTS {ident(RECS_TABLE)} (player_id VARCHAR, as_of_date DATE, "
                    "rank INTEGER, game VARCHAR, score DOUBLE, basis VARCHAR, model_version VARCHAR)")
        con.execute("BEGIN")
        con.execute(f"DELETE FROM {ident(RECS_TABLE)} WHERE as_of_date = ?", [as_of])
        con.register("_recs", df)
        con.execute(f"INSERT INTO {ident(RECS_TABLE)} SELECT {', '.join(_RECS_COLUMNS)} FROM _recs")
        con.execute("COMMIT")
    first = df[df["rank"] == 1]
    return {"players": len(ids), "with_recommendation": len(first), "model_version": str(mv.version),
            "personal": int((first["basis"] == "model").sum()),
            "top_games": first["game"].value_counts().head(5).to_dict()}
