"""The service's app factory: ``create_app(paths)`` (migrations applied, routes, the hand-off loop)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa
from fastapi import FastAPI

from crm.config import Paths, campaigns_dir
from crm.service import messaging, metrics, offers, template_pages, web, web_pages
from crm.service.auth import LiveKeys
from crm.service.batcher import Batcher
from crm.service.events import process_together
from crm.service.events import router as events_router
from crm.store.db import make_engine, upgrade_to_head
from crm.store.events import hand_off
from crm.store.vault import Vault
from crm.triggers.journeys import JourneySet
from crm.triggers.spec import TriggerSet

log = logging.getLogger("crm.service")


async def _hand_off_loop(app: FastAPI, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            done = await asyncio.to_thread(hand_off, app.state.paths, app.state.engine)
            if done.events:
                log.info("handed off %d events: %s", done.events, ", ".join(done.files))
        except Exception:  # the next round tries again; accepted events stay in the store meanwhile
            log.exception("hand-off failed")


def create_app(paths: Paths, engine: sa.Engine | None = None, hand_off_every: float | None = None,
               clock: Callable[[], dt.datetime] | None = None, watch_slos: bool = False,
               deliver: bool | int = False) -> FastAPI:
    """The API on the store of ``paths`` (or ``engine``), migrated to head. ``hand_off_every``:
    seconds between hand-offs of accepted events to landing while the app runs (None: never;
    ``crm api-events hand-off`` does it on demand). ``clock``: naive UTC now, for the send checks
    (default: the wall clock; tests pin it). ``watch_slos``: check the delivery SLOs every
    ``CRM_SLO_EVERY`` seconds and notify breaches (``crm serve`` does). ``deliver``: run delivery
    workers (:class:`crm.service.worker.DeliveryWorker`) in threads while the app runs (True: one;
    a number: that many)."""
    engine = engine or make_engine(paths)
    revision = upgrade_to_head(engine)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        tasks = [asyncio.create_task(_hand_off_loop(app, hand_off_every))] if hand_off_every else []
        if watch_slos:
            tasks.append(asyncio.create_task(metrics.slo_loop(app)))
        stop, threads = threading.Event(), []
        if deliver:
            from crm.service.worker import DeliveryWorker

            for i in range(int(deliver)):  # each its own adapters (SMTP connection); claims never overlap
                worker = DeliveryWorker(paths, engine)
                threads.append(threading.Thread(target=worker.run_forever, args=(stop,),
                                                kwargs={"idle_sleep": 0.05}, name=f"delivery-worker-{i}",
                                                daemon=True))
                threads[-1].start()
        try:
            yield
        finally:
            stop.set()
            await asyncio.to_thread(app.state.sender.close)  # the sends already waiting are answered
            await asyncio.to_thread(app.state.event_checker.close)  # and the events
            await asyncio.to_thread(app.state.offer_maker.close)  # and the offers
            for thread in threads:
                await asyncio.to_thread(thread.join, 30)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(title="casino-crm integration API", version="1", lifespan=lifespan,
                  description="Contract events in (`POST /v1/events`), messages out (`POST /v1/messaging/send`) and "
                              "their feedback (`POST /v1/messaging/feedback`); every /v1 route needs "
                              "`Authorization: Bearer <key>` (`crm api-keys create`).")
    app.state.paths, app.state.engine, app.state.revision = paths, engine, revision
    app.state.live_keys = LiveKeys()
    app.state.vault = Vault(paths)  # identifiers split off accepted events (crm.service.events)
    app.state.triggers = TriggerSet(campaigns_dir())  # the firings each accepted event starts
    app.state.journeys = JourneySet(campaigns_dir())  # the journeys an accepted event converts
    # events are checked in one thread, the requests waiting together in one call of landing's SQL
    app.state.event_checker = Batcher(lambda calls: process_together(app, calls), name="event-checker")

    @app.get("/healthz", summary="Liveness (no key needed)")
    def healthz() -> dict:
        return {"status": "ok", "store_revision": revision}

    app.include_router(events_router)
    messaging.setup(app, paths, clock)
    app.include_router(messaging.router)
    offers.setup(app)
    app.include_router(offers.router)
    app.include_router(metrics.router)
    web.setup(app, paths)
    app.include_router(web.router)  # the web page (/ui): signed-in people, scoped by crm.access
    app.include_router(web_pages.router)  # its readout, gates, Data Docs and triggers pages
    app.include_router(template_pages.router)  # and the content review of message templates
    return app
