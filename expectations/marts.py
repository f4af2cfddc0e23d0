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
import pandas as pd

from expectations.validate import GateResult, combine, validate

# The gate's own copy of the message channels (crm.contract.CHANNELS), on purpose independent;
# tests/test_vocabulary.py keeps the two equal.
CHANNELS = ("email", "push", "sms", "in_app")


def has_player(frame: pd.DataFrame, dim_player: pd.DataFrame) -> pd.Series:
    """Per row of ``frame``: whether its ``player_id`` is in ``dim_player``."""
    return frame["player_id"].isin(set(dim_player["player_id"].dropna())).astype(bool)


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
    c = consents.sort_values(["player_id", "channel", "changed_at", "consent_version"], kind="stable")
    prev = c.groupby(["player_id", "channel"], sort=False)["consent_version"].shift()
    ok = prev.isna() & (c["consent_version"] >= 1) | (c["consent_version"] > prev)
    return ok.reindex(consents.index).fillna(False).astype(bool)


def gate_dim_player(dim_player: pd.DataFrame, consents: pd.DataFrame,
                    docs_dir: str | Path | None = None) -> GateResult:
    """``dim_player`` and ``int_consents_versioned`` (consent versions only increase)."""
    dim = dim_player.copy()
    counts = (consents.groupby(["player_id", "channel"]).size() if len(consents)
              else pd.Series([], dtype=int))
    exps = [gx.expectations.ExpectColumnValuesToNotBeNull(column="player_id"),
            gx.expectations.ExpectColumnValuesToBeUnique(column="player_id")]
    desc = {0: "key not null", 1: "key unique"}
    for ch in CHANNELS:
        col = f"consent_{ch}_version"
        if col not in dim:
            continue
        keys = pd.MultiIndex.from_arrays([dim["player_id"], [ch] * len(dim)])
        expected = pd.Series(counts.reindex(keys).fillna(0).to_numpy(), index=dim.index)
        dim[f"{col}_is_latest"] = (pd.to_numeric(dim[col]) == expected).astype(bool)
        exps.append(gx.expectations.ExpectColumnValuesToBeInSet(column=f"{col}_is_latest", value_set=[True]))
        desc[len(exps) - 1] = f"{col} is the player's latest {ch} consent version"
    dim_result = validate(dim, "marts_dim_player", exps, id_column="player_id", descriptions=desc, docs_dir=docs_dir)
    cons = consents.copy()
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
