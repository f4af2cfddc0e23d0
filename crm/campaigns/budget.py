"""A campaign's budget, computed in one place: the spend ledger and the numbers read from it.

The spend ledger is one DuckDB table, ``spend`` in ``$CRM_HOME/ledger/spend.duckdb``
(:attr:`crm.config.Paths.ledger`): one row per (campaign, as-of date) with

* ``committed_cents`` — the treated offer cost of the list published for that date
  (:func:`record_committed`, called by :func:`crm.campaigns.lists.publish`);
* ``sent_cents`` — the offer cost of the messages dispatched for that date, on any channel
  (:func:`record_sent`, called by :func:`crm.campaigns.dispatch.dispatch_list` from the outbox
  of that campaign and date).

Each write *replaces* the row's value for its (campaign, date): a re-run of a date (a rebuild,
a second dispatch) never adds to what the date already recorded. Writes and reads hold the
ledger's file lock (``ledger/spend.lock``), so writers in several processes or threads take
turns (DuckDB allows one writing process per file); values are bound, names quoted.

A data home written before the ledger existed has no ledger file: the first access creates it
and backfills it once, from the published manifests (committed) and the outbox files (sent).

What the three users read:

* :func:`remaining_cents` / :func:`remaining` — what is left of ``budget.total_eur`` after what
  was *sent* on earlier as-of dates (and, for a rebuild, on the date itself): the list
  builder's cap (:func:`crm.campaigns.lists.build_list`);
* :func:`gate_limit_cents` — the list gate's cost limit: the smaller of ``target.budget_eur``
  and the remaining total budget (what earlier dates sent counts);
* :func:`approval_cost_cents` — the cost that decides four-eyes approval
  (:mod:`crm.campaigns.approvals`): the larger of the list's treated offer cost and the most the
  spec lets the campaign spend (``budget.total_eur``, ``target.budget_eur``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from filelock import FileLock

from crm.campaigns.spec import CampaignSpec
from crm.config import Paths
from crm.sql import ident

LEDGER_FILE = "spend.duckdb"
LOCK_FILE = "spend.lock"
TABLE = "spend"
META_TABLE = "ledger_meta"
LOCK_TIMEOUT_S = 300.0  # writers wait their turn (a write takes milliseconds); a stuck one is an error

_T, _M = ident(TABLE), ident(META_TABLE)
_DDL = (
    f"CREATE TABLE IF NOT EXISTS {_T} ("
    " campaign VARCHAR NOT NULL, as_of_date DATE NOT NULL,"
    " committed_cents BIGINT NOT NULL DEFAULT 0, sent_cents BIGINT NOT NULL DEFAULT 0,"
    " spec_hash VARCHAR, committed_at TIMESTAMP, sent_at TIMESTAMP,"
    " PRIMARY KEY (campaign, as_of_date))",
    f"CREATE TABLE IF NOT EXISTS {_M} (key VARCHAR PRIMARY KEY, value VARCHAR)",
)


def ledger_file(paths: Paths) -> Path:
    return paths.ledger / LEDGER_FILE


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


@contextmanager
def _ledger(paths: Paths) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the ledger, holding its file lock; created and backfilled on first use.

    One :class:`FileLock` object per call (not a singleton): ``flock`` excludes other processes
    and other threads of this one alike. Not re-entrant: nothing here calls it while holding it.
    """
    paths.ledger.mkdir(parents=True, exist_ok=True)
    with FileLock(paths.ledger / LOCK_FILE, timeout=LOCK_TIMEOUT_S, thread_local=False, is_singleton=False):
        con = duckdb.connect(str(ledger_file(paths)))
        try:
            for ddl in _DDL:
                con.execute(ddl)
            if not con.execute(f"SELECT count(*) FROM {_M} WHERE key = 'backfilled_at'").fetchone()[0]:
                _backfill(paths, con)
            yield con
        finally:
            con.close()


# ----------------------------------------------------------------------------------------- backfill


def _manifest_commitments(paths: Paths) -> list[tuple[str, dt.date, int, str | None]]:
    rows = []
    for mf in sorted(paths.lists.glob("*/*/manifest.json")):
        try:
            day = dt.date.fromisoformat(mf.parent.name)
            m = json.loads(mf.read_text())
        except (ValueError, OSError):  # temporary folders of an atomic publish, unreadable files
            continue
        cost = m.get("total_offer_cost_eur_cents")
        if cost is not None:
            rows.append((mf.parent.parent.name, day, int(cost), m.get("spec_hash")))
    return rows


def _outbox_sent(
    paths: Paths, campaign: str | None = None, day: dt.date | None = None
) -> dict[tuple[str, dt.date], int]:
    """Offer cost in the outbox files (``outbox/<channel>/<campaign>/<date>.jsonl``) per (campaign,
    date); only ``campaign`` / ``day`` when given."""
    pattern = f"*/{'*' if campaign is None else campaign}/{'*' if day is None else day.isoformat()}.jsonl"
    files: dict[str, tuple[str, dt.date]] = {}
    for f in sorted(paths.outbox.glob(pattern)):
        try:
            files[str(f)] = (f.parent.name, dt.date.fromisoformat(f.stem))
        except ValueError:
            continue
    found = {key: 0 for key in files.values()}
    nonempty = [f for f in files if Path(f).stat().st_size]
    if nonempty:
        con = duckdb.connect()
        try:
            sums = con.execute(
                "SELECT filename, coalesce(sum(offer_cost_eur_cents), 0) FROM read_json(?, format = "
                "'newline_delimited', union_by_name = true, filename = true, columns = {'offer_cost_eur_cents': "
                "'BIGINT'}) GROUP BY filename",
                [nonempty],
            ).fetchall()
        finally:
            con.close()
        for name, cents in sums:
            found[files[name]] += int(cents)
    return found


def _backfill(paths: Paths, con: duckdb.DuckDBPyConnection) -> None:
    """Fill an empty ledger from a home's published manifests and outbox files, once (a
    transaction: a crash leaves the ledger as it was, and the next access backfills again)."""
    now = _now()
    con.execute("BEGIN TRANSACTION")
    try:
        for campaign, day, cents, spec_hash in _manifest_commitments(paths):
            _upsert(con, campaign, day, "committed_cents", cents, now, spec_hash)
        for (campaign, day), cents in _outbox_sent(paths).items():
            _upsert(con, campaign, day, "sent_cents", cents, now)
        con.execute(f"INSERT OR REPLACE INTO {_M} VALUES ('backfilled_at', ?)", [now.isoformat()])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


# ------------------------------------------------------------------------------------------- writes

# one statement per column, written out (no column name pasted at run time): set it, never add to it
_UPSERT = {
    "committed_cents": f"INSERT INTO {_T} (campaign, as_of_date, committed_cents, committed_at, spec_hash) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (campaign, as_of_date) DO UPDATE SET "
    "committed_cents = excluded.committed_cents, committed_at = excluded.committed_at, "
    "spec_hash = coalesce(excluded.spec_hash, spec_hash)",
    "sent_cents": f"INSERT INTO {_T} (campaign, as_of_date, sent_cents, sent_at, spec_hash) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (campaign, as_of_date) DO UPDATE SET "
    "sent_cents = excluded.sent_cents, sent_at = excluded.sent_at, "
    "spec_hash = coalesce(excluded.spec_hash, spec_hash)",
}


def _upsert(
    con: duckdb.DuckDBPyConnection,
    campaign: str,
    day: dt.date,
    column: str,
    cents: int,
    at: dt.datetime,
    spec_hash: str | None = None,
) -> None:
    """Set ``column`` (committed_cents | sent_cents) of (campaign, day) to ``cents`` (replace, never add)."""
    con.execute(_UPSERT[column], [campaign, day, int(cents), at, spec_hash])


def record_committed(paths: Paths, campaign: str, as_of: dt.date, cents: int, spec_hash: str | None = None) -> None:
    """The treated offer cost of the list published for (campaign, as_of): replaces the date's value."""
    with _ledger(paths) as con:
        _upsert(con, campaign, as_of, "committed_cents", cents, _now(), spec_hash)


def record_sent(paths: Paths, campaign: str, as_of: dt.date) -> int:
    """Record what the outbox holds for (campaign, as_of) on every channel as the date's sent cost
    (replaces the date's value: a second dispatch of the date counts its messages once); returns it."""
    with _ledger(paths) as con:
        cents = sum(_outbox_sent(paths, campaign, as_of).values())
        _upsert(con, campaign, as_of, "sent_cents", cents, _now())
    return cents


# -------------------------------------------------------------------------------------------- reads


def spent_before(paths: Paths, campaigns: Iterable[str], as_of: dt.date) -> dict[str, int]:
    """Offer cost each campaign sent on as-of dates before ``as_of`` (0 if none)."""
    ids = sorted(set(campaigns))
    if not ids:
        return {}
    with _ledger(paths) as con:
        rows = con.execute(
            f"SELECT campaign, coalesce(sum(sent_cents), 0) FROM {_T} "
            "WHERE campaign IN (SELECT unnest(?)) AND as_of_date < ? GROUP BY campaign",
            [ids, as_of],
        ).fetchall()
    found = {c: int(v) for c, v in rows}
    return {c: found.get(c, 0) for c in ids}


def entries(paths: Paths, campaign: str | None = None) -> list[dict]:
    """The ledger's rows (one campaign's when given), by campaign and date."""
    with _ledger(paths) as con:
        cur = con.execute(
            f"SELECT campaign, as_of_date, committed_cents, sent_cents, spec_hash FROM {_T} "
            "WHERE ? IS NULL OR campaign = ? ORDER BY campaign, as_of_date",
            [campaign, campaign],
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def remaining_cents(spec: CampaignSpec, spent_before_cents: int, sent_today_cents: int = 0) -> int | None:
    """What is left of the campaign's total budget (``budget.total_eur``) after what it sent on
    earlier dates and (``sent_today_cents``) on the date itself; None: no total budget. Pure."""
    total = spec.budget.total_cents
    return None if total is None else total - int(spent_before_cents) - int(sent_today_cents)


def remaining(paths: Paths, spec: CampaignSpec, as_of: dt.date) -> int | None:
    """:func:`remaining_cents` on the ledger: the total budget less what earlier dates sent."""
    if spec.budget.total_cents is None:
        return None
    return remaining_cents(spec, spent_before(paths, [spec.id], as_of)[spec.id])


def gate_limit_cents(spec: CampaignSpec, spent_before_cents: int) -> int | None:
    """The list gate's cost limit for the treated rows of a list (with what the campaign already
    sent that day, which the gate adds itself): the smaller of ``target.budget_eur`` and the
    remaining total budget; None: no budget."""
    given = [b for b in (spec.target.budget_cents, remaining_cents(spec, spent_before_cents)) if b is not None]
    return min(given) if given else None


def gate_limit(paths: Paths, spec: CampaignSpec, as_of: dt.date) -> int | None:
    """:func:`gate_limit_cents` with the earlier spend read from the ledger."""
    spent = spent_before(paths, [spec.id], as_of)[spec.id] if spec.budget.total_cents is not None else 0
    return gate_limit_cents(spec, spent)


def spec_budget_cents(spec: CampaignSpec) -> tuple[int | None, str]:
    """The most the spec lets the campaign spend, in EUR cents, and which field says so."""
    found = [
        (c, where)
        for c, where in ((spec.budget.total_cents, "budget.total_eur"), (spec.target.budget_cents, "target.budget_eur"))
        if c is not None
    ]
    return max(found) if found else (None, "")


def approval_cost_cents(spec: CampaignSpec, manifest: dict | None = None) -> tuple[int | None, str]:
    """The cost that decides approval: the larger of the list's treated offer cost (its manifest's
    ``total_offer_cost_eur_cents``) and :func:`spec_budget_cents`, with its basis; None: unknown."""
    options = []
    if manifest is not None and manifest.get("total_offer_cost_eur_cents") is not None:
        options.append(
            (
                int(manifest["total_offer_cost_eur_cents"]),
                f"offer cost of the list of {manifest.get('as_of_date', '?')}",
            )
        )
    budget, where = spec_budget_cents(spec)
    if budget is not None:
        options.append((budget, f"budget {where}"))
    return max(options) if options else (None, "")
