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
