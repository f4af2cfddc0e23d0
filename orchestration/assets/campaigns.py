"""One list asset per campaign, its blocking compliance gate, and its dispatch asset."""


from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from crm.campaign_spec import CampaignSpec
from crm.dispatch import dispatch_list
from crm.lists import build_list, list_dir, publish, read_manifest, record_gate, verify_manifest
from crm.warehouse import read_audience, read_table
from expectations.campaign_list import gate_list
from orchestration.assets._meta import md_table
from orchestration.resources import CrmResource

# A deterministic hash assignment has no sampling noise beyond chance: a mismatch this
# unlikely means players were dropped or added after assignment.
SRM_ALPHA = 0.001


def list_key(spec: CampaignSpec) -> AssetKey:
    return AssetKey(["campaigns", spec.id, "list"])


def campaign_assets(spec: CampaignSpec) -> tuple[list[AssetsDefinition], list[AssetChecksDefinition]]:
    @asset(key=list_key(spec), group_name="campaigns", kinds={"csv", "parquet"},
           deps=[AssetKey("player_scores"), AssetKey("dim_player"), AssetKey("player_features")],
           description=f"{spec.name} ({spec.channel}): segment ∩ eligibility, offer, variants + holdout.",
           tags={"channel": spec.channel})
    def campaign_list(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
        paths, as_of = crm.paths(), crm.as_of(context)
        built = build_list(spec, read_audience(paths, as_of), as_of)
        manifest = publish(built, paths)
        context.log.info(f"{spec.id}: {built.funnel} -> {manifest['path']}")
        return MaterializeResult(metadata={
            "path": MetadataValue.path(manifest["path"]),
            "as_of_date": as_of.isoformat(),
            "rows": len(built.rows),
            "dagster/row_count": len(built.rows),
            "funnel": md_table(built.funnel, "stage", "players"),
            "suppressed_by_first_failing_rule": md_table(built.suppression["first_failing_rule"], "rule", "players"),
            "suppressed_by_every_failing_rule": md_table(built.suppression["every_failing_rule"], "rule", "players"),
            "srm_pvalue": built.srm_pvalue,
            "total_offer_cost_eur": manifest["total_offer_cost_eur_cents"] / 100,
            "model_versions": ", ".join(built.model_versions) or "none",
            "targeting": md_table(manifest.get("targeting", {"by": "all"}), "targeting", "value"),
            "preview": MetadataValue.md(built.rows.head(10).to_markdown(index=False) if len(built.rows) else "_empty_"),
        })

    @asset_check(asset=campaign_list, name="compliance_gate", blocking=True,
                 description="Great Expectations suite: no ineligible player (recomputed from the profile), "
                             "unique players, known variants, holdout share, costs, manifest checksums.")
    def compliance_gate(context: AssetCheckExecutionContext, crm: CrmResource) -> AssetCheckResult:
        paths, as_of = crm.paths(), crm.as_of(context)
        directory = list_dir(paths, spec.id, as_of)
        import pandas as pd

        lst = pd.read_parquet(directory / "list.parquet")
        profile = read_table(paths, "dim_player")
        result = gate_list(lst, profile, spec.experiment.holdout, list(spec.experiment.variants),
                           budget_cents=spec.target.budget_cents, min_uplift_cents=spec.target.min_uplift_cents)
        tampered = verify_manifest(directory)
        passed = result.success and not tampered
        summary = result.summary() + (f"; files changed since publish: {tampered}" if tampered else "")
        record_gate(directory, result.suite, passed, {"summary": summary, "as_of_date": as_of.isoformat()})
        failed = {f"{o.expectation}({o.column or ''})": f"observed={o.observed!r}; unexpected={o.unexpected_count}; "
                  f"sample={o.sample[:10]}" for o in result.failed}
        return AssetCheckResult(
            passed=passed, severity=AssetCheckSeverity.ERROR,
            description=summary,
            metadata={
                "rows": result.rows,
                "expectations": len(result.outcomes),
                "failed_expectations": md_table(failed, "expectation", "observed / sample ids"),
                "manifest_checksums": "ok" if not tampered else f"mismatch: {tampered}",
            })

    @asset_check(asset=campaign_list, name="sample_ratio", blocking=False,
                 description=f"Sample-ratio mismatch: chi-square of the variant / holdout counts against the "
                             f"designed shares; warns below p = {SRM_ALPHA}.")
    def sample_ratio(context: AssetCheckExecutionContext, crm: CrmResource) -> AssetCheckResult:
        manifest = read_manifest(list_dir(crm.paths(), spec.id, crm.as_of(context)))
        p = float(manifest["srm_pvalue"])
        counts = {k: v for k, v in manifest["counts"].items() if k == "holdout" or k.startswith("variant_")}
        return AssetCheckResult(
            passed=p >= SRM_ALPHA, severity=AssetCheckSeverity.WARN,
            description=f"srm p-value {p:.4g} ({'ok' if p >= SRM_ALPHA else 'mismatch: check the assignment'})",
            metadata={"srm_pvalue": p, "counts": md_table(counts, "group", "players"),
                      "designed_holdout_share": spec.experiment.holdout})

    @asset(key=AssetKey(["campaigns", spec.id, "dispatch"]), group_name="dispatch", kinds={"json"},
           deps=[campaign_list],
           description=f"Outbox of {spec.channel} messages for {spec.id} with idempotency keys; holdout never sent.")
    def dispatch(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
        paths, as_of = crm.paths(), crm.as_of(context)
        report = dispatch_list(paths, spec.id, as_of)  # raises DispatchBlocked unless the gate passed
        context.log.info(f"{spec.id}: {report.new_messages} new messages -> {report.outbox_file}")
        return MaterializeResult(metadata={
            "outbox_file": MetadataValue.path(report.outbox_file),
            "new_messages": report.new_messages,
            "already_in_outbox": report.already_in_outbox,
            "holdout_not_sent": report.holdout,
            "assignments_file": MetadataValue.path(report.assignments_file) if report.assignments_file else "none",
            "assigned_treatment": report.assigned_treatment,
            "assigned_control": report.assigned_control,
        })

    return [campaign_list, dispatch], [compliance_gate, sample_ratio]
