"""The bonus-abuse risk score (issue 19) against the simulator's planted truth, beside a naive rule.

    python -m bench.risk [--players 20000] [--days 120] [--seed 42] [--json]

In a fresh data home: simulate, land, build the identity models and draw the clusters (the steps of
bench.abuse, whose ring figures come along), then ``dbt build +player_abuse_labels``, the training
(crm.risk.score.train: LightGBM on the warehouse's bonus-hunter outcome, never on truth/) and the
scoring (crm.risk.score.score), each in its own process: their time and peak RSS are their own.

Scored against truth/abuse_accounts.parquet: precision and recall of the flags (``above_threshold``)
for the role ``bonus_hunter`` (every hunter of the truth counts for recall, scored or not), and the
share of ring members and re-registrations flagged; beside the rule "bonus share of stake > 0.5" on
the same scored players.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import duckdb
import pandas as pd

from bench.abuse import bench_abuse
from bench.run import BIN, home_env, run_timed
from crm.config import DBT_PROJECT_DIR, Paths

TRAIN_STEP = ("import json; from crm.config import paths; from crm.risk.score import train; r = train(paths()); "
              "print(json.dumps({'version': r.model_version, 'decision': r.decision, 'train_rows': r.train_rows, "
              "'valid_rows': r.valid_rows, 'valid_from': r.valid_from, "
              "'metrics': {k: float(v) for k, v in r.metrics.items()}}))")
SCORE_STEP = ("import json; from crm.config import paths; from crm.risk.score import score; "
              "print(json.dumps(score(paths()).to_dict()))")
ROLES = ("bonus_hunter", "ring_member", "re_registration")


def flag_scores(flagged: set, truth: pd.DataFrame) -> dict:
    """Precision / recall of ``flagged`` (brand, player) per role of the truth."""
    out: dict = {"flagged": len(flagged)}
    for role in ROLES:
        ids = set(zip(*(truth.loc[truth["role"] == role, c] for c in ("brand_id", "player_id")), strict=True))
        hit = len(flagged & ids)
        out[role] = {"accounts": len(ids), "flagged": hit,
                     "precision": round(hit / len(flagged), 4) if flagged else float("nan"),
                     "recall": round(hit / len(ids), 4) if ids else float("nan")}
    return out


def evaluate(paths: Paths) -> dict:
    with duckdb.connect() as con:
        truth = con.execute("SELECT * FROM read_parquet(?)", [str(paths.truth / "abuse_accounts.parquet")]).df()
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        scores = con.execute("SELECT s.brand_id, s.player_id, s.above_threshold, f.bonus_stake_share "
                             "FROM player_risk_scores s JOIN player_abuse_features f "
                             "ON f.player_id = s.player_id AND f.as_of_date = s.as_of_date").df()
        labels = con.execute("SELECT count(*), count(*) FILTER (WHERE bonus_hunter_outcome) "
                             "FROM player_abuse_labels").fetchall()[0]
    def flagged(mask) -> set:
        return set(zip(scores.loc[mask, "brand_id"], scores.loc[mask, "player_id"], strict=True))

    hunters = truth[truth["role"] == "bonus_hunter"][["brand_id", "player_id"]]
    lab = hunters.merge(scores[["brand_id", "player_id"]], how="inner")
    return {"scored": len(scores), "labelled_rows": int(labels[0]), "labelled_positives": int(labels[1]),
            "hunters_scored": len(lab),
            "methods": {"risk score": flag_scores(flagged(scores["above_threshold"].to_numpy(bool)), truth),
                        "bonus share > 0.5": flag_scores(
                            flagged(scores["bonus_stake_share"].fillna(0).to_numpy() > 0.5), truth)}}


def bench_risk(root: Path, players: int, days: int, seed: int) -> dict:
    out = bench_abuse(root, players, days, seed)
    home = root / "home"
    env = home_env(home)
    vars_ = json.dumps({"as_of_date": _as_of(home)})
    print("  dbt build +player_abuse_labels (models, no tests) ...", file=sys.stderr, flush=True)
    secs, rss, _ = run_timed([str(BIN / "dbt"), "build", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
                              "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(home / "dbt" / "target"),
                              "--select", "+player_abuse_labels", "--exclude", "test_type:unit", "test_type:data",
                              "--vars", vars_], env)
    out["seconds"]["dbt_abuse_models"], out["peak_rss_mib"]["dbt_abuse_models"] = round(secs, 1), round(rss)
    for name, code in (("train", TRAIN_STEP), ("score", SCORE_STEP)):
        print(f"  {name} (crm.risk.score) ...", file=sys.stderr, flush=True)
        secs, rss, text = run_timed([sys.executable, "-c", code], env)
        out["seconds"][name], out["peak_rss_mib"][name] = round(secs, 2), round(rss)
        out[name] = json.loads(text.strip().splitlines()[-1])
    out["risk"] = evaluate(Paths(home))
    return out


def _as_of(home: Path) -> str:
    from crm.ingest.landing import default_as_of

    return default_as_of(Paths(home)).isoformat()


def format_table(r: dict) -> str:
    k = r["risk"]
    m = r["train"]["metrics"]
    lines = [f"bonus-abuse risk score at {r['players']:,} players x {r['days']} days (seed {r['seed']}): "
             f"{k['scored']:,} players with a bonus scored; {k['labelled_positives']} of {k['labelled_rows']:,} "
             f"labelled rows are the bonus-hunter outcome; {k['hunters_scored']} of "
             f"{k['methods']['risk score']['bonus_hunter']['accounts']} true hunters have a bonus (scored)",
             f"model v{r['train']['version']}: holdout ({r['train']['valid_rows']} rows from "
             f"{r['train']['valid_from']}) "
             f"roc_auc {m.get('roc_auc', float('nan')):.4f}, pr_auc {m.get('pr_auc', float('nan')):.4f} "
             f"(logreg {m.get('baseline_logreg_pr_auc', float('nan')):.4f}), at the threshold "
             f"{m['threshold']}: precision {m.get('precision_at_threshold', float('nan')):.3f}, "
             f"recall {m.get('recall_at_threshold', float('nan')):.3f} of the label",
             f"{'method vs truth':<20} {'flagged':>8} {'hunter P':>9} {'hunter R':>9} {'ring R':>7} {'re-reg R':>9}"]
    for name, s in k["methods"].items():
        lines.append(f"{name:<20} {s['flagged']:>8,} {s['bonus_hunter']['precision']:>9} "
                     f"{s['bonus_hunter']['recall']:>9} {s['ring_member']['recall']:>7} "
                     f"{s['re_registration']['recall']:>9}")
    lines.append("seconds: " + ", ".join(f"{a} {b}" for a, b in r["seconds"].items())
                 + "; peak RSS MiB: " + ", ".join(f"{a} {b}" for a, b in r["peak_rss_mib"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.risk", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--players", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", type=Path, default=None, help="build in this folder and keep it (else a temp one)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args(argv)
    if args.keep:
        r = bench_risk(args.keep, args.players, args.days, args.seed)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_risk_") as tmp:
            r = bench_risk(Path(tmp), args.players, args.days, args.seed)
    print(json.dumps(r, indent=2, default=str) if args.json else format_table(r))


if __name__ == "__main__":
    main()
