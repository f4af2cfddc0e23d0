"""``crm templates ...``: the message templates, their versions and their content review."""

from __future__ import annotations

import getpass
import json

import click


@click.group("templates")
def templates_group() -> None:
    """Message templates ($CRM_TEMPLATES_DIR, default templates/): each locale's text at a version
    needs a reviewer's approval before any send uses it."""


@templates_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="print as JSON")
def status_cmd(as_json: bool) -> None:
    """Each template locale's current version and its review (approved, rejected, unreviewed)."""
    from crm.campaigns.template_reviews import status
    from crm.channels.templates import TemplateError
    from crm.config import paths as current_paths

    try:
        rows = status(current_paths())
    except TemplateError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in rows], indent=2))
        return
    for r in rows:
        who = f" by {r.by} ({r.ts[:10]})" if r.by else ""
        click.echo(f"{r.template_id:<24} {r.locale:<6} {r.version[:12]}  {r.state}{who}")


@templates_group.command("review")
@click.argument("template_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="every template locale not yet approved at its current version")
@click.option("--locale", "locales", multiple=True, help="only these locales (default: all of the template's)")
@click.option("--approve/--reject", "approve", default=True, help="the decision (default: approve)")
@click.option("--by", default=lambda: getpass.getuser(), show_default="your login name",
              help="the reviewer (a person; never the template's owner)")
@click.option("--reason", required=True, help="why (kept in the audit log)")
@click.option("--show/--no-show", default=True, help="print each text as reviewed, rendered with the examples")
def review_cmd(template_ids: tuple[str, ...], every: bool, locales: tuple[str, ...], approve: bool, by: str,
               reason: str, show: bool) -> None:
    """Review TEMPLATE_IDS (or --all unapproved ones): record an approval or a rejection of each
    locale at its current version in the audit log."""
    from crm.campaigns.approvals import ApprovalError
    from crm.campaigns.template_reviews import review, status
    from crm.channels.templates import TemplateError, TemplateStore
    from crm.config import paths as current_paths

    paths, store = current_paths(), TemplateStore()
    try:
        if every:
            todo = [(r.template_id, r.locale) for r in status(paths, store) if r.state != "approved"]
        else:
            if not template_ids:
                raise click.UsageError("name the templates to review, or --all")
            todo = [(t, loc) for t in template_ids for loc in store.get(t).locales]
        todo = [(t, loc) for t, loc in todo if not locales or loc in locales]
        for t, loc in todo:
            template = store.get(t)
            if show:
                r = store.preview(t, loc)
                click.echo(f"--- {t} ({loc}) version {template.version(loc)[:12]}\nsubject: {r.subject}\n{r.text}")
            e = review(paths, template, loc, "approved" if approve else "rejected", by, reason)
            click.echo(f"{t} ({loc}): {e['details']['decision']} by {e['by']} (audit seq {e['seq']})")
    except (ApprovalError, TemplateError) as e:
        raise click.ClickException(str(e)) from e
    if not todo:
        click.echo("nothing to review")
