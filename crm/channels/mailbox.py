"""A local mailbox: a real SMTP server (aiosmtpd) that stores what it receives, for the demo,
``make serve`` and the tests.

Each accepted message is written to ``<directory>/<sha256 of its Message-ID>.eml`` (a temporary
file renamed into place): like a real mailbox provider (Gmail keeps one copy per Message-ID), a
message received twice with the same Message-ID is stored once, and ``receipts.jsonl`` records
every SMTP transaction, so a resend after a crash is visible but never a second message in the
box. A deterministic share of addresses (``unknown_share``, by the sha256 of the address) are
"unknown users" answered ``550`` at RCPT: the hard bounces of a real send.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from email import message_from_bytes
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path

from aiosmtpd.controller import Controller

RECEIPTS = "receipts.jsonl"


def unknown_user(address: str, share: float) -> bool:
    """Whether ``address`` is one of the mailbox's unknown users (the same answer every time)."""
    digest = hashlib.sha256(address.strip().lower().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


class _Handler:
    def __init__(self, directory: Path, unknown_share: float):
        self.directory, self.unknown_share = directory, unknown_share
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd's hook)
        if unknown_user(address, self.unknown_share):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook)
        data = envelope.original_content or envelope.content
        headers = BytesHeaderParser().parsebytes(data)  # the headers alone: the body is stored, not read
        message_id = str(headers.get("Message-ID") or hashlib.sha256(data).hexdigest())
        name = hashlib.sha256(message_id.encode("utf-8")).hexdigest()[:32] + ".eml"
        with self._lock:
            target = self.directory / name
            duplicate = target.exists()
            if not duplicate:
                tmp = self.directory / f".{name}.tmp"
                tmp.write_bytes(data)
                os.replace(tmp, target)
            with (self.directory / RECEIPTS).open("a") as f:
                f.write(json.dumps({"message_id": message_id, "at": time.time(), "duplicate": duplicate,
                                    "rcpt": len(envelope.rcpt_tos)}) + "\n")
        return "250 Message accepted for delivery"


class LocalMailbox:
    """``with LocalMailbox(directory) as box: ...``: an SMTP server on ``host:port`` (port 0: a free
    one; ``box.url`` is the ``CRM_SMTP_URL`` to send to it) storing messages under ``directory``."""

    def __init__(self, directory: str | Path, host: str = "127.0.0.1", port: int = 0, unknown_share: float = 0.0):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        if port == 0:
            import socket

            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.host, self.port = host, port
        self._controller = Controller(_Handler(self.directory, unknown_share), hostname=host, port=port)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> LocalMailbox:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> LocalMailbox:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def messages(self) -> list:
        """The stored messages (parsed), one per Message-ID."""
        return [message_from_bytes(p.read_bytes(), policy=default_policy) for p in sorted(self.directory.glob("*.eml"))]

    def receipts(self) -> list[dict]:
        """Every SMTP transaction that delivered a message (duplicates of a Message-ID included)."""
        path = self.directory / RECEIPTS
        return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []
