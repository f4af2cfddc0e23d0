"""``crm risk explain``: everything behind one player's abuse risk (issue 19): their cluster of
linked accounts, each link with the identifier types it rests on, the identifiers they share as
pseudonyms (keyed hashes: the values stay in the PII vault) with how many accounts hold each, the
behaviour features, the score with its reasons, and the review state with its decisions.

Read-only over the warehouse and the audit log; scoped to one brand (a player id of another brand
answers as unknown)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from crm.config import Paths
from crm.risk.review import decisions, latest_scores, state
from crm.sql import ident
from crm.warehouse import CLUSTERS_TABLE, connect, fetch_df, table_exists

LINKS_TABLE = "fct_identity_links"  # crm.risk.linking.LINKS_TABLE (dbt)
IDENTIFIERS_TABLE = "int_player_identifiers"
FEATURES_TABLE = "player_abuse_features"  # crm.risk.score's behaviour features (dbt)
MAX_LINKS = 50  # a big cluster: its strongest links (the count says how many there are)


def _records(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.to_json(orient="records", date_format="iso"))


def explain(paths: Paths, brand_id: str, player_id: str) -> dict[str, Any] | None:
    """The player's risk explained, or None when the brand has no such player in the warehouse."""
    with connect(paths) as con:
        if not con.execute("SELECT count(*) FROM dim_player WHERE brand_id = ? AND player_id = ?",
                           [brand_id, player_id]).fetchall()[0][0]:
            return None
        out: dict[str, Any] = {"brand_id": brand_id, "player_id": player_id, "cluster": None, "links": [],
                               "links_total": 0, "shared_identifiers": [], "features": None}
        if table_exists(con, CLUSTERS_TABLE):
            mine = fetch_df(con, f"SELECT * FROM {ident(CLUSTERS_TABLE)} WHERE brand_id = ? AND player_id = ?",
                            [brand_id, player_id])
            if len(mine):
                c = mine.iloc[0]
                members = [r[0] for r in con.execute(
                    f"SELECT player_id FROM {ident(CLUSTERS_TABLE)} WHERE brand_id = ? AND cluster_id = ? "
                    "ORDER BY player_id", [brand_id, c["cluster_id"]]).fetchall()]
                out["cluster"] = {"cluster_id": str(c["cluster_id"]), "size": int(c["cluster_size"]),
                                  "members": members, "strongest_link_score": float(c["link_score"]),
                                  "strongest_link_types": str(c["link_types"]),
                                  "types_linking_the_cluster": str(c["cluster_types"])}
        if table_exists(con, LINKS_TABLE):
            links = fetch_df(con, f"""
                SELECT CASE WHEN player_a = ? THEN player_b ELSE player_a END AS other_player,
                       shared_types, score, linked_by, linked_since
                FROM {ident(LINKS_TABLE)} WHERE brand_id = ? AND (player_a = ? OR player_b = ?)
                ORDER BY score DESC, other_player""", [player_id, brand_id, player_id, player_id])
            out["links_total"] = len(links)
            out["links"] = _records(links.head(MAX_LINKS))
        if table_exists(con, IDENTIFIERS_TABLE):
            shared = fetch_df(con, f"""
                WITH mine AS (SELECT attribute, attribute_type, pseudonym FROM {ident(IDENTIFIERS_TABLE)}
                              WHERE brand_id = ? AND player_id = ?)
                SELECT m.attribute, m.attribute_type, m.pseudonym,
                       count(DISTINCT i.player_id) - 1 AS other_accounts
                FROM mine m JOIN {ident(IDENTIFIERS_TABLE)} i
                  ON i.brand_id = ? AND i.attribute = m.attribute AND i.pseudonym = m.pseudonym
                GROUP BY m.attribute, m.attribute_type, m.pseudonym
                HAVING count(DISTINCT i.player_id) > 1
                ORDER BY other_accounts, m.attribute""", [brand_id, player_id, brand_id])
            out["shared_identifiers"] = _records(shared)
        if table_exists(con, FEATURES_TABLE):
            feats = fetch_df(con, f"SELECT * FROM {ident(FEATURES_TABLE)} WHERE brand_id = ? AND player_id = ? "
                                  "ORDER BY as_of_date DESC LIMIT 1", [brand_id, player_id])
            out["features"] = _records(feats)[0] if len(feats) else None
    scores = latest_scores(paths, [brand_id])
    row = scores[scores["player_id"] == player_id]
    history = decisions(paths).get((brand_id, player_id), [])
    if len(row):
        r = row.iloc[0]
        reasons = r["reasons"]
        try:
            reasons = json.loads(reasons) if isinstance(reasons, str) else []
        except ValueError:
            reasons = [reasons]
        above = bool(r["above_threshold"]) if pd.notna(r["above_threshold"]) else False
        key = r["evidence_key"] if isinstance(r["evidence_key"], str) else None
        review, flagged, _ = state(above, key, history)
        out["score"] = {"risk_score": None if pd.isna(r["risk_score"]) else float(r["risk_score"]),
                        "above_threshold": above, "as_of_date": str(r["as_of_date"])[:10], "evidence_key": key,
                        "model_version": None if pd.isna(r["model_version"]) else str(r["model_version"]),
                        "reasons": reasons}
    else:
        review, flagged = "not scored", False
        out["score"] = None
    out["review"] = review
    out["flagged"] = flagged
    out["decisions"] = [{"decision": d.decision, "by": d.by, "reason": d.reason, "at": d.ts,
                         "evidence_key": d.evidence_key} for d in history]
    return out


def format_explanation(e: dict[str, Any]) -> str:
    """:func:`explain`'s answer as text for a terminal."""
    lines = [f"player {e['player_id']} of brand {e['brand_id']}: "
             f"{'FLAGGED' if e['flagged'] else 'not flagged'} (review: {e['review']})"]
    s = e.get("score")
    if s:
        lines.append(f"risk score {s['risk_score']:.3f} as of {s['as_of_date']} (model version {s['model_version']}; "
                     f"{'above' if s['above_threshold'] else 'below'} the threshold); evidence {s['evidence_key']}")
        for r in s["reasons"]:
            lines.append(f"  - {r.get('text', r) if isinstance(r, dict) else r}")
    else:
        lines.append("no risk score yet")
    c = e.get("cluster")
    if c:
        lines.append(f"cluster {c['cluster_id']}: {c['size']} accounts ({', '.join(c['members'])}), "
                     f"linked by {c['types_linking_the_cluster']}")
    else:
        lines.append("no linked account")
    if e["links"]:
        lines.append(f"links ({e['links_total']}):")
        lines += [f"  {x['other_player']}: {x['shared_types']} types ({x['linked_by']}), score {x['score']:.2f}"
                  for x in e["links"]]
    if e["shared_identifiers"]:
        lines.append("identifiers shared with other accounts (pseudonyms; the values stay in the vault):")
        lines += [f"  {x['attribute']} ({x['attribute_type'] or 'no type'}): {x['pseudonym']} "
                  f"held by {x['other_accounts']} other account(s)" for x in e["shared_identifiers"]]
    if e.get("features"):
        lines.append("behaviour: " + ", ".join(f"{k}={v}" for k, v in e["features"].items()
                                                 if k not in ("brand_id", "player_id")))
    for d in e["decisions"]:
        lines.append(f"decision: {d['decision']} by {d['by']} at {d['at']}: {d['reason']}")
    return "\n".join(lines)
