"""``GET /v1/metrics`` (Prometheus text format, scoped to the key's brand) and the SLO watch.

Exposition with ``prometheus_client`` (its custom-collector API: the figures are read from the
store at each scrape, so several service processes report the same numbers). The SLO watch runs in
the service every ``CRM_SLO_EVERY`` seconds (default 60) and sends each newly broken SLO once
through the existing notifications (:func:`crm.notify.notify`: the log and ``CRM_NOTIFY_WEBHOOK``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from crm.notify import notify
from crm.service.auth import current_key
from crm.store import metrics as m
from crm.store.keys import ApiKey

log = logging.getLogger("crm.service")
router = APIRouter()
WINDOW = dt.timedelta(days=7)  # rates over the sends of the last 7 days


class _StoreCollector:
    def __init__(self, engine, now: dt.datetime, brand_id: str):
        self.engine, self.now, self.brand_id = engine, now, brand_id

    def collect(self):
        since = self.now - WINDOW
        sent = GaugeMetricFamily("crm_deliveries_sent", "deliveries handed to the channel (last 7 days)",
                                 labels=["source", "campaign", "channel"])
        rate = GaugeMetricFamily("crm_delivery_outcome_rate", "share of sent deliveries that reached an outcome",
                                 labels=["source", "campaign", "channel", "outcome"])
        for r in m.deliverability(self.engine, since, self.brand_id):
            labels = [r.source, r.campaign_id, r.channel]
            sent.add_metric(labels, r.sent)
            for outcome in m.OUTCOMES:
                rate.add_metric([*labels, outcome], r.rate(outcome))
        yield sent
        yield rate
        q = m.queue_state(self.engine, self.now, self.brand_id)
        depth = GaugeMetricFamily("crm_queue_depth", "deliveries waiting or being sent", labels=["channel", "status"])
        for (channel, status), n in sorted(q.depth.items()):
            depth.add_metric([channel, status], n)
        yield depth
        yield GaugeMetricFamily("crm_queue_retrying", "deliveries queued again after a temporary failure",
                                value=q.retrying)
        yield GaugeMetricFamily("crm_queue_dead_letters", "deliveries that failed every allowed attempt",
                                value=q.dead_letters)
        yield GaugeMetricFamily("crm_queue_oldest_due_seconds", "wait of the oldest due delivery",
                                value=q.oldest_due_seconds)
        lat = GaugeMetricFamily("crm_event_to_send_seconds", "queued-to-sent latency of the last hour",
                                labels=["channel", "quantile"])
        for channel, v in sorted(m.send_latencies(self.engine, self.now - dt.timedelta(hours=1),
                                                  self.brand_id).items()):
            for qn in (0.5, 0.95, 0.99):
                lat.add_metric([channel, str(qn)], float(np.quantile(v, qn)))
        yield lat


def render(engine, now: dt.datetime, brand_id: str) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StoreCollector(engine, now, brand_id))
    return generate_latest(registry)


@router.get("/v1/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
                       401: {"description": "no API key, or an unknown or revoked one"}},
            summary="Deliverability, queue and latency figures of the key's brand (Prometheus text format)")
async def get_metrics(request: Request, key: ApiKey = Depends(current_key)) -> Response:
    body = await run_in_threadpool(render, request.app.state.engine, request.app.state.clock(), key.brand_id)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def check_slos(engine, now: dt.datetime, notified: set[str]) -> list[dict]:
    """Notify each SLO breach not notified before (``notified``: keys of breaches still open);
    a breach that ends is forgotten, so it is notified again if it comes back."""
    breaches = m.slo_breaches(m.deliverability(engine, now - WINDOW), m.queue_state(engine, now),
                              m.send_latencies(engine, now - dt.timedelta(hours=1)))
    new = [b for b in breaches if b["key"] not in notified]
    for b in new:
        notify(b)
    notified.clear()
    notified.update(b["key"] for b in breaches)
    return new


async def slo_loop(app) -> None:
    every = float(os.environ.get("CRM_SLO_EVERY") or 60)
    notified: set[str] = set()
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(check_slos, app.state.engine, app.state.clock(), notified)
        except Exception:  # the next round tries again
            log.exception("SLO check failed")
