"""Message history per player: what frequency caps, cooldown, dedup and offer rules count.

Three sources, one frame (:data:`MESSAGE_COLUMNS`):

* ``delivered``: ``crm.delivery`` events in the warehouse (``stg_casino__crm_messages``),
  strictly before the as-of date (the warehouse's point-in-time cut);
* ``outbox``: our own dispatched messages (``outbox/<channel>/<campaign>/<as_of>.jsonl``,
  holdout never there), sent at their campaign's ``send_time_utc`` on their as-of date
  (an unknown campaign: 23:59:59, the latest possible, so the cooldown fails closed). A
  message in both (our dispatch came back as a delivery event) counts once;
* ``planned``: the treated rows of the lists of higher-priority campaigns built for the
  same day (:func:`planned_messages`), which will be sent at their campaigns' send time.

The outbox of the day being built is left out for the campaigns of that day (their lists
are the planned messages instead), so rebuilding a day after its dispatch gives the same
lists. Outbox files of that day from campaigns no longer defined still count.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from crm.campaign_spec import CampaignSpec
from crm.config import Paths
from crm.experiments import HOLDOUT
from crm.warehouse import connect, table_exists

MESSAGE_COLUMNS = ("player_id", "channel", "campaign_id", "dedup_key", "sent_at", "is_bonus_offer", "cost_cents",
                   "offer_ends_at", "source")
BONUS_TEMPLATES = ("bonus", "cashback", "free_spins")
_LATEST = dt.time(23, 59, 59)
_DEFAULT_EXPIRY_DAYS = 30  # an offer of an unknown campaign: assume it runs long (fail closed)


def empty_history() -> pd.DataFrame:
    return _frame([], [], [], [], [], [], [], [], [])


def _frame(player_id, channel, campaign_id, dedup_key, sent_at, is_bonus, cost, ends_at, source) -> pd.DataFrame:
    return pd.DataFrame({
        "player_id": pd.Series(player_id, dtype=object),
        "channel": pd.Series(channel, dtype=object),
        "campaign_id": pd.Series(campaign_id, dtype=object),
        "dedup_key": pd.Series(dedup_key, dtype=object),
        "sent_at": pd.Series(pd.to_datetime(pd.Series(sent_at, dtype=object)), dtype="datetime64[us]"),
        "is_bonus_offer": pd.Series(is_bonus, dtype=bool),
        "cost_cents": pd.Series(cost, dtype="int64"),
        "offer_ends_at": pd.Series(pd.to_datetime(pd.Series(ends_at, dtype=object)), dtype="datetime64[us]"),
        "source": pd.Series(source, dtype=object),
    }, columns=list(MESSAGE_COLUMNS))


def _keys(campaign_ids: pd.Series, specs: Mapping[str, CampaignSpec]) -> pd.Series:
    return campaign_ids.map(lambda c: specs[c].dedup_key if c in specs else c)


def planned_messages(rows: pd.DataFrame, spec: CampaignSpec, as_of: dt.date) -> pd.DataFrame:
    """The messages a list will send: its non-holdout rows, at the campaign's send time."""
    sent = rows[rows["variant"] != HOLDOUT]
    n = len(sent)
    send_at = spec.schedule.send_at(as_of)
    is_bonus = spec.offer.template in BONUS_TEMPLATES
    ends = send_at + dt.timedelta(days=spec.offer.expiry_days) if is_bonus else None
    return _frame(sent["player_id"].astype(str).to_numpy(), [spec.channel] * n, [spec.id] * n,
                  [spec.dedup_key] * n, [send_at] * n, [is_bonus] * n,
                  pd.to_numeric(sent["offer_cost_eur_cents"]).fillna(0).astype("int64").to_numpy(),
                  [ends] * n, ["planned"] * n)


def delivered_messages(paths: Paths, since: dt.datetime, as_of: dt.date,
                       specs: Mapping[str, CampaignSpec]) -> pd.DataFrame:
    """``crm.delivery`` events in [since, as_of 00:00) from the warehouse (none if it has no staging yet)."""
    if not paths.warehouse.exists():
        return empty_history()
    with connect(paths) as con:
        if not table_exists(con, "stg_casino__crm_messages"):
            return empty_history()
        df = con.execute("""
            SELECT player_id, channel, campaign_id, occurred_at AS sent_at
            FROM stg_casino__crm_messages
            WHERE event_type = 'crm.delivery' AND occurred_at >= ? AND occurred_at < ?
            ORDER BY player_id, occurred_at, campaign_id
        """, [since, dt.datetime.combine(as_of, dt.time())]).df()
    n = len(df)
    return _frame(df["player_id"], df["channel"], df["campaign_id"], _keys(df["campaign_id"], specs),
                  df["sent_at"], [False] * n, [0] * n, [None] * n, ["delivered"] * n)


def _outbox_files(paths: Paths, first: dt.date | None, as_of: dt.date, skip_today: set[str]) -> list[Path]:
    files = []
    for f in sorted(paths.outbox.glob("*/*/*.jsonl")):
        try:
            day = dt.date.fromisoformat(f.stem)
        except ValueError:
            continue
        campaign = f.parent.name
        if day > as_of or (first is not None and day < first) or (day == as_of and campaign in skip_today):
            continue
        files.append(f)
    return files


def _read_outbox(files: list[Path], columns: str) -> pd.DataFrame:
    con = duckdb.connect()
    try:
        return con.execute(f"""
            SELECT {columns} FROM read_json(?, format = 'newline_delimited', union_by_name = true,
                columns = {{'player_id': 'VARCHAR', 'channel': 'VARCHAR', 'campaign_id': 'VARCHAR',
                            'as_of_date': 'VARCHAR', 'offer_template': 'VARCHAR',
                            'offer_cost_eur_cents': 'BIGINT'}})
        """, [[str(f) for f in files]]).df()
    finally:
        con.close()


def outbox_messages(paths: Paths, since: dt.date, as_of: dt.date, specs: Mapping[str, CampaignSpec]) -> pd.DataFrame:
    """Our dispatched messages of as-of dates [since, as_of], without the day's own campaigns on as_of."""
    files = _outbox_files(paths, since, as_of, skip_today=set(specs))
    if not files:
        return empty_history()
    df = _read_outbox(files, "player_id, channel, campaign_id, as_of_date, offer_template, offer_cost_eur_cents")
    day = pd.to_datetime(df["as_of_date"])
    send = df["campaign_id"].map(lambda c: specs[c].schedule.send_time if c in specs else _LATEST)
    sent_at = day + pd.to_timedelta([t.hour * 3600 + t.minute * 60 + t.second for t in send], unit="s")
    is_bonus = df["offer_template"].isin(BONUS_TEMPLATES).to_numpy()
    expiry = df["campaign_id"].map(lambda c: specs[c].offer.expiry_days if c in specs else _DEFAULT_EXPIRY_DAYS)
    ends = (sent_at + pd.to_timedelta(expiry.astype("int64"), unit="D")).where(is_bonus)
    return _frame(df["player_id"], df["channel"], df["campaign_id"], _keys(df["campaign_id"], specs), sent_at,
                  is_bonus, df["offer_cost_eur_cents"].fillna(0).astype("int64"), ends, ["outbox"] * len(df))


def lookback_days(specs: Iterable[CampaignSpec], policy_dedup_days: int) -> int:
    """How far back the history must reach for every window a rule looks at."""
    days = [7, policy_dedup_days, _DEFAULT_EXPIRY_DAYS]
    for s in specs:
        days += [s.frequency.dedup_days or 0, s.offer.expiry_days, int(np.ceil((s.frequency.cooldown_hours or 0) / 24))]
    return max(days) + 1


def load_history(paths: Paths, as_of: dt.date, specs: Iterable[CampaignSpec], *, days: int) -> pd.DataFrame:
    """Delivered and dispatched messages of the last ``days`` days before the send of ``as_of``."""
    by_id = {s.id: s for s in specs}
    first = as_of - dt.timedelta(days=days)
    delivered = delivered_messages(paths, dt.datetime.combine(first, dt.time()), as_of, by_id)
    ours = outbox_messages(paths, first, as_of, by_id)
    if len(delivered) and len(ours):  # our dispatch reported back as a delivery: count it once
        key = ["player_id", "campaign_id", "channel"]
        sent = ours.assign(_day=ours["sent_at"].dt.normalize())[[*key, "_day"]].drop_duplicates()
        d = delivered.assign(_day=delivered["sent_at"].dt.normalize()).merge(sent, on=[*key, "_day"], how="left",
                                                                               indicator=True)
        delivered = delivered[(d["_merge"] == "left_only").to_numpy()]
    parts = [p for p in (delivered, ours) if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else empty_history()


def players_offered_a_bonus(paths: Paths, as_of: dt.date, specs: Iterable[CampaignSpec]) -> frozenset[str]:
    """Players we ever sent a bonus offer to (outbox, as-of dates up to ``as_of``; the day's own
    campaigns on ``as_of`` excluded): for the SE first-occasion rule, beside dim_player's bonuses."""
    files = _outbox_files(paths, None, as_of, skip_today={s.id for s in specs})
    if not files:
        return frozenset()
    df = _read_outbox(files, "DISTINCT player_id, offer_template")
    return frozenset(df.loc[df["offer_template"].isin(BONUS_TEMPLATES), "player_id"].astype(str))


def campaign_spent_cents(paths: Paths, campaign_id: str, as_of: dt.date) -> int:
    """Offer cost this campaign already dispatched on as-of dates before ``as_of`` (its total budget's use)."""
    files = [f for f in sorted(paths.outbox.glob(f"*/{campaign_id}/*.jsonl")) if f.stem < as_of.isoformat()]
    if not files:
        return 0
    df = _read_outbox(files, "coalesce(sum(offer_cost_eur_cents), 0) AS spent")
    return int(df["spent"].iloc[0])
