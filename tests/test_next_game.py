"""Next best game: never a game outside the player's jurisdiction's licences, never a high-volatility or
long-session game to a player with an RG marker (hypothesis over odd values), and the ranker learns
what a player takes up next better than popularity and the favourite provider on plays whose
structure the test knows."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.campaigns.next_game import allowed_games, has_harm_marker
from crm.campaigns.offer_generation import harm_markers
from ml.games import BASELINES, Catalogue, baseline_scores, evaluate, fit_and_evaluate, matrices, top_k

PROVIDERS = ["NetEnt", "Evolution", "Red Tiger"]
COUNTRIES = ["UK", "MT", "NL", "SE", "DE"]
ODD_COUNTRIES = [None, "", " uk", "Uk", "XX", "de\u200b", "MT "]
FLAG_VALUES = [False, False, False, False, True, None, "false", 0, np.False_, np.True_, float("nan")]
HITS = [0, 0, 0, 1, -1, None, "0", float("nan"), float("inf"), True, np.int64(0), np.int64(2), 0.0]


def _independent_marker(row: dict) -> bool:
    for c in ("harm_risk_flag", "self_excluded_now", "cooling_off_now", "ever_self_excluded"):
        v = row.get(c)
        if not (v is False or (isinstance(v, np.bool_) and not v)):
            return True
    h = row.get("rg_limit_hits_30d")
    numeric = isinstance(h, int | float | np.integer | np.floating) and not isinstance(h, bool)
    return not (numeric and not math.isnan(float(h)) and h <= 0)


@st.composite
def worlds(draw):
    n_games = draw(st.integers(1, 8))
    games = pd.DataFrame({
        "game": [f"g{i}" for i in range(n_games)],
        "provider": [draw(st.sampled_from(PROVIDERS)) for _ in range(n_games)],
        "game_category": [draw(st.sampled_from(["slots", "live", "table"])) for _ in range(n_games)],
        "volatility": [draw(st.sampled_from(["low", "medium", "high", "HIGH", "extreme", None]))
                       for _ in range(n_games)],
        "long_session": [draw(st.sampled_from([False, False, True, None])) for _ in range(n_games)],
    })
    pairs = draw(st.lists(st.tuples(st.sampled_from(PROVIDERS), st.sampled_from(COUNTRIES)), max_size=15, unique=True))
    licences = pd.DataFrame(pairs, columns=["provider", "jurisdiction"])
    rows = []
    for i in range(draw(st.integers(1, 8))):
        rows.append({"player_id": f"p{i}", "country": draw(st.sampled_from(COUNTRIES + ODD_COUNTRIES)),
                     **{c: draw(st.sampled_from(FLAG_VALUES)) for c in ("harm_risk_flag", "self_excluded_now",
                                                                         "cooling_off_now", "ever_self_excluded")},
                     "rg_limit_hits_30d": draw(st.sampled_from(HITS))})
    return pd.DataFrame(rows), games, licences


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds())
def test_no_unlicensed_or_risky_game_is_ever_allowed(world):
    players, games, licences = world
    allowed = allowed_games(players, games, licences)
    licensed = set(zip(licences["provider"], licences["jurisdiction"], strict=True))
    for i, p in enumerate(players.to_dict("records")):
        marked = _independent_marker(p)
        assert bool(has_harm_marker(players.iloc[[i]])[0]) == marked
        assert bool(harm_markers(p)) == marked  # the offer generator's markers, one reading
        for j, g in enumerate(games.to_dict("records")):
            if not allowed[i, j]:
                continue
            assert (g["provider"], p["country"]) in licensed, (p, g)  # exact jurisdiction code only
            if marked:
                assert g["volatility"] in ("low", "medium") and g["long_session"] is False, (p, g)


def _plays(n_players: int, days: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dt.date]:
    """Plays with a known structure: each player prefers one category and plays its games (a few
    favourites, sometimes a new one of that category); providers and popularity carry no signal."""
    rng = np.random.default_rng(seed)
    cats = ["slots", "live", "table"]
    games = pd.DataFrame({"game": [f"{c}_{k}" for c in cats for k in range(6)],
                          "provider": [PROVIDERS[k % 3] for c in cats for k in range(6)],
                          "game_category": [c for c in cats for _ in range(6)]})
    start = dt.date(2025, 1, 1)
    rows = []
    for p in range(n_players):
        cat = rng.choice(3, p=[0.5, 0.3, 0.2])
        pool = [f"{cats[cat]}_{k}" for k in range(6)]
        fav = list(rng.choice(pool, 2, replace=False))
        for d in range(days):
            if rng.random() < 0.25:
                game = fav[rng.integers(2)] if rng.random() < 0.7 else pool[rng.integers(6)]
                if rng.random() < 0.1:  # an occasional game of another category
                    game = f"{cats[rng.integers(3)]}_{rng.integers(6)}"
                rows.append((f"p{p}", start + dt.timedelta(days=d), game, int(rng.integers(5, 60))))
    return pd.DataFrame(rows, columns=["player_id", "activity_date", "game", "rounds"]), games, \
        start + dt.timedelta(days=days - 1)


def test_the_ranker_beats_both_baselines_where_the_history_tells():
    plays, games, last = _plays(600, 140, seed=3)
    catalogue = Catalogue.of(games)
    everything = lambda ids: np.ones((len(ids), catalogue.size), dtype=bool)  # noqa: E731
    model, ev, _ = fit_and_evaluate(plays, catalogue, everything, last, seed=1)
    d = {name: ev.metrics[name]["discovery"] for name in ("model", *BASELINES)}
    assert ev.metrics["model"]["discovery"]["players_evaluated"] > 50
    for k in (1, 3):
        assert d["model"][f"recall_at_{k}"] > 1.3 * max(d[b][f"recall_at_{k}"] for b in BASELINES), d
    assert ev.metrics["model"]["all"]["recall_at_3"] > ev.metrics["popularity"]["all"]["recall_at_3"]
    assert 0 < d["model"]["coverage_at_3"] <= 1
    flat = ev.flat()
    assert flat["discovery_recall_at_3"] == d["model"]["recall_at_3"]
    assert flat["popularity_discovery_recall_at_3"] == d["popularity"]["recall_at_3"]


def test_top_k_takes_only_allowed_games_and_metrics_count_them():
    scores = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    allowed = np.array([[False, True, True], [False, False, False]])
    top = top_k(scores, allowed, 2)
    assert top.tolist() == [[1, 2], [-1, -1]]
    relevant = np.array([[True, False, True], [True, False, False]])
    m = evaluate(scores, allowed, relevant, ks=(1, 2))
    assert m["recall_at_1"] == 0.0 / 2 / 2 + 0.0  # p0: g1 not relevant; p1: nothing allowed
    assert m["recall_at_2"] == (1 / 2 + 0) / 2
    assert m["coverage_at_2"] == 2 / 3


def test_the_favourite_provider_baseline_ranks_that_providers_games_first():
    plays = pd.DataFrame({"player_id": ["a", "a", "b"], "activity_date": [dt.date(2025, 1, 5)] * 3,
                          "game": ["x1", "y1", "y2"], "rounds": [50, 5, 10]})
    games = pd.DataFrame({"game": ["x1", "x2", "y1", "y2"], "provider": ["X", "X", "Y", "Y"],
                          "game_category": ["slots"] * 4})
    cat = Catalogue.of(games)
    m = matrices(plays, cat, np.array(["a"]), dt.date(2025, 1, 10))
    s = baseline_scores("favourite_provider", m, cat)
    assert set(np.argsort(-s[0])[:2]) == {0, 1}  # x1, x2 before the Y games
