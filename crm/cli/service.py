"""``crm serve``, ``crm api-keys ...`` and ``crm api-events ...``: the integration API and its store."""

from __future__ import annotations

import json

import click

from crm.config import export_env


def _engine():
    """The store of the data home, migrated to head (``$CRM_DATABASE_URL`` or SQLite under $CRM_HOME)."""
    from crm.store.db import make_engine, upgrade_to_head

    paths = export_env()
    engine = make_engine(paths)
    upgrade_to_head(engine)
    return paths, engine


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8000, show_default=True, type=int, help="port to listen on")
@click.option("--hand-off-every", default=10.0, show_default=True, type=float,
              help="seconds between hand-offs of accepted events to landing/incoming (0: never)")
@click.option("--delivery-workers", default=1, show_default=True, type=click.IntRange(0, 32),
              help="delivery worker processes started beside the API (`crm deliveries work`); 0: none "
                   "(run them yourself, on this machine or others)")
@click.option("--trigger-workers", default=1, show_default=True, type=click.IntRange(0, 32),
              help="trigger worker processes started beside the API (`crm triggers work`); 0: none")
@click.option("--local-mailbox", "mailbox_port", type=int, default=None, metavar="PORT",
              help="also run a local SMTP server on PORT that stores what it receives in $CRM_HOME/mailbox/, "
                   "and send email there (make serve)")
@click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False), default=None,
              help="serve HTTPS with this certificate (PEM, the chain after the certificate); with --ssl-keyfile")
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False), default=None,
              help="the certificate's private key (PEM)")
def serve_cmd(host: str, port: int, hand_off_every: float, delivery_workers: int, trigger_workers: int,
              mailbox_port: int | None, ssl_certfile: str | None, ssl_keyfile: str | None) -> None:
    """Run the integration API: POST /v1/events, /v1/messaging/send, /v1/messaging/feedback,
    GET /v1/deliveries/{id}, /v1/metrics (docs at /docs, schema at /openapi.json).

    Migrates the store first. Accepted events are handed to landing/incoming/api_*.jsonl every
    --hand-off-every seconds; `crm ingest`, the land_incoming sensor or `crm run` land them. Sends are
    checked against the online profile (`crm profiles sync`, or the daily refresh's online_profiles).

    With --ssl-certfile and --ssl-keyfile it serves HTTPS (TLS 1.2 or later, uvicorn's ssl module);
    the web page's session cookies are Secure, so serve it over HTTPS, here or behind a TLS proxy.

    Trigger workers decide the firings of campaigns/triggers/*.yaml for each accepted event
    (`crm triggers work`) and queue their messages for the delivery workers.

    With workers, the API and each worker run as processes of their own (each its own
    Python interpreter and CPU; they share only the store), supervised together: Ctrl-C or SIGTERM
    stops them all (a worker finishes the delivery it is sending), and so does the end of any one
    of them.
    """
    import contextlib
    import os
    import sys

    from crm.channels.mailbox import LocalMailbox

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise click.UsageError("give both --ssl-certfile and --ssl-keyfile, or neither")
    tls = ["--ssl-certfile", ssl_certfile, "--ssl-keyfile", ssl_keyfile] if ssl_certfile else []
    paths, engine = _engine()
    engine.dispose()
    with contextlib.ExitStack() as stack:
        if mailbox_port is not None:
            box = stack.enter_context(LocalMailbox(paths.home / "mailbox", port=mailbox_port, unknown_share=0.01))
            os.environ["CRM_SMTP_URL"] = box.url
            os.environ.setdefault("CRM_SMTP_FROM", "casino-crm demo <crm@casino-crm.example>")
            click.echo(f"local mailbox on {box.url}: messages land in {box.directory}", err=True)
        if not delivery_workers and not trigger_workers:
            _serve_api(paths, host, port, hand_off_every, ssl_certfile, ssl_keyfile)
            return
        from crm.cli.ui import Child, supervise

        crm = [sys.executable, "-m", "crm.cli"]
        api = Child("api", [*crm, "serve", "--host", host, "--port", str(port), "--hand-off-every",
                            str(hand_off_every), "--delivery-workers", "0", "--trigger-workers", "0", *tls],
                    url=f"{'https' if tls else 'http'}://{host}:{port}/docs")
        workers = [Child(f"delivery-worker-{i + 1}", [*crm, "deliveries", "work", "--idle-sleep", "0.05"])
                   for i in range(delivery_workers)]
        workers += [Child(f"trigger-worker-{i + 1}", [*crm, "triggers", "work"]) for i in range(trigger_workers)]
        code = supervise([api, *workers], echo=lambda m: click.echo(m, err=True))
    sys.exit(code)


def _serve_api(paths, host: str, port: int, hand_off_every: float, ssl_certfile: str | None = None,
               ssl_keyfile: str | None = None) -> None:
    import uvicorn

    from crm.service import create_app

    app = create_app(paths, hand_off_every=hand_off_every or None, watch_slos=True)
    uvicorn.run(app, host=host, port=port, log_level="info", ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)


@click.group("api-keys")
def api_keys_group() -> None:
    """API keys of the integration API: one brand and a set of scopes each; stored hashed."""


@api_keys_group.command("create")
@click.argument("name")
@click.option("--brand", required=True, help="the one brand this key may send for")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(["events:write", "feedback:write", "messaging:send", "offers:generate"]),
              help="a scope (repeat for several)")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable record (with the key)")
def create_cmd(name: str, brand: str, scopes: tuple[str, ...], as_json: bool) -> None:
    """Create a key NAME and print it, once: only its hash is stored."""
    from crm.store.keys import ApiKeyError, create_key

    _, engine = _engine()
    try:
        record, key = create_key(engine, name, brand, list(scopes))
    except ApiKeyError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps({**record.to_dict(), "key": key}, indent=2))
        return
    click.echo(f"created key {record.name} (id {record.id}) for brand {record.brand_id}, "
               f"scopes {' '.join(record.scopes)}; it is shown only this once:")
    click.echo(key)


@api_keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable list")
def list_cmd(as_json: bool) -> None:
    """List the keys (names, brands, scopes, dates; never the keys)."""
    from crm.store.keys import list_keys

    _, engine = _engine()
    keys = list_keys(engine)
    if as_json:
        click.echo(json.dumps([k.to_dict() for k in keys], indent=2))
        return
    if not keys:
        click.echo("no API keys: crm api-keys create NAME --brand B --scope events:write")
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "live"
        click.echo(f"{k.id:>4}  {k.name:<24} brand {k.brand_id:<10} {' '.join(k.scopes):<40} "
                   f"created {k.created_at:%Y-%m-%d %H:%M}  {state}")


@api_keys_group.command("revoke")
@click.argument("name_or_id")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable record")
def revoke_cmd(name_or_id: str, as_json: bool) -> None:
    """Revoke a key by NAME or ID: requests with it get 401 (from a running service within 2 s)."""
    from crm.store.keys import ApiKeyError, revoke_key

    _, engine = _engine()
    try:
        k = revoke_key(engine, name_or_id)
    except ApiKeyError as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(k.to_dict(), indent=2))
    else:
        click.echo(f"revoked key {k.name} (id {k.id}) at {k.revoked_at:%Y-%m-%d %H:%M:%S} UTC")


@click.group("api-events")
def api_events_group() -> None:
    """Events received by the integration API."""


@api_events_group.command("hand-off")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable report")
def hand_off_cmd(as_json: bool) -> None:
    """Write accepted events not yet handed off to landing/incoming/api_*.jsonl (then `crm ingest`)."""
    from crm.store.events import counts, hand_off

    paths, engine = _engine()
    done = hand_off(paths, engine)
    if as_json:
        click.echo(json.dumps({**done.to_dict(), **counts(engine)}, indent=2))
    else:
        click.echo(f"handed off {done.events:,} events" + (f" -> {', '.join(done.files)}" if done.files else ""))


@api_events_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")
def status_cmd(as_json: bool) -> None:
    """Counts in the store: events accepted, waiting for the hand-off, records quarantined."""
    from crm.store.events import counts

    _, engine = _engine()
    c = counts(engine)
    click.echo(json.dumps(c, indent=2) if as_json else
               f"{c['accepted']:,} accepted ({c['pending_hand_off']:,} waiting for the hand-off), "
               f"{c['quarantined']:,} quarantined")


@click.group("profiles")
def profiles_group() -> None:
    """The service's online profile: the warehouse's player profile copied into the store."""


@profiles_group.command("sync")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable report")
def profiles_sync_cmd(as_json: bool) -> None:
    """Copy dim_player from the warehouse into the store (the daily refresh does it too, as the
    online_profiles asset), retire the stop events the warehouse now shows, take contact
    addresses from the landed events and the messages the casino reported sending (crm.delivery).
    Holds the run lock: it waits for no writer, it refuses."""
    from crm.campaigns.online import sync_online_profiles
    from crm.run_lock import RunInProgress, run_lock

    paths, engine = _engine()
    try:
        with run_lock(paths, "crm profiles sync"):
            out = sync_online_profiles(paths, engine)
    except RunInProgress as e:
        raise click.ClickException(str(e)) from e
    except FileNotFoundError as e:
        raise click.ClickException(f"{e}") from e
    click.echo(json.dumps(out, indent=2) if as_json else
               f"online profile: {out['profiles']:,} players as of {out['as_of_date']}; "
               f"{out['stops_retired']:,} stops retired, {out['stops_live']:,} still ahead of the warehouse; "
               f"{out['contacts_updated']:,} contact addresses updated; {out['reported_messages']:,} messages "
               f"the casino reported sending (counted in caps and dedup)")
