"""Budgeted targeting: who gets a costly offer when the bonus budget is limited.

One selection rule, used both by campaign lists (``target: by: uplift`` in
:mod:`crm.campaigns.lists`) and by :func:`compare_policies`:

1. candidates are the players whose value (predicted incremental value, EUR cents, net of
   the offer's cost) is known and strictly above ``min_value``;
2. they are ranked by value per cent of offer cost, best first; a player whose offer
   costs nothing (e.g. cashback on a week without net loss) ranks above every costly
   one; ties go to the higher value, then to the smaller id (deterministic);
3. players are taken in that order while the cost of the *paid* ones (not ``free``:
   the holdout, which is never sent the offer) fits in the budget; a paid player whose
   offer no longer fits what is left is passed over and the walk goes on (a cheaper offer
   further down may still fit), so the spend never exceeds the budget and a list is empty
   only when no candidate's offer fits it (:func:`take_best_that_fit`).

With equal costs (a fixed bonus) the rule picks the highest values that fit the budget,
which is optimal; with unequal costs (cashback) it is the usual greedy approximation.
``by: all`` lists and the baseline policies walk their order as a prefix instead
(:func:`take_within_budget`: "while the budget lasts").

The value a campaign targeted by uplift ranks by (:func:`deposit_value_cents`, one rule for
the lists and ``bench.policy``): the predicted uplift of the player's deposit probability
(model ``uplift_deposit``) times the theoretical win the player brings at their own recent
pace (:func:`expected_theoretical_win_cents`: 30-day stake x the house margin observed in the
data), net of the offer's cost. Theoretical win, not realized NGR: realized NGR carries the
players' luck at the tables, which swamps campaign effects at the sizes of a campaign's
holdout (``bench.policy`` measures both).

Pure functions over arrays and DataFrames: no I/O, no Dagster, nothing from :mod:`crm`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

POLICIES = ("uplift", "churn", "random", "oracle")


@dataclass(frozen=True)
class Selection:
    """Selected positions (into the input arrays), in ranking order, and how the walk ended."""

    index: np.ndarray
    spent: float  # total cost of the selected paid (non-free) players
    candidates: int  # players that could be selected (value known and above the minimum)
    stopped_by: str  # "budget" | "max_count" | "candidates" (all candidates taken)


def house_margin(ggr_cents: float, stake_cents: float) -> float:
    """The house margin observed in the data: GGR over stake (0 when nothing was staked).

    Bounded to [0, 1]: a margin outside it (a period where players won more than they staked, or
    bad data) would turn every predicted value negative or absurd; 0 makes the value of any
    offer its cost, so nobody is targeted by it."""
    if not np.isfinite(stake_cents) or stake_cents <= 0 or not np.isfinite(ggr_cents):
        return 0.0
    return float(min(max(ggr_cents / stake_cents, 0.0), 1.0))


def expected_theoretical_win_cents(stake_30d_cents, margin: float) -> np.ndarray:
    """What a player is worth to the house over a month at their own recent pace, EUR cents:
    the player's 30-day stake (EUR cents; missing, negative or not finite: 0) times the house margin."""
    stake = _floats(stake_30d_cents)
    return np.where(np.isfinite(stake), np.clip(stake, 0.0, None), 0.0) * float(margin)


def deposit_value_cents(deposit_uplift, theoretical_win_cents) -> np.ndarray:
    """Gross predicted value of an offer, EUR cents, before its cost: the predicted uplift of the
    player's deposit probability times their expected theoretical win. NaN where the uplift is
    unknown (no model, no profiling consent) or not finite (a broken model): such a player is never
    targeted."""
    with np.errstate(over="ignore", invalid="ignore"):
        value = _floats(deposit_uplift) * _floats(theoretical_win_cents)
    return np.where(np.isfinite(value), value, np.nan)


def net_value_cents(gross_value_cents, cost_cents) -> np.ndarray:
    """The value campaigns rank by: gross predicted value net of the offer's cost (EUR cents)."""
    return _floats(gross_value_cents) - _costs(cost_cents)


def _floats(x) -> np.ndarray:
    """Numbers as float64, anything missing or non-numeric (None, pd.NA) as NaN."""
    if isinstance(x, np.ndarray | pd.Series) and x.dtype.kind in "fiub":  # already numbers: no object round trip
        return np.asarray(x, dtype=float).reshape(-1)
    return pd.to_numeric(pd.Series(np.asarray(x, dtype=object).reshape(-1)), errors="coerce").to_numpy(dtype=float)


def _costs(cost, n: int | None = None) -> np.ndarray:
    c = np.asarray(cost, dtype=float).reshape(-1)
    if n is not None and len(c) != n:
        raise ValueError(f"cost has {len(c)} values for {n} players")
    if not np.isfinite(c).all() or (c < 0).any():
        raise ValueError("offer costs must be finite and non-negative")
    return c


def value_per_cost(value, cost) -> np.ndarray:
    """Value per cent of cost, the ranking key of campaigns and offers: a free offer is worth
    +inf when its value is positive and -inf otherwise; an unknown value (NaN) stays NaN."""
    v = _floats(value)
    c = _costs(cost, len(v))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(c > 0, v / np.where(c > 0, c, 1), np.where(v > 0, np.inf, -np.inf))
    return np.where(np.isnan(v), np.nan, ratio)


def value_per_cost_order(value, cost, ids: Sequence) -> np.ndarray:
    """Positions sorted best first by value / cost (zero cost: +inf when value > 0).

    Ties: higher value first, then smaller id. Unknown values (NaN) come last.
    """
    v = _floats(value)
    ratio = value_per_cost(v, cost)
    keys = np.asarray([str(i) for i in ids], dtype=str)
    if len(keys) != len(v):
        raise ValueError(f"{len(keys)} ids for {len(v)} values")
    # lexsort: last key is primary; NaN sorts last.
    return np.lexsort((keys, -v, -ratio))


def take_within_budget(
    order: np.ndarray, cost, budget: float | None = None, *, free=None, max_count: int | None = None
) -> Selection:
    """The longest prefix of ``order`` whose paid cost fits ``budget`` (None: no limit).

    ``free`` marks players who are selected at no cost (the holdout). ``max_count`` caps
    the number of players selected (paid and free).
    """
    order = np.asarray(order, dtype=np.int64)
    c = _costs(cost)
    paid = c[order] if free is None else np.where(np.asarray(free, dtype=bool)[order], 0.0, c[order])
    cum = np.cumsum(paid)
    n, stopped = len(order), "candidates"
    if budget is not None:
        if budget < 0:
            raise ValueError(f"budget must be non-negative, got {budget}")
        over = np.flatnonzero(cum > budget)
        if len(over):
            n, stopped = int(over[0]), "budget"
    if max_count is not None and max_count < n:
        n, stopped = int(max_count), "max_count"
    return Selection(order[:n], float(cum[n - 1]) if n else 0.0, len(order), stopped)


def take_best_that_fit(
    order: np.ndarray, cost, budget: float | None = None, *, free=None, max_count: int | None = None
) -> Selection:
    """``order`` walked best first, at most ``max_count`` taken: a paid player is taken when their
    cost fits what is left of ``budget`` (None: no limit) and passed over when it does not.

    Until the first player is passed over this is :func:`take_within_budget` (``free`` players,
    the holdout, taken at no cost). After it, a free player is taken only when their offer would
    fit what is left (not charged): the holdout stays a random share of the players the budget
    reaches, not of the whole ranking. A plain loop over the candidates (the players above the
    minimum value, not the audience), entered only when the prefix stops early."""
    first = take_within_budget(order, cost, budget, free=free, max_count=max_count)
    if first.stopped_by != "budget":
        return first
    order = np.asarray(order, dtype=np.int64)
    c = _costs(cost)
    is_free = np.zeros(len(c), dtype=bool) if free is None else np.asarray(free, dtype=bool)
    taken = first.index.tolist()
    left = float(budget) - first.spent
    for i in order[len(first.index) + 1:].tolist():  # the player at len(first.index) did not fit
        if max_count is not None and len(taken) == max_count:
            return Selection(np.asarray(taken, dtype=np.int64), float(budget) - left, len(order), "max_count")
        if c[i] <= left:
            taken.append(i)
            if not is_free[i]:
                left -= c[i]
    return Selection(np.asarray(taken, dtype=np.int64), float(budget) - left, len(order), "budget")


def select_by_value_per_cost(
    value,
    cost,
    ids: Sequence,
    budget: float | None = None,
    *,
    min_value: float = 0.0,
    free=None,
    max_count: int | None = None,
) -> Selection:
    """The selection rule of the module docstring: candidates above ``min_value``, ranked, within budget."""
    v = _floats(value)
    order = value_per_cost_order(v, cost, ids)
    order = order[v[order] > min_value]  # NaN compares False: unknown values are never selected
    return take_best_that_fit(order, cost, budget, free=free, max_count=max_count)


def _summary(sel_index: np.ndarray, cost: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    spend = float(cost[sel_index].sum())
    true = float(truth[sel_index].sum())
    return {
        "players": float(len(sel_index)),
        "spend_cents": spend,
        "incremental_ngr_cents": true,
        "gross_incremental_ngr_cents": true + spend,
    }


def compare_policies(
    frame: pd.DataFrame,
    budget_cents: float,
    *,
    cost_col: str = "offer_cost_eur_cents",
    uplift_col: str = "predicted_value_eur_cents",
    churn_col: str = "churn_score",
    truth_col: str = "true_effect_ngr",
    id_col: str = "player_id",
    min_uplift_cents: float = 0.0,
    seed: int = 0,
    random_draws: int = 20,
) -> pd.DataFrame:
    """Four targeting policies at the same budget, judged on the true incremental NGR.

    ``frame``: one row per candidate player (already eligible) with the offer cost
    (``cost_col``, EUR cents), the predicted uplift (``uplift_col``, EUR cents, net of the
    bonus cost), a churn score (``churn_col``) and the true effect of treating the player
    (``truth_col``, EUR cents, net of the bonus cost, e.g. the simulator's
    ``true_effect_ngr``). Every policy walks its own ranking and takes players while the
    spend fits ``budget_cents`` (:func:`take_within_budget`, no holdout):

    * ``uplift``: :func:`select_by_value_per_cost` on the prediction (the list rule);
    * ``churn``: highest churn score first (players without a score are never taken);
    * ``random``: a random order, averaged over ``random_draws`` seeds from ``seed``;
    * ``oracle``: :func:`select_by_value_per_cost` on the truth (positives only).

    Returns a DataFrame indexed by policy (in :data:`POLICIES` order) with columns
    ``players``, ``spend_cents``, ``budget_used`` (spend / budget),
    ``incremental_ngr_cents`` (sum of the true effect of the selected players),
    ``ngr_per_cost`` (incremental NGR per unit of bonus spent, EUR per EUR; NaN without spend),
    ``gross_incremental_ngr_cents`` (true effect + bonus cost: the NGR change before the
    bonus is paid) and ``gross_ngr_per_cost``. Random rows are means over the draws (its
    ratios are mean NGR over mean spend). ``attrs`` hold the budget, the candidate count
    and the number of random draws.
    """
    n = len(frame)
    cost, truth, uplift, churn, ids = _policy_inputs(
        frame, cost_col, uplift_col, churn_col, truth_col, id_col, random_draws
    )
    rows: dict[str, dict[str, float]] = {}
    sel = select_by_value_per_cost(uplift, cost, ids, budget_cents, min_value=min_uplift_cents)
    rows["uplift"] = _summary(sel.index, cost, truth)

    churn_order = np.lexsort((ids, -churn))  # highest churn first, NaN last
    churn_order = churn_order[~np.isnan(churn[churn_order])]
    rows["churn"] = _summary(take_within_budget(churn_order, cost, budget_cents).index, cost, truth)

    draws = [
        _summary(
            take_within_budget(np.random.default_rng(seed + k).permutation(n), cost, budget_cents).index, cost, truth
        )
        for k in range(random_draws)
    ]
    rows["random"] = {k: float(np.mean([d[k] for d in draws])) for k in draws[0]}

    sel = select_by_value_per_cost(truth, cost, ids, budget_cents, min_value=0.0)
    rows["oracle"] = _summary(sel.index, cost, truth)
    out = _policy_table(rows, budget_cents)
    out.attrs.update({"budget_cents": float(budget_cents), "candidates": n, "random_draws": random_draws})
    return out


def _policy_inputs(
    frame: pd.DataFrame, cost_col: str, uplift_col: str, churn_col: str, truth_col: str, id_col: str, random_draws: int
) -> tuple[np.ndarray, ...]:
    """(cost, truth, uplift, churn, ids) of :func:`compare_policies`, checked."""
    missing = [c for c in (cost_col, uplift_col, churn_col, truth_col) if c not in frame]
    if missing:
        raise ValueError(f"compare_policies: missing columns {missing}")
    if random_draws < 1:
        raise ValueError("random_draws must be at least 1")
    cost = _costs(pd.to_numeric(frame[cost_col], errors="coerce").to_numpy(dtype=float), len(frame))
    truth = pd.to_numeric(frame[truth_col], errors="coerce").to_numpy(dtype=float)
    if np.isnan(truth).any():
        raise ValueError(f"compare_policies: {truth_col} has missing values")
    uplift = pd.to_numeric(frame[uplift_col], errors="coerce").to_numpy(dtype=float)
    churn = pd.to_numeric(frame[churn_col], errors="coerce").to_numpy(dtype=float)
    ids = frame[id_col].astype(str).to_numpy() if id_col in frame else np.asarray([str(i) for i in frame.index])
    return cost, truth, uplift, churn, ids


def _policy_table(rows: dict[str, dict[str, float]], budget_cents: float) -> pd.DataFrame:
    """One row per policy (in :data:`POLICIES` order) with the budget and per-cost ratios."""
    out = pd.DataFrame.from_dict(rows, orient="index").reindex(list(POLICIES))
    out.index.name = "policy"
    spend = out["spend_cents"].where(out["spend_cents"] > 0)
    out["budget_used"] = out["spend_cents"] / budget_cents if budget_cents > 0 else np.nan
    out["ngr_per_cost"] = out["incremental_ngr_cents"] / spend
    out["gross_ngr_per_cost"] = out["gross_incremental_ngr_cents"] / spend
    return out[
        [
            "players",
            "spend_cents",
            "budget_used",
            "incremental_ngr_cents",
            "ngr_per_cost",
            "gross_incremental_ngr_cents",
            "gross_ngr_per_cost",
        ]
    ]
