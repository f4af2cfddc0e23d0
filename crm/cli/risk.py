"""``crm risk ...``: bonus abuse and multi-account risk (issue 19): explain a player's risk, the
review queue of flags, and a reviewer's decision (confirm or clear), written to the audit log."""

from __future__ import annotations

import getpass
import json

import click

from crm.config import export_env


@click.group("risk")
def risk_group() -> None:
    """Bonus abuse and multi-account risk: linked accounts (shared identifiers, as pseudonyms), the
    risk score with its reasons, and the review queue of flags (docs/abuse.md)."""


@risk_group.command("explain")
@click.option("--player", required=True, help="the player id")
@click.option("--brand", required=True, help="the player's brand")
@click.option("--json", "as_json", is_flag=True, help="print the explanation as JSON")
def explain_cmd(player: str, brand: str, as_json: bool) -> None:
    """Why PLAYER has the risk they have: their cluster of linked accounts, each link and the
    identifier types it rests on, the shared identifiers (keyed hashes) with how many accounts hold
    each, the behaviour features, the score with its reasons, and the review state."""
    from crm.risk.explain import explain, format_explanation

    try:
        e = explain(export_env(), brand, player)
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from err
    if e is None:
        raise click.ClickException(f"no player {player!r} of brand {brand!r} in the warehouse")
    click.echo(json.dumps(e, indent=2, default=str) if as_json else format_explanation(e))


@risk_group.command("queue")
@click.option("--brand", "brands", multiple=True, help="only these brands (repeat; default: every brand)")
@click.option("--all", "include_decided", is_flag=True, help="also the flags already confirmed or cleared")
@click.option("--json", "as_json", is_flag=True, help="print the queue as JSON lines")
def queue_cmd(brands: tuple[str, ...], include_decided: bool, as_json: bool) -> None:
    """The flags waiting for a person's decision (a risk score above the threshold, not yet decided on
    its current evidence), highest score first. A flagged player gets no bonus offer while it waits."""
    from crm.risk.review import queue

    try:
        q = queue(export_env(), list(brands) or None, include_decided=include_decided)
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from err
    if as_json:
        for r in json.loads(q.to_json(orient="records", date_format="iso")):
            click.echo(json.dumps(r))
        return
    if q.empty:
        click.echo("no flag waits for review")
        return
    import pandas as pd

    for r in q.itertuples(index=False):
        score = "-" if pd.isna(r.risk_score) else f"{r.risk_score:.3f}"
        by = f" by {r.decided_by}" if isinstance(r.decided_by, str) else ""
        click.echo(f"{r.brand_id}/{r.player_id}  score {score}  {r.review}{by}  evidence {r.evidence_key}")
    click.echo(f"{len(q)} flag(s); `crm risk explain --player P --brand B` shows why, "
               "`crm risk review P --brand B --confirm|--clear` decides")


@risk_group.command("review")
@click.argument("player")
@click.option("--brand", required=True, help="the player's brand")
@click.option("--confirm", "decision", flag_value="confirm", help="abuse confirmed: no bonus offer until cleared")
@click.option("--clear", "decision", flag_value="clear",
              help="not abuse: not flagged again for the same evidence")
@click.option("--by", default=lambda: getpass.getuser(), show_default="your login name",
              help="who decides (written to the audit log)")
@click.option("--reason", required=True, help="why (written to the audit log)")
def review_cmd(player: str, brand: str, decision: str | None, by: str, reason: str) -> None:
    """Decide on PLAYER's flag: --confirm or --clear, on their current score and evidence. Recorded in
    the hash-chained audit log; the lists follow it at the next refresh."""
    from crm.campaigns.approvals import name_problem, person_name
    from crm.risk.review import ReviewError, decide

    if decision is None:
        raise click.UsageError("say --confirm or --clear")
    if name_problem(by):
        raise click.ClickException(f"--by: {name_problem(by)}")
    try:
        entry = decide(export_env(), brand, player, decision, by=person_name(by), reason=reason)
    except (ReviewError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"{decision} {brand}/{player} on evidence {entry['details']['evidence_key']} "
               f"(score {entry['details']['risk_score']}): audit entry {entry['seq']}")
