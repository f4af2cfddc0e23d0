"""Is the feed complete for a run? The last day a run describes must have landed data.

A refresh for as-of date D describes the world before D; its newest day is D - 1. When no event
(or far fewer than usual) landed for D - 1, every recency feature moves at once and the
features gate reports drift on ``days_since_last_active``; the real cause is upstream: the
casino's feed stopped. :func:`check_feed` names it, so the landing check can stop the refresh
with that message before the warehouse is rebuilt on a missing day.

Volume per day = landed events (by ``occurred_at``) + imported daily rows (by ``activity_date``);
the landed files are sorted by ``occurred_at``, so the date range prunes Parquet row groups.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
from dataclasses import dataclass

import duckdb

from crm.config import Paths
from crm.ingest.import_daily import imported_daily_dir
from crm.ingest.landing import landed_glob

HISTORY_DAYS = 14
MIN_HISTORY_DAYS = 3  # fewer days with data before: too little to call a day short
MIN_SHARE_ENV = "CRM_FEED_MIN_SHARE"
DEFAULT_MIN_SHARE = 0.2  # the newest day must hold at least this share of the median day


@dataclass(frozen=True)
class FeedCheck:
    day: dt.date  # the newest day of the run (as-of date - 1)
    volume: int  # landed events + imported rows of that day
    median: float | None  # of the days with data among the HISTORY_DAYS before it
    min_share: float
    passed: bool
    message: str


def min_share() -> float:
    raw = os.environ.get(MIN_SHARE_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_MIN_SHARE
    except ValueError as e:
        raise ValueError(f"{MIN_SHARE_ENV} must be a number between 0 and 1, got {raw!r}") from e
    if not 0 <= value <= 1:
        raise ValueError(f"{MIN_SHARE_ENV} must be between 0 and 1, got {value}")
    return value


def daily_volume(paths: Paths, first: dt.date, last: dt.date) -> dict[dt.date, int]:
    """Landed events + imported rows per day in [first, last]."""
    lo = dt.datetime.combine(first, dt.time())
    hi = dt.datetime.combine(last + dt.timedelta(days=1), dt.time())
    parts = []
    params: list = []
    glob = landed_glob(paths)
    if glob:
        parts.append("SELECT occurred_at::DATE AS day FROM read_parquet(?) WHERE occurred_at >= ? AND occurred_at < ?")
        params += [glob, lo, hi]
    imports = imported_daily_dir(paths)
    if any(imports.glob("*.parquet")):
        parts.append("SELECT activity_date::DATE AS day FROM read_parquet(?, union_by_name = true) "
                     "WHERE activity_date >= ? AND activity_date <= ?")
        params += [str(imports / "*.parquet"), first, last]
    if not parts:
        return {}
    with duckdb.connect() as con:
        rows = con.execute(f"SELECT day, count(*) FROM ({' UNION ALL '.join(parts)}) GROUP BY day",
                           params).fetchall()
    return {day: n for day, n in rows}


def check_feed(paths: Paths, as_of: dt.date) -> FeedCheck:
    """Whether the newest day of the run for ``as_of`` has its data (see the module doc)."""
    day = as_of - dt.timedelta(days=1)
    share = min_share()
    volume = daily_volume(paths, day - dt.timedelta(days=HISTORY_DAYS), day)
    today = volume.get(day, 0)
    before = [n for d, n in volume.items() if d < day and n > 0]
    if len(before) < MIN_HISTORY_DAYS:
        return FeedCheck(day, today, None, share, True,
                         f"{today:,} records for {day}; {len(before)} earlier days with data in the "
                         f"{HISTORY_DAYS} before it: too few to judge the feed")
    median = statistics.median(before)
    if today >= share * median:
        return FeedCheck(day, today, median, share, True,
                         f"{today:,} records for {day} (median day of the {HISTORY_DAYS} before: {median:,.0f})")
    kind = "feed outage: no data" if today == 0 else f"partial feed: {today:,} records"
    return FeedCheck(day, today, median, share, False,
                     f"{kind} landed for {day}, the newest day of the run as of {as_of} (median day of the "
                     f"{HISTORY_DAYS} before: {median:,.0f}; at least {share:.0%} of it expected, "
                     f"{MIN_SHARE_ENV}). Lists built now would treat every player as inactive that day: land the "
                     f"day's files and run again, or run for an earlier date (`crm run --date {day}`).")
