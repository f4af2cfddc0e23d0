"""Deliveries: one row per message to one player on one channel, with its status history.

A delivery is created ``queued`` (with the basis it was allowed on) in the same transaction as the
answer to the request that asked for it (:func:`create_delivery`, with an idempotency key), and
moves through the statuses below; every change is a row of ``delivery_events`` (the history
``GET /v1/deliveries/{id}`` shows). The sending itself (claiming due rows, attempts, retries,
dead letters) is :mod:`crm.store.queue`.

Statuses (upper case in the API, as the integration contract has them):

* ``queued`` - waiting to be sent (``next_attempt_at``: not before);
* ``sending`` - claimed by a worker until ``lease_until``;
* ``sent`` - the channel's provider accepted it (SMTP 250, HTTP 2xx, written to the outbox);
* ``delivered`` / ``opened`` / ``clicked`` - feedback from the provider or the casino;
* ``bounced`` (hard: the address is suppressed), ``complained``, ``unsubscribed`` - feedback;
* ``refused`` - not sent and never will be (no address, a suppressed address, consent withdrawn
  before the send, a provider refusal that is not the address's fault);
* ``dead_letter`` - temporary failures on every allowed attempt.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from crm.store.db import key_chunks
from crm.store.schema import REASON_CHARS, deliveries, delivery_events, idempotency_keys

QUEUED, SENDING, SENT, DELIVERED, OPENED, CLICKED = "queued", "sending", "sent", "delivered", "opened", "clicked"
BOUNCED, COMPLAINED, UNSUBSCRIBED, REFUSED, DEAD_LETTER = "bounced", "complained", "unsubscribed", "refused", \
    "dead_letter"
STATUSES = (QUEUED, SENDING, SENT, DELIVERED, OPENED, CLICKED, BOUNCED, COMPLAINED, UNSUBSCRIBED, REFUSED,
            DEAD_LETTER)
PENDING = (QUEUED, SENDING)  # not yet handed to the channel: a stop can still hold them back


def now() -> dt.datetime:
    """Naive UTC, as the store keeps times."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def new_delivery_id() -> str:
    """``d_`` + 24 url-safe random characters: unguessable, and safe in headers and file names."""
    return "d_" + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")


def request_hash(body: dict) -> str:
    """sha256 of the canonical JSON of a request body (the idempotency check compares it)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredAnswer:
    status_code: int
    body: dict
    same_request: bool


def stored_answers(conn: sa.Connection, asked: Sequence[tuple[int, str, str]]
                   ) -> dict[tuple[int, str], StoredAnswer]:
    """The answers given before to many ``(key_id, idem_key, req_hash)`` (API key, its
    ``X-Idempotency-Key``, the request's hash), in one statement: those answered before, by
    ``(key_id, idem_key)``, with whether the request is the same."""
    hashes = {(k, i): h for k, i, h in asked}
    c = idempotency_keys.c
    out: dict[tuple[int, str], StoredAnswer] = {}
    for chunk in key_chunks(hashes):
        for row in conn.execute(sa.select(c.key_id, c.idempotency_key, c.status_code, c.response, c.request_sha256)
                                .where(sa.tuple_(c.key_id, c.idempotency_key).in_(chunk))):
            key = (row.key_id, row.idempotency_key)
            out[key] = StoredAnswer(row.status_code, json.loads(row.response), row.request_sha256 == hashes[key])
    return out


def remember_answers(conn: sa.Connection, answers: Sequence[tuple[int, str, str, int, dict]]) -> None:
    """Keep the answers to many ``(key_id, idem_key, req_hash, status_code, body)`` in one
    statement (in the caller's transaction: with the deliveries they created)."""
    if answers:
        at = now()
        conn.execute(idempotency_keys.insert(), [
            {"key_id": k, "idempotency_key": i, "request_sha256": h, "status_code": code,
             "response": json.dumps(body, separators=(",", ":")), "created_at": at}
            for k, i, h, code, body in answers])


def add_event(conn: sa.Connection, delivery_id: str, status: str, detail: str = "", at: dt.datetime | None = None,
              set_status: bool = True) -> None:
    """Record ``status`` in the delivery's history (and as its status, unless ``set_status`` is False)."""
    at = at or now()
    conn.execute(delivery_events.insert().values(delivery_id=delivery_id, status=status, at=at,
                                                 detail=detail[:REASON_CHARS]))
    if set_status:
        conn.execute(deliveries.update().where(deliveries.c.delivery_id == delivery_id)
                     .values(status=status, updated_at=now()))


def create_delivery(conn: sa.Connection, **fields) -> str:
    """A new ``queued`` delivery (in the caller's transaction); ``fields`` as :func:`new_delivery`;
    returns its id."""
    new = new_delivery(**fields)
    insert_deliveries(conn, [new])
    return new.delivery_id


@dataclass(frozen=True)
class NewDelivery:
    """A ``queued`` delivery not yet written: its ``deliveries`` row and the first entry of its history."""
    row: dict
    event: dict

    @property
    def delivery_id(self) -> str:
        return self.row["delivery_id"]


def new_delivery(*, brand_id: str, player_id: str, channel: str, template_id: str, params: dict,
                 transactional: bool, campaign_id: str, dedup_key: str, product: str, basis: dict, source: str,
                 locale: str | None = None, frequency_policy_id: str | None = None, is_bonus: bool = False,
                 cost_cents: int = 0, offer_ends_at: dt.datetime | None = None, delivery_id: str | None = None,
                 not_before: dt.datetime | None = None, at: dt.datetime | None = None) -> NewDelivery:
    """A new ``queued`` delivery, created at ``at`` (default: now, naive UTC; the instant its rules
    were checked for), for :func:`insert_deliveries`."""
    delivery_id = delivery_id or new_delivery_id()
    t = at or now()
    row = dict(
        delivery_id=delivery_id, brand_id=brand_id, player_id=player_id, channel=channel, template_id=template_id,
        locale=locale, params=json.dumps(params, separators=(",", ":"), ensure_ascii=False, default=str),
        transactional=transactional, campaign_id=campaign_id, frequency_policy_id=frequency_policy_id,
        dedup_key=dedup_key, product=product, is_bonus=is_bonus, cost_cents=cost_cents, offer_ends_at=offer_ends_at,
        basis=json.dumps(basis, separators=(",", ":"), default=str), status=QUEUED, attempts=0,
        next_attempt_at=not_before or t, lease_until=None, provider_id=None, source=source, created_at=t,
        updated_at=t)
    return NewDelivery(row, {"delivery_id": delivery_id, "status": QUEUED, "at": t,
                             "detail": f"queued by {source}"[:REASON_CHARS]})


def insert_deliveries(conn: sa.Connection, new: Sequence[NewDelivery]) -> None:
    """Write ``new`` deliveries and their first history entries (in the caller's transaction): two
    statements however many (executemany)."""
    if new:
        conn.execute(deliveries.insert(), [n.row for n in new])
        conn.execute(delivery_events.insert(), [n.event for n in new])


def get_delivery(engine_or_conn, delivery_id: str) -> dict | None:
    """The delivery and its status history (oldest first), or None."""
    def read(conn: sa.Connection) -> dict | None:
        row = conn.execute(sa.select(deliveries).where(deliveries.c.delivery_id == delivery_id)).first()
        if row is None:
            return None
        history = conn.execute(sa.select(delivery_events.c.status, delivery_events.c.at, delivery_events.c.detail)
                               .where(delivery_events.c.delivery_id == delivery_id)
                               .order_by(delivery_events.c.id)).all()
        out = dict(row._mapping)
        out["params"], out["basis"] = json.loads(out["params"]), json.loads(out["basis"])
        out["history"] = [{"status": h.status, "at": h.at, "detail": h.detail} for h in history]
        return out
    if isinstance(engine_or_conn, sa.Engine):
        with engine_or_conn.connect() as conn:
            return read(conn)
    return read(engine_or_conn)


_MESSAGE = (deliveries.c.player_id, deliveries.c.channel, deliveries.c.campaign_id, deliveries.c.dedup_key,
            deliveries.c.created_at, deliveries.c.is_bonus, deliveries.c.cost_cents, deliveries.c.offer_ends_at)


def api_messages(engine: sa.Engine, since: dt.datetime, until: dt.datetime) -> list[dict]:
    """Messages the API queued or sent in [since, until) (not refused, not dead letters), every
    brand: what lists count beside their own outbox (caps, cooldown, dedup)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*_MESSAGE).where(
            deliveries.c.source == "api", deliveries.c.created_at >= since, deliveries.c.created_at < until,
            deliveries.c.status.not_in((REFUSED, DEAD_LETTER)))).all()
    return [dict(r._mapping) for r in rows]


def player_messages(conn: sa.Connection, brand_id: str, player_ids: list[str], since: dt.datetime) -> list[dict]:
    """Deliveries to these players created since ``since`` that count as messages (everything but
    ``refused`` and ``dead_letter``: a queued one is planned, a sent one sent), for caps and dedup."""
    if not player_ids:
        return []
    rows = conn.execute(sa.select(*_MESSAGE).where(
        deliveries.c.brand_id == brand_id, deliveries.c.player_id.in_(player_ids), deliveries.c.created_at >= since,
        deliveries.c.status.not_in((REFUSED, DEAD_LETTER)))).all()
    return [dict(r._mapping) for r in rows]
