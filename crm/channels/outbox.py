"""The file outbox as a channel: for operators who send with their own tools.

Each delivery is one JSON line in ``$CRM_HOME/outbox/deliveries/<channel>/<YYYY-MM-DD>/deliveries.jsonl``
(the UTC day of the attempt). That is four levels under ``outbox/``, on purpose: the campaign
outbox of :mod:`crm.campaigns.dispatch` (``outbox/<channel>/<campaign>/<as_of>.jsonl``, left as it
is) is read with ``*/*/*.jsonl`` globs, which never match these files.

A line: the message's fields (``delivery_id``, channel, player, brand, campaign, locale,
template, ``transactional``, ``params``), the rendered ``subject`` / ``text`` / ``html`` and
``written_at``. The contact address is left out unless the channel is made with
``include_address=True``: by default the operator joins addresses by ``player_id`` in their own
systems, as with the campaign outbox, and no contact detail lands under ``$CRM_HOME``.

Writes are atomic and idempotent, like dispatch's: under a file lock the day's file is rewritten
whole (temp file + rename, never half-written), and a delivery id already in it is not written
again (a retried send is ``delivered`` with the line it has).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from filelock import FileLock

from crm.channels.base import DELIVERED, REFUSED, TEMPORARY_FAILURE, DeliveryResult, Message, Rendered, utcnow


def deliveries_file(outbox: Path, channel: str, day: str) -> Path:
    return Path(outbox) / "deliveries" / channel / day / "deliveries.jsonl"


class FileOutboxChannel:
    """A message channel whose deliveries are lines in a file (``outbox``: ``Paths.outbox``)."""

    def __init__(self, name: str, outbox: str | Path, include_address: bool = False) -> None:
        self.name = name
        self.outbox = Path(outbox)
        self.include_address = include_address

    def send(self, message: Message, rendered: Rendered) -> DeliveryResult:
        at = utcnow()
        did = message.delivery_id
        if message.channel != self.name:
            return DeliveryResult(did, REFUSED, f"a {message.channel} message on the {self.name} outbox",
                                  attempted_at=at)
        target = deliveries_file(self.outbox, self.name, at.date().isoformat())
        line = {
            "delivery_id": did, "channel": message.channel, "player_id": message.player_id,
            "brand_id": message.brand_id, "campaign_id": message.campaign_id, "locale": rendered.locale,
            "template_id": rendered.template_id, "transactional": message.transactional,
            "params": dict(message.params), "subject": rendered.subject, "text": rendered.text,
            "html": rendered.html, "written_at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        if self.include_address:
            line["to"] = message.address
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(str(target) + ".lock", timeout=60):
                existing = target.read_text().splitlines(keepends=True) if target.exists() else []
                if any(json.loads(x).get("delivery_id") == did for x in existing if x.strip()):
                    return DeliveryResult(did, DELIVERED, f"already in {target}", str(target), at)
                tmp = target.with_suffix(".jsonl.tmp")
                with tmp.open("w") as f:
                    f.writelines(existing)
                    f.write(json.dumps(line, sort_keys=True, default=str) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
        except (OSError, TimeoutError) as e:  # a full disk, a lock held too long: try again later
            return DeliveryResult(did, TEMPORARY_FAILURE, f"outbox: {type(e).__name__}: {e}", None, at)
        return DeliveryResult(did, DELIVERED, f"written to {target}", str(target), at)
