"""``crm offers``: the offer catalogue (``campaigns/_offers.yaml``) and what became of issued offers."""

from __future__ import annotations

import json

import click

from crm.config import campaigns_dir, export_env


@click.group("offers")
def offers_group() -> None:
    """Per-player offers (POST /v1/offers/generate): the catalogue and the report."""


@offers_group.command("catalogue")
@click.option("--json", "as_json", is_flag=True, help="print the catalogue as JSON")
def catalogue_cmd(as_json: bool) -> None:
    """Check campaigns/_offers.yaml and list each intent's offers with their cost models; exit 1
    naming the field when the file is broken."""
    from crm.campaigns.offer_generation import OfferCatalogueError, load_catalogue
    from crm.campaigns.offers import offer_terms

    try:
        catalogue = load_catalogue(campaigns_dir())
    except OfferCatalogueError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(catalogue.model_dump(mode="json"), indent=2))
        return
    if not catalogue.intents:
        click.echo(f"no intents: {campaigns_dir() / '_offers.yaml'} is absent or defines none")
        return
    for name, intent in catalogue.intents.items():
        budget = f"budget EUR {intent.budget_eur_per_day:,.2f} a day" if intent.budget_eur_per_day else "no budget"
        click.echo(f"{name}: product {intent.product}, {budget}, min net value EUR {intent.min_net_value_eur:,.2f}")
        for o in intent.offers:
            item = catalogue.offers[o]
            click.echo(f"  {o:<24} effect x{item.relative_effect:g}  {offer_terms(item.offer)}")


@offers_group.command("report")
@click.option("--since", help="only offers issued from this date or time on (ISO 8601)")
@click.option("--json", "as_json", is_flag=True, help="print the rows as JSON")
def report_cmd(since: str | None, as_json: bool) -> None:
    """What became of the issued offers, per intent and offer: issued, credited, consumed and
    expired (the casino's bonus.* events with the offer's id), the share consumed and the cost.
    Reads the warehouse built by `crm run` (fct_offers); writes nothing."""
    import datetime as dt

    from crm.measurement.offers import offer_report

    if since is not None:
        try:
            dt.datetime.fromisoformat(since)
        except ValueError:
            raise click.BadParameter(f"{since!r} is not an ISO 8601 date or time", param_hint="--since") from None
    try:
        df = offer_report(export_env(), since)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(df.to_json(orient="records", date_format="iso", indent=2))
    elif not len(df):
        click.echo("no offers issued in the warehouse" + (f" since {since}" if since else ""))
    else:
        click.echo(df.to_string(index=False))


@offers_group.command("try")
@click.option("--brand", required=True, help="the players' brand")
@click.option("--player", "players", multiple=True, help="a player id (repeat for several)")
@click.option("--sample", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="also this many players of the brand's online profile, the first by id")
@click.option("--intent", required=True, help="an intent of campaigns/_offers.yaml")
@click.option("--channel", default="email", show_default=True,
              type=click.Choice(["email", "push", "sms", "in_app"]), help="the channel the offer would go on")
@click.option("--max-cost-minor", type=click.IntRange(0, 10**12), help="the most an offer may cost, EUR cents")
@click.option("--no-rg-safe", is_flag=True, help="do not refuse players with an RG marker (the rules still hold)")
@click.option("--at", "at_text", help="decide as at this UTC time (ISO 8601; default: now)")
@click.option("--json", "as_json", is_flag=True, help="print the decisions as JSON")
def try_cmd(brand: str, players: tuple[str, ...], sample: int, intent: str, channel: str,
            max_cost_minor: int | None, no_rg_safe: bool, at_text: str | None, as_json: bool) -> None:
    """What POST /v1/offers/generate would answer now for these players, by the same code over the
    service's store (the online profile, the contact ledger, the intent's budget), without issuing
    anything: every offer of the intent with why it would or would not be given."""
    import datetime as dt

    import sqlalchemy as sa

    from crm.campaigns.offer_generation import OfferCatalogueError, load_catalogue
    from crm.campaigns.online import OutboxHistory, SendConfig
    from crm.campaigns.policy import CalendarError
    from crm.cli.service import _engine
    from crm.service.offers import decide_in_store
    from crm.store.schema import profiles

    folder = campaigns_dir()
    try:
        catalogue = load_catalogue(folder)
        _, calendar = SendConfig(folder).get()
    except (OfferCatalogueError, CalendarError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if intent not in catalogue.intents:
        raise click.BadParameter(f"{intent!r} is not an intent of {folder / '_offers.yaml'} (known: "
                                 f"{', '.join(sorted(catalogue.intents)) or 'none'})", param_hint="--intent")
    paths, engine = _engine()
    try:
        at = dt.datetime.fromisoformat(at_text.replace("Z", "+00:00")) if at_text else dt.datetime.now(dt.UTC)
    except ValueError:
        raise click.BadParameter(f"{at_text!r} is not an ISO 8601 time", param_hint="--at") from None
    at = (at.astimezone(dt.UTC) if at.tzinfo else at).replace(tzinfo=None, microsecond=0)
    out = []
    with engine.connect() as conn:
        ids = list(players)
        if sample:
            ids += [r[0] for r in conn.execute(sa.select(profiles.c.player_id).where(profiles.c.brand_id == brand)
                                               .order_by(profiles.c.player_id).limit(sample))]
        if not ids:
            raise click.UsageError("name players with --player, or --sample N")
        outbox = OutboxHistory(paths, folder)
        for pid in ids:
            d = decide_in_store(conn, outbox, catalogue, calendar, brand=brand, player=pid, intent_name=intent,
                                channel=channel, at=at, max_cost_cents=max_cost_minor, rg_safe=not no_rg_safe,
                                lock=False)
            out.append({"player_id": pid, "offer": d.chosen.name if d.chosen else None,
                        "cost_minor": d.chosen.cost_cents if d.chosen else None,
                        "reason": d.reason, "detail": d.reason_text(), "markers": d.markers,
                        "considered": [c.as_dict() for c in d.candidates]})
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
        return
    for r in out:
        if r["offer"]:
            click.echo(f"{r['player_id']:<24} OFFER {r['offer']} ({r['cost_minor'] / 100:,.2f} EUR)")
        else:
            click.echo(f"{r['player_id']:<24} no offer: {r['reason']} ({r['detail']})")
        for c in r["considered"]:
            v = c["predicted_value_minor"]
            value = "no prediction" if v is None else f"{v / 100:,.2f}"
            click.echo(f"    {c['offer']:<24} cost {c['cost_minor'] / 100:>8,.2f}  value {value:>13}  "
                       f"{'ok' if c['refused'] is None else c['refused']}")
    n = sum(1 for r in out if r["offer"])
    click.echo(f"{n} of {len(out)} players would get an offer for intent {intent} on {channel} (nothing issued)")
