"""Signed webhooks: a JSON POST per message to the casino's systems, a push or SMS gateway.

Configured per channel (``<CHANNEL>`` is the channel name in upper case: ``PUSH``, ``SMS``,
``IN_APP``, ``EMAIL``)::

    CRM_WEBHOOK_URL_PUSH=https://push-gateway.example/crm
    CRM_WEBHOOK_SECRET_PUSH=<a long random string shared with the receiver>
    CRM_WEBHOOK_TIMEOUT_PUSH=10          # seconds, optional (default 10)

The request: ``POST`` with ``Content-Type: application/json`` and the body of
:func:`webhook_body`; ``X-CRM-Delivery-Id`` and ``Idempotency-Key`` (both the delivery id: a
retried delivery carries the same key, the receiver drops the duplicate); and
``X-CRM-Signature: t=<unix seconds>,v1=<hex>``, where ``v1`` is HMAC-SHA256 with the secret over
``<t>.<body bytes>`` (Stripe's scheme). A receiver checks it with :func:`verify_signature`, which
also refuses a timestamp older (or newer) than its tolerance: a replayed request fails.

Answers: ``2xx`` delivered (``provider_id``: the ``id`` of a JSON answer, if any); ``408``,
``425``, ``429`` and ``5xx``, a timeout, no connection: ``temporary_failure`` (``Retry-After`` in
seconds is kept); any other ``4xx``: ``permanent_failure``; a redirect is not followed
(``permanent_failure``: the configured URL is wrong).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from crm.channels.base import (
    DELIVERED,
    PERMANENT_FAILURE,
    REFUSED,
    TEMPORARY_FAILURE,
    DeliveryResult,
    Message,
    Rendered,
    scrubbed,
    utcnow,
)

SIGNATURE_HEADER = "X-CRM-Signature"
DELIVERY_HEADER = "X-CRM-Delivery-Id"
DEFAULT_TIMEOUT = 10.0
DEFAULT_TOLERANCE = 300  # seconds a receiver accepts between the signature's time and its clock
TEMPORARY_CODES = {408, 425, 429}
MAX_ANSWER_BYTES = 64 * 1024  # what is read of a response (for its id)
MIN_SECRET_CHARS = 16


class WebhookConfigError(ValueError):
    """``CRM_WEBHOOK_URL_<CHANNEL>`` / ``CRM_WEBHOOK_SECRET_<CHANNEL>`` missing or not usable."""


class InvalidSignature(ValueError):
    """A webhook request whose signature does not verify (wrong secret, changed body, too old)."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str | None, body: bytes, tolerance: float = DEFAULT_TOLERANCE,
                     now: float | None = None) -> bool:
    """For receivers: True when ``header`` (``X-CRM-Signature``) signs ``body`` (the raw bytes as
    received) with ``secret`` within ``tolerance`` seconds of ``now``; raises
    :class:`InvalidSignature` saying why otherwise. Several ``v1=`` entries are allowed (a sender
    rotating secrets); one matching is enough."""
    if not header:
        raise InvalidSignature("no signature header")
    timestamp: int | None = None
    macs: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise InvalidSignature("the timestamp is not a number") from None
        elif key == "v1":
            macs.append(value)
    if timestamp is None or not macs:
        raise InvalidSignature("the header needs t=<unix seconds> and v1=<hex>")
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature(f"the timestamp is {now - timestamp:.0f} s away from now (tolerance {tolerance} s)")
    expected = sign(secret, body, timestamp).partition(",v1=")[2]
    if not any(hmac.compare_digest(expected, m) for m in macs):
        raise InvalidSignature("the signature does not match the body")
    return True


def webhook_body(message: Message, rendered: Rendered) -> dict:
    """What the receiver gets: the delivery, the player (pseudonymous id), the address (the
    channel edge: device token, phone number, ...) and the rendered content."""
    return {
        "delivery_id": message.delivery_id,
        "channel": message.channel,
        "player_id": message.player_id,
        "brand_id": message.brand_id,
        "campaign_id": message.campaign_id,
        "transactional": message.transactional,
        "to": message.address,
        "template_id": rendered.template_id,
        "locale": rendered.locale,
        "content": {"subject": rendered.subject, "text": rendered.text, "html": rendered.html},
    }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401
        return None  # a 3xx comes back as an HTTPError: the configured URL is wrong


_OPENER = urllib.request.build_opener(_NoRedirect)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: left to the retry policy's own backoff


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: str
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:  # never the secret in a log
        return f"WebhookConfig(url={self.url!r}, timeout={self.timeout})"

    def __post_init__(self) -> None:
        if urlsplit(self.url).scheme not in ("http", "https") or not urlsplit(self.url).hostname:
            raise WebhookConfigError(f"webhook URL {self.url[:80]!r}: http(s)://host/...")
        if len(self.secret) < MIN_SECRET_CHARS:
            raise WebhookConfigError(f"webhook secret: at least {MIN_SECRET_CHARS} characters")

    @classmethod
    def from_env(cls, channel: str, environ: dict | None = None) -> WebhookConfig:
        env = os.environ if environ is None else environ
        suffix = channel.upper()
        url, secret = env.get(f"CRM_WEBHOOK_URL_{suffix}"), env.get(f"CRM_WEBHOOK_SECRET_{suffix}")
        if not url or not secret:
            raise WebhookConfigError(f"CRM_WEBHOOK_URL_{suffix} and CRM_WEBHOOK_SECRET_{suffix} must both be set")
        try:
            timeout = float(env.get(f"CRM_WEBHOOK_TIMEOUT_{suffix}") or DEFAULT_TIMEOUT)
        except ValueError:
            raise WebhookConfigError(f"CRM_WEBHOOK_TIMEOUT_{suffix}: seconds") from None
        return cls(url, secret, timeout)


class WebhookChannel:
    """One message channel delivered by signed HTTP POSTs (``clock``: unix seconds, for tests)."""

    def __init__(self, name: str, config: WebhookConfig, clock=time.time) -> None:
        self.name = name
        self.config = config
        self.clock = clock

    @classmethod
    def from_env(cls, channel: str) -> WebhookChannel:
        return cls(channel, WebhookConfig.from_env(channel))

    def send(self, message: Message, rendered: Rendered) -> DeliveryResult:
        return scrubbed(self._send(message, rendered), message.address)

    def _send(self, message: Message, rendered: Rendered) -> DeliveryResult:
        at = utcnow()
        did = message.delivery_id
        if message.channel != self.name:
            return DeliveryResult(did, REFUSED, f"a {message.channel} message on the {self.name} webhook",
                                  attempted_at=at)
        if not message.address:
            return DeliveryResult(did, REFUSED, "no address", attempted_at=at)
        body = json.dumps(webhook_body(message, rendered), sort_keys=True, separators=(",", ":")).encode()
        request = urllib.request.Request(self.config.url, data=body, method="POST", headers={
            "Content-Type": "application/json",
            "User-Agent": "casino-crm-webhook/1",
            SIGNATURE_HEADER: sign(self.config.secret, body, int(self.clock())),
            DELIVERY_HEADER: did,
            "Idempotency-Key": did,
        })
        try:
            with _OPENER.open(request, timeout=self.config.timeout) as response:
                answer = response.read(MAX_ANSWER_BYTES)
                return DeliveryResult(did, DELIVERED, f"HTTP {response.status}", _answer_id(answer), at,
                                      response.status)
        except urllib.error.HTTPError as e:
            code = e.code
            text = f"HTTP {code} {e.reason}"
            e.close()
            if code in TEMPORARY_CODES or code >= 500:
                return DeliveryResult(did, TEMPORARY_FAILURE, text, None, at, code,
                                      _retry_after(e.headers.get("Retry-After")))
            return DeliveryResult(did, PERMANENT_FAILURE, text, None, at, code)
        except (urllib.error.URLError, TimeoutError, OSError) as e:  # no connection, DNS, timeout, reset
            reason = getattr(e, "reason", e)
            return DeliveryResult(did, TEMPORARY_FAILURE, f"connection: {type(reason).__name__}: {reason}",
                                  None, at)


def _answer_id(answer: bytes) -> str | None:
    try:
        data = json.loads(answer)
    except ValueError:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return str(value)[:200] if value is not None else None
