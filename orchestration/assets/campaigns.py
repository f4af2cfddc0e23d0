"""One list asset per campaign, its blocking compliance gate, and its dispatch asset.

The list assets of a day depend on the list assets of every higher-priority campaign
(priority, then id), so Dagster builds them in that order and the UI shows it; each reads
the published higher-priority lists of its date (:func:`crm.campaigns.day.build_one`). The
compliance gate of a list (:func:`gate_published_list`) checks the day's limits against the
published higher-priority lists and what was already sent that day (the outbox).
"""

import datetime as dt
from pathlib import Path

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from crm.campaigns.approvals import record_config_changes, record_spec_changes
from crm.campaigns.budget import gate_limit
from crm.campaigns.day import build_one, higher_priority, published_rows
from crm.campaigns.dispatch import dispatch_list
from crm.campaigns.eligibility import effective_caps
from crm.campaigns.lists import list_dir, publish, read_manifest
from crm.campaigns.overrides import record_list_gate
from crm.campaigns.policy import POLICY
from crm.campaigns.spec import CampaignSpec
from crm.config import Paths, campaigns_dir
from crm.warehouse import read_table
from expectations.campaign_list import (
    DayLimits,
    GateContext,
    GatedList,
    gate_list,
    offer_choice_terms,
    read_sent,
    recent_list_sizes,
)
from expectations.validate import GateResult
from orchestration.assets._gates import check_result, docs_dir
from orchestration.assets._keys import campaign_key
from orchestration.assets._meta import md_table, num, table
from orchestration.resources import DAILY, CrmResource
from orchestration.resources import as_of as partition_date

# A deterministic hash assignment has no sampling noise beyond chance: a mismatch this
# unlikely means players were dropped or added after assignment.
SRM_ALPHA = 0.001
DISPATCH_CHECK = "dispatch_status"


def list_key(spec: CampaignSpec) -> AssetKey:
    return campaign_key(spec.id, "list")


def gate_published_list(paths: Paths, spec: CampaignSpec, specs: list[CampaignSpec], as_of: dt.date,
                        docs: Path | None = None) -> GateResult:
    """The compliance gate's suite on the published list of ``spec`` for ``as_of``: the profile,
    the campaign's budgets (:func:`crm.campaigns.budget.gate_limit`: what is left after earlier
    dates' spend) and limits, the published higher-priority lists of the day and the
    outbox of the day (and of the day before, for the cooldown) as dispatch left it."""
    lst = pd.read_parquet(list_dir(paths, spec.id, as_of) / "list.parquet")
    gated = GatedList(lst, read_table(paths, "dim_player"), spec.experiment.holdout, list(spec.experiment.variants))
    return gate_list(gated, GateContext(
        budget_cents=gate_limit(paths, spec, as_of),  # earlier dates' spend counts (the spend ledger)
        min_uplift_cents=spec.target.min_uplift_cents,
        day_lists=[published_rows(paths, h, as_of) for h in higher_priority(spec, specs)],
        sent=read_sent(paths.outbox, as_of, lists_dir=paths.lists),
        # a transactional message bypasses the caps and the cooldown
        limits=DayLimits.from_caps(effective_caps(spec, POLICY), marketing=not spec.transactional),
        size_history=recent_list_sizes(paths.lists / spec.id, as_of), docs_dir=docs,
        offer_choices=offer_choice_terms(spec.offer.choices) or None))


def campaign_assets(spec: CampaignSpec, specs: list[CampaignSpec] | None = None
                    ) -> tuple[list[AssetsDefinition], list[AssetChecksDefinition]]:
    """The assets of ``spec``; ``specs``: every campaign of the day (default: only this one)."""
    specs = specs if specs is not None else [spec]
    higher = higher_priority(spec, specs)

    @asset(key=list_key(spec), group_name="campaigns", kinds={"csv", "parquet", "xlsx"}, partitions_def=DAILY,
           deps=[AssetKey("player_scores"), AssetKey("game_recommendations"), AssetKey("dim_player"),
                 AssetKey("player_features"),
                 AssetKey("player_clusters"), AssetKey("player_risk_flags"),  # linked accounts, abuse flags
                 *[list_key(h) for h in higher]],
           description=f"{spec.name} ({spec.channel}, priority {spec.priority}): segment ∩ eligibility "
                       f"(after {len(higher)} higher-priority lists of the day), offer, variants + holdout.",
           tags={"channel": spec.channel, "priority": str(spec.priority)})
    def campaign_list(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
        paths, as_of = crm.paths(), partition_date(context)
        built = build_one(paths, spec, specs, as_of, audience=crm.audience(as_of))  # read once per run
        manifest = publish(built, paths)
        changed = record_spec_changes(paths, [spec])  # the audit log sees every campaign version
        record_config_changes(paths, campaigns_dir())  # ... and of the offer catalogue and calendar
        context.log.info(f"{spec.id}: {built.funnel} -> {manifest['path']}")
        return MaterializeResult(metadata=_list_metadata(spec, higher, built, manifest, changed,
                                                         list_dir(paths, spec.id, as_of)))

    @asset_check(asset=campaign_list, name="compliance_gate", blocking=True,
                 description="Great Expectations suite: no ineligible player (recomputed from the profile), "
                             "unique players, known variants, holdout share, costs, the day's limits with the "
                             "higher-priority lists and what was already sent that day (cost per player, one "
                             "bonus offer, daily caps, cooldown), list size within a band around the median of "
                             "recent runs, manifest checksums.")
    def compliance_gate(context: AssetCheckExecutionContext, crm: CrmResource) -> AssetCheckResult:
        paths, as_of = crm.paths(), partition_date(context)
        result = gate_published_list(paths, spec, specs, as_of, docs=docs_dir(paths) / spec.id)
        # overrides by a named person (never of a compliance expectation), manifest checksums, gate.json
        v = record_list_gate(paths, spec.id, as_of, result)
        return check_result(v.result, v.overrides, {"manifest_checksums": f"mismatch: {v.tampered}" if v.tampered
                                                     else "ok"}, passed=v.passed, description=v.summary)

    @asset_check(asset=campaign_list, name="sample_ratio", blocking=False,
                 description=f"Sample-ratio mismatch: chi-square of the variant / holdout counts against the "
                             f"designed shares; warns below p = {SRM_ALPHA}.")
    def sample_ratio(context: AssetCheckExecutionContext, crm: CrmResource) -> AssetCheckResult:
        manifest = read_manifest(list_dir(crm.paths(), spec.id, partition_date(context)))
        p = float(manifest["srm_pvalue"])
        counts = {k: v for k, v in manifest["counts"].items() if k == "holdout" or k.startswith("variant_")}
        return AssetCheckResult(
            passed=p >= SRM_ALPHA, severity=AssetCheckSeverity.WARN,
            description=f"srm p-value {p:.4g} ({'ok' if p >= SRM_ALPHA else 'mismatch: check the assignment'})",
            metadata={"srm_pvalue": num(p), "counts": md_table(counts, "group", "players"),
                      "designed_holdout_share": spec.experiment.holdout})

    dispatch_key = campaign_key(spec.id, "dispatch")

    @asset(key=dispatch_key, group_name="dispatch", kinds={"json"},
           deps=[campaign_list], partitions_def=DAILY,
           description=f"Outbox of {spec.channel} messages for {spec.id} with idempotency keys; holdout never sent.",
           check_specs=[AssetCheckSpec(DISPATCH_CHECK, asset=dispatch_key, blocking=False,
                                       description="WARN when the list was not sent: the campaign awaits a "
                                                   "second person's approval, or was rejected (the asset "
                                                   "materializes either way; its `status` says which).")])
    def dispatch(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
        paths, as_of = crm.paths(), partition_date(context)
        # raises DispatchBlocked unless the gate passed on these bytes; an unapproved campaign
        # (four-eyes) is a normal state: nothing is sent and the status says why
        report = dispatch_list(paths, spec.id, as_of, spec=spec)
        if report.status != "dispatched":
            context.log.warning(f"{spec.id}: not dispatched: {report.status} ({report.approval})")
        context.log.info(f"{spec.id}: {report.new_messages} new messages -> {report.outbox_file}")
        return MaterializeResult(metadata=_dispatch_metadata(report), check_results=[dispatch_check(report)])

    return [campaign_list, dispatch], [compliance_gate, sample_ratio]


def _list_metadata(spec: CampaignSpec, higher: list[CampaignSpec], built, manifest: dict, changed,
                   directory) -> dict:
    """What the list asset shows in the UI: the funnel, suppression by rule, cost, a preview, and for
    a list with nobody to contact, why."""
    return {
        **({"nothing_to_send_because": built.empty_because} if built.empty_because else {}),
        "priority": spec.priority,
        "spec_hash": manifest["spec_hash"][:12],
        "spec_changed_since_last_run": bool(changed),
        "after_higher_priority_lists": ", ".join(h.id for h in higher) or "none (built first)",
        "suppressed_after_eligibility": md_table(built.suppression.get("after_eligibility", {}), "cut",
                                                 "players"),
        "suppression_file": MetadataValue.path(str(directory / "suppression.json")),
        "path": MetadataValue.path(manifest["path"]),
        "as_of_date": built.as_of.isoformat(),
        "rows": len(built.rows),
        "dagster/row_count": len(built.rows),
        "funnel": md_table(built.funnel, "stage", "players"),
        "suppressed_by_first_failing_rule": md_table(built.suppression["first_failing_rule"], "rule", "players"),
        "suppressed_by_every_failing_rule": md_table(built.suppression["every_failing_rule"], "rule", "players"),
        "srm_pvalue": num(built.srm_pvalue),
        "total_offer_cost_eur": manifest["total_offer_cost_eur_cents"] / 100,
        "model_versions": ", ".join(built.model_versions) or "none",
        "targeting": md_table(manifest.get("targeting", {"by": "all"}), "targeting", "value"),
        **({"offers_chosen": table([{"offer": k, "players_to_contact": v["players"],
                                     "offer_cost_eur": v["cost_eur_cents"] / 100}
                                    for k, v in manifest["offers_chosen"].items()])}
           if manifest.get("offers_chosen") else {}),
        "preview": table(built.rows, limit=10) if len(built.rows) else MetadataValue.text("empty"),
    }


def dispatch_check(report) -> AssetCheckResult:
    """``dispatch_status``: passes when the list was dispatched; WARN (yellow) when nothing was sent because
    the campaign awaits approval or was rejected: a green materialization alone looked like a send."""
    sent = report.status == "dispatched"
    what = (f"dispatched: {report.new_messages:,} new messages ({report.already_in_outbox:,} already in the "
            f"outbox)" if sent else f"NOT SENT, {report.status}: {report.approval}")
    return AssetCheckResult(check_name=DISPATCH_CHECK, passed=sent, severity=AssetCheckSeverity.WARN,
                            description=what[:2000],
                            metadata={"status": report.status, "approval": report.approval,
                                      "new_messages": report.new_messages})


def _dispatch_metadata(report) -> dict:
    """What the dispatch asset shows in the UI: the status (sent, or waiting for approval), counts."""
    return {
        "status": report.status,
        "approval": report.approval,
        "spec_hash": report.spec_hash[:12],
        "outbox_file": MetadataValue.path(report.outbox_file),
        "new_messages": report.new_messages,
        "already_in_outbox": report.already_in_outbox,
        "holdout_not_sent": report.holdout,
        "assignments_file": MetadataValue.path(report.assignments_file) if report.assignments_file else "none",
        "assigned_treatment": report.assigned_treatment,
        "assigned_control": report.assigned_control,
        "suppressed_at_send": report.suppressed_at_send,
        "suppressed_at_send_reasons": md_table(report.suppressed_reasons, "stop event since the list", "players"),
        "queued_for_delivery": report.queued,
        "deliverability": md_table(_deliverability(report.campaign_id), "measure", "value"),
    }


def _deliverability(campaign_id: str) -> dict:
    """The campaign's delivery outcomes so far (every dispatched date), from the service store (feedback
    included): sent, and the share delivered, opened, clicked, bounced, complained, unsubscribed."""
    import datetime as dt

    from crm.config import paths
    from crm.store.db import make_engine
    from crm.store.metrics import campaign_deliverability

    engine = make_engine(paths())
    try:
        return campaign_deliverability(engine, campaign_id, dt.datetime(1990, 1, 1))
    except Exception as e:  # a store from before the deliveries table: say so, do not fail the dispatch
        return {"unavailable": f"{type(e).__name__}: {str(e)[:200]}"}
    finally:
        engine.dispose()
