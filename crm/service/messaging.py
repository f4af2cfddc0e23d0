"""``POST /v1/messaging/send``, ``POST /v1/messaging/feedback``, ``GET /v1/deliveries/{id}``.

A send is checked at once with the batch's own rules (:mod:`crm.campaigns.online`) over the
player's online profile (:mod:`crm.store.profile`); an allowed one is queued as a delivery (the
worker sends it, :mod:`crm.store.queue`), a refused one names the rule and queues nothing. The
answer is kept under the request's ``X-Idempotency-Key`` in the same transaction as the delivery:
a retried request gets the same answer, never a second message.

Feedback moves the delivery's status and lands as the matching ``crm.*`` contract event (the
warehouse and readouts see it); an unsubscribe or complaint withdraws the channel's consent at
once (a stop in the online profile), a hard bounce suppresses the address.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from crm.campaigns.online import (
    UNKNOWN_PLAYER,
    FrequencyPolicyError,
    OutboxHistory,
    SendAsk,
    SendConfig,
    check_and_queue,
    send_spec,
)
from crm.campaigns.policy import CalendarError
from crm.channels import TemplateStore
from crm.config import campaigns_dir
from crm.contract import CHANNELS
from crm.ingest.landing import validate_records
from crm.service.auth import current_key, require_scope
from crm.service.batcher import Batcher
from crm.store import deliveries as dl
from crm.store.events import store_in
from crm.store.keys import ApiKey
from crm.store.profile import suppress_address

router = APIRouter()
log = logging.getLogger("crm.service")
IDEMPOTENCY_KEY = r"^[\x21-\x7e]{1,200}$"  # printable ASCII, no spaces
PLAYER_ID = r"^[^\x00-\x1f\x7f]{1,128}$"  # no control characters (PostgreSQL text cannot even hold a NUL)
DELIVERY_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # crm.channels.base.DELIVERY_ID


class SendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Literal[CHANNELS]  # type: ignore[valid-type]
    player_id: Annotated[str, Field(pattern=PLAYER_ID)]
    template_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")]
    personalization: dict[Annotated[str, Field(max_length=64)], str | int | float | bool | None] = Field(
        default={}, max_length=50, description="the template's parameters (pseudonymous values only)")
    frequency_policy_id: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")] = "default"
    locale: Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,4}$")] | None = Field(
        default=None, description="BCP-47; default: the player's own locale")


class SendAccepted(BaseModel):
    delivery_id: str
    status: Literal["QUEUED"]


class SendRefused(BaseModel):
    status: Literal["REFUSED"]
    rule: str
    reason: str
    failed: list[str]


class SendUnprocessable(BaseModel):
    """A 422: either a refusal by a rule (``status`` REFUSED, ``rule``, ``reason``, ``failed``) or a
    request that cannot be checked (``detail``: the field and what is wrong with it)."""

    status: Literal["REFUSED"] | None = None
    rule: str | None = None
    reason: str | None = None
    failed: list[str] | None = None
    detail: str | list[dict] | None = None


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delivery_id: Annotated[str, Field(pattern=DELIVERY_ID)]
    event: Literal["delivered", "open", "click", "bounce", "complaint", "unsubscribe"]
    occurred_at: dt.datetime
    bounce_type: Literal["hard", "soft"] = Field(default="hard",
                                                 description="for a bounce: a soft one is only recorded")


class FeedbackAccepted(BaseModel):
    delivery_id: str
    event: str
    event_id: str
    status: str
    duplicate: bool


class HistoryEntry(BaseModel):
    status: str
    at: dt.datetime
    detail: str


class Delivery(BaseModel):
    delivery_id: str
    status: str
    channel: str
    player_id: str
    template_id: str
    campaign_id: str
    transactional: bool
    attempts: int
    created_at: dt.datetime
    basis: dict
    history: list[HistoryEntry]


def _upper(status: str) -> str:
    return status.upper()


@dataclass(frozen=True)
class _SendCall:
    key: ApiKey
    idem_key: str
    body: SendRequest
    req_hash: str


def _send_batch(app, calls: Sequence[_SendCall]) -> list:
    """The answers to sends waiting together (:class:`crm.service.batcher.Batcher`): one
    transaction, one rule-table call per kind of send. If the batch fails as a whole (a
    database error, a value the vectorised check cannot read), each send is tried alone, so
    one bad request fails only itself."""
    try:
        return _send_together(app, calls)
    except Exception:
        if len(calls) == 1:
            raise
        log.warning("a batch of %d sends failed together; trying each alone", len(calls), exc_info=True)
    out: list = []
    for call in calls:
        try:
            out.append(_send_together(app, [call])[0])
        except Exception as e:  # noqa: BLE001 - that request's own error
            out.append(e)
    return out


def _send_together(app, calls: Sequence[_SendCall]) -> list:
    """Per call: ``(status code, answer)``, or the HTTPException to raise for it."""
    engine: sa.Engine = app.state.engine
    try:
        policies, calendar = app.state.send_config.get()
    except (FrequencyPolicyError, CalendarError) as e:
        return [HTTPException(503, f"the campaign configuration cannot be read, so no send can be checked: {e}")
                ] * len(calls)
    at = app.state.clock().replace(microsecond=0)
    results: list = [None] * len(calls)
    with engine.begin() as conn:
        # what the batch needs is read in a few statements for all its sends (no two of them share a
        # player or an idempotency key: the batcher's conflicts), not a few per send
        answered = dl.stored_answers(conn, [(c.key.id, c.idem_key, c.req_hash) for c in calls])
        todo: list[tuple[int, _SendCall]] = []
        asks: list[SendAsk] = []
        for i, call in enumerate(calls):
            before = answered.get((call.key.id, call.idem_key))
            body = call.body
            policy = policies.get(body.frequency_policy_id)
            if before is not None:
                results[i] = _replay(before)
            elif policy is None:
                results[i] = HTTPException(422, f"frequency_policy_id {body.frequency_policy_id!r}: not one of "
                                                f"{', '.join(sorted(policies))} (campaigns/_frequency_policies.yaml)")
            else:
                todo.append((i, call))
                asks.append(SendAsk(
                    brand_id=call.key.brand_id, player_id=body.player_id, template_id=body.template_id,
                    spec=send_spec(body.frequency_policy_id, policy, body.channel, body.template_id,
                                   call.key.brand_id, at),
                    params=body.personalization, source="api", locale=body.locale,
                    frequency_policy_id=body.frequency_policy_id))
        answers: list[tuple[int, str, str, int, dict]] = []  # kept with the deliveries, in this transaction
        outcomes = check_and_queue(conn, asks, at, calendar, app.state.outbox_history, app.state.templates)
        for (i, call), out in zip(todo, outcomes, strict=True):
            if out.error is not None:
                results[i] = HTTPException(422, out.error)
            elif out.queued:
                results[i] = _answer(answers, call, 202, SendAccepted(delivery_id=out.delivery_id,
                                                                      status="QUEUED").model_dump())
            else:
                v = out.verdict
                results[i] = _answer(answers, call, 422, SendRefused(
                    status="REFUSED", rule=v.rule or UNKNOWN_PLAYER, reason=v.reason or "",
                    failed=list(v.failed)).model_dump())
        dl.remember_answers(conn, answers)
    return results


def _answer(answers: list, call: _SendCall, code: int, answer: dict) -> tuple[int, dict]:
    """The answer to ``call``, added to ``answers`` (kept with the deliveries, in the same transaction)."""
    answers.append((call.key.id, call.idem_key, call.req_hash, code, answer))
    return code, answer


def _replay(before: dl.StoredAnswer) -> tuple[int, dict] | HTTPException:
    if not before.same_request:
        return HTTPException(409, "this X-Idempotency-Key was used with a different request body; use a new key "
                                  "for a new message")
    return before.status_code, before.body


@router.post("/v1/messaging/send", status_code=202, response_model=SendAccepted,
             responses={401: {"description": "no API key, or an unknown or revoked one"},
                        403: {"description": "the key lacks the scope messaging:send"},
                        409: {"description": "the idempotency key was used with another body"},
                        422: {"model": SendUnprocessable,
                              "description": "refused by a rule (status REFUSED, nothing queued), or a bad request"},
                        503: {"description": "the campaign configuration cannot be read"}},
             summary="Send one message to one player, checked now with the batch's rules")
async def post_send(request: Request, body: SendRequest,
                    idempotency_key: Annotated[str, Header(alias="X-Idempotency-Key", pattern=IDEMPOTENCY_KEY,
                                                           description="required: the same key and body "
                                                                       "give the same answer")],
                    key: ApiKey = Depends(require_scope("messaging:send"))):
    call = _SendCall(key, idempotency_key, body, dl.request_hash(body.model_dump(mode="json")))
    future = request.app.state.sender.submit(call, conflicts=(("player", key.brand_id, body.player_id),
                                                              ("idempotency", key.id, idempotency_key)))
    code, answer = await asyncio.wrap_future(future)
    return JSONResponse(answer, status_code=code)


# --------------------------------------------------------------------------- feedback

FEEDBACK_EVENTS = {"delivered": ("crm.delivery", dl.DELIVERED), "open": ("crm.open", dl.OPENED),
                   "click": ("crm.click", dl.CLICKED), "bounce": ("crm.bounce", dl.BOUNCED),
                   "complaint": ("crm.complaint", dl.COMPLAINED), "unsubscribe": ("crm.unsubscribe", dl.UNSUBSCRIBED)}
# a later feedback does not move a delivery back: opened after clicked stays clicked
_RANK = {dl.QUEUED: 0, dl.SENDING: 1, dl.SENT: 2, dl.DELIVERED: 3, dl.OPENED: 4, dl.CLICKED: 5,
         dl.BOUNCED: 9, dl.UNSUBSCRIBED: 9, dl.COMPLAINED: 10, dl.REFUSED: 11, dl.DEAD_LETTER: 11}


def _iso(t: dt.datetime) -> str:
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC).replace(tzinfo=None)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _feedback(request: Request, key: ApiKey, body: FeedbackRequest) -> tuple[int, dict]:
    engine: sa.Engine = request.app.state.engine
    d = dl.get_delivery(engine, body.delivery_id)
    if d is None or d["brand_id"] != key.brand_id:
        raise HTTPException(404, f"no delivery {body.delivery_id[:128]!r} of brand {key.brand_id}")
    event_type, status = FEEDBACK_EVENTS[body.event]
    occurred = _iso(body.occurred_at)
    event_id = "fb_" + hashlib.sha256(f"{body.delivery_id}|{body.event}|{occurred}".encode()).hexdigest()[:40]
    envelope = {"event_id": event_id, "event_type": event_type, "player_id": d["player_id"],
                "brand_id": d["brand_id"], "occurred_at": occurred,
                "payload": {"delivery_id": d["delivery_id"], "campaign_id": d["campaign_id"], "channel": d["channel"]}}
    check = validate_records([json.dumps(envelope)], request.app.state.paths)[0]  # the contract's one definition
    if check.reason is not None:
        raise HTTPException(422, f"feedback cannot be recorded as {event_type}: {check.reason}")
    soft = body.event == "bounce" and body.bounce_type == "soft"
    with engine.begin() as conn:
        new = store_in(conn, key.id, [check.envelope], dl.now())[0]
        current = conn.execute(sa.select(dl.deliveries.c.status).where(
            dl.deliveries.c.delivery_id == body.delivery_id)).scalar_one()
        if new:
            moves = not soft and _RANK.get(status, 0) > _RANK.get(current, 0)
            detail = f"feedback {body.event}" + (" (soft: recorded only)" if soft else "") + f" at {occurred}"
            dl.add_event(conn, body.delivery_id, "soft_bounce" if soft else status, detail, set_status=moves)
            if moves:
                current = status
            if body.event == "bounce" and not soft:
                suppress_address(conn, d["brand_id"], d["player_id"], d["channel"],
                                 f"hard bounce reported for delivery {body.delivery_id} at {occurred}",
                                 body.delivery_id)
    return 202, FeedbackAccepted(delivery_id=body.delivery_id, event=body.event, event_id=event_id,
                                 status=_upper(current), duplicate=not new).model_dump()


@router.post("/v1/messaging/feedback", status_code=202, response_model=FeedbackAccepted,
             responses={401: {"description": "no API key, or an unknown or revoked one"},
                        403: {"description": "the key lacks the scope feedback:write"},
                        404: {"description": "no such delivery of the key's brand"},
                        422: {"description": "a bad request"}},
             summary="Report what became of a delivery (delivered, open, click, bounce, complaint, unsubscribe)")
async def post_feedback(request: Request, body: FeedbackRequest,
                        key: ApiKey = Depends(require_scope("feedback:write"))):
    code, answer = await run_in_threadpool(_feedback, request, key, body)
    return JSONResponse(answer, status_code=code)


@router.get("/v1/deliveries/{delivery_id}", response_model=Delivery,
            responses={401: {"description": "no API key, or an unknown or revoked one"},
                       404: {"description": "no such delivery of the key's brand"}},
            summary="A delivery's status and its history")
async def get_delivery(request: Request, delivery_id: Annotated[str, Path(pattern=DELIVERY_ID)],
                       key: ApiKey = Depends(current_key)):
    d = await run_in_threadpool(dl.get_delivery, request.app.state.engine, delivery_id[:128])
    if d is None or d["brand_id"] != key.brand_id:
        raise HTTPException(404, f"no delivery {delivery_id[:128]!r} of brand {key.brand_id}")
    return Delivery(delivery_id=d["delivery_id"], status=_upper(d["status"]), channel=d["channel"],
                    player_id=d["player_id"], template_id=d["template_id"], campaign_id=d["campaign_id"],
                    transactional=d["transactional"], attempts=d["attempts"], created_at=d["created_at"],
                    basis=d["basis"], history=[HistoryEntry(status=_upper(h["status"]), at=h["at"],
                                                            detail=h["detail"]) for h in d["history"]])


def setup(app, paths, clock=None) -> None:
    """What the routes need on ``app.state``: the template store, the outbox history cache and the
    clock sends are checked at (naive UTC; default: the wall clock)."""
    app.state.clock = clock or dl.now
    app.state.templates = TemplateStore()
    app.state.outbox_history = OutboxHistory(paths, campaigns_dir())
    app.state.send_config = SendConfig(campaigns_dir())
    # sends are checked in one thread, those waiting together in one call (crm.service.batcher)
    app.state.sender = Batcher(lambda calls: _send_batch(app, calls), name="send-checker")

