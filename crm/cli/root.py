"""The `crm` command: simulate a casino, land events, run the pipeline, read lists.

Every command has --help. The data home is $CRM_HOME (default: data/ in the checkout).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import click

from crm.config import campaigns_dir, export_env


def _echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="casino-crm")
def main() -> None:
    """casino-crm: casino events -> warehouse -> models -> gated campaign lists.

    Everything is written under the data home $CRM_HOME (default: data/ in the checkout).
    """


@main.command()
@click.option("--players", default=20_000, show_default=True, help="number of players")
@click.option("--days", default=120, show_default=True, help="days of activity")
@click.option("--seed", default=42, show_default=True, help="random seed (same seed, same files)")
@click.option("--start", "start_date", default="2025-06-01", show_default=True, help="first simulated day (UTC)")
@click.option("--format", "fmt", type=click.Choice(["parquet", "jsonl"]), default="parquet", show_default=True)
@click.option("--dirty-rate", default=0.0005, show_default=True,
              help="share of deliberately broken records, to exercise quarantine")
@click.option("--fresh", is_flag=True,
              help="first remove landed data and the warehouse (keeps MLflow, Dagster history and lists)")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")
def simulate(players: int, days: int, seed: int, start_date: str, fmt: str, dirty_rate: float, fresh: bool,
             as_json: bool) -> None:
    """Simulate a casino and write contract events to landing/incoming.

    Also writes the ground truth (latent churn, true campaign effects) to truth/,
    which the pipeline never reads.
    """
    import shutil

    from crm.simulator.casino import simulate as run_simulation

    paths = export_env()
    if fresh:
        for d in (paths.home / "landing", paths.truth):
            shutil.rmtree(d, ignore_errors=True)
        paths.warehouse.unlink(missing_ok=True)
        paths.ensure()
    summary = run_simulation(paths, players=players, days=days, seed=seed,
                             start_date=dt.date.fromisoformat(start_date), fmt=fmt, dirty_rate=dirty_rate,
                             progress=not as_json)
    if as_json:
        _echo_json(summary.to_dict())
    else:
        click.echo(f"simulated {summary.players:,} players x {summary.days} days: {summary.events:,} events "
                   f"({summary.dirty_records:,} deliberately broken) in {summary.seconds:.1f} s -> {paths.incoming}")


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable report")
def ingest(path: str, as_json: bool) -> None:
    """Land a JSONL or Parquet file (or every such file in a folder) of contract events.

    Bad records go to quarantine with a reason; duplicates are counted and dropped.
    Re-ingesting the same file changes nothing.
    """
    from pathlib import Path

    from crm.ingest.landing import SUPPORTED_SUFFIXES, LandingError, ingest_file
    from crm.run_lock import RunInProgress, run_lock

    paths = export_env()
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in SUPPORTED_SUFFIXES) if p.is_dir() else [p]
    reports = []
    try:
        with run_lock(paths, f"crm ingest {path}"):
            for f in files:
                reports.append(ingest_file(f, paths))
    except (LandingError, RunInProgress) as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        _echo_json([r.to_dict() for r in reports])
        return
    for r in reports:
        note = " (already ingested: nothing changed)" if r.already_ingested else ""
        click.echo(f"{r.source_file}: {r.records:,} records = {r.loaded:,} loaded + {r.quarantined:,} quarantined "
                   f"+ {r.duplicates:,} duplicates{note}")
        for reason, n in r.reasons.items():
            click.echo(f"    quarantined {n:>6,}  {reason}")


@main.command()
@click.option("--date", "as_of", help="as-of date YYYY-MM-DD (default: the day after the latest landed event)")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")
@click.option("--verbose", is_flag=True, help="stream the full Dagster and dbt log instead of one line per step")
@click.option("--full-refresh", is_flag=True,
              help="rebuild every day of the warehouse (default: only the days that can have changed since the "
                   "last build; a changed dbt project rebuilds everything by itself)")
@click.option("--retrain", is_flag=True,
              help="train every model in this run (default: when due: weekly (CRM_RETRAIN_EVERY_DAYS), when the "
                   "champion's inputs drift (CRM_RETRAIN_PSI), or when there is none)")
@click.option("--target", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
              help="where dbt builds the warehouse: spark runs the dbt project on Apache Spark (dbt-spark; a local "
                   "Spark by default, a cluster is a profile setting) and hands the tables over to DuckDB")
def run(as_of: str | None, as_json: bool, verbose: bool, full_refresh: bool, retrain: bool, target: str) -> None:
    """Run the daily refresh through Dagster (land, dbt, train, score, lists, gates, dispatch).

    Prints one line per step and a summary; the full Dagster and dbt log goes to
    $CRM_HOME/logs/run-<time>.log (or to the terminal with --verbose). The run is recorded
    in the Dagster instance under the data home: open `make ui` to see it.
    """
    if as_of:
        try:
            dt.date.fromisoformat(as_of)
        except ValueError as e:
            raise click.BadParameter(f"expected YYYY-MM-DD, got {as_of!r}", param_hint="--date") from e
    export_env()
    cmd = [sys.executable, "-m", "orchestration.run"] + (["--date", as_of] if as_of else []) + \
        (["--json"] if as_json else []) + (["--verbose"] if verbose else []) + \
        (["--full-refresh"] if full_refresh else []) + (["--retrain"] if retrain else []) + \
        (["--target", target] if target != "duckdb" else [])
    sys.exit(subprocess.call(cmd))


def _date_range(start: str, end: str) -> list[str]:
    try:
        lo, hi = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    except ValueError as e:
        raise click.BadParameter(f"expected YYYY-MM-DD: {e}") from e
    if hi < lo:
        raise click.BadParameter(f"--end {end} is before --start {start}")
    return [(lo + dt.timedelta(days=i)).isoformat() for i in range((hi - lo).days + 1)]


@main.command()
@click.option("--start", "--from", "start", required=True, help="first as-of date YYYY-MM-DD")
@click.option("--end", "--to", "end", required=True, help="last as-of date YYYY-MM-DD (inclusive)")
@click.option("--keep-going", is_flag=True, help="run the later dates even after a failed one")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable summary")
@click.option("--verbose", is_flag=True, help="stream the full Dagster and dbt log instead of one line per step")
def backfill(start: str, end: str, keep_going: bool, as_json: bool, verbose: bool) -> None:
    """Backfill the daily refresh for every as-of date from --start to --end, oldest first.

    A Dagster partition backfill of the range (listed on the UI's Backfills page), its dates run
    one partition per run, one at a time: each day's lists see the messages of the days before.
    Stops at the first failed date unless --keep-going, because later lists would miss that
    day's history. Dispatch never sends a message twice, so re-running dates is safe. Prints one
    line per step; the full log goes to $CRM_HOME/logs/backfill-<time>.log (or --verbose).
    """
    _date_range(start, end)  # refuse a bad range before starting Dagster
    export_env()
    cmd = [sys.executable, "-m", "orchestration.backfill", "--start", start, "--end", end] + \
        (["--keep-going"] if keep_going else []) + (["--json"] if as_json else []) + (["--verbose"] if verbose else [])
    sys.exit(subprocess.call(cmd))


@main.command("lists")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable listing")
def lists_cmd(as_json: bool) -> None:
    """Published campaign lists with their paths, counts and gate status."""
    from pathlib import Path

    from crm.campaigns.lists import gate_verdict, published_lists

    paths = export_env()
    found = published_lists(paths)
    for m in found:
        m["gate_passed"], m["gate_note"] = gate_verdict(Path(m["path"]))
    if as_json:
        _echo_json(found)
        return
    if not found:
        click.echo(f"no published lists under {paths.lists}: run `crm run` first")
        return
    click.echo(f"{'campaign':<28} {'as of':<10} {'rows':>8} {'holdout':>8}  gate  path")
    for m in found:
        c = m["counts"]
        click.echo(f"{m['campaign_id']:<28} {m['as_of_date']:<10} {c['listed']:>8,} {c['holdout']:>8,}  "
                   f"{'pass' if m['gate_passed'] else 'FAIL'}  {m['path']}")


@main.command("campaigns")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="campaign folder [default: $CRM_CAMPAIGNS_DIR, else campaigns/ in the checkout]")
def campaigns_cmd(directory: str | None) -> None:
    """Validate the campaign YAML files and the blackout calendar (_calendar.yaml) and list them
    (exit 1 if any is broken). Reads the folder the pipeline reads: $CRM_CAMPAIGNS_DIR, else
    campaigns/ in the checkout (--dir another)."""
    from pathlib import Path

    from crm.campaigns.policy import CalendarError, load_calendar
    from crm.campaigns.spec import load_campaigns

    directory = directory or str(campaigns_dir())  # at call time: the environment of this run
    if not Path(directory).is_dir():
        raise click.ClickException(f"no campaign folder {directory}")
    click.echo(f"campaigns in {directory}")
    specs, errors = load_campaigns(directory)
    try:
        calendar = load_calendar(directory)
        click.echo(f"ok    calendar: {len(calendar.blackouts)} blackout window(s)")
    except CalendarError as e:
        errors.append(str(e))
    for s in specs:
        click.echo(f"ok    {s.id:<28} {s.channel:<7} priority={s.priority:<4} offer={s.offer.label} "
                   f"holdout={s.experiment.holdout}{' transactional' if s.transactional else ''}")
    for e in errors:
        click.echo(f"ERROR {e}", err=True)
    if errors:
        sys.exit(1)


@main.command("import-daily")
@click.option("--file", "file_", required=True, type=click.Path(dir_okay=False),
              help="CSV or Parquet file of per-player daily aggregates")
@click.option("--mapping", required=True, type=click.Path(dir_okay=False),
              help="YAML mapping of canonical names to your column names")
@click.option("--json", "as_json", is_flag=True, help="print a machine-readable report")
def import_daily_cmd(file_: str, mapping: str, as_json: bool) -> None:
    """Import per-player daily aggregates (CSV or Parquet) from a warehouse export.

    The mapping file names your column for each canonical name:

    \b
      columns:                  # canonical: your column
        player_id: customer_ref # required
        date: day               # required
        deposit_amount: deposits
        stake: turnover         # measures: map at least one of deposit_amount,
        ...                     #   withdrawal_amount, stake, win, ngr, bonus_amount, sessions
        brand_id: brand         # optional: brand_id, country, gender
      units: major              # money in major (12.50) or minor (1250) units
      currency: EUR             # or currency_column: ccy (rates: dbt_project/seeds/fx_rates.csv)
      date_format: "%Y-%m-%d"   # optional
      encoding: utf-8           # optional, CSV: utf-8 | latin-1 | utf-16
      delimiter: ","            # optional, CSV: , ; | "\\t" (default: tab for .tsv, else comma)

    A measure you do not map is stored as 0 (money) or NULL (sessions) and listed as missing.
    The whole file is checked first; on any problem nothing is written and the errors name
    the column, the file and the first bad lines. CSV is read strictly: an unbalanced quote,
    a wrong number of fields or a blank line rejects the file. Dates must lie in
    1990-01-01 .. tomorrow (UTC). Money is stored in EUR cents under
    $CRM_HOME/landing/imported_daily/; importing the same file and mapping again changes
    nothing. Full example: docs/examples/daily_mapping.yaml (with daily_export.csv).
    """
    from crm.ingest.import_daily import ImportDailyError, import_daily
    from crm.run_lock import RunInProgress, run_lock

    paths = export_env()
    try:
        with run_lock(paths, f"crm import-daily --file {file_}"):
            r = import_daily(file_, mapping, paths)
    except (ImportDailyError, RunInProgress) as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        _echo_json(r.to_dict())
        return
    if r.already_imported:
        click.echo(f"{r.file}: already imported as batch {r.batch_id} (nothing changed)")
        return
    click.echo(f"{r.file}: imported {r.rows:,} rows, {r.players:,} players, {r.date_from} .. {r.date_to} "
               f"-> {r.output}")
    if r.missing_measures:
        click.echo(f"    missing measures (stored as 0, sessions as NULL): {', '.join(r.missing_measures)}")
    if r.overlapping_rows:
        click.echo(f"    note: {r.overlapping_rows:,} (player_id, date) rows are also in earlier imports; "
                   "the warehouse keeps this latest batch for them")


@main.command("readout")
@click.option("--campaign", "campaign_id", help="one campaign id (default: every campaign with assignments)")
@click.option("--window-days", default=7.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="last-touch attribution window: a deposit at most N days after the last touch is credited")
@click.option("--json", "as_json", is_flag=True, help="print the full readouts as JSON")
def readout_cmd(campaign_id: str | None, window_days: float, as_json: bool) -> None:
    """Readouts of randomized campaigns from the warehouse (fct_campaign_outcomes).

    For each campaign with assignments (operator exports in landing/exports/ and our own
    dispatches): treatment vs holdout on conversion (deposit within 7 days), deposits,
    deposit EUR, NGR (14 days, net of bonus) and reactivation, each with a 95% confidence
    interval and the relative lift; bonus cost and ROI (incremental NGR / bonus cost; 0 is
    break-even); RG guardrails (limit hits, self-exclusions, complaints, unsubscribes) flagged
    RISE when the treated rate is higher (one-sided test at 5%); the sample-ratio check
    against the holdout of the campaign's YAML when there is one; and last-touch attributed
    conversions beside the holdout-based incremental ones (the over-claim ratio).

    Only players whose outcome window has ended before the warehouse's as-of date count.
    Reads the warehouse built by `crm run`; writes nothing.
    """

    from crm.campaigns.spec import load_campaigns
    from crm.measurement.readout import effects_table, readout, summary_line

    paths = export_env()
    specs, _ = load_campaigns(campaigns_dir())
    shares = {s.id: s.experiment.holdout for s in specs}
    try:
        results = readout(paths, campaign_id, expected_control_share=shares, attribution_window_days=window_days)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from e
    if campaign_id and not results:
        raise click.ClickException(f"no assignments for campaign {campaign_id!r} in the warehouse")
    if as_json:
        _echo_json(results)
        return
    if not results:
        click.echo("no campaign assignments in the warehouse yet (operator exports or dispatched lists)")
        return
    for r in results:
        click.echo(f"\n== {summary_line(r)}")
        if r["status"] != "ok":
            continue
        table = effects_table(r)[["metric", "n (T/C)", "treatment", "control", "difference", "95% CI", "flag"]]
        click.echo(table.to_string(index=False))
        b = r["bonus"]
        if b["cost_eur"]:
            click.echo(f"bonus cost {b['cost_eur']:,.0f} EUR ({b['cost_basis']}); incremental NGR "
                       f"{b['incremental_ngr_eur']:,.0f} EUR; ROI {b['roi']:+.2f} "
                       f"(95% CI {b['roi_ci'][0]:+.2f} .. {b['roi_ci'][1]:+.2f})")


def _register_groups() -> None:
    from crm.cli.campaign import audit_group, campaign_group
    from crm.cli.deliveries import deliveries_group, mailbox_cmd
    from crm.cli.explain import explain_cmd
    from crm.cli.gate import gate_group
    from crm.cli.ml import ml_group
    from crm.cli.offers import offers_group
    from crm.cli.privacy import privacy_group
    from crm.cli.risk import risk_group
    from crm.cli.service import api_events_group, api_keys_group, profiles_group, serve_cmd
    from crm.cli.templates import templates_group
    from crm.cli.triggers import journeys_group, triggers_group
    from crm.cli.users import users_group

    main.add_command(ml_group)
    main.add_command(explain_cmd)
    main.add_command(campaign_group)
    main.add_command(audit_group)
    main.add_command(gate_group)
    main.add_command(serve_cmd)
    main.add_command(privacy_group)
    main.add_command(risk_group)
    main.add_command(templates_group)
    main.add_command(api_keys_group)
    main.add_command(api_events_group)
    main.add_command(profiles_group)
    main.add_command(deliveries_group)
    main.add_command(mailbox_cmd)
    main.add_command(triggers_group)
    main.add_command(journeys_group)
    main.add_command(offers_group)
    main.add_command(users_group)


_register_groups()


if __name__ == "__main__":
    main()


@main.command()
@click.argument("archive", type=click.Path(dir_okay=False))
def backup(archive: str) -> None:
    """Back up the data home ($CRM_HOME) to ARCHIVE (.tar, or .tar.gz to compress).

    Everything the home holds: landing and quarantine, warehouse, service store, MLflow, the
    Dagster instance, audit log, spend ledger, lists, outbox, Data Docs and logs (not tmp/,
    bench/, dbt/target). Holds the run lock while it reads, so no run writes meanwhile; SQLite
    databases are copied with SQLite's online backup (consistent while `crm serve` writes).
    A store or MLflow on PostgreSQL is not in the archive: use pg_dump.
    """
    from pathlib import Path

    from crm.backup import BackupError
    from crm.backup import backup as write_backup
    from crm.run_lock import RunInProgress

    paths = export_env()
    try:
        report = write_backup(paths, Path(archive))
    except (BackupError, RunInProgress) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"backed up {paths.home}: {report.files:,} files, {report.bytes / 2**20:,.1f} MiB "
               f"({report.sqlite_snapshots} SQLite databases as online snapshots) -> {report.archive}")
    for note in report.external:
        click.echo(f"  not included: {note}")


@main.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.option("--home", "target", required=True, type=click.Path(file_okay=False),
              help="the new data home to restore into (missing or empty)")
def restore(archive: str, target: str) -> None:
    """Restore a `crm backup` ARCHIVE into a new data home (--home, missing or empty).

    Every file is checked against the archive's manifest (SHA-256) before the home appears; a
    damaged or foreign archive leaves nothing behind. MLflow's artifact locations are moved to
    the new home. Then point CRM_HOME at it.
    """
    from pathlib import Path

    from crm.backup import BackupError
    from crm.backup import restore as restore_backup

    try:
        manifest = restore_backup(Path(archive), Path(target))
    except BackupError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"restored {len(manifest['files']):,} files of the backup of {manifest['home']} "
               f"(made {manifest['created_at']}) into {Path(target).resolve()}; use it with CRM_HOME={target}")
