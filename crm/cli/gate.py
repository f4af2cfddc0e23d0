"""`crm gate`: override a failed quality gate (never a compliance expectation), and list overrides.

Overrides are entries of the audit log ($CRM_HOME/audit/, kind gate_override); see crm/campaigns/overrides.py.
"""

from __future__ import annotations

import datetime as dt
import json

import click

from crm.config import export_env


def _date(value: str | None, param: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as e:
        raise click.BadParameter(f"expected YYYY-MM-DD, got {value!r}", param_hint=param) from e


@click.group("gate")
def gate_group() -> None:
    """Override a failed quality gate for one as-of date, by name and with a reason (audit-logged).

    Compliance expectations (eligibility recomputation, unique players, the day's limits, anything
    about consent, responsible gambling or age) can never be overridden. An override covers one
    check, one as-of date and the named expectations; for a campaign list (compliance_gate) also
    only the list as published when the override was given. Re-run the check (or `crm run --date D`)
    for it to take effect.
    """


@gate_group.command("override")
@click.argument("check", metavar="CHECK")
@click.option("--date", "as_of", required=True, help="the as-of date YYYY-MM-DD the override covers (only that one)")
@click.option("--expectation", "expectations", multiple=True, required=True,
              help="a failing expectation to waive, as named in the check's metadata, e.g. "
                   "expect_table_row_count_to_be_between (repeatable)")
@click.option("--campaign", "campaign_id", help="the campaign, for its list's compliance_gate")
@click.option("--by", required=True, help="your name (not a pipeline name)")
@click.option("--reason", required=True, help="why the gate may be overridden (kept in the audit log)")
@click.option("--json", "as_json", is_flag=True, help="print the audit entry as JSON")
def override_cmd(check: str, as_of: str, expectations: tuple[str, ...], campaign_id: str | None, by: str,
                 reason: str, as_json: bool) -> None:
    """Waive the named failing expectations of gate CHECK on one as-of date.

    CHECK: landing_gate, marts_dim_player_gate, marts_fct_player_daily_gate, features_gate,
    scores_gate, or compliance_gate (with --campaign).
    """
    from crm.campaigns.audit import AuditError
    from crm.campaigns.overrides import OverrideError, override

    day = _date(as_of, "--date")
    try:
        entry = override(export_env(), check=check, as_of=day, expectations=list(expectations), by=by,
                         reason=reason, campaign_id=campaign_id)
    except (OverrideError, AuditError) as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(entry, indent=2, default=str))
        return
    d = entry["details"]
    where = f" of {campaign_id} (list {d['list_sha256'][:12]})" if campaign_id else ""
    click.echo(f"gate_override {check}{where} on {d['as_of_date']} by {entry['by']}: "
               f"{', '.join(d['expectations'])}; audit entry seq {entry['seq']}")
    click.echo("re-run the check (or `crm run --date " + d["as_of_date"] + "`) for it to take effect")


@gate_group.command("overrides")
@click.option("--date", "as_of", help="only overrides for this as-of date YYYY-MM-DD")
@click.option("--json", "as_json", is_flag=True, help="print the entries as JSON")
def overrides_cmd(as_of: str | None, as_json: bool) -> None:
    """Gate overrides in the audit log, oldest first (exit 1 if the log does not verify: none applies)."""
    import sys

    from crm.campaigns.audit import read_entries, verify
    from crm.campaigns.overrides import KIND

    day = _date(as_of, "--date")
    paths = export_env()
    res = verify(paths)
    entries = [e for e in read_entries(paths) if e.get("kind") == KIND
               and (day is None or (e.get("details") or {}).get("as_of_date") == day.isoformat())]
    if as_json:
        click.echo(json.dumps({"verified": res.ok, "problem": res.problem, "overrides": entries}, indent=2,
                              default=str))
    else:
        if not res.ok:
            click.echo(f"WARNING: the audit log does not verify ({res.problem}): no override applies", err=True)
        if not entries:
            click.echo("no gate overrides" + (f" for {day.isoformat()}" if day else ""))
        for e in entries:
            d = e.get("details") or {}
            sha = f" list {d['list_sha256'][:12]}" if d.get("list_sha256") else ""
            click.echo(f"{e.get('seq', '?'):>5} {e.get('ts', '')[:19]}  {d.get('as_of_date', '?')}  "
                       f"{d.get('check', '?')} {e.get('campaign_id') or '-'}{sha}  "
                       f"{', '.join(d.get('expectations') or [])}  by {e.get('by', '')}: {e.get('reason', '')}")
    if not res.ok:
        sys.exit(1)
