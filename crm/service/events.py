"""``POST /v1/events``: contract events one by one or in batches.

Each record is checked by landing's own contract SQL (:func:`crm.ingest.landing.validate_records`);
good ones are stored (committed before the answer) with their direct identifiers moved into the PII
vault first (:func:`pseudonymised`), bad ones quarantined in the store with the reason (as sent:
``crm privacy forget`` clears a player's), records of another brand than the key's refused and
not stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from crm.contract import PII_FIELDS
from crm.ingest.landing import RecordCheck, validate_records
from crm.service.auth import require_scope
from crm.store.events import store_records
from crm.store.keys import ApiKey
from crm.store.profile import parse_time
from crm.store.schema import REASON_CHARS
from crm.store.vault import Vault

MAX_BATCH = 1000
MAX_BODY_BYTES = 4 * 1024 * 1024


def max_batch() -> int:
    """Records per request: ``$CRM_API_MAX_BATCH`` or 1,000."""
    return int(os.environ.get("CRM_API_MAX_BATCH") or MAX_BATCH)


def max_body_bytes() -> int:
    """Bytes per request body: ``$CRM_API_MAX_BODY_BYTES`` or 4 MiB."""
    return int(os.environ.get("CRM_API_MAX_BODY_BYTES") or MAX_BODY_BYTES)


class RecordResult(BaseModel):
    index: int
    event_id: str | None = None
    status: Literal["accepted", "duplicate", "quarantined", "refused"]
    field: str | None = None
    reason: str | None = None


class EventsResponse(BaseModel):
    records: int
    accepted: int
    duplicates: int
    quarantined: int
    refused: int
    detail: str
    results: list[RecordResult]
    errors: list[RecordResult] = []


router = APIRouter()

_BODY_DOC = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "oneOf": [{"type": "object", "description": "one contract event"},
              {"type": "array", "items": {"type": "object"}, "description": "a batch of contract events"}]}}}}}


async def _read_bounded(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise HTTPException(413, f"request body too large: at most {limit:,} bytes (CRM_API_MAX_BODY_BYTES)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"request body too large: at most {limit:,} bytes (CRM_API_MAX_BODY_BYTES)")
    return bytes(body)


def _record_text(record: object) -> str | None:
    try:
        return json.dumps(record, ensure_ascii=False)
    except (RecursionError, ValueError, TypeError):
        return None


def process_together(app, calls: list[tuple[ApiKey, list]]) -> list:
    """Requests waiting together (:class:`crm.service.batcher.Batcher`): their records checked by one
    call of landing's contract SQL (its cost is almost all fixed: about 50 ms however few records),
    then each request stored in its own transaction and answered, in order."""
    paths, engine, vault = app.state.paths, app.state.engine, app.state.vault
    subscriptions, goals = app.state.triggers.subscriptions(), app.state.journeys.goals()
    texts = [[_record_text(r) for r in records] for _, records in calls]
    checks = iter(validate_records([t for ts in texts for t in ts if t is not None], paths))
    out: list = []
    for (key, records), ts in zip(calls, texts, strict=True):
        mine = [next(checks) for t in ts if t is not None]
        try:
            out.append(_finish(engine, key, records, ts, mine, subscriptions, goals, vault))
        except Exception as e:  # noqa: BLE001 - that request's own error (the others are answered)
            out.append(e)
    return out


def pseudonymised(vault: Vault, envelopes: list[dict]) -> list[dict]:
    """The envelopes with their identifiers moved into the PII vault (stored there first: an event is
    never stored with one, and a retried request finds them again), pseudonyms in their place."""
    out, found = [], []
    named = [e for e in envelopes if isinstance(e.get("payload"), dict) and any(k in e["payload"] for k in PII_FIELDS)]
    gone = vault.forgotten((e["brand_id"], e["player_id"]) for e in named)
    for env in envelopes:
        payload = env.get("payload")
        if isinstance(payload, dict) and any(k in payload for k in PII_FIELDS):
            at = parse_time(env.get("occurred_at")) or dt.datetime.now(dt.UTC).replace(tzinfo=None)
            payload, ids = vault.split(payload, env["brand_id"], env["player_id"], at,
                                       forgotten=(env["brand_id"], env["player_id"]) in gone)
            env, found = {**env, "payload": payload}, found + ids
        out.append(env)
    vault.put(found)
    return out


def _finish(engine, key: ApiKey, records: list, texts: list[str | None], checked: list[RecordCheck],
            subscriptions, goals, vault: Vault) -> tuple[int, dict]:
    checks = iter(checked)
    results: list[RecordResult] = []
    good: list[tuple[int, dict]] = []
    bad: list[tuple[str, str]] = []
    for i, text in enumerate(texts):
        chk = checks.__next__() if text is not None else RecordCheck("record nested too deeply", "record", None, None)
        if chk.brand_id is not None and chk.brand_id != key.brand_id:
            # another brand's record: not this key's to send, not stored at all
            results.append(RecordResult(index=i, event_id=_event_id(records[i]), status="refused", field="brand_id",
                                        reason="brand"))
        elif chk.reason is not None:
            reason = chk.reason[:REASON_CHARS]
            bad.append((text if text is not None else repr(records[i])[:1000], reason))
            results.append(RecordResult(index=i, event_id=_event_id(records[i]), status="quarantined",
                                        field=chk.field, reason=reason))
        else:
            good.append((i, chk.envelope))
            results.append(RecordResult(index=i, event_id=chk.envelope["event_id"], status="accepted"))
    envelopes = pseudonymised(vault, [env for _, env in good])
    new = store_records(engine, key.id, envelopes, bad, subscriptions=subscriptions, goals=goals)
    for (i, _), is_new in zip(good, new, strict=True):
        if not is_new:
            results[i].status = "duplicate"
    n = {s: sum(r.status == s for r in results) for s in ("accepted", "duplicate", "quarantined", "refused")}
    errors = [r for r in results if r.status in ("quarantined", "refused")]
    if errors:
        detail = (f"{len(errors)} of {len(records)} records were not accepted (see errors: field and reason; "
                  f"quarantined ones are kept in the store with their reason, another brand's are refused and not "
                  f"stored); the other {n['accepted'] + n['duplicate']} were accepted or known already")
    else:
        detail = f"all {len(records)} records accepted ({n['duplicate']} known already)"
    body = EventsResponse(records=len(records), accepted=n["accepted"], duplicates=n["duplicate"],
                          quarantined=n["quarantined"], refused=n["refused"], detail=detail, results=results,
                          errors=errors)
    return (422 if errors else 202), body.model_dump()


def _event_id(record: object) -> str | None:
    if isinstance(record, dict) and isinstance(record.get("event_id"), str):
        # as text that can be answered (a lone surrogate would break the response)
        return record["event_id"][:128].encode("utf-8", errors="replace").decode("utf-8")
    return None


@router.post("/v1/events", status_code=202, response_model=EventsResponse, openapi_extra=_BODY_DOC,
             responses={400: {"description": "the body is not JSON"},
                        401: {"description": "no API key, or an unknown or revoked one"},
                        403: {"description": "the key lacks the scope events:write"},
                        413: {"description": "body or batch too large"},
                        422: {"model": EventsResponse,
                              "description": "some records break the contract or name another brand; "
                                             "the good ones in the same batch are accepted"}},
             summary="Send contract events (one object or an array)")
async def post_events(request: Request, key: ApiKey = Depends(require_scope("events:write"))):
    engine = request.app.state.engine
    body = await _read_bounded(request, max_body_bytes())
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        reason = f"malformed JSON body: {type(e).__name__}: {str(e)[:200]}"
        await run_in_threadpool(store_records, engine, key.id, [],
                                [(body.decode("utf-8", errors="replace"), reason)])
        return JSONResponse({"detail": reason, "quarantined": 1}, status_code=400)
    records = parsed if isinstance(parsed, list) else [parsed]
    if len(records) > max_batch():
        raise HTTPException(413, f"batch too large: {len(records):,} records (at most {max_batch():,}, "
                                 "CRM_API_MAX_BATCH)")
    if not records:
        return JSONResponse(EventsResponse(records=0, accepted=0, duplicates=0, quarantined=0, refused=0,
                                           detail="no records", results=[]).model_dump(), status_code=202)
    future = request.app.state.event_checker.submit((key, records))
    status, out = await asyncio.wrap_future(future)
    return JSONResponse(out, status_code=status)
