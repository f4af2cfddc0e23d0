"""Dispatch: hand a gated list to the channel outbox, exactly once per message.

Each message carries an idempotency key derived from (campaign, as-of date, player,
channel), so re-running dispatch never sends a message twice. Holdout rows are never
dispatched. The outbox file is rewritten atomically (temp file + rename).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from crm.config import Paths
from crm.experiments import HOLDOUT
from crm.lists import gate_verdict, list_dir

MESSAGE_FIELDS = ("idempotency_key", "campaign_id", "channel", "player_id", "variant", "as_of_date",
                  "locale", "timezone", "offer_template", "offer_cost_eur_cents")


class DispatchBlocked(RuntimeError):
    """The list may not be dispatched (its gate failed, never ran, or it changed since)."""


@dataclass
class DispatchReport:
    campaign_id: str
    as_of_date: str
    outbox_file: str
    listed: int
    holdout: int
    new_messages: int
    already_in_outbox: int

    def to_dict(self) -> dict:
        return asdict(self)


def idempotency_key(campaign_id: str, as_of: str, player_id: str, channel: str) -> str:
    return hashlib.sha256(f"{campaign_id}|{as_of}|{player_id}|{channel}".encode()).hexdigest()[:32]


def outbox_file(paths: Paths, channel: str, campaign_id: str, as_of: dt.date) -> Path:
    return paths.outbox / channel / campaign_id / f"{as_of.isoformat()}.jsonl"


def read_outbox(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def dispatch_list(paths: Paths, campaign_id: str, as_of: dt.date) -> DispatchReport:
    """Write the non-holdout rows of a published list to the outbox, once.

    Refuses (:class:`DispatchBlocked`) unless the list's quality gate passed on exactly
    these bytes: this guard holds whatever runs dispatch, in the same run or a later one.
    """
    directory = list_dir(paths, campaign_id, as_of)
    ok, why = gate_verdict(directory)
    if not ok:
        raise DispatchBlocked(f"{campaign_id} {as_of}: not dispatched: {why}")
    rows = pd.read_parquet(directory / "list.parquet")
    channel = str(rows["channel"].iloc[0]) if len(rows) else "email"
    target = outbox_file(paths, channel, campaign_id, as_of)
    existing = read_outbox(target)
    sent = {m["idempotency_key"] for m in existing}
    to_send = rows[rows["variant"] != HOLDOUT]
    new = []
    for r in to_send.itertuples(index=False):
        key = idempotency_key(campaign_id, as_of.isoformat(), r.player_id, r.channel)
        if key in sent:
            continue
        msg = {"idempotency_key": key, **{f: getattr(r, f) for f in MESSAGE_FIELDS[1:]}}
        msg["offer_cost_eur_cents"] = int(msg["offer_cost_eur_cents"])
        new.append(msg)
    if new:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".jsonl.tmp")
        with tmp.open("w") as f:
            for m in existing + new:
                f.write(json.dumps(m, sort_keys=True, default=str) + "\n")
        os.replace(tmp, target)
    return DispatchReport(campaign_id, as_of.isoformat(), str(target), len(rows),
                          int((rows["variant"] == HOLDOUT).sum()), len(new), len(existing))
