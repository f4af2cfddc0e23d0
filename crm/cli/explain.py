"""`crm explain`: why a player is on a campaign's list or not, rule by rule."""

from __future__ import annotations

import datetime as dt
import json

import click

from crm.config import campaigns_dir, export_env


@click.command("explain")
@click.option("--player", "player_id", required=True, help="pseudonymous player id, e.g. p_0000123")
@click.option("--campaign", "campaign_id", required=True, help="campaign id (a file in the campaign folder)")
@click.option("--date", "as_of", help="as-of date YYYY-MM-DD (default: the day after the latest landed event)")
@click.option("--json", "as_json", is_flag=True, help="print the explanation as JSON")
def explain_cmd(player_id: str, campaign_id: str, as_of: str | None, as_json: bool) -> None:
    """Each rule's verdict for one player and campaign, with the observed value, and the decision.

    Uses the list builder's own code: the day's message history (deliveries, our outbox),
    the lists of the higher-priority campaigns of that date (published, else rebuilt in
    memory), the calendar and the policy; then scope, segment, every eligibility rule in
    order (the first FAIL is the reason the suppression report counts; a FAIL shows its
    plain-language reason, the words of the marketer's list.xlsx), targeting and
    budget, and whether the player is listed (and in which variant). Also says what the
    published list of that date holds. Reads the warehouse; writes nothing.
    """
    from crm.campaigns.day import explain_player, format_explanation
    from crm.campaigns.spec import load_campaigns
    from crm.ingest.landing import LandingError, default_as_of

    paths = export_env()
    specs, errors = load_campaigns(campaigns_dir())
    spec = next((s for s in specs if s.id == campaign_id), None)
    if spec is None:
        broken = [e for e in errors if f"{campaign_id}.y" in e]
        raise click.ClickException(broken[0] if broken else
                                   f"no campaign {campaign_id!r} in {campaigns_dir()}; "
                                   f"known: {', '.join(s.id for s in specs) or 'none'}")
    if as_of:
        try:
            day = dt.date.fromisoformat(as_of)
        except ValueError as e:
            raise click.BadParameter(f"expected YYYY-MM-DD, got {as_of!r}", param_hint="--date") from e
    else:
        try:
            day = default_as_of(paths)
        except LandingError as e:
            raise click.ClickException(f"{e} (or give --date)") from e
    try:
        result = explain_player(paths, player_id, spec, specs, day)
    except (KeyError, FileNotFoundError) as e:
        raise click.ClickException(str(e).strip("'\"")) from e
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        click.echo(format_explanation(result))
