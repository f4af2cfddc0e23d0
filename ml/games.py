"""Next best game: which game of the catalogue a player is likely to take up next.

A learning-to-rank model (LightGBM ``LGBMRanker``, lambdarank) over (player, game) candidates,
with history-based features (the player's own rounds on the game, its category and provider; how
similar the game is to the games they play, by item-item co-play), popularity and novelty (the
game's share of active players over 30 days, within its category, its trend). The label: the
player plays the game in the :data:`LABEL_DAYS` days after the cut.

Two modes, one model:

* **discovery** (what is served): candidates are the games the player has *not* played in the
  :data:`HISTORY_DAYS` days before the cut: a recommendation is a game to try, not the favourite
  they play anyway; evaluated by the recall of the new games they took up;
* **all games**: every game, evaluated by the recall of every game they played.

Evaluated offline on a time split (features at a cut, labels after it; trained on an earlier cut)
against two baselines: popularity, and "more of the favourite provider" (the favourite
provider's games by popularity, then the rest by popularity); recall@k and catalogue coverage.

Only games allowed to the player are ranked: the caller's mask (:mod:`crm.campaigns.next_game`:
the provider licensed in the player's jurisdiction; no high-volatility or long-session format for
a player with an RG marker) is applied before the top k is taken, in evaluation as in serving.

Pure numpy on dense (players x games) matrices: a catalogue holds tens to thousands of games, and
players are taken in chunks by the caller.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

HISTORY_DAYS = 90
LABEL_DAYS = 14
K = (1, 3, 5)
MODEL_NAME = "next_best_game"
FEATURES = ("own_share_90d", "own_share_14d", "days_since_played", "category_share_90d", "provider_share_90d",
            "item_similarity", "popularity_30d", "popularity_in_category_30d", "trend_14_over_30", "new_to_player")
BASELINES = ("popularity", "favourite_provider")


@dataclass(frozen=True)
class Catalogue:
    """The games (:attr:`games` in a fixed order) with their provider and category codes."""

    games: np.ndarray  # names
    provider: np.ndarray  # int codes
    category: np.ndarray  # int codes

    @classmethod
    def of(cls, games: pd.DataFrame) -> Catalogue:
        g = games.drop_duplicates("game").sort_values("game").reset_index(drop=True)
        return cls(g["game"].astype(str).to_numpy(), pd.factorize(g["provider"].astype(str))[0],
                   pd.factorize(g["game_category"].astype(str))[0])

    @property
    def size(self) -> int:
        return len(self.games)


@dataclass
class Matrices:
    """Per player (rows: ``players``) and catalogue game (columns) at a cut date."""

    players: np.ndarray
    rounds_90d: np.ndarray
    rounds_14d: np.ndarray
    last_played: np.ndarray  # days before the cut of the last play (inf: never in the window)
    popularity_30d: np.ndarray  # per game
    popularity_14d: np.ndarray  # per game


def _days(cut: dt.date, days: pd.Series) -> np.ndarray:
    return (np.datetime64(cut, "D") - pd.to_datetime(days).to_numpy(dtype="datetime64[D]")).astype(np.int64)


def matrices(plays: pd.DataFrame, catalogue: Catalogue, players: np.ndarray, cut: dt.date) -> Matrices:
    """``plays`` (player_id, activity_date, game, rounds) before ``cut``, over the last
    :data:`HISTORY_DAYS` days, as dense matrices for ``players`` and the catalogue's games (a game
    not in the catalogue is ignored). Popularity is over every player in ``plays``."""
    ago = _days(cut, plays["activity_date"])
    window = (ago >= 1) & (ago <= HISTORY_DAYS)
    p = plays[window]
    ago = ago[window]
    gi = pd.Index(catalogue.games).get_indexer(p["game"].astype(str))
    known = gi >= 0
    p, ago, gi = p[known], ago[known], gi[known]
    rounds = pd.to_numeric(p["rounds"], errors="coerce").fillna(0).clip(lower=0).to_numpy(dtype=float)
    # popularity: share of the players active in the window who played the game
    pid_all = p["player_id"].astype(str).to_numpy()
    pop = np.zeros(catalogue.size), np.zeros(catalogue.size)
    for out, days in zip(pop, (30, 14), strict=True):
        recent = ago <= days
        active = len(np.unique(pid_all[recent]))
        if active:
            pairs = pd.DataFrame({"p": pid_all[recent], "g": gi[recent]}).drop_duplicates()
            out[:] = np.bincount(pairs["g"].to_numpy(), minlength=catalogue.size) / active
    rows = pd.Index(players).get_indexer(pid_all)
    mine = rows >= 0
    r, g, a, x = rows[mine], gi[mine], ago[mine], rounds[mine]
    n = len(players)
    r90 = np.zeros((n, catalogue.size))
    r14 = np.zeros((n, catalogue.size))
    last = np.full((n, catalogue.size), np.inf)
    np.add.at(r90, (r, g), x)
    np.add.at(r14, (r[a <= 14], g[a <= 14]), x[a <= 14])
    np.minimum.at(last, (r, g), a.astype(float))
    return Matrices(players, r90, r14, last, pop[0], pop[1])


def _share(m: np.ndarray) -> np.ndarray:
    tot = m.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, m / np.where(tot > 0, tot, 1), 0.0)


def _group_share(share: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per player and game: the player's share of rounds on the game's group (category, provider)."""
    k = codes.max() + 1 if len(codes) else 0
    by_group = np.zeros((share.shape[0], k))
    for c in range(k):
        by_group[:, c] = share[:, codes == c].sum(axis=1)
    return by_group[:, codes]


def similarity(rounds_90d: np.ndarray) -> np.ndarray:
    """Item-item cosine similarity of games by who plays them (players x games, binary), no self."""
    b = (rounds_90d > 0).astype(float)
    co = b.T @ b
    norm = np.sqrt(np.diag(co))
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(np.outer(norm, norm) > 0, co / np.outer(norm, norm), 0.0)
    np.fill_diagonal(sim, 0.0)
    return sim


def features(m: Matrices, catalogue: Catalogue, sim: np.ndarray) -> np.ndarray:
    """(players x games x len(FEATURES)) candidate features at the cut."""
    share90, share14 = _share(m.rounds_90d), _share(m.rounds_14d)
    pop = np.broadcast_to(m.popularity_30d, share90.shape)
    cat_pop = np.zeros(catalogue.size)
    for c in np.unique(catalogue.category):
        members = catalogue.category == c
        top = m.popularity_30d[members].max()
        cat_pop[members] = m.popularity_30d[members] / top if top > 0 else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        trend = np.where(m.popularity_30d > 0, m.popularity_14d / np.where(m.popularity_30d > 0, m.popularity_30d, 1),
                         0.0)
    item = share90 @ sim  # how much the game is played alongside the player's own games
    days = np.where(np.isfinite(m.last_played), m.last_played, HISTORY_DAYS + 1)
    cols = [share90, share14, days, _group_share(share90, catalogue.category),
            _group_share(share90, catalogue.provider), item, pop, np.broadcast_to(cat_pop, share90.shape),
            np.broadcast_to(trend, share90.shape), (m.rounds_90d == 0).astype(float)]
    return np.stack([np.asarray(c, dtype=np.float32) for c in cols], axis=2)


def labels(plays: pd.DataFrame, catalogue: Catalogue, players: np.ndarray, cut: dt.date) -> np.ndarray:
    """(players x games) bool: played in [cut, cut + LABEL_DAYS)."""
    after = -_days(cut, plays["activity_date"])
    p = plays[(after >= 0) & (after < LABEL_DAYS)]
    rows = pd.Index(players).get_indexer(p["player_id"].astype(str))
    gi = pd.Index(catalogue.games).get_indexer(p["game"].astype(str))
    ok = (rows >= 0) & (gi >= 0)
    out = np.zeros((len(players), catalogue.size), dtype=bool)
    out[rows[ok], gi[ok]] = True
    return out


def baseline_scores(name: str, m: Matrices, catalogue: Catalogue) -> np.ndarray:
    """(players x games) scores of a baseline (higher first)."""
    pop = np.broadcast_to(m.popularity_30d, m.rounds_90d.shape)
    if name == "popularity":
        return np.array(pop)
    if name == "favourite_provider":
        by_provider = np.zeros((len(m.players), catalogue.provider.max() + 1))
        for v in range(by_provider.shape[1]):
            by_provider[:, v] = m.rounds_90d[:, catalogue.provider == v].sum(axis=1)
        fav = np.where(by_provider.sum(axis=1) > 0, by_provider.argmax(axis=1), -1)
        return (catalogue.provider[None, :] == fav[:, None]).astype(float) * 10.0 + pop
    raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")


def top_k(scores: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
    """(players x k) game indices of the k highest scores among the allowed (-1 where fewer)."""
    s = np.where(allowed, scores, -np.inf)
    k = min(k, s.shape[1])
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.where(np.take_along_axis(s, idx, axis=1) > -np.inf, idx, -1)


def evaluate(scores: np.ndarray, allowed: np.ndarray, relevant: np.ndarray, ks=K) -> dict[str, float]:
    """recall@k (mean over players with a relevant game: the share of their relevant games in
    the top k) and coverage@k (share of the catalogue in anyone's top k)."""
    out: dict[str, float] = {}
    has = relevant.any(axis=1)
    out["players_evaluated"] = float(has.sum())
    for k in ks:
        top = top_k(scores, allowed, k)
        hit = np.zeros(len(top))
        for j in range(top.shape[1]):
            col = top[:, j]
            ok = col >= 0
            hit[ok] += relevant[np.flatnonzero(ok), col[ok]]
        n_rel = relevant.sum(axis=1)
        out[f"recall_at_{k}"] = float((hit[has] / n_rel[has]).mean()) if has.any() else float("nan")
        shown = np.unique(top[top >= 0])
        out[f"coverage_at_{k}"] = float(len(shown) / scores.shape[1]) if scores.shape[1] else 0.0
    return out


def training_rows(x: np.ndarray, y: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened (rows, labels, group sizes) of the players with at least one positive candidate."""
    keep = (y & candidates).any(axis=1)
    xs, ys, groups = [], [], []
    for i in np.flatnonzero(keep):
        c = candidates[i]
        xs.append(x[i][c])
        ys.append(y[i][c].astype(int))
        groups.append(int(c.sum()))
    if not xs:
        return np.zeros((0, x.shape[2]), np.float32), np.zeros(0, int), np.zeros(0, int)
    return np.concatenate(xs), np.concatenate(ys), np.asarray(groups)


def fit(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0):
    """The ranker on flattened candidate rows (:func:`training_rows`)."""
    import lightgbm as lgb

    model = lgb.LGBMRanker(objective="lambdarank", n_estimators=120, learning_rate=0.05, num_leaves=15,
                           min_child_samples=20, subsample=0.8, subsample_freq=1, colsample_bytree=0.9,
                           random_state=seed, verbose=-1, n_jobs=2)
    model.fit(pd.DataFrame(x, columns=list(FEATURES)), y, group=groups)
    return model


def predict(model, x: np.ndarray) -> np.ndarray:
    """(players x games) scores of the ranker over candidate features ``x``."""
    n, g, f = x.shape
    flat = pd.DataFrame(x.reshape(n * g, f), columns=list(FEATURES))
    return np.asarray(model.predict(flat), dtype=float).reshape(n, g)


# ---------------------------------------------------------------------------- offline evaluation and MLflow

PRIMARY_METRIC = "discovery_recall_at_3"
MAX_TRAIN_PLAYERS = 20_000


@dataclass
class Evaluation:
    """Model and baselines on the evaluation cut, in both modes: ``metrics[method][mode]``."""

    metrics: dict[str, dict[str, dict[str, float]]]
    train_cut: dt.date
    eval_cut: dt.date
    train_rows: int
    train_players: int

    def flat(self) -> dict[str, float]:
        return {f"{method}_{mode}_{k}" if method != "model" else f"{mode}_{k}": v
                for method, modes in self.metrics.items() for mode, ms in modes.items() for k, v in ms.items()}


def cuts(last_day: dt.date) -> tuple[dt.date, dt.date]:
    """(training cut, evaluation cut): the evaluation labels are the last LABEL_DAYS days with data,
    the training labels the LABEL_DAYS before them."""
    eval_cut = last_day + dt.timedelta(days=1) - dt.timedelta(days=LABEL_DAYS)
    return eval_cut - dt.timedelta(days=LABEL_DAYS), eval_cut


def _players(plays: pd.DataFrame, cut: dt.date, cap: int | None, seed: int) -> np.ndarray:
    ago = _days(cut, plays["activity_date"])
    ids = np.unique(plays.loc[(ago >= 1) & (ago <= HISTORY_DAYS), "player_id"].astype(str).to_numpy())
    if cap is not None and len(ids) > cap:
        ids = np.sort(np.random.default_rng(seed).choice(ids, cap, replace=False))
    return ids


def fit_and_evaluate(plays: pd.DataFrame, catalogue: Catalogue, allowed_for, last_day: dt.date, seed: int = 0,
                     max_train_players: int = MAX_TRAIN_PLAYERS):
    """Train at the training cut and evaluate model and baselines at the evaluation cut.
    ``allowed_for(player_ids) -> (players x games) bool``: the serving filter (jurisdiction, RG).
    Returns (model, :class:`Evaluation`, the similarity matrix at the evaluation cut)."""
    train_cut, eval_cut = cuts(last_day)
    tp = _players(plays, train_cut, max_train_players, seed)
    if not len(tp):
        raise ValueError(f"no player played in the {HISTORY_DAYS} days before {train_cut}: nothing to learn from")
    m = matrices(plays, catalogue, tp, train_cut)
    x = features(m, catalogue, similarity(m.rounds_90d))
    y = labels(plays, catalogue, tp, train_cut)
    rows, ys, groups = training_rows(x, y, np.ones_like(y, dtype=bool))
    if len(groups) < 20 or ys.sum() == 0:
        raise ValueError(f"too few players who played in the {LABEL_DAYS} days after {train_cut} to learn from "
                         f"({len(groups)})")
    model = fit(rows, ys, groups, seed)
    ep = _players(plays, eval_cut, None, seed)
    me = matrices(plays, catalogue, ep, eval_cut)
    sim = similarity(me.rounds_90d)
    xe = features(me, catalogue, sim)
    ye = labels(plays, catalogue, ep, eval_cut)
    allowed = allowed_for(ep)
    new = me.rounds_90d == 0
    scores = {"model": predict(model, xe), **{b: baseline_scores(b, me, catalogue) for b in BASELINES}}
    metrics = {name: {"all": evaluate(s, allowed, ye), "discovery": evaluate(s, allowed & new, ye & new)}
               for name, s in scores.items()}
    return model, Evaluation(metrics, train_cut, eval_cut, len(rows), len(groups)), sim


def recall_of(model, plays: pd.DataFrame, catalogue: Catalogue, allowed_for, last_day: dt.date) -> float:
    """The primary metric of ``model`` at the evaluation cut of ``last_day`` (a champion rescored)."""
    _, eval_cut = cuts(last_day)
    ep = _players(plays, eval_cut, None, 0)
    me = matrices(plays, catalogue, ep, eval_cut)
    new = me.rounds_90d == 0
    s = predict(model, features(me, catalogue, similarity(me.rounds_90d)))
    return evaluate(s, allowed_for(ep) & new, labels(plays, catalogue, ep, eval_cut) & new)["recall_at_3"]


def train_and_log(plays: pd.DataFrame, games: pd.DataFrame, allowed_for, last_day: dt.date, *, tracking_uri: str,
                  artifact_location: str, lineage: dict[str, str] | None = None, seed: int = 0) -> dict:
    """Fit, evaluate against the baselines, log to MLflow (experiment ``next_best_game``), register a
    version and make it champion when it beats the champion's discovery recall@3 on the same
    evaluation cut (a tie keeps the champion). Returns the metrics and the decision."""
    from ml import registry

    catalogue = Catalogue.of(games)
    model, ev, _ = fit_and_evaluate(plays, catalogue, allowed_for, last_day, seed)
    metrics = ev.flat()
    client = registry.connect(tracking_uri)

    def on_cut(mv) -> float:
        import mlflow

        return recall_of(mlflow.lightgbm.load_model(f"models:/{MODEL_NAME}/{mv.version}"), plays, catalogue,
                         allowed_for, last_day)

    champion = registry.rescore_champion(client, MODEL_NAME, on_cut, metric=PRIMARY_METRIC,
                                         fallback_note=lambda e: f"the champion could not be rescored ({e})")
    tags = {"model": MODEL_NAME, "train_cut": ev.train_cut.isoformat(), "eval_cut": ev.eval_cut.isoformat(),
            **(lineage or {})}

    def log_model():
        import mlflow

        # the native Booster (its text format), not the scikit-learn wrapper MLflow would pickle through skops
        return mlflow.lightgbm.log_model(model.booster_, name="model", pip_requirements=registry.pip_requirements(),
                                         metadata={"features": list(FEATURES), "games": list(catalogue.games)})

    def decide(ch) -> tuple[bool, str]:
        mine = metrics[PRIMARY_METRIC]
        if ch is None or ch.metric is None:
            return True, f"first version (discovery recall@3 {mine:.4f})"
        if registry.beats_champion(mine, ch.metric):
            return True, f"discovery recall@3 {mine:.4f} > champion v{ch.version} {ch.metric:.4f}"
        return False, f"discovery recall@3 {mine:.4f} <= champion v{ch.version} {ch.metric:.4f}"

    with registry.training_run(client, MODEL_NAME, artifact_location, run_name=f"{MODEL_NAME}_{ev.eval_cut}",
                               tags=tags) as run_id:
        import mlflow

        mlflow.log_params({"history_days": HISTORY_DAYS, "label_days": LABEL_DAYS, "games": catalogue.size,
                           "train_players": ev.train_players, "train_rows": ev.train_rows, "seed": seed,
                           "features": ",".join(FEATURES)})
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_dict(ev.metrics, "evaluation.json")
        done = registry.register_and_promote(
            client, tracking_uri, run_id,
            registry.Candidate(MODEL_NAME, "Next best game: a LightGBM ranker over (player, game) candidates",
                               log_model, {"eval_cut": ev.eval_cut.isoformat()}),
            champion, decide, by="training")
    return {"version": done.version, "promoted": done.promoted, "decision": done.decision, "metrics": metrics,
            "evaluation": ev.metrics, "train_cut": ev.train_cut.isoformat(), "eval_cut": ev.eval_cut.isoformat()}


def recommend(model, plays: pd.DataFrame, catalogue: Catalogue, players: np.ndarray, allowed: np.ndarray,
              personal: np.ndarray, cut: dt.date, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(players x k) game indices (-1: none) and scores: the model's discovery ranking for the
    ``personal`` players (profiling consent), popularity for the others; only allowed games the
    player has not played in the last HISTORY_DAYS days."""
    m = matrices(plays, catalogue, players, cut)
    new = m.rounds_90d == 0
    scores = baseline_scores("popularity", m, catalogue)
    if personal.any():
        idx = np.flatnonzero(personal)
        mp = Matrices(players[idx], m.rounds_90d[idx], m.rounds_14d[idx], m.last_played[idx], m.popularity_30d,
                      m.popularity_14d)
        scores[idx] = predict(model, features(mp, catalogue, similarity(m.rounds_90d)))
    top = top_k(scores, allowed & new, k)
    return top, np.where(top >= 0, np.take_along_axis(scores, np.maximum(top, 0), axis=1), np.nan)
