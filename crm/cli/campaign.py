"""`crm campaign` (four-eyes approval) and `crm audit` (the hash-chained audit log).

Campaigns are read from $CRM_CAMPAIGNS_DIR (default: campaigns/ in the checkout); the audit
log lives in $CRM_HOME/audit/. Every command takes --json for a machine-readable answer.
"""

from __future__ import annotations

import json
import sys

import click

from crm.config import campaigns_dir, export_env


def _echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def _specs(show_errors: bool = False) -> list:
    from crm.campaigns.spec import load_campaigns

    specs, errors = load_campaigns(campaigns_dir())
    for e in errors if show_errors else ():
        click.echo(f"ERROR {e}", err=True)
    return specs


def _spec(campaign_id: str):
    from crm.campaigns.spec import CampaignError, load_campaign

    path = campaigns_dir() / f"{campaign_id}.yaml"
    if not path.exists():
        known = ", ".join(s.id for s in _specs()) or "none"
        raise click.BadParameter(f"unknown campaign {campaign_id!r} (no {path}); campaigns: {known}",
                                 param_hint="ID")
    try:
        return load_campaign(path)
    except CampaignError as e:
        raise click.ClickException(str(e)) from e


# ----------------------------------------------------------------------------------------------- crm campaign
@click.group("campaign")
def campaign_group() -> None:
    """Four-eyes approval: approve or reject a campaign version, and see what waits.

    A campaign needs approval when its YAML says `approval: {required: true}` or its cost (the
    treated offer cost of its latest list, or its budget) exceeds $CRM_APPROVAL_THRESHOLD_EUR
    (default 1000). Its lists are built and gated but not dispatched until a second person (not
    the campaign's owner) approves. An approval covers one version of the YAML (its spec hash):
    any change needs a new one. Every decision goes to the audit log (`crm audit show`).
    """


def _decide(kind: str, campaign_id: str, by: str, reason: str, as_json: bool) -> None:
    from crm.campaigns.approvals import ApprovalError, approve, latest_manifest, reject, status
    from crm.campaigns.audit import AuditError

    spec = _spec(campaign_id)
    paths = export_env()
    manifest = latest_manifest(paths, spec.id)
    try:
        entry = (approve if kind == "approve" else reject)(paths, spec, by, reason, manifest)
    except (ApprovalError, AuditError) as e:
        raise click.ClickException(str(e)) from e
    st = status(paths, spec, manifest)
    if as_json:
        _echo_json({"entry": entry, "status": st.to_dict()})
        return
    click.echo(f"{entry['kind']} {spec.id} (spec {entry['spec_hash'][:12]}) by {entry['by']}: audit entry "
               f"seq {entry['seq']}")
    click.echo(f"status: {st.summary()}")
    if kind == "approve":
        click.echo("its lists are dispatched by the next run (`crm run`), or re-materialize "
                   f"campaigns/{spec.id}/{spec.id}_dispatch in the Dagster UI")


@campaign_group.command("approve")
@click.argument("campaign_id", metavar="ID")
@click.option("--by", required=True, help="your name, in one alphabet; the campaign's owner cannot approve it "
              "(compared as read: case, spacing, invisible characters and look-alike letters do not count)")
@click.option("--reason", required=True, help="why you approve (kept in the audit log)")
@click.option("--json", "as_json", is_flag=True, help="print the audit entry and the new status as JSON")
def approve_cmd(campaign_id: str, by: str, reason: str, as_json: bool) -> None:
    """Approve the current version of campaign ID (bound to its spec hash).

    Editing the campaign's YAML afterwards makes a new version that needs a new approval.
    """
    _decide("approve", campaign_id, by, reason, as_json)


@campaign_group.command("reject")
@click.argument("campaign_id", metavar="ID")
@click.option("--by", required=True, help="your name (the owner may reject, e.g. to withdraw a campaign)")
@click.option("--reason", required=True, help="why you reject (kept in the audit log)")
@click.option("--json", "as_json", is_flag=True, help="print the audit entry and the new status as JSON")
def reject_cmd(campaign_id: str, by: str, reason: str, as_json: bool) -> None:
    """Reject the current version of campaign ID: its lists are not dispatched.

    A rejection withdraws an earlier approval of the same version; a later approval reinstates it.
    """
    _decide("reject", campaign_id, by, reason, as_json)


@campaign_group.command("status")
@click.argument("campaign_id", metavar="[ID]", required=False)
@click.option("--json", "as_json", is_flag=True, help="print the full status as JSON")
def status_cmd(campaign_id: str | None, as_json: bool) -> None:
    """Approval status of campaign ID (default: every campaign).

    For the current version of each YAML: whether it needs approval and why (its latest list's
    cost or its budget against the threshold), who approved or rejected it and when, or that it
    is pending. Exits 1 if the audit log does not verify.
    """
    from crm.campaigns.approvals import ApprovalError, latest_manifest, status

    specs = [_spec(campaign_id)] if campaign_id else _specs(show_errors=True)
    paths = export_env()
    try:
        results = [status(paths, s, latest_manifest(paths, s.id)) for s in specs]
    except ApprovalError as e:  # e.g. a threshold that is not a number
        raise click.ClickException(str(e)) from e
    if as_json:
        _echo_json([r.to_dict() for r in results])
    elif not results:
        click.echo(f"no campaigns in {campaigns_dir()}")
    else:
        click.echo(f"{'campaign':<28} {'version':<12} {'needs':<5} {'state':<12}  detail")
        for r in results:
            click.echo(f"{r.campaign_id:<28} {r.spec_hash[:12]:<12} {'yes' if r.required else 'no':<5} "
                       f"{r.state:<12}  {r.summary()}")
    if any(r.state == "audit_broken" for r in results):
        sys.exit(1)


# ----------------------------------------------------------------------------------------------- crm audit
@click.group("audit")
def audit_group() -> None:
    """The audit log: approvals, rejections, campaign and user changes, hash-chained ($CRM_HOME/audit/)."""


@audit_group.command("verify")
@click.option("--anchor", metavar="SEQ:HASH",
              help="a head printed by an earlier verify and kept elsewhere: also proves entries up to it unchanged")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def verify_cmd(anchor: str | None, as_json: bool) -> None:
    """Check the hash chain of the audit log (exit 1 on any edit, deletion or reordering).

    Names the first bad line and why. Prints the head as SEQ:HASH: keep it outside the data home
    (a ticket, a commit) and pass it back with --anchor to detect even a rewritten log.
    """
    from crm.campaigns.audit import verify

    paths = export_env()
    try:
        res = verify(paths, anchor=anchor)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--anchor") from e
    if as_json:
        _echo_json(res.to_dict())
    elif res.ok:
        click.echo(f"ok: {res.entries} entries, chain intact; head {res.anchor}")
        for w in res.warnings:
            click.echo(f"warning: {w}")
    else:
        click.echo(f"BROKEN: {res.log_file}: {res.problem}", err=True)
        click.echo(f"entries before it verify (up to seq {res.head_seq})", err=True)
    if not res.ok:
        sys.exit(1)


@audit_group.command("show")
@click.option("--campaign", "campaign_id", help="only entries about this campaign")
@click.option("--json", "as_json", is_flag=True, help="print the entries as JSON (with their details)")
def show_cmd(campaign_id: str | None, as_json: bool) -> None:
    """The audit log's entries, oldest first (a warning first if the chain does not verify)."""
    from crm.campaigns.audit import read_entries, verify

    paths = export_env()
    res = verify(paths)
    entries = [e for e in read_entries(paths) if not campaign_id or e.get("campaign_id") == campaign_id]
    if as_json:
        _echo_json({"verified": res.ok, "problem": res.problem, "entries": entries})
        return
    if not res.ok:
        click.echo(f"WARNING: the audit log does not verify: {res.problem}", err=True)
    if not entries:
        click.echo("no audit entries" + (f" for {campaign_id}" if campaign_id else ""))
        return
    for e in entries:
        details = e.get("details") if isinstance(e.get("details"), dict) else {}
        about = e.get("campaign_id") or (f"user {details.get('user')} ({details.get('action')})"
                                         if e.get("kind") == "user_changed" else "-")
        click.echo(f"{e.get('seq', '?'):>5} {e.get('ts', '')[:19]}  {e.get('kind', ''):<16} "
                   f"{about:<28} {(e.get('spec_hash') or '-')[:12]:<12} "
                   f"{e.get('by', '')}: {e.get('reason', '')}")
