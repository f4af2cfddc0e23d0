"""Notifications for ops: a run failed, a gate blocked a list, data went stale.

``notify(event)`` always appends one JSON line to ``$CRM_HOME/notifications.jsonl`` and
logs it; when ``CRM_NOTIFY_WEBHOOK`` is set it also POSTs the event as JSON to that URL
(``CRM_NOTIFY_TIMEOUT`` seconds, default 5). It never raises: a broken webhook or a full
disk must not take down the sensor that reports a failure. No Dagster here: the
sensors in ``orchestration/sensors.py`` build the event and call this.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import urllib.request
from pathlib import Path

from crm.config import crm_home

log = logging.getLogger("crm.notify")

WEBHOOK_ENV = "CRM_NOTIFY_WEBHOOK"
TIMEOUT_ENV = "CRM_NOTIFY_TIMEOUT"


def notifications_path() -> Path:
    return crm_home() / "notifications.jsonl"


def _post(url: str, body: bytes, timeout: float) -> int:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "casino-crm"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the operator's own URL)
        return resp.status


def notify(event: dict) -> dict:
    """Record ``event`` (a JSON-able dict; ``kind`` and ``summary`` recommended) and deliver it.

    Returns what happened: ``{"logged": bool, "webhook": None | "sent" | "failed: ..."}``.
    """
    event = {"notified_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **event}
    line = json.dumps(event, default=str, sort_keys=True)
    outcome: dict = {"logged": False, "webhook": None}
    level = logging.ERROR if event.get("severity", "error") == "error" else logging.WARNING
    log.log(level, "notification: %s", line)
    try:
        path = notifications_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(line + "\n")
        outcome["logged"] = True
    except OSError as e:
        log.error("could not write the notification log: %s", e)
    url = os.environ.get(WEBHOOK_ENV, "").strip()
    if url:
        try:
            timeout = float(os.environ.get(TIMEOUT_ENV) or 5)
            status = _post(url, line.encode(), timeout)
            outcome["webhook"] = "sent" if 200 <= status < 300 else f"failed: HTTP {status}"
        except Exception as e:  # never crash the caller: the failure itself is logged
            outcome["webhook"] = f"failed: {type(e).__name__}: {e}"
        if outcome["webhook"] != "sent":
            log.error("webhook %s: %s", url, outcome["webhook"])
    return outcome
