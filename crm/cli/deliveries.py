"""``crm deliveries work`` and ``crm deliveries status``: the delivery queue's worker and its depth."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading

import click

from crm.cli.service import _engine


@click.group("deliveries")
def deliveries_group() -> None:
    """The delivery queue: messages the API (and later campaigns) queued, sent by workers.

    Channels are configured by the environment: CRM_SMTP_URL / CRM_SMTP_FROM for email,
    CRM_WEBHOOK_URL_<CHANNEL> / CRM_WEBHOOK_SECRET_<CHANNEL> for a webhook; any other channel
    is written to the file outbox $CRM_HOME/outbox/deliveries/. Rate limits per channel:
    CRM_RATE_LIMIT_<CHANNEL>=rate[/burst] (messages per second).
    """


@deliveries_group.command("work")
@click.option("--once", is_flag=True, help="send one batch of due deliveries and exit")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1, max=10_000),
              help="deliveries claimed per batch")
@click.option("--idle-sleep", default=1.0, show_default=True, type=click.FloatRange(min=0.01, max=3600),
              help="seconds to wait when nothing is due")
@click.option("--lease", default=120.0, show_default=True, type=click.FloatRange(min=1, max=3600),
              help="seconds a claimed delivery stays this worker's; after a crash others take it over then")
@click.option("--json", "as_json", is_flag=True, help="print machine-readable counts (with --once)")
def work_cmd(once: bool, limit: int, idle_sleep: float, lease: float, as_json: bool) -> None:
    """Send due deliveries: claim a batch (transactional first), check each against bounced
    addresses and stops received since it was queued, render its template, send it through its
    channel and record the result (retries with exponential backoff, dead letter after the last
    attempt, a hard bounce suppresses the address).

    Without --once, runs until interrupted (Ctrl-C or SIGTERM finish the current delivery and
    stop). Run as many workers as you like: each delivery is claimed by one at a time; a worker
    that dies leaves its deliveries to the others when their lease expires. Logs name delivery
    ids, never an address.
    """
    from crm.service.worker import DeliveryWorker, WorkerConfigError

    paths, engine = _engine()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        worker = DeliveryWorker(paths, engine, **_lease(lease))
    except WorkerConfigError as e:
        raise click.ClickException(str(e)) from e
    if once:
        with worker:
            counts = worker.run_once(limit)
        if as_json:
            click.echo(json.dumps(counts, indent=2, sort_keys=True))
        else:
            rest = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if k != "claimed")
            click.echo(f"claimed {counts.get('claimed', 0)}" + (f": {rest}" if rest else ""))
        return
    from crm.cli.ui import stop_on_signals

    stop = stop_on_signals("crm.deliveries", "the current delivery")
    click.echo(f"delivery worker {worker.worker_id}: batches of {limit}, Ctrl-C to stop", err=True)
    worker.run_forever(stop, idle_sleep=idle_sleep, limit=limit,
                       on_batch=lambda c: logging.getLogger("crm.deliveries").info("batch %s", c))


def _lease(seconds: float) -> dict:
    import datetime as dt

    return {"lease": dt.timedelta(seconds=seconds), "send_margin": dt.timedelta(seconds=seconds / 3)}


@deliveries_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")
def status_cmd(as_json: bool) -> None:
    """Queue depth: deliveries by status and channel, how many are due now and how late the
    oldest due one is (a growing number means the workers are not keeping up, or none runs)."""
    from crm.store.queue import queue_depth

    _, engine = _engine()
    depth = queue_depth(engine)
    if as_json:
        click.echo(json.dumps(depth, indent=2))
        return
    statuses = [s for s, n in depth["by_status"].items() if n]
    if not statuses:
        click.echo("no deliveries")
        return
    click.echo(f"{'channel':<10}" + "".join(f"{s:>12}" for s in statuses))
    for channel, counts in depth["by_channel"].items():
        click.echo(f"{channel:<10}" + "".join(f"{counts.get(s, 0):>12,}" for s in statuses))
    click.echo(f"{'all':<10}" + "".join(f"{depth['by_status'][s]:>12,}" for s in statuses))
    age = depth["oldest_due_age_seconds"]
    click.echo(f"due now: {depth['due']:,}" + (f" (oldest due {age:,.0f} s ago)" if age is not None else "")
               + (f"; {depth['leases_expired']:,} with an expired lease" if depth["leases_expired"] else ""))


@deliveries_group.command("drain")
@click.option("--local-mailbox", is_flag=True,
              help="start a local SMTP server that stores what it receives in $CRM_HOME/mailbox/ and send "
                   "email there (the demo; 1% of addresses answer 'no such user', like a real send)")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(min=1, max=10_000),
              help="deliveries claimed per batch")
@click.option("--lease", default=120.0, show_default=True, type=click.FloatRange(min=1, max=3600),
              help="seconds a claimed delivery stays this worker's")
@click.option("--json", "as_json", is_flag=True, help="print machine-readable counts")
def drain_cmd(local_mailbox: bool, limit: int, lease: float, as_json: bool) -> None:
    """Send every delivery that is due now, then stop, and print what became of all of them
    (sent, bounced, refused, waiting to retry). `make demo` ends with it."""
    import os

    from crm.channels.mailbox import LocalMailbox
    from crm.service.worker import DeliveryWorker, WorkerConfigError
    from crm.store.queue import queue_depth

    paths, engine = _engine()
    box = None
    if local_mailbox:
        box = LocalMailbox(paths.home / "mailbox", unknown_share=0.01).start()
        os.environ["CRM_SMTP_URL"] = box.url
        os.environ.setdefault("CRM_SMTP_FROM", "casino-crm demo <crm@casino-crm.example>")
    totals: dict[str, int] = {}
    try:
        with DeliveryWorker(paths, engine, **_lease(lease)) as worker:
            with click.progressbar(length=max(1, queue_depth(engine)["due"]), label="sending",
                                   file=sys.stderr) as bar:
                while True:
                    counts = worker.run_once(limit)
                    for k, n in counts.items():
                        totals[k] = totals.get(k, 0) + n
                    bar.update(counts.get("claimed", 0))
                    if not counts.get("claimed"):
                        break
    except WorkerConfigError as e:
        raise click.ClickException(str(e)) from e
    finally:
        if box is not None:
            box.stop()
    depth = queue_depth(engine)
    out = {"this_run": totals, "all_deliveries": depth["by_status"],
           "mailbox": str(paths.home / "mailbox") if box else None,
           "mailbox_messages": len(list((paths.home / "mailbox").glob("*.eml"))) if box else None}
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
        return
    s = depth["by_status"]
    click.echo(f"deliveries: {s.get('sent', 0):,} sent, {s.get('bounced', 0):,} bounced, "
               f"{s.get('refused', 0):,} refused, {s.get('queued', 0):,} waiting (retry or not yet due), "
               f"{s.get('dead_letter', 0):,} dead letters")
    if box:
        click.echo(f"the local mailbox holds {out['mailbox_messages']:,} messages: {out['mailbox']}")


@click.command("mailbox")
@click.option("--port", default=2525, show_default=True, type=int, help="SMTP port to listen on (127.0.0.1)")
@click.option("--unknown-share", default=0.01, show_default=True, type=click.FloatRange(0, 1),
              help="share of addresses answered '550 no such user' (hard bounces)")
def mailbox_cmd(port: int, unknown_share: float) -> None:
    """A local SMTP server that stores every message it receives in $CRM_HOME/mailbox/ (one .eml
    per Message-ID). Point email at it: CRM_SMTP_URL=smtp://127.0.0.1:PORT. Ctrl-C stops it."""
    from crm.channels.mailbox import LocalMailbox
    from crm.config import export_env

    paths = export_env()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with LocalMailbox(paths.home / "mailbox", port=port, unknown_share=unknown_share) as box:
        click.echo(f"local mailbox on {box.url}, storing in {box.directory} (Ctrl-C stops)", err=True)
        stop.wait()
