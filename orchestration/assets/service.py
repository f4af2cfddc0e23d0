"""The service's online profile: the warehouse's player profile copied into the service store."""

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, asset

from crm.campaigns.online import sync_online_profiles
from crm.store.db import make_engine, upgrade_to_head
from orchestration.assets._meta import num
from orchestration.resources import DAILY, CrmResource


@asset(group_name="service", kinds={"sqlite", "postgres"}, partitions_def=DAILY,
       # after the scores: the last write to the warehouse before the lists, which only read it
       deps=[AssetKey("dim_player"), AssetKey("int_consents_versioned"), AssetKey("stg_casino__crm_messages"),
             AssetKey("player_scores")],
       description="dim_player copied into the service store (SQLite, or CRM_DATABASE_URL), so "
                   "/v1/messaging/send checks sends without opening the warehouse; stop events the API "
                   "received that the warehouse now shows are retired; contact addresses from the landed events; "
                   "the messages the casino reported sending (crm.delivery), which sends count in caps and dedup.")
def online_profiles(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
    paths = crm.paths()
    engine = make_engine(paths)
    try:
        upgrade_to_head(engine)
        out = sync_online_profiles(paths, engine)
    finally:
        engine.dispose()
    context.log.info(f"online profile: {out['profiles']} players as of {out['as_of_date']}; "
                     f"{out['stops_retired']} stops retired, {out['stops_live']} still ahead of the warehouse")
    return MaterializeResult(metadata={
        "players": num(out["profiles"]), "as_of_date": out["as_of_date"],
        "stops_retired": num(out["stops_retired"]), "stops_still_ahead_of_the_warehouse": num(out["stops_live"]),
        "contacts_updated": num(out["contacts_updated"]),
        "reported_messages": num(out["reported_messages"]),
    })
