"""The online profile: what the service checks a send against, without opening the warehouse.

* **The copy** (``profiles``): the warehouse's ``dim_player`` row per brand and player, replaced
  whole by :func:`sync_profiles` after each refresh (a Dagster asset after ``dim_player``, or
  ``crm profiles sync``). DuckDB allows one writer and Dagster is it: the service never opens
  the warehouse file.
* **The stops since** (``profile_stops``): a player's own stop events (:data:`crm.contract.STOP_EVENTS`:
  a withdrawal of consent, an unsubscribe or complaint, a self-exclusion) received by the API
  or the feedback endpoint are recorded in the same transaction that accepts them, and apply at
  once over the copy (:func:`effective_profile`): the next send is refused. A stop is *retired*
  when a synced copy shows the warehouse has seen it (a withdrawal: its event id in
  ``int_consents_versioned``; a self-exclusion: a start at or after it); until then it holds,
  whatever the copy says. Only stops apply early: a grant waits for the warehouse (fail closed).
* **Messages the casino reported** (``reported_messages``): ``crm.delivery`` events in the
  warehouse that are not our own dispatches reported back, over the caps' look-back window,
  replaced with the copy: the send check counts them in caps, cooldown and dedup as the lists
  do (:func:`crm.campaigns.history.reported_messages` is the one definition of both).
* **Contacts** (``contacts``): which players have an email / phone, as the address's pseudonym
  (the address is in the PII vault, :mod:`crm.store.vault`, read at the channel edge only), from
  ``player.registered`` / ``player.updated``; **address suppressions**: a hard bounce suppresses the
  player's address on that channel until a new address arrives.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa

from crm.config import Paths
from crm.contract import (
    ALL_CHANNELS,
    CHANNELS,
    CONSENT_CHANNELS,
    PROBABILITY_SCORE_FIELDS,
    SELF_EXCLUSION_START,
    WITHDRAWALS,
    consent_column,
    consent_withdrawn_column,
)
from crm.store.db import insert_many, key_chunks
from crm.store.schema import (
    ID_CHARS,
    address_suppressions,
    contacts,
    profile_stops,
    profiles,
    reported_messages,
    synced_files,
)
from crm.store.vault import CHANNEL_FIELDS, Identifier, Vault, is_pseudonym
from ml.models import UPLIFT_VALUE_MODEL

LOSS_COLUMN = "net_loss_eur_7d"  # crm.campaigns.offers.LOSS_COLUMN (the store sits below campaigns)

WITHDRAWAL, SELF_EXCLUSION, COOLING_OFF, LIMIT_HIT = "withdrawal", "self_exclusion", "cooling_off", "limit_hit"
LIMIT_HIT_EVENT = "rg.limit.hit"
# contract payload key -> the channel its address serves
CONTACT_FIELDS = {field: channel for channel, field in CHANNEL_FIELDS.items()}
_CHUNK = 500


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def parse_time(text: str | None) -> dt.datetime | None:
    """A contract timestamp (ISO 8601, 'Z' or an offset) as naive UTC; None if unreadable."""
    if not text:
        return None
    try:
        t = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


# --------------------------------------------------------------------------- at accept time

def stop_of(envelope: dict) -> dict | None:
    """The stop an accepted (normalized) envelope is, as a ``profile_stops`` row without times; None if none."""
    kind = envelope.get("event_type")
    payload = envelope.get("payload") or {}
    if kind in WITHDRAWALS:
        channel = payload.get("channel") or ALL_CHANNELS
        if channel not in CONSENT_CHANNELS:
            channel = ALL_CHANNELS  # landing's reading of a channel it does not know: every channel
        return {"kind": WITHDRAWAL, "channel": channel, "product": payload.get("product") or None}
    if kind == SELF_EXCLUSION_START:
        scope = payload.get("scope")
        return {"kind": COOLING_OFF if scope == "cooling_off" else SELF_EXCLUSION, "channel": None, "product": None}
    if kind == LIMIT_HIT_EVENT:  # any kind of limit: no bonus offer until the warehouse counts it
        return {"kind": LIMIT_HIT, "channel": None, "product": None}
    return None


def record_accepted(conn: sa.Connection, envelopes: Iterable[dict], received_at: dt.datetime) -> int:
    """In the transaction that stores accepted events: their stops, and the contact details of
    ``player.registered`` / ``player.updated`` (a new address lifts that channel's suppression).
    Returns the number of stops recorded."""
    stops = 0
    for env in envelopes:
        stop = stop_of(env)
        occurred = parse_time(env.get("occurred_at")) or received_at
        if stop is not None:
            conn.execute(profile_stops.insert().values(
                brand_id=env["brand_id"], player_id=env["player_id"], event_id=env["event_id"],
                event_type=env["event_type"], occurred_at=occurred, received_at=received_at, retired_at=None, **stop))
            stops += 1
        if env.get("event_type") in ("player.registered", "player.updated"):
            payload = env.get("payload") or {}
            for field, channel in CONTACT_FIELDS.items():
                # the API split the address into the vault before storing (crm.service.events): a
                # clear value here is never stored
                if is_pseudonym(payload.get(field)):
                    upsert_contact(conn, env["brand_id"], env["player_id"], channel, payload[field], occurred)
    return stops


def upsert_contact(conn: sa.Connection, brand_id: str, player_id: str, channel: str, pseudonym: str,
                   at: dt.datetime) -> bool:
    """Keep the newest address per player and channel (its pseudonym, by the event's time); a changed
    address lifts the channel's bounce suppression. Returns True when the address was stored."""
    if not is_pseudonym(pseudonym):
        raise ValueError("contacts hold an address's pseudonym (crm.store.vault), never the address")
    key = (contacts.c.brand_id == brand_id) & (contacts.c.player_id == player_id) & (contacts.c.channel == channel)
    old = conn.execute(sa.select(contacts.c.address_pseudonym, contacts.c.updated_at).where(key)).first()
    if old is not None and old.updated_at > at:
        return False
    if old is None:
        conn.execute(contacts.insert().values(brand_id=brand_id, player_id=player_id, channel=channel,
                                              address_pseudonym=pseudonym, updated_at=at))
    else:
        conn.execute(contacts.update().where(key).values(address_pseudonym=pseudonym, updated_at=at))
    if old is None or old.address_pseudonym != pseudonym:
        conn.execute(address_suppressions.delete().where(_suppression_of(brand_id, player_id, channel)))
    return True


def store_contacts(conn: sa.Connection, vault: Vault, rows: Iterable[tuple[str, str, str, str, dt.datetime]]) -> int:
    """Addresses given directly rather than in an event ((brand, player, channel, address, time) rows,
    e.g. an operator's import): each into the vault, its pseudonym into ``contacts``. Returns how many
    were stored (a newer one kept is not)."""
    rows = list(rows)
    vault.put(Identifier(b, p, CHANNEL_FIELDS[ch], a.strip(), at) for b, p, ch, a, at in rows)
    return sum(upsert_contact(conn, b, p, ch, vault.pseudonym(CHANNEL_FIELDS[ch], a.strip()), at)
               for b, p, ch, a, at in rows)


def suppress_address(conn: sa.Connection, brand_id: str, player_id: str, channel: str, reason: str,
                     delivery_id: str | None = None) -> None:
    """A hard bounce: no message to the player's current address on ``channel`` until it changes."""
    key = _suppression_of(brand_id, player_id, channel)
    if conn.execute(sa.select(address_suppressions.c.channel).where(key)).first() is None:
        conn.execute(address_suppressions.insert().values(brand_id=brand_id, player_id=player_id, channel=channel,
                                                          reason=reason[:1000], delivery_id=delivery_id, at=_now()))


def _suppression_of(brand_id: str, player_id: str, channel: str) -> sa.ColumnElement[bool]:
    s = address_suppressions.c
    return (s.brand_id == brand_id) & (s.player_id == player_id) & (s.channel == channel)


def suppression_reason(brand_id: str, player_id: str, channel: str) -> sa.ScalarSelect:
    """The reason the player's address on ``channel`` is suppressed (NULL when it is not), as a
    scalar subquery: one column of a statement that checks several things in one round trip."""
    return (sa.select(address_suppressions.c.reason).where(_suppression_of(brand_id, player_id, channel))
            .limit(1).scalar_subquery())


def addresses_suppressed(conn: sa.Connection, addresses: Sequence[tuple[str, str, str]]
                         ) -> dict[tuple[str, str, str], str]:
    """Of many ``(brand_id, player_id, channel)``, the reasons of those whose address is
    suppressed (a hard bounce), in one statement."""
    s = address_suppressions.c
    out: dict[tuple[str, str, str], str] = {}
    for chunk in key_chunks(addresses):
        for r in conn.execute(sa.select(s.brand_id, s.player_id, s.channel, s.reason)
                              .where(sa.tuple_(s.brand_id, s.player_id, s.channel).in_(chunk))):
            out[(r.brand_id, r.player_id, r.channel)] = r.reason
    return out


# --------------------------------------------------------------------------- reading

def live_stops_of(conn: sa.Connection, players: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[dict]]:
    """The stops of many ``(brand_id, player_id)`` not yet seen by the warehouse copy, oldest
    first, in one statement (players with none left out)."""
    s = profile_stops.c
    out: dict[tuple[str, str], list[dict]] = {}
    for chunk in key_chunks(players):
        rows = conn.execute(sa.select(profile_stops).where(
            sa.tuple_(s.brand_id, s.player_id).in_(chunk), s.retired_at.is_(None))
            .order_by(s.brand_id, s.player_id, s.occurred_at, s.id)).all()
        for r in rows:
            out.setdefault((r.brand_id, r.player_id), []).append(dict(r._mapping))
    return out


def apply_stops(profile: dict, stops: list[dict]) -> dict:
    """``profile`` (a dim_player row) with ``stops`` applied: a withdrawal turns the channel's consent
    off (every channel for ``*``; one product for a product withdrawal), a self-exclusion or a
    cooling-off turns the RG state on. Source and time of the change are set as landing would."""
    p = dict(profile)
    for s in stops:
        at = s["occurred_at"]
        if s["kind"] == WITHDRAWAL:
            channels = CONSENT_CHANNELS if s["channel"] == ALL_CHANNELS else (s["channel"],)
            for ch in channels:
                if s["product"] and ch in CHANNELS:
                    col = consent_withdrawn_column(ch)
                    have = [x for x in str(p.get(col) or "").split(",") if x]
                    p[col] = ",".join(sorted({*have, s["product"]}))
                    continue
                col = consent_column(ch)
                p[col] = False
                p[f"{col}_source"] = f"{s['event_type']} (not yet in the warehouse)"
                p[f"{col}_changed_at"] = at
        elif s["kind"] == COOLING_OFF:
            p["cooling_off_now"] = True
        elif s["kind"] == LIMIT_HIT:  # counted as the warehouse will count it (rg_limit_hits_30d)
            hits = p.get("rg_limit_hits_30d")
            p["rg_limit_hits_30d"] = (hits if isinstance(hits, int) and not isinstance(hits, bool) else 0) + 1
        else:
            p["self_excluded_now"] = True
            p["ever_self_excluded"] = True
            p["returned_after_exclusion"] = False
            p["self_exclusion_started_at"] = at
    return p


def stored_profiles(conn: sa.Connection, players: Sequence[tuple[str, str]],
                    for_update: bool = False) -> dict[tuple[str, str], tuple[dict, dt.date]]:
    """The copies of many ``(brand_id, player_id)`` (those it holds) with their as-of dates.
    ``for_update`` (PostgreSQL): the rows stay locked until the transaction ends, taken in one
    order (two processes locking overlapping players cannot deadlock); SQLite ignores it (one
    writer at a time)."""
    c = profiles.c
    out: dict[tuple[str, str], tuple[dict, dt.date]] = {}
    for chunk in key_chunks(sorted(players)):
        query = (sa.select(c.brand_id, c.player_id, c.profile, c.as_of_date)
                 .where(sa.tuple_(c.brand_id, c.player_id).in_(chunk)).order_by(c.brand_id, c.player_id))
        if for_update and conn.dialect.name != "sqlite":
            query = query.with_for_update()
        for r in conn.execute(query):
            out[(r.brand_id, r.player_id)] = (load_profile(r.profile), r.as_of_date)
    return out


def load_profile(text: str) -> dict:
    """A stored profile from its JSON. orjson parses it 3x faster than ``json.loads`` (the daily
    journey scan parses every profile); it refuses what ``json.dumps`` may write besides standard
    JSON (NaN, Infinity, integers past 64 bits, lone surrogates), which ``json.loads`` then reads."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def effective_profile(conn: sa.Connection, brand_id: str, player_id: str) -> tuple[dict | None, list[dict]]:
    """(the player's copy with their live stops applied, the stops); (None, stops) for a player
    the copy does not hold (never synced, or of another brand)."""
    return effective_profiles(conn, [(brand_id, player_id)])[(brand_id, player_id)]


def effective_profiles(conn: sa.Connection, players: Sequence[tuple[str, str]], for_update: bool = False
                       ) -> dict[tuple[str, str], tuple[dict | None, list[dict]]]:
    """:func:`effective_profile` of many ``(brand_id, player_id)`` in a few statements (the sends
    checked together); ``for_update``: as :func:`stored_profiles`. A self-exclusion or cooling-off
    received for another account of a player's cluster (the same person) sets the player's
    ``linked_self_excluded`` at once, as the warehouse will (:func:`crm.warehouse.abuse_columns`)."""
    found = stored_profiles(conn, players, for_update)
    stops = live_stops_of(conn, players)
    linked = _linked_stops(conn, {k: v[0].get("cluster_id") for k, v in found.items()})
    out: dict[tuple[str, str], tuple[dict | None, list[dict]]] = {}
    for key in players:
        mine = stops.get(key, [])
        p = apply_stops(found[key][0], mine) if key in found else None
        if p is not None and key in linked:
            p = p | {"linked_self_excluded": True, "linked_excluded_player": linked[key]}
        out[key] = (p, mine)
    return out


def _linked_stops(conn: sa.Connection, clusters: dict[tuple[str, str], object]) -> dict[tuple[str, str], str]:
    """Per player whose cluster holds another account with a live self-exclusion or cooling-off
    received since the copy: that account's id."""
    wanted = {(b, str(c)) for (b, _), c in clusters.items() if isinstance(c, str) and c}
    if not wanted:
        return {}
    c, s = profiles.c, profile_stops.c
    members: dict[tuple[str, str], list[str]] = {}
    for chunk in key_chunks(sorted(wanted)):
        for r in conn.execute(sa.select(c.brand_id, c.cluster_id, c.player_id).where(
                sa.tuple_(c.brand_id, c.cluster_id).in_(chunk))):
            members.setdefault((r.brand_id, r.cluster_id), []).append(r.player_id)
    accounts = sorted({(b, p) for (b, _), ps in members.items() for p in ps})
    stopped: set[tuple[str, str]] = set()
    for chunk in key_chunks(accounts):
        stopped |= {(r.brand_id, r.player_id) for r in conn.execute(sa.select(s.brand_id, s.player_id).where(
            sa.tuple_(s.brand_id, s.player_id).in_(chunk), s.retired_at.is_(None),
            s.kind.in_([SELF_EXCLUSION, COOLING_OFF])))}
    out = {}
    for (b, p), cl in clusters.items():
        if not isinstance(cl, str):
            continue
        others = sorted(q for q in members.get((b, cl), []) if q != p and (b, q) in stopped)
        if others:
            out[(b, p)] = others[0]
    return out


# --------------------------------------------------------------------------- the sync

def _json_value(v):
    if v is None:
        return None
    if isinstance(v, pd.Timestamp | dt.datetime):
        return None if pd.isna(v) else pd.Timestamp(v).isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item"):  # numpy scalars
        return _json_value(v.item())
    if v is pd.NA or v is pd.NaT:
        return None
    return v


def _json_column(s: pd.Series) -> list:
    """:func:`_json_value` of every value of ``s``, column at a time: plain numbers, booleans and
    timestamps without the per-value type checks (a million-player sync writes ~60 million values)."""
    arrow_strings = isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow"
    masked = (isinstance(s.dtype, pd.api.extensions.ExtensionDtype) and s.dtype.kind in "iub"
              and hasattr(s.array, "_mask"))
    if arrow_strings or masked:  # Arrow strings, nullable ints / booleans: Arrow's own Python values
        import pyarrow as pa

        return pa.array(s.array).to_pylist()
    kind = s.dtype.kind if isinstance(s.dtype, np.dtype) else "O"  # other pandas types: value by value
    if kind in "iub":  # numpy ints and booleans (no missing value): Python's own
        return s.to_numpy().tolist()
    if kind == "f":
        return [None if v != v else v for v in s.to_numpy().tolist()]  # NaN != NaN
    if kind == "M" and s.dtype == np.dtype("datetime64[us]"):
        return _iso_us(s.to_numpy())
    if kind == "M":  # other units or a zone
        return [None if pd.isna(v) else v.isoformat() for v in s]
    return [_json_value(v) for v in s]


def _iso_us(values: np.ndarray) -> list:
    """``Timestamp.isoformat()`` of naive datetime64[us] values (None for NaT), vectorized: the
    fraction only where there are microseconds, as isoformat does."""
    missing = np.isnat(values)
    years = values.astype("datetime64[Y]").astype(np.int64) + 1970
    if ((years < 1) | (years > 9999))[~missing].any():  # numpy writes such years otherwise
        return [None if m else pd.Timestamp(v).isoformat() for v, m in zip(values, missing, strict=True)]
    text = np.datetime_as_string(values, unit="us")
    whole = values.astype("datetime64[s]") == values
    text = np.where(whole, text.astype("U19"), text).astype(object)
    text[missing] = None
    return text.tolist()


def _infinite(s: pd.Series, values: list) -> np.ndarray | None:
    """Per row: whether the column's JSON value (``values``) is an infinite float; None when none is
    or the column cannot hold one."""
    if isinstance(s.dtype, np.dtype) and s.dtype.kind == "f":
        flags = np.isinf(s.to_numpy())
    elif s.dtype == object:
        flags = np.fromiter((type(v) is float and math.isinf(v) for v in values), dtype=bool, count=len(values))
    else:
        return None
    return flags if flags.any() else None


def _dumps(row: dict) -> str:
    """``json.dumps(row, default=str)``'s JSON value, 8x faster by orjson; ``json`` for what orjson
    refuses (integers past 64 bits, lone surrogates). The text differs (compact, UTF-8 rather than
    escapes); every reader parses it (:func:`load_profile`)."""
    try:
        return orjson.dumps(row, default=str).decode()
    except TypeError:
        return json.dumps(row, default=str)


def profile_json(df: pd.DataFrame) -> list[str]:
    """Each row of ``df`` as the JSON object the online profile stores (column order kept)."""
    cols = list(df.columns)
    values = [_json_column(df[c]) for c in cols]
    # orjson writes an infinite float as null, json as Infinity (which load_profile reads back):
    # rows holding one keep json's value
    infinite = np.zeros(len(df), dtype=bool)
    for c, vals in zip(cols, values, strict=True):
        if (flags := _infinite(df[c], vals)) is not None:
            infinite |= flags
    dumps = [_dumps, lambda row: json.dumps(row, default=str)]
    return [dumps[inf](dict(zip(cols, row, strict=True)))
            for row, inf in zip(zip(*values, strict=True), infinite.tolist(), strict=True)]


def _retire(conn: sa.Connection, seen_consent_events: set[str], latest_exclusion: dict[tuple[str, str], dt.datetime],
            at: dt.datetime, as_of: dt.date | None = None) -> int:
    rows = conn.execute(sa.select(profile_stops.c.id, profile_stops.c.kind, profile_stops.c.event_id,
                                  profile_stops.c.brand_id, profile_stops.c.player_id, profile_stops.c.occurred_at)
                        .where(profile_stops.c.retired_at.is_(None))).all()
    done = []
    for r in rows:
        if r.kind == WITHDRAWAL:
            seen = r.event_id in seen_consent_events
        elif r.kind == LIMIT_HIT:  # the copy's 30-day count covers the days before its as-of date
            seen = as_of is not None and r.occurred_at.date() < as_of
        else:
            started = latest_exclusion.get((r.brand_id, r.player_id))
            seen = started is not None and started >= r.occurred_at
        if seen:
            done.append(r.id)
    for i in range(0, len(done), _CHUNK):
        conn.execute(profile_stops.update().where(profile_stops.c.id.in_(done[i:i + _CHUNK])).values(retired_at=at))
    return len(done)


# The JSON of a profile column of these DuckDB types, written by DuckDB as profile_json() writes the
# column pandas reads (fetch_df): DATE and TIMESTAMP as Timestamp.isoformat() of the timestamp (the
# fraction only where there are microseconds), NaN as null (infinity as json's Infinity), FLOAT as
# the double Python reads; integers, booleans and text as they are. {} stands for the column.
_SQL_JSON = {
    **dict.fromkeys(("VARCHAR", "BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT",
                     "UINTEGER", "UBIGINT"), "{}"),
    "DOUBLE": "CASE WHEN isnan({}) THEN NULL ELSE {} END",
    "FLOAT": "CASE WHEN isnan({}) THEN NULL ELSE CAST({} AS DOUBLE) END",
    "DATE": "strftime(CAST({} AS TIMESTAMP), '%Y-%m-%dT%H:%M:%S')",
    "TIMESTAMP": "strftime({}, '%Y-%m-%dT%H:%M:%S') || CASE WHEN microsecond({}) % 1000000 <> 0 "
                 "THEN strftime({}, '.%f') ELSE '' END",
}


def _profiles_in_sql(con, query: str, params: list) -> list[tuple[str, str, str]] | None:
    """(brand_id, player_id, profile JSON) of each row of ``query``, the JSON made by DuckDB: the same
    values as :func:`profile_json` of the frame :func:`crm.warehouse.fetch_df` reads, at a tenth of the
    time (a Python dict and dump per player was 22 s of the million-player copy). None when a
    column's type is not one of :data:`_SQL_JSON`, or a date lies outside the years 1000-9999: the
    caller then takes the frame's way."""
    from crm.sql import ident, literal

    described = con.execute(f"DESCRIBE {query}", params).fetchall()
    types = {name: str(t).upper() for name, t, *_ in described}
    if any(t not in _SQL_JSON for t in types.values()) or len(types) != len(described):
        return None
    dated = [n for n, t in types.items() if t in ("DATE", "TIMESTAMP")]
    if dated:
        bounds = ", ".join(f"min({ident(n)}), max({ident(n)})" for n in dated)
        for v in con.execute(f"SELECT {bounds} FROM ({query})", params).fetchone():
            if v is not None and not 1000 <= v.year <= 9999:
                return None
    fields = ", ".join(f"{literal(n)}: {_SQL_JSON[t].replace('{}', ident(n))}" for n, t in types.items())
    return con.execute(f"SELECT brand_id, player_id, CAST(to_json({{{fields}}}) AS VARCHAR) FROM ({query})",
                       params).fetchall()


def _warehouse_state(paths: Paths, stop_event_ids: list[str]
                     ) -> tuple[pd.DataFrame, list[tuple[str, str, str]], set[str]]:
    """The profile columns the sync reads itself (``df``: brand, player, as-of date, self-exclusion
    start), each profile's (brand, player, JSON) and the stop events the warehouse has seen."""
    from crm.sql import ident
    from crm.warehouse import SCORES_TABLE, abuse_columns, connect, fetch_df, table_exists

    with connect(paths) as con:
        params: list = []
        extra: list[str] = []  # columns beside dim_player's, and the joins that bring them
        joins: list[str] = []
        if table_exists(con, SCORES_TABLE):  # each model's latest probability score, as <model>_score,
            # and the predicted value of a bonus (uplift_value_score, EUR cents: offer generation reads it)
            models = [f.removesuffix("_score") for f in PROBABILITY_SCORE_FIELDS] + [UPLIFT_VALUE_MODEL]
            picks = ", ".join(f"arg_max(score, as_of_date) FILTER (WHERE model = ?) AS {ident(m + '_score')}"
                              for m in models)
            extra += ["s." + ident(m + "_score") for m in models]
            joins.append(f"LEFT JOIN (SELECT player_id, {picks} FROM {ident(SCORES_TABLE)} GROUP BY player_id) s "
                         "USING (player_id)")
            params = models
        if table_exists(con, "player_features") and LOSS_COLUMN in {
                r[0] for r in con.execute("DESCRIBE player_features").fetchall()}:
            # what a cashback offer is costed on (crm.campaigns.offers.cost_cents; none: its cap)
            extra.append("f." + ident(LOSS_COLUMN))
            joins.append("LEFT JOIN player_features f USING (player_id)")
        # an account linked to the player self-excluded, the player's risk flag (the rule table reads both)
        linked_cols, linked_join = abuse_columns(con, "d")
        query = (f"SELECT d.*{''.join(', ' + c for c in extra)}{linked_cols} FROM dim_player d {' '.join(joins)} "
                 f"{linked_join} ORDER BY brand_id, player_id")
        rows = _profiles_in_sql(con, query, params)
        if rows is None:
            df = fetch_df(con, query, params)
            rows = list(zip(df["brand_id"].astype(str), df["player_id"].astype(str), profile_json(df), strict=True))
        else:
            wanted = [c for c in ("brand_id", "player_id", "as_of_date", "self_exclusion_started_at", "cluster_id")
                      if c in {r[0] for r in con.execute(f"DESCRIBE {query}", params).fetchall()}]
            df = fetch_df(con, f"SELECT {', '.join(ident(c) for c in wanted)} FROM ({query})", params)
        _copy_features(con, paths.feature_copy)
        seen: set[str] = set()
        if stop_event_ids and table_exists(con, "int_consents_versioned"):
            ids = pd.DataFrame({"event_id": stop_event_ids})
            con.register("_stop_ids", ids)
            seen = {r[0] for r in con.execute(
                "SELECT DISTINCT c.event_id FROM int_consents_versioned c JOIN _stop_ids USING (event_id)").fetchall()}
    return df, rows, seen


def _copy_features(con, target: Path) -> None:
    """Write the model features of ``player_features`` that ``dim_player`` lacks (brand, player and
    as-of date beside them) to ``target``'s temporary sibling, Parquet: :func:`sync_profiles` puts it
    in place with the copy. No ``player_features``: the temporary file is not written (and the
    sync removes an older snapshot: features of another date must not stand for today's)."""
    from crm.sql import ident, literal
    from crm.warehouse import table_exists
    from ml.features import FEATURE_NAMES

    tmp = _features_tmp(target)
    tmp.unlink(missing_ok=True)
    if not table_exists(con, "player_features"):
        return
    have = {r[0] for r in con.execute("DESCRIBE player_features").fetchall()}
    profile_cols = {r[0] for r in con.execute("DESCRIBE dim_player").fetchall()}
    if not {"brand_id", "player_id", "as_of_date"} <= have:
        return
    cols = [c for c in FEATURE_NAMES if c in have and c not in profile_cols]
    target.parent.mkdir(parents=True, exist_ok=True)
    keys = ("brand_id", "player_id", "as_of_date")
    con.execute(f"COPY (SELECT {', '.join(ident(c) for c in (*keys, *cols))} FROM player_features "
                "ORDER BY brand_id, player_id) "
                f"TO {literal(str(tmp))} (FORMAT parquet, COMPRESSION zstd)")


def _features_tmp(target: Path) -> Path:
    return target.with_name(target.name + ".tmp")


def _publish_features(target: Path) -> None:
    """The snapshot :func:`_copy_features` wrote replaces the previous one in one rename, or, when
    the warehouse had no features, the previous one is removed."""
    tmp = _features_tmp(target)
    if tmp.exists():
        os.replace(tmp, target)
    else:
        target.unlink(missing_ok=True)


CONTACTS_SYNC = "contacts"
CLUSTER_CHARS = 2 * ID_CHARS + 1  # profiles.cluster_id (a longer id names no cluster here: none of ours is)


def _landed_contacts(paths: Paths, done: set[str]) -> tuple[list[tuple], list[str]]:
    """(brand, player, channel, address pseudonym, time) of the newest email / phone per player in
    the landed batch files not in ``done``, and those files' names. A file landed before the vault
    holds the address in clear: it is moved into the vault here and its pseudonym returned."""
    import duckdb

    files = sorted(f for f in paths.events.glob("*.parquet") if f.name[:128] not in done)
    if not files:
        return [], []
    names = [str(f) for f in files]
    with duckdb.connect() as con:
        rows = con.execute("""
            WITH c AS (
                SELECT brand_id, player_id, occurred_at, 'email' AS channel,
                       trim(json_extract_string(payload, '$.email')) AS address
                FROM read_parquet(?) WHERE event_type IN ('player.registered', 'player.updated')
                UNION ALL
                SELECT brand_id, player_id, occurred_at, 'sms',
                       trim(json_extract_string(payload, '$.phone'))
                FROM read_parquet(?) WHERE event_type IN ('player.registered', 'player.updated')
            )
            SELECT brand_id, player_id, channel, arg_max(address, occurred_at), max(occurred_at)
            FROM c WHERE address IS NOT NULL AND address <> ''
            GROUP BY ALL
        """, [names, names]).fetchall()
    legacy = [r for r in rows if not is_pseudonym(r[3])]
    if legacy:
        vault = Vault(paths)
        try:
            vault.put(Identifier(b, p, CHANNEL_FIELDS[ch], a, pd.Timestamp(t).to_pydatetime().replace(tzinfo=None))
                      for b, p, ch, a, t in legacy)
            rows = [r if is_pseudonym(r[3]) else (*r[:3], vault.pseudonym(CHANNEL_FIELDS[r[2]], r[3]), r[4])
                    for r in rows]
        finally:
            vault.dispose()
    return rows, [f.name for f in files]


def _known_contacts(conn: sa.Connection, landed: list[tuple]) -> dict[tuple[str, str, str], tuple[str, dt.datetime]]:
    """The stored (address pseudonym, updated_at) of the landed rows' players: all contacts for a big
    batch (the first sync), else only those players' (a day's registrations and updates)."""
    q = sa.select(contacts.c.brand_id, contacts.c.player_id, contacts.c.channel, contacts.c.address_pseudonym,
                  contacts.c.updated_at)
    if len(landed) > 50_000:
        rows = conn.execute(q).all()
    else:
        key = sa.tuple_(contacts.c.brand_id, contacts.c.player_id)
        rows = [r for chunk in key_chunks(sorted({(b, p) for b, p, _, _, _ in landed}))
                for r in conn.execute(q.where(key.in_(chunk)))]
    return {(r.brand_id, r.player_id, r.channel): (r.address_pseudonym, r.updated_at) for r in rows}


def _sync_contacts(conn: sa.Connection, landed: list[tuple]) -> int:
    """The landed addresses into ``contacts``: new ones in bulk, a newer different one per row
    (through :func:`upsert_contact`, which lifts a bounce suppression). Returns how many changed."""
    known = _known_contacts(conn, landed)
    fresh, changed = [], 0
    for b, p, ch, a, t in landed:
        at = pd.Timestamp(t).to_pydatetime().replace(tzinfo=None)
        old = known.get((b, p, ch))
        if old is None:
            fresh.append({"brand_id": b, "player_id": p, "channel": ch, "address_pseudonym": a, "updated_at": at})
            known[(b, p, ch)] = (a, at)
        elif old[0] != a and at >= old[1]:
            changed += upsert_contact(conn, b, p, ch, a, at)
    for i in range(0, len(fresh), 5000):
        conn.execute(contacts.insert(), fresh[i:i + 5000])
    return len(fresh) + changed


def sync_profiles(paths: Paths, engine: sa.Engine,
                  reported: Callable[[dt.date, dt.datetime], list[dict]]) -> dict:
    """Replace the copy with the warehouse's ``dim_player`` (read-only), retire the stops it has
    seen, take the newest contact addresses from the landed events, and replace the reported
    messages with ``reported(as_of, now)`` (the rows of ``reported_messages`` for a copy of that
    as-of date: :func:`crm.campaigns.online.sync_online_profiles` passes the lists' definition;
    the store does not read campaigns). One transaction: a send checked meanwhile sees the old
    copy or the new one, never half of each. The model features ``dim_player`` lacks are written
    beside the copy (:attr:`crm.config.Paths.feature_copy`, put in place after the transaction:
    the dry run uses a snapshot only when its date is the copy's)."""
    with engine.connect() as conn:
        pending = [r.event_id for r in conn.execute(sa.select(profile_stops.c.event_id).where(
            profile_stops.c.retired_at.is_(None), profile_stops.c.kind == WITHDRAWAL))]
    df, profile_rows, seen = _warehouse_state(paths, pending)
    latest_exclusion = {}
    if "self_exclusion_started_at" in df:
        starts = df.dropna(subset=["self_exclusion_started_at"])
        latest_exclusion = {(b, p): pd.Timestamp(t).to_pydatetime().replace(tzinfo=None) for b, p, t in zip(
            starts["brand_id"], starts["player_id"], starts["self_exclusion_started_at"], strict=True)}
    as_of = pd.Timestamp(df["as_of_date"].iloc[0]).date() if len(df) else dt.date.today()
    at = _now()
    cluster_of = {}  # (brand, player) -> their cluster of linked accounts (live stops reach the others)
    if "cluster_id" in df:
        linked = df.dropna(subset=["cluster_id"])
        cluster_of = {(str(b), str(p)): str(c) for b, p, c in zip(
            linked["brand_id"], linked["player_id"], linked["cluster_id"], strict=True) if len(str(c)) <= CLUSTER_CHARS}
    rows = [{"brand_id": str(b), "player_id": str(p), "profile": j, "as_of_date": as_of, "synced_at": at,
             "cluster_id": cluster_of.get((str(b), str(p)))} for b, p, j in profile_rows]
    with engine.connect() as conn:  # the landed files whose addresses are stored already
        done = set(conn.execute(sa.select(synced_files.c.file_name).where(
            synced_files.c.purpose == CONTACTS_SYNC)).scalars())
    landed, files = _landed_contacts(paths, done)
    reported_rows = reported(as_of, at)
    with engine.begin() as conn:
        conn.execute(profiles.delete())
        insert_many(conn, profiles, rows)
        conn.execute(reported_messages.delete())
        insert_many(conn, reported_messages, reported_rows)
        retired = _retire(conn, seen, latest_exclusion, at, as_of if len(df) else None)
        stored = _sync_contacts(conn, landed)
        for i in range(0, len(files), 5000):
            conn.execute(synced_files.insert(), [{"purpose": CONTACTS_SYNC, "file_name": f[:128], "synced_at": at}
                                                 for f in files[i:i + 5000]])
    _publish_features(paths.feature_copy)
    with engine.connect() as conn:
        live = conn.execute(sa.select(sa.func.count()).select_from(profile_stops)
                            .where(profile_stops.c.retired_at.is_(None))).scalar_one()
    return {"profiles": len(rows), "as_of_date": as_of.isoformat(), "stops_retired": retired, "stops_live": live,
            "contacts_updated": stored, "reported_messages": len(reported_rows)}


def reported_of(conn: sa.Connection, brand_id: str, player_ids: list[str], since: dt.datetime) -> list[dict]:
    """The reported messages of these players sent since ``since`` (for caps and dedup)."""
    if not player_ids:
        return []
    r = reported_messages.c
    rows = conn.execute(sa.select(r.player_id, r.channel, r.campaign_id, r.dedup_key, r.sent_at).where(
        r.brand_id == brand_id, r.player_id.in_(player_ids), r.sent_at >= since)).all()
    return [dict(row._mapping) for row in rows]
