"""Offers issued by ``POST /v1/offers/generate`` and each intent's spend per day.

An issued offer is a bonus in the contact ledger: the rule table counts it for one bonus a day,
the cost per player per day, a running offer and dedup (not as a message: it sends nothing;
:data:`crm.campaigns.history.OFFER_ISSUED`), in the service's checks and in the batch lists
(:func:`crm.campaigns.history.api_messages`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from crm.store.schema import offer_spend, offers

_LEDGER = (offers.c.player_id, offers.c.channel, offers.c.intent, offers.c.issued_at, offers.c.cost_cents,
           offers.c.expires_at)


@dataclass(frozen=True)
class IssuedOffer:
    offer_id: str
    brand_id: str
    player_id: str
    intent: str
    offer_name: str
    template: str
    params: dict
    channel: str
    product: str
    cost_cents: int
    predicted_value_cents: int | None
    issued_at: dt.datetime
    expires_at: dt.datetime
    key_id: int


def record(conn: sa.Connection, offer: IssuedOffer) -> None:
    """Store ``offer`` and add its cost to its intent's spend of the day (in the caller's
    transaction, after :func:`spent_today` locked that row)."""
    row = {k: getattr(offer, k) for k in IssuedOffer.__dataclass_fields__}
    row["params"] = json.dumps(offer.params, sort_keys=True, separators=(",", ":"))
    conn.execute(offers.insert().values(**row))
    key = _spend_key(offer.brand_id, offer.intent, offer.issued_at.date())
    conn.execute(offer_spend.update().where(*key).values(spent_cents=offer_spend.c.spent_cents + offer.cost_cents))


def _spend_key(brand_id: str, intent: str, day: dt.date) -> tuple:
    return offer_spend.c.brand_id == brand_id, offer_spend.c.intent == intent, offer_spend.c.day == day


def spent_today(conn: sa.Connection, brand_id: str, intent: str, day: dt.date) -> int:
    """What ``intent``'s offers of ``brand_id`` cost on ``day`` (EUR cents), its row locked until the
    transaction ends (PostgreSQL; SQLite has one writer anyway), created at 0 when missing."""
    key = _spend_key(brand_id, intent, day)
    found = conn.execute(sa.select(offer_spend.c.spent_cents).where(*key).with_for_update()).scalar()
    if found is not None:
        return int(found)
    try:
        with conn.begin_nested():
            conn.execute(offer_spend.insert().values(brand_id=brand_id, intent=intent, day=day, spent_cents=0))
    except sa.exc.IntegrityError:  # another process created it meanwhile: wait for its lock
        pass
    return int(conn.execute(sa.select(offer_spend.c.spent_cents).where(*key).with_for_update()).scalar_one())


def spent(conn: sa.Connection, brand_id: str, intent: str, day: dt.date) -> int:
    """What ``intent``'s offers of ``brand_id`` cost on ``day`` (EUR cents), read without a lock."""
    return int(conn.execute(sa.select(offer_spend.c.spent_cents).where(*_spend_key(brand_id, intent, day))).scalar()
               or 0)


def ledger_rows(conn: sa.Connection, brand_id: str, player_ids: Sequence[str], since: dt.datetime) -> list[dict]:
    """The players' offers issued since ``since``, as contact-ledger rows
    (:func:`crm.campaigns.history.offer_messages` reads them)."""
    if not player_ids:
        return []
    rows = conn.execute(sa.select(*_LEDGER).where(
        offers.c.brand_id == brand_id, offers.c.player_id.in_(list(player_ids)), offers.c.issued_at >= since)).all()
    return [dict(r._mapping) for r in rows]


def all_ledger_rows(engine: sa.Engine, since: dt.datetime, until: dt.datetime) -> list[dict]:
    """Every brand's offers issued in [since, until): what the lists count beside their own outbox."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*_LEDGER).where(offers.c.issued_at >= since, offers.c.issued_at < until)).all()
    return [dict(r._mapping) for r in rows]


def get(conn: sa.Connection, offer_id: str) -> dict | None:
    row = conn.execute(sa.select(offers).where(offers.c.offer_id == offer_id)).first()
    if row is None:
        return None
    out = dict(row._mapping)
    out["params"] = json.loads(out["params"])
    return out
