"""Campaign readouts: one asset per campaign file and one over every campaign in the mart.

The statistics live in crm/measurement/readout.py; these assets read ``fct_campaign_outcomes`` through it
and turn the results into Dagster metadata (effect table, ROI, guardrail flags, last-touch
over-claim, plots).
"""


from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, MetadataValue, asset

from crm.campaigns.spec import CampaignSpec
from crm.measurement import readout as R
from orchestration.assets._keys import campaign_key
from orchestration.assets._meta import md_figure, num
from orchestration.resources import DAILY, CrmResource

OUTCOMES = AssetKey("fct_campaign_outcomes")


def _num(value: float | None) -> MetadataValue:
    return num(value)  # 4 significant digits; n/a for None


def readout_metadata(result: dict) -> dict:
    """Metadata of one campaign readout; a short note while nothing has matured."""
    arms = result["arms"]
    meta: dict = {
        "status": result["status"],
        "treatment_players": arms[R.TREATMENT],
        "control_players": arms[R.CONTROL],
        "expected_control_share": _num(result.get("expected_control_share")),
        "srm_pvalue": _num(result.get("srm_pvalue")),
        "srm_mismatch": bool(result.get("srm_mismatch")),
    }
    if result["status"] != R.OK:
        meta["readout"] = MetadataValue.md(f"_{result['status']}_")
        return meta
    bonus, att = result["bonus"], result["attribution"]
    figures = R.readout_figures(result)
    meta |= {
        "sent": f"{result['sent_from']} .. {result['sent_to']}",
        "effects": MetadataValue.md(R.effects_table(result).to_markdown(index=False)),
        "roi": _num(bonus["roi"]),
        "roi_definition": bonus["roi_definition"],
        "bonus_cost_eur": _num(bonus["cost_eur"]),
        "bonus_cost_basis": bonus["cost_basis"],
        "incremental_ngr_eur": _num(bonus["incremental_ngr_eur"]),
        "guardrails_flagged": ", ".join(result["guardrails_flagged"]) or "none",
        "last_touch_conversions": att["attributed_conversions"],
        "incremental_conversions": _num(att["incremental_conversions"]),
        "over_claim_ratio": _num(att["over_claim_ratio"]),
        "attribution_window_days": att["window_days"],
        "effects_plot": md_figure(figures["effects"], f"{result['campaign_id']} effects"),
        "attribution_plot": md_figure(figures["attribution"], f"{result['campaign_id']} attribution"),
    }
    return meta


def campaign_readout_asset(spec: CampaignSpec) -> AssetsDefinition:
    share = spec.experiment.holdout

    @asset(key=campaign_key(spec.id, "readout"), group_name="readouts", kinds={"python"},
           deps=[OUTCOMES], partitions_def=DAILY,
           description=f"Readout of {spec.id}: effect with 95% CI on conversion, deposits, NGR and reactivation "
                       f"against the {share:.0%} holdout, bonus cost, ROI, RG guardrails, last touch vs incremental.")
    def campaign_readout(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
        found = R.readout(crm.paths(), spec.id, expected_control_share=share)
        result = found[0] if found else R.empty_readout(spec.id, R.NOT_MATURED, share)
        context.log.info(R.summary_line(result))
        return MaterializeResult(metadata=readout_metadata(result))

    return campaign_readout


def readout_assets(specs: list[CampaignSpec]) -> list[AssetsDefinition]:
    """One readout per campaign file, plus ``past_campaign_readouts`` over every campaign in the mart."""
    shares = {s.id: s.experiment.holdout for s in specs}

    @asset(group_name="readouts", kinds={"json"}, deps=[OUTCOMES], partitions_def=DAILY,
           description="Readouts of every campaign with assignments in fct_campaign_outcomes (operator exports "
                       "and our own dispatches), each written to $CRM_HOME/readouts/<campaign_id>.json.")
    def past_campaign_readouts(context: AssetExecutionContext, crm: CrmResource) -> MaterializeResult:
        paths = crm.paths()
        results = R.readout(paths, expected_control_share=shares)
        rows = []
        for result in results:
            R.write_readout(paths, result)
            context.log.info(R.summary_line(result))
            eff = {e["metric"]: e for e in result["effects"]}
            conv, ngr = eff.get("converted_7d"), eff.get("ngr_eur_14d")
            rows.append({
                "campaign": result["campaign_id"], "status": result["status"],
                "treatment / control": f"{result['arms'][R.TREATMENT]:,} / {result['arms'][R.CONTROL]:,}",
                "conversion diff (pp)": "n/a" if not conv or conv["diff"] is None else
                f"{100 * conv['diff']:+.2f} [{100 * conv['ci_low']:+.2f}, {100 * conv['ci_high']:+.2f}]",
                "NGR diff EUR/player": "n/a" if not ngr or ngr["diff"] is None or ngr["ci_low"] is None else
                f"{ngr['diff']:+.2f} [{ngr['ci_low']:+.2f}, {ngr['ci_high']:+.2f}]",
                "ROI": "n/a" if not result["bonus"] or result["bonus"]["roi"] is None else
                f"{result['bonus']['roi']:+.2f}",
                "over-claim": "n/a" if not result["attribution"] or result["attribution"]["over_claim_ratio"] is None
                else f"{result['attribution']['over_claim_ratio']:.1f}x",
                "guardrails": ", ".join(result["guardrails_flagged"]) or "ok",
            })
        import pandas as pd

        table = pd.DataFrame(rows)
        return MaterializeResult(metadata={
            "campaigns": len(results),
            "readouts_dir": MetadataValue.path(str(R.readouts_dir(paths))),
            "readouts": MetadataValue.md(table.to_markdown(index=False) if len(table) else "_no assignments yet_"),
        })

    return [*(campaign_readout_asset(s) for s in specs), past_campaign_readouts]
