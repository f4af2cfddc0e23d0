"""A/B/n variants and holdouts by a salted hash of (experiment, player).

Stable across runs (no RNG state), independent across experiments (the experiment
id and salt are part of the hashed key).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np

HOLDOUT = "holdout"


def hash_unit(experiment: str, salt: str, player_ids: Iterable[str]) -> np.ndarray:
    """A uniform number in [0, 1) per player, from sha256(experiment:salt:player)."""
    prefix = f"{experiment}:{salt}:".encode()
    out = [int.from_bytes(hashlib.sha256(prefix + p.encode()).digest()[:8], "big") for p in player_ids]
    return np.asarray(out, dtype=np.uint64) / float(2**64)


def assign(experiment: str, salt: str, player_ids: Iterable[str], holdout: float,
           variants: Mapping[str, float]) -> np.ndarray:
    """Assign each player to ``holdout`` (share ``holdout``) or a variant by its weight."""
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout share must be in [0, 1), got {holdout}")
    names = list(variants)
    weights = np.asarray([variants[n] for n in names], dtype=float)
    if not names or (weights <= 0).any():
        raise ValueError("variants need positive weights")
    u = hash_unit(experiment, salt, player_ids)
    out = np.full(u.shape, HOLDOUT, dtype=object)
    treated = u >= holdout
    # Rescale the treated part of [0,1) to [0,1) and cut it by the cumulative weights.
    v = (u[treated] - holdout) / (1 - holdout)
    edges = np.cumsum(weights) / weights.sum()
    idx = np.minimum(np.searchsorted(edges, v, side="right"), len(names) - 1)
    out[treated] = np.asarray(names, dtype=object)[idx]
    return out


def srm_pvalue(observed: Mapping[str, int], expected_shares: Mapping[str, float]) -> float:
    """Sample-ratio-mismatch check: chi-square p-value of observed counts vs shares."""
    from scipy.stats import chisquare

    if any(observed.get(k, 0) for k, share in expected_shares.items() if share <= 0):
        return 0.0  # a group that should be empty is not
    keys = [k for k, share in expected_shares.items() if share > 0]
    obs = np.asarray([observed.get(k, 0) for k in keys], dtype=float)
    total = obs.sum()
    if total == 0 or len(keys) < 2:
        return 1.0
    exp = np.asarray([expected_shares[k] for k in keys], dtype=float)
    exp = exp / exp.sum() * total
    return float(chisquare(obs, exp).pvalue)
