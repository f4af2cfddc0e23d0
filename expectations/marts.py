"""The marts suite: keys, referential integrity and consent versions of the dbt marts.

* ``dim_player``: ``player_id`` unique and not null; each channel's ``consent_<ch>_version``
  equals the number of consent changes of the player on that channel in
  ``int_consents_versioned`` (0 without any);
* ``int_consents_versioned``: per player and channel, versions only increase with the
  change time (1, 2, 3, ... never back);
* ``fct_player_daily``: ``(player_id, activity_date)`` unique and not null, every row's
  player in ``dim_player`` (the same referential check serves ``player_features`` and
  ``player_scores`` in their suites: :func:`has_player`).
"""

from __future__ import annotations

from pathlib import Path

import great_expectations as gx
import numpy as np
import pandas as pd

from crm.warehouse import isin
from expectations.validate import GateResult, combine, validate
from ml.metrics import category_codes

# The gate's own copy of the message channels (crm.contract.CHANNELS), on purpose independent;
# tests/test_vocabulary.py keeps the two equal.
CHANNELS = ("email", "push", "sms", "in_app")


def has_player(frame: pd.DataFrame, dim_player: pd.DataFrame) -> pd.Series:
    """Per row of ``frame``: whether its ``player_id`` is in ``dim_player``."""
    return pd.Series(isin(frame["player_id"], dim_player["player_id"]), index=frame.index)


def referential_integrity(frame: pd.DataFrame, dim_player: pd.DataFrame, table: str) -> tuple[pd.DataFrame, object]:
    """``frame`` with a ``has_player`` column and the expectation that it is always true."""
    out = frame.assign(has_player=has_player(frame, dim_player).to_numpy()) if len(frame) else frame.assign(
        has_player=pd.Series([], dtype=bool))
    return out, gx.expectations.ExpectColumnValuesToBeInSet(column="has_player", value_set=[True])


def consent_versions_increase(consents: pd.DataFrame) -> pd.Series:
    """Per row of ``int_consents_versioned``: whether its version is above the previous change's of
    the same player and channel (by change time; the first change is version >= 1)."""
    if consents.empty:
        return pd.Series([], dtype=bool)
    # players and channels as integer codes: the same groups, sorted and grouped as numbers (sorting
    # 3.5 M rows by their string ids took 4.7 s at 1,000,000 players)
    c = pd.DataFrame({"player": pd.factorize(consents["player_id"])[0], "channel": pd.factorize(consents["channel"])[0],
                      "changed_at": consents["changed_at"], "consent_version": consents["consent_version"]},
                     index=consents.index)
    c = c.sort_values(["player", "channel", "changed_at", "consent_version"], kind="stable")
    prev = c.groupby(["player", "channel"], sort=False)["consent_version"].shift()
    prev = prev.where((c["player"] >= 0) & (c["channel"] >= 0))  # a row without id or channel has no previous
    ok = prev.isna() & (c["consent_version"] >= 1) | (c["consent_version"] > prev)
    return ok.reindex(consents.index).fillna(False).astype(bool)


def consent_counts(dim_player: pd.DataFrame, consents: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per channel of :data:`CHANNELS`, per row of ``dim_player``: how many rows of ``consents`` have
    its player and that channel (0 for a missing id or one without any)."""
    players, ids = pd.factorize(consents["player_id"])  # -1: missing
    channel = category_codes(consents["channel"].astype("str"), CHANNELS)  # -1: missing or another channel
    known = (players >= 0) & (channel >= 0)
    counts = np.bincount(players[known] * len(CHANNELS) + channel[known],
                         minlength=len(ids) * len(CHANNELS)).reshape(len(ids), len(CHANNELS))
    at = category_codes(dim_player["player_id"].astype("str"), ids) if len(ids) else np.full(len(dim_player), -1)
    return {ch: np.where(at >= 0, counts[np.maximum(at, 0), j] if len(ids) else 0, 0)
            for j, ch in enumerate(CHANNELS)}


def dim_player_columns() -> list[str]:
    """The columns of ``dim_player`` :func:`gate_dim_player` reads."""
    return ["player_id", *(f"consent_{ch}_version" for ch in CHANNELS)]


CONSENT_COLUMNS = ("player_id", "channel", "changed_at", "consent_version")  # of int_consents_versioned


def gate_dim_player(dim_player: pd.DataFrame, consents: pd.DataFrame,
                    docs_dir: str | Path | None = None) -> GateResult:
    """``dim_player`` and ``int_consents_versioned`` (consent versions only increase).

    ``dim_player`` needs ``player_id`` and the ``consent_<channel>_version`` columns
    (:func:`dim_player_columns`), ``consents`` :data:`CONSENT_COLUMNS`; the suites validate only those
    and what they derive from them."""
    dim = dim_player[[c for c in dim_player_columns() if c in dim_player]].copy()
    counts = consent_counts(dim, consents)
    exps = [gx.expectations.ExpectColumnValuesToNotBeNull(column="player_id"),
            gx.expectations.ExpectColumnValuesToBeUnique(column="player_id")]
    desc = {0: "key not null", 1: "key unique"}
    for ch in CHANNELS:
        col = f"consent_{ch}_version"
        if col not in dim:
            continue
        dim[f"{col}_is_latest"] = (pd.to_numeric(dim[col]) == counts[ch]).fillna(False).to_numpy(dtype=bool)
        exps.append(gx.expectations.ExpectColumnValuesToBeInSet(column=f"{col}_is_latest", value_set=[True]))
        desc[len(exps) - 1] = f"{col} is the player's latest {ch} consent version"
    dim_result = validate(dim, "marts_dim_player", exps, id_column="player_id", descriptions=desc, docs_dir=docs_dir)
    cons = consents[[c for c in CONSENT_COLUMNS if c in consents]].copy()  # GX hashes the frame it validates
    cons["version_increases"] = consent_versions_increase(cons).to_numpy() if len(cons) else []
    cons_result = validate(
        cons, "marts_consents_versioned",
        [gx.expectations.ExpectColumnValuesToNotBeNull(column="consent_version"),
         gx.expectations.ExpectColumnValuesToBeInSet(column="version_increases", value_set=[True])],
        id_column="player_id", descriptions={1: "consent versions only increase (per player and channel)"},
        docs_dir=docs_dir)
    return combine("marts_dim_player", [dim_result, cons_result])


def gate_player_daily(daily: pd.DataFrame, dim_player: pd.DataFrame,
                      docs_dir: str | Path | None = None) -> GateResult:
    """``fct_player_daily``: grain unique and not null, every row's player in ``dim_player``."""
    df, ri = referential_integrity(daily[["player_id", "activity_date"]], dim_player, "fct_player_daily")
    exps = [gx.expectations.ExpectColumnValuesToNotBeNull(column="player_id"),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="activity_date"),
            gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["player_id", "activity_date"]),
            ri]
    return validate(df, "marts_fct_player_daily", exps, id_column="player_id",
                    descriptions={2: "one row per player and day", 3: "every fact has a player in dim_player"},
                    docs_dir=docs_dir)


__all__ = ["combine", "gate_dim_player", "gate_player_daily", "has_player", "referential_integrity"]
