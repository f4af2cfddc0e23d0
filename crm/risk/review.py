"""The review queue of risk flags (issue 19): a player whose abuse risk score is above the
threshold waits for a person's decision, **confirm** or **clear**; the decision is an entry of the
hash-chained audit log (``risk_reviewed``, with the evidence it was taken on); the flags the lists
and the service read (``player_risk_flags``) follow from the scores and the decisions.

What a player's flag is, from their latest score (``player_risk_scores``, :mod:`crm.risk.score`:
``risk_score``, ``above_threshold``, ``evidence_key``) and their latest decision:

* **confirmed** (a person confirmed abuse, on any evidence): flagged, until a later clear;
* **cleared** on the same ``evidence_key``: not flagged. A cleared player is not flagged again for
  the same evidence; new evidence (another account joins their cluster, a feature moves to
  another band) is a new key, and the flag waits for review again;
* no decision (or a clear on older evidence) and above the threshold: **pending**, and flagged
  while it waits (fail closed: a bonus waits for the review, not the other way round);
* below the threshold: not flagged.

A flag keeps the player out of bonus offers (the ``bonus_risk_flagged`` rule of the rule table,
:mod:`crm.campaigns.eligibility`); it never stops a non-bonus message. Decisions take effect in
the lists at the next refresh, when ``player_risk_flags`` is written again
(:func:`write_flags`, the Dagster asset of the same name).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from crm.campaigns import audit
from crm.config import Paths
from crm.sql import ident
from crm.warehouse import RISK_FLAGS_TABLE, connect, fetch_df, table_exists

SCORES_TABLE = "player_risk_scores"  # written by crm.risk.score
REVIEWED = "risk_reviewed"  # the audit log's kind of a decision
CONFIRM, CLEAR = "confirm", "clear"
DECISIONS = (CONFIRM, CLEAR)
PENDING, CONFIRMED, CLEARED, NONE = "pending", "confirmed", "cleared", "none"
FLAG_COLUMNS = ("brand_id", "player_id", "as_of_date", "risk_score", "above_threshold", "evidence_key",
                "review", "flagged", "decided_by", "decided_at", "written_at")


class ReviewError(ValueError):
    """A decision that cannot be taken (unknown player, another brand's, a decision not offered)."""


@dataclass(frozen=True)
class Decision:
    brand_id: str
    player_id: str
    decision: str
    evidence_key: str | None
    by: str
    reason: str
    ts: str
    seq: int


def decisions(paths: Paths) -> dict[tuple[str, str], list[Decision]]:
    """Every review decision of the audit log, per (brand, player), oldest first."""
    out: dict[tuple[str, str], list[Decision]] = {}
    for e in audit.read_entries(paths):
        d = e.get("details")
        if e.get("kind") != REVIEWED or not isinstance(d, dict):
            continue
        brand, player, decision = d.get("brand_id"), d.get("player_id"), d.get("decision")
        if not (isinstance(brand, str) and isinstance(player, str) and decision in DECISIONS):
            continue
        key = d.get("evidence_key") if isinstance(d.get("evidence_key"), str) else None
        out.setdefault((brand, player), []).append(Decision(brand, player, decision, key, str(e.get("by", "")),
                                                            str(e.get("reason", "")), str(e.get("ts", "")),
                                                            int(e.get("seq", 0))))
    return out


def state(above: bool, evidence_key: str | None, history: Iterable[Decision]) -> tuple[str, bool, Decision | None]:
    """(review state, flagged, the decision it rests on) of one player (rules in the module's doc)."""
    latest = next(reversed(list(history)), None)
    if latest is not None and latest.decision == CONFIRM:
        return CONFIRMED, True, latest
    if latest is not None and latest.decision == CLEAR and latest.evidence_key == evidence_key:
        return CLEARED, False, latest
    return (PENDING, True, None) if above else (NONE, False, None)


def latest_scores(paths: Paths, brands: Iterable[str] | None = None) -> pd.DataFrame:
    """Each player's score of the latest as-of date (empty when nothing is scored yet)."""
    cols = ["brand_id", "player_id", "as_of_date", "risk_score", "above_threshold", "evidence_key", "reasons",
            "model_version"]
    with connect(paths) as con:
        if not table_exists(con, SCORES_TABLE):
            return pd.DataFrame({c: [] for c in cols})
        have = {r[0] for r in con.execute(f"DESCRIBE {ident(SCORES_TABLE)}").fetchall()}
        picked = ", ".join(ident(c) if c in have else f"NULL AS {ident(c)}" for c in cols)
        df = fetch_df(con, f"SELECT {picked} FROM {ident(SCORES_TABLE)} WHERE as_of_date = "
                           f"(SELECT max(as_of_date) FROM {ident(SCORES_TABLE)}) ORDER BY brand_id, player_id")
    if brands is not None:
        df = df[df["brand_id"].isin(list(brands))]
    return df.reset_index(drop=True)


def flags(paths: Paths, scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """:data:`FLAG_COLUMNS` for every scored player: the scores with the review decisions applied."""
    scores = latest_scores(paths) if scores is None else scores
    decided = decisions(paths)
    rows = []
    for r in scores.itertuples(index=False):
        above = bool(r.above_threshold) if pd.notna(r.above_threshold) else False
        key = r.evidence_key if isinstance(r.evidence_key, str) else None
        review, flagged, on = state(above, key, decided.get((str(r.brand_id), str(r.player_id)), []))
        rows.append({"brand_id": str(r.brand_id), "player_id": str(r.player_id), "as_of_date": r.as_of_date,
                     "risk_score": float(r.risk_score) if pd.notna(r.risk_score) else None, "above_threshold": above,
                     "evidence_key": key, "review": review, "flagged": flagged,
                     "decided_by": on.by if on else None, "decided_at": on.ts if on else None})
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    frame = pd.DataFrame(rows, columns=[c for c in FLAG_COLUMNS if c != "written_at"])
    return frame.assign(written_at=now)


def write_flags(paths: Paths) -> dict[str, int]:
    """Replace ``player_risk_flags`` with :func:`flags` (what the lists and the profile copy read);
    returns the count per review state and of flagged players."""
    frame = flags(paths)
    with connect(paths, read_only=False) as con:
        con.register("_flags", frame)
        con.execute(f"CREATE OR REPLACE TABLE {ident(RISK_FLAGS_TABLE)} AS SELECT "
                    "brand_id::VARCHAR AS brand_id, player_id::VARCHAR AS player_id, as_of_date::DATE AS as_of_date, "
                    "risk_score::DOUBLE AS risk_score, above_threshold::BOOLEAN AS above_threshold, "
                    "evidence_key::VARCHAR AS evidence_key, review::VARCHAR AS review, flagged::BOOLEAN AS flagged, "
                    "decided_by::VARCHAR AS decided_by, decided_at::VARCHAR AS decided_at, "
                    "written_at::TIMESTAMP AS written_at FROM _flags")
        con.unregister("_flags")
    counts = frame["review"].value_counts().to_dict() if len(frame) else {}
    return {"scored": len(frame), "flagged": int(frame["flagged"].sum()) if len(frame) else 0,
            **{s: int(counts.get(s, 0)) for s in (PENDING, CONFIRMED, CLEARED)}}


def queue(paths: Paths, brands: Iterable[str] | None = None, include_decided: bool = False) -> pd.DataFrame:
    """The flags waiting for a decision (``include_decided``: the confirmed and cleared too), highest
    score first, with the decisions as they are now (not as of the last refresh)."""
    frame = flags(paths, latest_scores(paths, brands))
    keep = frame["review"].isin([PENDING, CONFIRMED, CLEARED] if include_decided else [PENDING])
    return frame[keep].sort_values(["risk_score", "brand_id", "player_id"], ascending=[False, True, True],
                                   na_position="last").reset_index(drop=True)


def decide(paths: Paths, brand_id: str, player_id: str, decision: str, *, by: str, reason: str) -> dict:
    """Record ``decision`` (confirm or clear) on the player's current score and evidence; returns the
    audit entry. A player with no current score cannot be reviewed (there is nothing to decide on)."""
    if decision not in DECISIONS:
        raise ReviewError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    if not reason or not reason.strip():
        raise ReviewError("a decision needs a reason (it is written to the audit log)")
    scores = latest_scores(paths, [brand_id])
    row = scores[scores["player_id"] == player_id]
    if row.empty:
        raise ReviewError(f"no current risk score for player {player_id!r} of brand {brand_id!r}: nothing to review")
    r = row.iloc[0]
    score = float(r["risk_score"]) if pd.notna(r["risk_score"]) else None
    return audit.append(paths, REVIEWED, by=by, reason=reason.strip(), details={
        "brand_id": brand_id, "player_id": player_id, "decision": decision,
        "evidence_key": r["evidence_key"] if isinstance(r["evidence_key"], str) else None,
        "risk_score": score, "as_of_date": str(r["as_of_date"])[:10],
        "model_version": None if pd.isna(r["model_version"]) else str(r["model_version"])})
