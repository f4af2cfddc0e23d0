"""Message history per player: what frequency caps, cooldown, dedup and offer rules count.

Sent messages are facts; planning takes facts first. Four sources, one frame
(:data:`MESSAGE_COLUMNS`):

* ``delivered``: ``crm.delivery`` events in the warehouse (``stg_casino__crm_messages``),
  strictly before the as-of date (the warehouse's point-in-time cut);
* ``outbox``: our own dispatched messages of earlier as-of dates
  (``outbox/<channel>/<campaign>/<as_of>.jsonl``, holdout never there). A message in both
  (our dispatch came back as a delivery event) counts once;
* ``outbox_today`` (:data:`SENT_TODAY`): what was already dispatched on the as-of date being
  built, by every campaign (a re-run of a dispatched date). For campaign C, C's own messages
  of the day on its channel are the very messages C's list re-plans (dispatch's idempotency
  key, (campaign, as-of, player, channel), keeps each single), so they leave C's history
  (:func:`split_own_sends`); everyone else's stay, and C's own count toward its budget;
* ``api``: messages the service queued or sent for ``POST /v1/messaging/send``
  (:func:`api_messages`, from the store when there is one): a list counts them as the API's
  send check counts the lists' outbox;
* ``planned``: the treated rows of the lists of higher-priority campaigns built for the
  same day (:func:`planned_messages`), which will be sent at their campaigns' send time;
  a planned row already in the day's outbox is the same message and counts once, as sent
  (:func:`not_yet_sent`).

A dispatched message's time is its ``sent_at`` (when dispatch released it) if that falls
between the message's own as-of date and the as-of date being built (both included), else
its ``planned_send_at``, else its campaign's ``send_time_utc`` on its as-of date (an unknown
campaign: 23:59:59, the latest possible, so the cooldown fails closed). The bound keeps a
message on the day it belongs to when its release instant says nothing about that day: a
backfill or a re-run dispatched by the wall clock months later, a simulated home's history. Outbox files of
campaigns no longer defined still count. Without an outbox of the day, the lists of a day
are what they were before any dispatch.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from crm.campaigns.experiments import HOLDOUT
from crm.campaigns.spec import BONUS_TEMPLATES, CampaignSpec
from crm.config import Paths
from crm.contract import CHANNELS
from crm.warehouse import connect, table_exists

MESSAGE_COLUMNS = ("player_id", "channel", "campaign_id", "dedup_key", "sent_at", "is_bonus_offer", "cost_cents",
                   "offer_ends_at", "source")
API = "api"  # the source of messages the service sent for POST /v1/messaging/send
# The source of offers POST /v1/offers/generate issued: a bonus in the ledger (one a day, cost per
# player per day, a running offer, dedup), not a message (no cap, cooldown or quiet hours counts it).
OFFER_ISSUED = "offer"
SENT_TODAY = "outbox_today"  # the source of messages already dispatched on the as-of date being built
_LATEST = dt.time(23, 59, 59)
_DEFAULT_EXPIRY_DAYS = 30  # an offer of an unknown campaign: assume it runs long (fail closed)


def empty_history() -> pd.DataFrame:
    """No messages, with the history's columns and types (a copy: callers may add to it)."""
    return _empty_history().copy()


@functools.cache
def _empty_history() -> pd.DataFrame:  # building the typed frame costs ~3 ms; a send checks many
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
    """The messages a list will send: its non-holdout rows, at the campaign's send time, each with
    its row's offer (template and expiry: an offer chosen per player differs by row; a row without
    a readable template is a bonus, without a readable expiry the campaign's longest)."""
    sent = rows[rows["variant"] != HOLDOUT]
    n = len(sent)
    send_at = spec.schedule.send_at(as_of)
    template = sent["offer_template"] if "offer_template" in sent else pd.Series(spec.offer.template, index=sent.index)
    is_bonus = template.astype(object).ne("none").to_numpy(dtype=bool) | (spec.offer.is_bonus and "offer_template"
                                                                           not in sent)
    expiry = (pd.to_numeric(sent["offer_expiry_days"], errors="coerce") if "offer_expiry_days" in sent
              else pd.Series(np.nan, index=sent.index)).fillna(spec.offer.max_expiry_days).to_numpy()
    ends = (pd.Timestamp(send_at) + pd.to_timedelta(expiry, unit="D")).where(is_bonus)
    return _frame(sent["player_id"].astype(str).to_numpy(), [spec.channel] * n, [spec.id] * n,
                  [spec.dedup_key] * n, [send_at] * n, is_bonus,
                  pd.to_numeric(sent["offer_cost_eur_cents"]).fillna(0).astype("int64").to_numpy(),
                  ends, ["planned"] * n)


def delivered_messages(paths: Paths, since: dt.datetime, as_of: dt.date,
                       specs: Mapping[str, CampaignSpec]) -> pd.DataFrame:
    """``crm.delivery`` events in [since, as_of 00:00) from the warehouse (none if it has no staging
    yet), with their ``brand_id`` beside the history columns."""
    if not paths.warehouse.exists():
        return empty_history().assign(brand_id=pd.Series(dtype=object))
    with connect(paths) as con:
        if not table_exists(con, "stg_casino__crm_messages"):
            return empty_history().assign(brand_id=pd.Series(dtype=object))
        df = con.execute("""
            SELECT brand_id, player_id, channel, campaign_id, occurred_at AS sent_at
            FROM stg_casino__crm_messages
            WHERE event_type = 'crm.delivery' AND occurred_at >= ? AND occurred_at < ?
            ORDER BY player_id, occurred_at, campaign_id
        """, [since, dt.datetime.combine(as_of, dt.time())]).df()
    n = len(df)
    return _frame(df["player_id"], df["channel"], df["campaign_id"], _keys(df["campaign_id"], specs),
                  df["sent_at"], [False] * n, [0] * n, [None] * n, ["delivered"] * n).assign(
                      brand_id=df["brand_id"].astype(object).to_numpy())


def reported_messages(paths: Paths, since: dt.date, as_of: dt.date, specs: Mapping[str, CampaignSpec],
                      ours: pd.DataFrame | None = None) -> pd.DataFrame:
    """Messages the casino reported as sent (``crm.delivery`` in [since, as_of 00:00)) that are not
    our own dispatches (``ours``, default the outbox of those days) reported back: those count
    once, as ours. With ``brand_id``. The lists' history and the service's copy
    (:func:`crm.campaigns.online.sync_online_profiles`) both take them from here."""
    delivered = delivered_messages(paths, dt.datetime.combine(since, dt.time()), as_of, specs)
    if ours is None:
        ours = outbox_messages(paths, since, as_of, specs)
    if len(delivered) and len(ours):  # our dispatch reported back as a delivery: count it once
        key = ["player_id", "campaign_id", "channel"]
        sent = ours.assign(_day=ours["sent_at"].dt.normalize())[[*key, "_day"]].drop_duplicates()
        d = delivered.assign(_day=delivered["sent_at"].dt.normalize()).merge(sent, on=[*key, "_day"], how="left",
                                                                               indicator=True)
        delivered = delivered[(d["_merge"] == "left_only").to_numpy()]
    return delivered


def outbox_file(paths: Paths, channel: str, campaign_id: str, as_of: dt.date) -> Path:
    """Where the dispatch of ``campaign_id``'s list of ``as_of`` on ``channel`` writes its messages."""
    return paths.outbox / channel / campaign_id / f"{as_of.isoformat()}.jsonl"


def _outbox_files(paths: Paths, first: dt.date | None, last: dt.date) -> list[Path]:
    """Outbox files of as-of dates in [first, last] (first None: from the beginning)."""
    files = []
    for f in sorted(paths.outbox.glob("*/*/*.jsonl")):
        try:
            day = dt.date.fromisoformat(f.stem)
        except ValueError:
            continue
        if day <= last and (first is None or day >= first):
            files.append(f)
    return files


def _read_outbox(files: list[Path], columns: str) -> pd.DataFrame:
    con = duckdb.connect()
    try:
        return con.execute(f"""
            SELECT {columns} FROM read_json(?, format = 'newline_delimited', union_by_name = true,
                columns = {{'player_id': 'VARCHAR', 'channel': 'VARCHAR', 'campaign_id': 'VARCHAR',
                            'as_of_date': 'VARCHAR', 'offer_template': 'VARCHAR',
                            'offer_cost_eur_cents': 'BIGINT', 'sent_at': 'VARCHAR',
                            'planned_send_at': 'VARCHAR'}})
        """, [[str(f) for f in files]]).df()
    finally:
        con.close()


def _utc(values: pd.Series) -> pd.Series:
    """ISO-8601 instants as naive UTC (missing or unreadable: NaT)."""
    return pd.to_datetime(values.astype(object), utc=True, errors="coerce", format="ISO8601").dt.tz_localize(None)


def outbox_messages(paths: Paths, since: dt.date, as_of: dt.date, specs: Mapping[str, CampaignSpec]) -> pd.DataFrame:
    """Our dispatched messages of as-of dates [since, as_of]; those of ``as_of`` itself as :data:`SENT_TODAY`."""
    files = _outbox_files(paths, since, as_of)
    if not files:
        return empty_history()
    df = _read_outbox(files, "player_id, channel, campaign_id, as_of_date, offer_template, offer_cost_eur_cents, "
                             "sent_at, planned_send_at")
    day = pd.to_datetime(df["as_of_date"])
    send = df["campaign_id"].map(lambda c: specs[c].schedule.send_time if c in specs else _LATEST)
    scheduled = day + pd.to_timedelta([t.hour * 3600 + t.minute * 60 + t.second for t in send], unit="s")
    released = _utc(df["sent_at"])
    on_time = (released.dt.normalize() >= day) & (released.dt.normalize() <= pd.Timestamp(as_of))
    sent_at = released.where(on_time).fillna(_utc(df["planned_send_at"])).fillna(scheduled)
    is_bonus = df["offer_template"].isin(BONUS_TEMPLATES).to_numpy()
    expiry = df["campaign_id"].map(lambda c: specs[c].offer.max_expiry_days if c in specs else _DEFAULT_EXPIRY_DAYS)
    ends = (sent_at + pd.to_timedelta(expiry.astype("int64"), unit="D")).where(is_bonus)
    source = np.where(df["as_of_date"] == as_of.isoformat(), SENT_TODAY, "outbox")
    return _frame(df["player_id"], df["channel"], df["campaign_id"], _keys(df["campaign_id"], specs), sent_at,
                  is_bonus, df["offer_cost_eur_cents"].fillna(0).astype("int64"), ends, source)


def split_own_sends(history: pd.DataFrame, campaign_id: str, channel: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the history a campaign's list is built on, the campaign's own messages already sent that day).

    The first leaves out the campaign's :data:`SENT_TODAY` messages on its channel: its list
    re-plans them and dispatch never sends one twice. Its sends of the day on another
    channel (its file changed channel) are other messages and stay. The second holds every
    message the campaign sent that day, on any channel (what its budget already paid).
    """
    if not len(history):
        return history, history
    own = ((history["source"] == SENT_TODAY) & (history["campaign_id"] == campaign_id)).to_numpy()
    if not own.any():
        return history, history.iloc[:0]
    same = own & (history["channel"] == channel).to_numpy()
    return history[~same].reset_index(drop=True), history[own].reset_index(drop=True)


def not_yet_sent(planned: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """The planned messages that are not already in the day's outbox (:data:`SENT_TODAY` rows of
    ``history``): the same campaign, player and channel is the same message, counted once, as sent."""
    if not len(planned) or not len(history):
        return planned
    sent = history[history["source"] == SENT_TODAY]
    if not len(sent):
        return planned
    key = ["campaign_id", "player_id", "channel"]
    done = pd.MultiIndex.from_frame(sent[key].astype(str))
    keep = ~pd.MultiIndex.from_frame(planned[key].astype(str)).isin(done)
    return planned[keep].reset_index(drop=True)


def lookback_days(specs: Iterable[CampaignSpec], policy_dedup_days: int) -> int:
    """How far back the history must reach for every window a rule looks at."""
    days = [7, policy_dedup_days, _DEFAULT_EXPIRY_DAYS]
    for s in specs:
        days += [s.frequency.dedup_days or 0, s.offer.max_expiry_days,
                 int(np.ceil((s.frequency.cooldown_hours or 0) / 24))]
    return max(days) + 1


def store_messages(rows: list[dict]) -> pd.DataFrame:
    """Store deliveries (:func:`crm.store.deliveries.api_messages` / ``player_messages``) as history rows."""
    if not rows:
        return empty_history()
    df = pd.DataFrame(rows)
    return _frame(df["player_id"], df["channel"], df["campaign_id"], df["dedup_key"], pd.to_datetime(df["created_at"]),
                  df["is_bonus"].astype(bool), df["cost_cents"].astype("int64"), pd.to_datetime(df["offer_ends_at"]),
                  [API] * len(df))


def concat_history(first: pd.DataFrame, *more: pd.DataFrame) -> pd.DataFrame:
    """History frames together (the empty ones left out; ``first`` when all are empty)."""
    parts = [p for p in (first, *more) if len(p)]
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else (parts[0] if parts else first)


def offer_campaign_id(intent: str) -> str:
    """The one-player campaign (and dedup key) an offer of ``intent`` is checked and counted as."""
    return f"offer_{intent}"


def offer_messages(rows: list[dict]) -> pd.DataFrame:
    """Issued offers (:func:`crm.store.offers.ledger_rows`) as history rows of source :data:`OFFER_ISSUED`."""
    if not rows:
        return empty_history()
    df = pd.DataFrame(rows)
    ids = [offer_campaign_id(i) for i in df["intent"]]
    return _frame(df["player_id"], df["channel"], ids, ids, pd.to_datetime(df["issued_at"]), [True] * len(df),
                  df["cost_cents"].astype("int64"), pd.to_datetime(df["expires_at"]), [OFFER_ISSUED] * len(df))


def reported_rows(rows: list[dict]) -> pd.DataFrame:
    """The store's copy of reported messages (:func:`crm.store.profile.reported_of`) as history
    rows, as :func:`delivered_messages` gives them to the lists."""
    if not rows:
        return empty_history()
    df = pd.DataFrame(rows)
    n = len(df)
    return _frame(df["player_id"], df["channel"], df["campaign_id"], df["dedup_key"], pd.to_datetime(df["sent_at"]),
                  [False] * n, [0] * n, [None] * n, ["delivered"] * n)


def api_messages(paths: Paths, since: dt.datetime, until: dt.datetime) -> pd.DataFrame:
    """API sends and issued offers in [since, until) from the service store, if there is one (none: no rows)."""
    if not os.environ.get("CRM_DATABASE_URL") and not paths.service_db.exists():
        return empty_history()
    import sqlalchemy as sa

    from crm.store.db import make_engine
    from crm.store.deliveries import api_messages as stored
    from crm.store.offers import all_ledger_rows

    engine = make_engine(paths)
    parts = []
    try:
        for read in (lambda: store_messages(stored(engine, since, until)),
                     lambda: offer_messages(all_ledger_rows(engine, since, until))):
            try:
                parts.append(read())
            except sa.exc.OperationalError:  # a store from before the table (not migrated yet): none
                continue
    finally:
        engine.dispose()
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else (parts[0] if parts else empty_history())


def load_history(paths: Paths, as_of: dt.date, specs: Iterable[CampaignSpec], *, days: int) -> pd.DataFrame:
    """Delivered and dispatched messages of the last ``days`` days before the send of ``as_of``."""
    by_id = {s.id: s for s in specs}
    first = as_of - dt.timedelta(days=days)
    ours = outbox_messages(paths, first, as_of, by_id)
    delivered = reported_messages(paths, first, as_of, by_id, ours).drop(columns="brand_id")
    api = api_messages(paths, dt.datetime.combine(first, dt.time()), dt.datetime.combine(as_of, dt.time())
                       + dt.timedelta(days=1))
    parts = [p for p in (delivered, ours, api) if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else empty_history()


def players_offered_a_bonus(paths: Paths, as_of: dt.date) -> frozenset[str]:
    """Players we sent a bonus offer to on as-of dates before ``as_of`` (outbox): for the SE
    first-occasion rule, beside dim_player's bonuses. The bonus offers of ``as_of`` itself are in
    the day's history (:data:`SENT_TODAY`), where a campaign's own re-planned messages are not."""
    files = _outbox_files(paths, None, as_of - dt.timedelta(days=1))
    if not files:
        return frozenset()
    df = _read_outbox(files, "DISTINCT player_id, offer_template")
    return frozenset(df.loc[df["offer_template"].isin(BONUS_TEMPLATES), "player_id"].astype(str))


def recent_holdouts(paths: Paths, specs: Iterable[CampaignSpec], as_of: dt.date,
                    window_days: Mapping[str, int]) -> dict[str, frozenset[str]]:
    """Per campaign, the players its dispatched lists held out within its dedup window before
    ``as_of`` (``lists/<campaign>/<date>/list.parquet``, rows of variant ``holdout``, of the dates
    with an outbox file): the as-of dates 1 to ``window_days[id]`` - 1 days before, as the dedup
    rule counts a message sent at the campaign's send time (a gap of exactly the window is no
    duplicate). The dedup window holds for them as for the contacted: the variant hash would hold
    them out again each day while the treated are deduplicated, and the holdout would grow day
    after day. A list never dispatched (awaiting approval, its gate failed) contacted nobody, so
    its holdout was held out of nothing: its treated come back the next day, and so may they (else
    the next day's list would hold its treated again but almost no holdout)."""
    out: dict[str, frozenset[str]] = {}
    for spec in specs:
        days = int(window_days.get(spec.id, 0))
        if days <= 0:
            continue
        held: set[str] = set()
        for d in range(1, days):
            date = as_of - dt.timedelta(days=d)
            f = paths.lists / spec.id / date.isoformat() / "list.parquet"
            dispatched = any(outbox_file(paths, ch, spec.id, date).exists() for ch in CHANNELS)
            if dispatched and f.exists():  # one file at a time: an empty list's columns have no type to unify
                rows = pd.read_parquet(f, columns=["player_id", "variant"])
                held.update(rows.loc[rows["variant"].astype(str) == HOLDOUT, "player_id"].astype(str))
        if held:
            out[spec.id] = frozenset(held)
    return out
