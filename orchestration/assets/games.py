"""Next best game: the ranker's training asset and the daily recommendations (crm.campaigns.next_game)."""

import pandas as pd
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from crm.campaigns import next_game
from crm.lineage import lineage
from ml import registry
from ml.games import MODEL_NAME, PRIMARY_METRIC
from ml.retrain import retrain_decision
from orchestration.assets._meta import md_table, num
from orchestration.resources import DAILY, RETRAIN_TAG, CrmResource
from orchestration.resources import as_of as partition_date

_INPUTS = [AssetKey("fct_player_game_daily"), AssetKey("games"), AssetKey("provider_licences"), AssetKey("dim_player")]


@asset(name=f"{MODEL_NAME}_model", group_name="ml", kinds={"lightgbm", "mlflow"}, partitions_def=DAILY,
       deps=_INPUTS,
       description="Next best game: a LightGBM ranker over (player, game) with history, co-play similarity, "
                   "popularity and novelty features; evaluated on a time split against popularity and "
                   "favourite-provider baselines (recall@k, coverage); @champion when its discovery recall@3 "
                   "beats the champion's on the same split.")
def next_best_game_model(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
    paths, as_of = crm.paths(), partition_date(context)
    decision = retrain_decision(paths.mlflow_tracking_uri, MODEL_NAME, as_of,
                                force=context.run.tags.get(RETRAIN_TAG) == "true")
    context.log.info(f"{MODEL_NAME}: {'retrain' if decision.due else 'no retrain'}: {decision.reason}")
    if not decision.due:
        return MaterializeResult(metadata=decision.metadata())
    try:
        out = next_game.train(paths, as_of, tracking_uri=paths.mlflow_tracking_uri,
                              artifact_location=paths.mlflow_artifacts.as_uri(),
                              lineage=lineage(as_of_date=as_of.isoformat(), trigger="dagster",
                                              dagster_run_id=context.run.run_id))
    except ValueError as e:  # a young data home: too little play to learn from
        context.log.warning(f"{MODEL_NAME}: {e}")
        return MaterializeResult(metadata={"trained": False, "reason": str(e)})
    rows = [{"method": method, "mode": mode, **{k: round(v, 4) for k, v in ms.items() if k != "players_evaluated"},
             "players": int(ms["players_evaluated"])}
            for method, modes in out["evaluation"].items() for mode, ms in modes.items()]
    context.log.info(f"{MODEL_NAME} v{out['version']}: {out['decision']}")
    return MaterializeResult(metadata={
        **decision.metadata(), "trained": True, "model": f"{MODEL_NAME} v{out['version']}",
        "promoted_to_champion": out["promoted"], "decision": out["decision"],
        "train_cut": out["train_cut"], "eval_cut": out["eval_cut"],
        PRIMARY_METRIC: num(out["metrics"][PRIMARY_METRIC]),
        "model_vs_baselines": md_table(pd.DataFrame(rows)),
    })


@asset(group_name="ml", kinds={"lightgbm", "duckdb"}, partitions_def=DAILY,
       deps=[next_best_game_model.key, *_INPUTS],
       description="Each player's next best games of the day (top 3 in game_recommendations; lists carry the first "
                   "as recommended_game): licensed in their jurisdiction, never high-volatility or long-session "
                   "for a player with an RG marker; personal for players with profiling consent, the most "
                   "popular allowed game otherwise.")
def game_recommendations(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
    paths, as_of = crm.paths(), partition_date(context)
    client = registry.get_client(paths.mlflow_tracking_uri)
    if registry.champion_version(client, MODEL_NAME) is None:
        context.log.warning(f"{MODEL_NAME}: no champion yet: no recommendations")
        return MaterializeResult(metadata={"recommended": False, "reason": "no next_best_game champion yet"})
    out = next_game.write_recommendations(paths, as_of, tracking_uri=paths.mlflow_tracking_uri)
    context.log.info(f"recommended a game to {out['with_recommendation']} of {out['players']} players")
    return MaterializeResult(metadata={
        "players": out["players"], "with_recommendation": out["with_recommendation"],
        "personal": out["personal"], "model": f"{MODEL_NAME} v{out['model_version']}",
        "top_first_recommendations": md_table(out["top_games"], "game", "players")
        if out["top_games"] else MetadataValue.text("none"),
    })


game_assets = [next_best_game_model, game_recommendations]
