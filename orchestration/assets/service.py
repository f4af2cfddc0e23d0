"""The service's online profile (the warehouse's player profile copied into the service store), the
daily journey scan, and what the real-time triggers and journeys did."""

import datetime as dt

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, asset

from crm.campaigns import approvals
from crm.campaigns.online import sync_online_profiles
from crm.config import campaigns_dir
from crm.store.db import make_engine, upgrade_to_head
from crm.triggers.journeys import enter_from_profiles, load_journeys
from crm.triggers.report import day_counts, trigger_readout
from crm.triggers.spec import load_triggers
from orchestration.assets._meta import num, table
from orchestration.resources import DAILY, CrmResource


@asset(group_name="service", kinds={"sqlite", "postgres"}, partitions_def=DAILY,
       # after the scores: the last write to the warehouse before the lists, which only read it
       deps=[AssetKey("dim_player"), AssetKey("int_consents_versioned"), AssetKey("stg_casino__crm_messages"),
             AssetKey("player_scores"),
             AssetKey("player_clusters"), AssetKey("player_risk_flags")],  # linked exclusions, abuse flags
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


@asset(group_name="service", kinds={"sqlite", "postgres"}, partitions_def=DAILY, deps=[online_profiles],
       description="The daily journey scan: players whose online profile (with the scores) meets a journey's "
                   "entry conditions enter it (campaigns/journeys/*.yaml); the trigger workers step them. One "
                   "active run per player and journey; re-entry rules; a holdout share recorded.")
def journey_entries(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
    paths = crm.paths()
    journeys, errors = load_journeys(campaigns_dir())
    for e in errors:
        context.log.error(e)
    engine = make_engine(paths)
    try:
        upgrade_to_head(engine)
        approved = {j.id: approvals.status(paths, j.as_campaign()).dispatchable for j in journeys}
        out = enter_from_profiles(engine, journeys, dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0),
                                  approved)
    finally:
        engine.dispose()
    return MaterializeResult(metadata={
        "entered": num(sum(c["entered"] for c in out.values())),
        "holdout": num(sum(c["holdout"] for c in out.values())),
        "by_journey": table([{"journey": j, **c, "approved": approved[j]} for j, c in out.items()]),
        "broken_files": num(len(errors)),
    })


@asset(group_name="service", kinds={"sqlite", "postgres"}, partitions_def=DAILY, deps=[journey_entries],
       description="What the real-time triggers and the journeys did on the partition's day: firings by outcome "
                   "and rule (queued, refused, holdout, no match, deduped, ...), journey steps (entered, sent, "
                   "suppressed by rule, exited, converted), and a readout per trigger: the goal reached by "
                   "the treated vs the holdout, with its interval.")
def realtime_activity(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
    paths = crm.paths()
    day = dt.date.fromisoformat(context.partition_key)
    triggers, errors = load_triggers(campaigns_dir())
    engine = make_engine(paths)
    try:
        upgrade_to_head(engine)
        counts = day_counts(engine, day)
        until = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
        reads = [trigger_readout(engine, t, until) for t in triggers]
    finally:
        engine.dispose()
    firings = counts["triggers"]
    sent = sum(r["n"] for r in firings if r["status"] == "queued")
    refused = sum(r["n"] for r in firings if r["status"] == "refused")
    return MaterializeResult(metadata={
        "trigger_messages_queued": num(sent),
        "trigger_firings_refused": num(refused),
        "triggers": table(firings or [{"trigger_id": "-", "status": "no firings", "rule": None, "n": 0}]),
        "journeys": table(counts["journeys"] or [{"journey_id": "-", "what": "nothing", "rule": None, "n": 0}]),
        "trigger_readouts": table([{k: r[k] for k in ("trigger_id", "goal_event", "firings", "n_treatment",
                                                       "n_control", "treatment_mean", "control_mean", "diff",
                                                       "ci_low", "ci_high", "p_value")} for r in reads]
                                  or [{"trigger_id": "-"}]),
        "broken_trigger_files": num(len(errors)),
    })
