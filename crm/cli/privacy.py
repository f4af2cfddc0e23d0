"""``crm privacy ...``: the PII vault and the right to be forgotten."""

from __future__ import annotations

import getpass
import json

import click

from crm.cli.service import _engine


@click.group("privacy")
def privacy_group() -> None:
    """The PII vault: players' identifiers (email, phone, IP, device id, names, payment instrument),
    encrypted per player; landed events, the warehouse and lists hold pseudonyms only."""


@privacy_group.command("forget")
@click.argument("player")
@click.option("--brand", required=True, help="the player's brand")
@click.option("--by", default=lambda: getpass.getuser(), show_default="your login name",
              help="who carries out the request (written to the audit log)")
@click.option("--reason", required=True, help="the request, e.g. its ticket number (written to the audit log)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def forget_cmd(player: str, brand: str, by: str, reason: str, as_json: bool) -> None:
    """Forget PLAYER of --brand: destroy their vault key and values (crypto-shredding), clear their
    identifiers from every raw file under landing/ (incoming, quarantine, older landed batches) and
    from the store's raw records, and record the request in the audit log. Their pseudonymous events
    stay (aggregates, consent and RG history); identifiers sent for them later are dropped."""
    from crm.campaigns.approvals import name_problem, person_name
    from crm.privacy import forget

    if name_problem(by):
        raise click.ClickException(f"--by: {name_problem(by)}")
    paths, engine = _engine()
    try:
        report = forget(paths, engine, brand, player, by=person_name(by), reason=reason, progress=not as_json)
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(f"forgot {brand}/{player}: vault held {', '.join(report.fields_shredded) or 'nothing'} "
               f"(shredded); {report.records_cleared} raw records cleared in {len(report.files_rewritten)} files; "
               f"{report.store_rows_cleared} store rows cleared; recorded in the audit log")
