"""``POST /v1/offers/generate`` and ``GET /v1/offers/{offer_id}``.

One player's offer for an intent, decided now by :func:`crm.campaigns.offer_generation.decide`
(the catalogue ``campaigns/_offers.yaml``, the rule table of the lists over the online profile
and the player's messages and offers, the request's constraints, the intent's budget of the
day). An issued offer is recorded in the same transaction as the answer kept under the
request's ``X-Idempotency-Key`` (a retry gets the same offer, never a second one), as a row of
``offers`` (the contact ledger counts it as the player's bonus of the day) and as an
``offer.issued`` contract event (handed to landing like any accepted event: the warehouse's
``fct_offers`` joins the casino's ``bonus.*`` events to it by ``offer_id``).

No offer is a 200 too: ``status`` NO_OFFER, the reason, and each offer considered with why it was
not given.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from crm.campaigns.approvals import record_config_changes
from crm.campaigns.audit import AuditError
from crm.campaigns.history import (
    concat_history,
    empty_history,
    lookback_days,
    offer_messages,
    reported_rows,
    store_messages,
)
from crm.campaigns.offer_generation import (
    CATALOGUE_FILE,
    NAME,
    Catalogue,
    Decision,
    OfferCatalogueError,
    decide,
    load_catalogue,
    offer_spec,
)
from crm.campaigns.online import FrequencyPolicyError, OutboxHistory
from crm.campaigns.policy import POLICY, CalendarError
from crm.config import campaigns_dir
from crm.contract import CHANNELS
from crm.ingest.landing import validate_records
from crm.service.auth import current_key, require_scope
from crm.service.batcher import Batcher
from crm.service.messaging import IDEMPOTENCY_KEY, PLAYER_ID, _answer, _iso, _replay
from crm.store import deliveries as dl
from crm.store import offers as offer_store
from crm.store.events import store_in
from crm.store.keys import ApiKey
from crm.store.profile import effective_profiles, reported_of

router = APIRouter()
log = logging.getLogger("crm.service")
OFFER_ID = r"^of_[0-9a-f]{32}$"
MAX_MINOR = 10**12


class OfferContext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intent: Annotated[str, Field(pattern=NAME, description="an intent of campaigns/_offers.yaml")]
    channel: Literal[CHANNELS]  # type: ignore[valid-type]


class OfferConstraints(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_cost_minor: Annotated[int, Field(ge=0, le=MAX_MINOR)] | None = Field(
        default=None, description="the most the offer may cost, EUR cents (default: no limit but the rules')")
    rg_safe: bool = Field(default=True, description="no offer to a player with any responsible-gambling marker")


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    player_id: Annotated[str, Field(pattern=PLAYER_ID)]
    context: OfferContext
    constraints: OfferConstraints = OfferConstraints()


class Considered(BaseModel):
    offer: str
    template: str
    cost_minor: int
    predicted_value_minor: int | None
    refused: str | None
    reason: str | None
    failed: list[str]


class GenerateAnswer(BaseModel):
    """``status`` OFFER: the offer (``offer_id``, ``template``, ``params``, ``expires_at``, its cost
    and predicted value, EUR cents); NO_OFFER: ``reason`` (a rule name or one of the generator's)
    and ``detail``. Either way, ``considered``: each offer of the intent and why it lost."""

    status: Literal["OFFER", "NO_OFFER"]
    offer_id: str | None = None
    offer: str | None = None
    template: str | None = None
    params: dict | None = None
    cost_minor: int | None = None
    currency: str | None = None
    predicted_value_minor: int | None = None
    expires_at: dt.datetime | None = None
    reason: str | None = None
    detail: str | None = None
    markers: list[str] = []
    considered: list[Considered] = []


class CatalogueCache:
    """The offer catalogue of a campaign folder, read again only when the file changes."""

    def __init__(self, directory: str | FsPath, on_reload=None):
        self.path = FsPath(directory) / CATALOGUE_FILE
        self.on_reload = on_reload  # called with the folder when the file is read again (the audit log)
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._value: Catalogue | None = None

    def get(self) -> Catalogue:
        try:
            st = self.path.stat()
            key: tuple | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            key = None
        with self._lock:
            if key != self._key or self._value is None:
                self._value = load_catalogue(self.path.parent)
                self._key = key
                if self.on_reload is not None:
                    self.on_reload(self.path.parent)
            return self._value


@dataclass(frozen=True)
class _Call:
    key: ApiKey
    idem_key: str
    body: GenerateRequest
    req_hash: str


def _terms(decision: Decision) -> dict:
    o = decision.chosen.offer  # type: ignore[union-attr]
    return o.model_dump(exclude={"template"})


def decide_in_store(conn: sa.Connection, outbox: OutboxHistory, catalogue: Catalogue, calendar, *, brand: str,
                    player: str, intent_name: str, channel: str, at: dt.datetime, max_cost_cents: int | None = None,
                    rg_safe: bool = True, lock: bool = True) -> Decision:
    """The offer for one player of ``brand`` now, from the store: the online profile (its row
    locked with ``lock``), the one contact ledger (our lists' outbox, the store's deliveries,
    messages the casino reported, offers issued) and the intent's budget left today (its row
    locked with ``lock``), then :func:`crm.campaigns.offer_generation.decide`. Writes nothing
    (but the budget row when ``lock`` creates it). ``intent_name`` must be in ``catalogue``."""
    intent = catalogue.intents[intent_name]
    profile, _ = effective_profiles(conn, [(brand, player)], for_update=lock)[(brand, player)]
    history = empty_history()
    if profile is not None:
        specs = [offer_spec(intent_name, intent, catalogue.offers[n].offer, channel, brand, at) for n in intent.offers]
        since = at - dt.timedelta(days=lookback_days(specs, POLICY.dedup_days))
        history = concat_history(outbox.for_players([player], at.date()),
                          store_messages(dl.player_messages(conn, brand, [player], since)),
                          reported_rows(reported_of(conn, brand, [player], since)),
                          offer_messages(offer_store.ledger_rows(conn, brand, [player], since)))
    left = None
    if intent.budget_eur_per_day is not None:
        spent = (offer_store.spent_today(conn, brand, intent_name, at.date()) if lock
                 else offer_store.spent(conn, brand, intent_name, at.date()))
        left = max(round(intent.budget_eur_per_day * 100) - spent, 0)
    return decide(profile, intent_name, intent, catalogue, channel=channel, brand_id=brand, at=at, history=history,
                  calendar=calendar, max_cost_cents=max_cost_cents, rg_safe=rg_safe, budget_left_cents=left)


def _generate(app, call: _Call) -> tuple[int, dict] | HTTPException:
    engine: sa.Engine = app.state.engine
    body, key = call.body, call.key
    brand, player = key.brand_id, body.player_id
    try:
        catalogue = app.state.offer_catalogue.get()
        _, calendar = app.state.send_config.get()
    except (OfferCatalogueError, FrequencyPolicyError, CalendarError) as e:
        return HTTPException(503, f"the campaign configuration cannot be read, so no offer can be decided: {e}")
    intent = catalogue.intents.get(body.context.intent)
    at = app.state.clock().replace(microsecond=0)
    with engine.begin() as conn:
        before = dl.stored_answers(conn, [(key.id, call.idem_key, call.req_hash)]).get((key.id, call.idem_key))
        if before is not None:
            return _replay(before)
        if intent is None:
            return HTTPException(422, f"context.intent {body.context.intent!r}: not an intent of {CATALOGUE_FILE} "
                                      f"(known: {', '.join(sorted(catalogue.intents)) or 'none'})")
        decision = decide_in_store(conn, app.state.outbox_history, catalogue, calendar, brand=brand, player=player,
                                   intent_name=body.context.intent, channel=body.context.channel, at=at,
                                   max_cost_cents=body.constraints.max_cost_minor, rg_safe=body.constraints.rg_safe)
        considered = [Considered(**c.as_dict()) for c in decision.candidates]
        if decision.chosen is None:
            answer = GenerateAnswer(status="NO_OFFER", reason=decision.reason, detail=decision.reason_text(),
                                    markers=decision.markers, considered=considered)
        else:
            c = decision.chosen
            issued = offer_store.IssuedOffer(
                offer_id="of_" + secrets.token_hex(16), brand_id=brand, player_id=player,
                intent=body.context.intent, offer_name=c.name, template=c.offer.template, params=_terms(decision),
                channel=body.context.channel, product=intent.product, cost_cents=c.cost_cents,
                predicted_value_cents=round(c.value_cents) if c.value_cents is not None else None,
                issued_at=at, expires_at=at + dt.timedelta(days=c.offer.expiry_days), key_id=key.id)
            _record(conn, app.state.paths, key, issued)
            answer = GenerateAnswer(status="OFFER", offer_id=issued.offer_id, offer=c.name, template=issued.template,
                                    params=issued.params, cost_minor=issued.cost_cents, currency="EUR",
                                    predicted_value_minor=issued.predicted_value_cents, expires_at=issued.expires_at,
                                    considered=considered)
        answers: list = []
        out = _answer(answers, call, 200, answer.model_dump(mode="json"))
        dl.remember_answers(conn, answers)
    return out


def _record(conn: sa.Connection, paths, key: ApiKey, offer: offer_store.IssuedOffer) -> None:
    """The offer in the ledger and as an ``offer.issued`` event (checked by the contract's own code)."""
    offer_store.record(conn, offer)
    envelope = {"event_id": f"ev_{offer.offer_id}", "event_type": "offer.issued", "player_id": offer.player_id,
                "brand_id": offer.brand_id, "occurred_at": _iso(offer.issued_at),
                "payload": {"offer_id": offer.offer_id, "template": offer.template, "cost": offer.cost_cents,
                            "currency": "EUR", "campaign_id": f"offer_{offer.intent}", "intent": offer.intent,
                            "offer_name": offer.offer_name, "channel": offer.channel,
                            "expires_at": _iso(offer.expires_at)}}
    check = validate_records([json.dumps(envelope)], paths)[0]
    if check.reason is not None:  # our own event: a bug, and nothing is issued (the transaction rolls back)
        raise RuntimeError(f"offer.issued does not fit the contract: {check.reason}")
    store_in(conn, key.id, [check.envelope], offer.issued_at)


def _offer_batch(app, calls: Sequence[_Call]) -> list:
    out: list = []
    for call in calls:  # one transaction each: an offer decided sees the ones before it
        try:
            out.append(_generate(app, call))
        except Exception as e:  # noqa: BLE001 - that request's own error
            log.exception("offer generation failed")
            out.append(e)
    return out


@router.post("/v1/offers/generate", response_model=GenerateAnswer,
             responses={401: {"description": "no API key, or an unknown or revoked one"},
                        403: {"description": "the key lacks the scope offers:generate"},
                        409: {"description": "the idempotency key was used with another body"},
                        422: {"description": "a bad request (an unknown intent, a malformed field)"},
                        503: {"description": "the offer catalogue or the campaign configuration cannot be read"}},
             summary="The best offer for one player now, within every rule (or none, and why)")
async def post_generate(request: Request, body: GenerateRequest,
                        idempotency_key: Annotated[str, Header(alias="X-Idempotency-Key", pattern=IDEMPOTENCY_KEY,
                                                               description="required: the same key and body give "
                                                                           "the same answer (the same offer)")],
                        key: ApiKey = Depends(require_scope("offers:generate"))):
    call = _Call(key, idempotency_key, body,
                 dl.request_hash({"route": "offers/generate", **body.model_dump(mode="json")}))
    future = request.app.state.offer_maker.submit(call, conflicts=(("player", key.brand_id, body.player_id),
                                                                   ("idempotency", key.id, idempotency_key)))
    result = await asyncio.wrap_future(future)
    if isinstance(result, HTTPException):
        raise result
    code, answer = result
    return JSONResponse(answer, status_code=code)


class IssuedOfferView(BaseModel):
    offer_id: str
    player_id: str
    intent: str
    offer: str
    template: str
    params: dict
    channel: str
    cost_minor: int
    predicted_value_minor: int | None
    issued_at: dt.datetime
    expires_at: dt.datetime


@router.get("/v1/offers/{offer_id}", response_model=IssuedOfferView,
            responses={401: {"description": "no API key, or an unknown or revoked one"},
                       404: {"description": "no such offer of the key's brand"}},
            summary="An issued offer")
async def get_offer(request: Request, offer_id: Annotated[str, Path(pattern=OFFER_ID)],
                    key: ApiKey = Depends(current_key)):
    def read():
        with request.app.state.engine.connect() as conn:
            return offer_store.get(conn, offer_id)

    o = await run_in_threadpool(read)
    if o is None or o["brand_id"] != key.brand_id:
        raise HTTPException(404, f"no offer {offer_id!r} of brand {key.brand_id}")
    return IssuedOfferView(offer_id=o["offer_id"], player_id=o["player_id"], intent=o["intent"],
                           offer=o["offer_name"], template=o["template"], params=o["params"], channel=o["channel"],
                           cost_minor=o["cost_cents"], predicted_value_minor=o["predicted_value_cents"],
                           issued_at=o["issued_at"], expires_at=o["expires_at"])


def setup(app) -> None:
    """What the routes need on ``app.state`` beside :func:`crm.service.messaging.setup`'s (the
    send configuration, the outbox history, the clock): the catalogue and the offer thread."""
    app.state.offer_catalogue = CatalogueCache(campaigns_dir(), on_reload=lambda folder: _audit_config(app, folder))
    # offers are decided in one thread, one after another (each sees the offers before it)
    app.state.offer_maker = Batcher(lambda calls: _offer_batch(app, calls), name="offer-maker")


def _audit_config(app, folder) -> None:
    """A new catalogue version is a ``config_changed`` audit entry; a log that cannot take it (it does
    not verify) is reported, and the offers still follow the catalogue (their own checks decide)."""
    try:
        record_config_changes(app.state.paths, folder, by="service")
    except AuditError as e:
        log.error("the offer catalogue changed but the audit log cannot record it: %s", e)
