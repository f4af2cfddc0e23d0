"""``crm triggers``: real-time triggers (``campaigns/triggers/*.yaml``) and their worker."""

from __future__ import annotations

import json
import logging
import sys

import click

from crm.cli.service import _engine


@click.group("triggers")
def triggers_group() -> None:
    """Real-time triggers: an event accepted by POST /v1/events -> a message within a second, under
    the lists' own rules. Definitions: campaigns/triggers/<id>.yaml (see the README)."""


def _load():
    from crm.config import campaigns_dir
    from crm.triggers.spec import load_triggers

    return load_triggers(campaigns_dir())


@triggers_group.command("validate")
def validate_cmd() -> None:
    """Check every trigger file; exit 1 naming each broken file, field and what was expected."""
    specs, errors = _load()
    for s in specs:
        click.echo(f"ok   {s.id}: {s.event} -> {s.channel} {s.template}" + ("" if s.enabled else " (disabled)"))
    for e in errors:
        click.echo(f"FAIL {e}", err=True)
    if errors:
        sys.exit(1)


@triggers_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="print machine-readable records")
def list_cmd(as_json: bool) -> None:
    """The triggers, their approval state and their firings by outcome."""
    from crm.campaigns import approvals
    from crm.store.triggers import firing_counts

    specs, errors = _load()
    paths, engine = _engine()
    counts: dict[str, dict[str, int]] = {}
    for r in firing_counts(engine):
        key = r["status"] + (f":{r['rule']}" if r["rule"] else "")
        counts.setdefault(r["trigger_id"], {})[key] = counts.get(r["trigger_id"], {}).get(key, 0) + r["n"]
    rows = []
    for s in specs:
        spec = s.as_campaign()
        st = approvals.status(paths, spec)
        rows.append({"id": s.id, "event": s.event, "channel": s.channel, "template": s.template,
                     "enabled": s.enabled, "offer": s.offer.template, "approval": st.state,
                     "version": s.spec_hash()[:12], "firings": counts.get(s.id, {})})
    if as_json:
        click.echo(json.dumps({"triggers": rows, "errors": errors}, indent=2))
        return
    for r in rows:
        fired = ", ".join(f"{n:,} {k}" for k, n in sorted(r["firings"].items())) or "no firings"
        click.echo(f"{r['id']}: {r['event']} -> {r['channel']} {r['template']} (offer {r['offer']}, approval "
                   f"{r['approval']}, v{r['version']}{'' if r['enabled'] else ', disabled'}): {fired}")
    for e in errors:
        click.echo(f"FAIL {e}", err=True)


def _decide(kind: str, trigger_id: str, by: str, reason: str) -> None:
    from crm.campaigns import approvals
    from crm.config import export_env

    specs, errors = _load()
    found = {s.id: s for s in specs}
    if trigger_id not in found:
        raise click.ClickException(f"no valid trigger {trigger_id!r}; known: {', '.join(sorted(found)) or 'none'}"
                                   + (f" ({len(errors)} broken file(s): crm triggers validate)" if errors else ""))
    paths = export_env()
    spec = found[trigger_id].as_campaign()
    try:
        (approvals.approve if kind == "approve" else approvals.reject)(paths, spec, by, reason)
    except approvals.ApprovalError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"{trigger_id} v{found[trigger_id].spec_hash()[:12]}: {approvals.status(paths, spec).summary()}")


@triggers_group.command("approve")
@click.argument("trigger_id", metavar="ID")
@click.option("--by", required=True, help="your name; the trigger's owner cannot approve it (four eyes)")
@click.option("--reason", required=True, help="why you approve (kept in the audit log)")
def approve_cmd(trigger_id: str, by: str, reason: str) -> None:
    """Approve the current version of trigger ID (a trigger with an offer fires only once approved;
    editing its file makes a new version that needs a new approval)."""
    _decide("approve", trigger_id, by, reason)


@triggers_group.command("reject")
@click.argument("trigger_id", metavar="ID")
@click.option("--by", required=True, help="your name")
@click.option("--reason", required=True, help="why you reject (kept in the audit log)")
def reject_cmd(trigger_id: str, by: str, reason: str) -> None:
    """Reject the current version of trigger ID (withdraws an approval of it)."""
    _decide("reject", trigger_id, by, reason)


@triggers_group.command("work")
@click.option("--once", is_flag=True, help="decide one batch of due firings and exit")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="firings per batch")
@click.option("--idle-sleep", default=0.05, show_default=True, type=click.FloatRange(0.01, 3600),
              help="seconds between polls when nothing is due (SQLite; PostgreSQL waits on LISTEN)")
@click.option("--lease", default=60.0, show_default=True, type=click.FloatRange(1, 3600),
              help="seconds a claimed firing stays this worker's; after a crash others take it over then")
@click.option("--json", "as_json", is_flag=True, help="print machine-readable counts (with --once)")
def work_cmd(once: bool, limit: int, idle_sleep: float, lease: float, as_json: bool) -> None:
    """Decide trigger firings: each event accepted by POST /v1/events that a trigger listens to is
    checked (conditions, dedup window, the lists' rule table, holdout) and its message queued for
    the delivery workers. Run as many as you like: a firing is decided once, its message exists once.
    Ctrl-C or SIGTERM finish the current firing and stop."""
    import datetime as dt

    from crm.triggers.worker import TriggerWorker

    paths, engine = _engine()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    worker = TriggerWorker(paths, engine, lease=dt.timedelta(seconds=lease))
    _, errors = worker.triggers.get()
    for e in errors:
        click.echo(f"broken trigger file, left out: {e}", err=True)
    if once:
        counts = worker.run_once(limit)
        click.echo(json.dumps(counts, indent=2, sort_keys=True) if as_json else
                   ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing due")
        return
    from crm.cli.ui import stop_on_signals

    stop = stop_on_signals("crm.triggers", "the current firing")
    click.echo(f"trigger worker: {len(worker.triggers.get()[0])} trigger(s), Ctrl-C to stop", err=True)
    worker.run_forever(stop, idle_sleep=idle_sleep, limit=limit)


@click.group("journeys")
def journeys_group() -> None:
    """Journeys: campaigns/journeys/<id>.yaml, a small state graph per player (send, wait until
    opened, send again), stepped by the trigger workers (`crm triggers work`, `crm serve`)."""


def _journeys():
    from crm.config import campaigns_dir
    from crm.triggers.journeys import load_journeys

    return load_journeys(campaigns_dir())


@journeys_group.command("validate")
def journeys_validate_cmd() -> None:
    """Check every journey file; exit 1 naming each broken file, field and what was expected."""
    specs, errors = _journeys()
    for s in specs:
        click.echo(f"ok   {s.id}: {len(s.entry)} entry condition(s), steps " + " -> ".join(x.id for x in s.steps))
    for e in errors:
        click.echo(f"FAIL {e}", err=True)
    if errors:
        sys.exit(1)


@journeys_group.command("enter")
@click.option("--json", "as_json", is_flag=True, help="print machine-readable counts")
def journeys_enter_cmd(as_json: bool) -> None:
    """Enter the players whose online profile meets each journey's entry conditions now (the daily
    scan; the Dagster asset journey_entries runs it after the profile sync). Idempotent per day."""
    from crm.campaigns import approvals
    from crm.triggers.journeys import enter_from_profiles

    specs, errors = _journeys()
    paths, engine = _engine()
    approved = {s.id: approvals.status(paths, s.as_campaign()).dispatchable for s in specs}
    import datetime as dt

    out = enter_from_profiles(engine, specs, dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0), approved)
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        for jid, c in out.items():
            click.echo(f"{jid}: {c['matched']:,} matched, {c['entered']:,} entered, {c['holdout']:,} holdout, "
                       f"{c['skipped']:,} already in or recently (re-entry rule), {c['stopped']:,} stopped since "
                       "the copy"
                       + ("" if approved[jid] else " (needs approval: nobody entered)"))
    for e in errors:
        click.echo(f"FAIL {e}", err=True)


@journeys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="print machine-readable records")
def journeys_list_cmd(as_json: bool) -> None:
    """Each journey with its counts: entered, sent, suppressed by rule, exited, converted."""
    from crm.store.journeys import journey_counts

    specs, errors = _journeys()
    _, engine = _engine()
    counts: dict[str, dict[str, int]] = {}
    for r in journey_counts(engine):
        key = r["what"] + (f":{r['rule']}" if r["rule"] else "")
        counts.setdefault(r["journey_id"], {})[key] = counts.get(r["journey_id"], {}).get(key, 0) + r["n"]
    rows = [{"id": s.id, "steps": [x.id for x in s.steps], "version": s.spec_hash()[:12], "enabled": s.enabled,
             "counts": counts.get(s.id, {})} for s in specs]
    if as_json:
        click.echo(json.dumps({"journeys": rows, "errors": errors}, indent=2))
        return
    for r in rows:
        seen = ", ".join(f"{n:,} {k}" for k, n in sorted(r["counts"].items())) or "nobody yet"
        click.echo(f"{r['id']} ({' -> '.join(r['steps'])}, v{r['version']}): {seen}")
    for e in errors:
        click.echo(f"FAIL {e}", err=True)
