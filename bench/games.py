"""Next best game, offline: the ranker against the popularity and favourite-provider baselines.

    python -m bench.games --home PATH [--seeds 3] [--json] [--out FILE]

reads ``fct_player_game_daily``, the ``games`` and ``provider_licences`` seeds and ``dim_player``
from ``PATH/warehouse.duckdb`` (read-only), and per seed (the ranker's random state and the
training sample) fits at the training cut and evaluates at the evaluation cut
(:func:`ml.games.fit_and_evaluate`, the serving filter applied): recall@1/3/5 and coverage@3 in
discovery mode (games new to the player: what is served) and over all games, each as a ratio to
the best baseline; fit seconds and the recommendation of every player (seconds, players/s).
No MLflow: nothing of the home is written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def run(home: Path, seeds: int) -> dict:
    from crm.campaigns.next_game import (
        allowed_for_players,
        allowed_games,
        has_profiling_consent,
        last_day_of,
        read_inputs,
    )
    from crm.config import Paths
    from ml.games import BASELINES, Catalogue, fit_and_evaluate, recommend

    paths = Paths(home)
    data = read_inputs(paths)
    games, players = data["games"], data["players"]
    catalogue = Catalogue.of(games)
    allowed_for = allowed_for_players(players, games, data["licences"])
    last = last_day_of(data["plays"], dt.date.max)  # the last day with play
    runs = []
    model = None
    for seed in range(seeds):
        t0 = time.perf_counter()
        model, ev, _ = fit_and_evaluate(data["plays"], catalogue, allowed_for, last, seed=seed)
        runs.append({"seed": seed, "seconds": round(time.perf_counter() - t0, 2), "metrics": ev.metrics,
                     "train_players": ev.train_players, "train_rows": ev.train_rows,
                     "train_cut": ev.train_cut.isoformat(), "eval_cut": ev.eval_cut.isoformat()})
    ids = players["player_id"].astype(str).to_numpy()
    allowed = allowed_games(players, games, data["licences"])
    personal = has_profiling_consent(players)
    t0 = time.perf_counter()
    top, _ = recommend(model, data["plays"], catalogue, ids, allowed, personal, last, 3)
    rec_secs = time.perf_counter() - t0
    summary = {}
    for mode in ("discovery", "all"):
        for metric in ("recall_at_1", "recall_at_3", "recall_at_5", "coverage_at_3"):
            vals = {m: [r["metrics"][m][mode][metric] for r in runs] for m in ("model", *BASELINES)}
            best_base = max(np.mean(vals[b]) for b in BASELINES)
            summary[f"{mode}_{metric}"] = {
                **{m: round(float(np.mean(v)), 4) for m, v in vals.items()},
                "model_min": round(float(np.min(vals["model"])), 4),
                "model_over_best_baseline": round(float(np.mean(vals["model"]) / best_base), 2) if best_base else None}
    return {"home": str(home), "players": len(ids), "games": catalogue.size, "plays": len(data["plays"]),
            "seeds": seeds, "summary": summary, "runs": runs,
            "fit_and_evaluate_seconds": round(float(np.mean([r["seconds"] for r in runs])), 2),
            "recommend_seconds": round(rec_secs, 2), "recommend_players_per_s": round(len(ids) / rec_secs),
            "with_recommendation": int((top[:, 0] >= 0).sum()),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}


def format_table(r: dict) -> str:
    lines = [f"{'metric':<28} {'model':>8} {'popularity':>11} {'fav.provider':>13} {'model/best':>11}"]
    for key, v in r["summary"].items():
        lines.append(f"{key:<28} {v['model']:>8.4f} {v['popularity']:>11.4f} {v['favourite_provider']:>13.4f} "
                     f"{(v['model_over_best_baseline'] or float('nan')):>10.2f}x")
    lines.append(f"fit + evaluate {r['fit_and_evaluate_seconds']} s (mean of {r['seeds']} seeds); recommend "
                 f"{r['players']:,} players in {r['recommend_seconds']} s ({r['recommend_players_per_s']:,}/s); "
                 f"{r['with_recommendation']:,} with a recommendation")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.games", description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True, type=Path, help="a data home after `crm run`")
    ap.add_argument("--seeds", type=int, default=3, help="ranker seeds (random state and training sample)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    r = run(args.home, args.seeds)
    if args.out:
        args.out.write_text(json.dumps(r, indent=2))
    print(json.dumps(r) if args.json else format_table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
