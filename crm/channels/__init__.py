"""Channels: the one contract for sending a message, and its adapters (a library: no web, no store).

:class:`Message` + :class:`Rendered` (from :class:`TemplateStore`) -> ``Channel.send`` ->
:class:`DeliveryResult` (delivered | temporary_failure | permanent_failure | refused). Adapters:
:class:`SmtpEmailChannel` (``CRM_SMTP_URL``), :class:`WebhookChannel`
(``CRM_WEBHOOK_URL_<CHANNEL>`` + ``CRM_WEBHOOK_SECRET_<CHANNEL>``), :class:`FileOutboxChannel`
(``$CRM_HOME/outbox/deliveries/``). Retries, rate limits and priority are pure logic in
:mod:`crm.channels.delivery`. Layering: crm.channels imports the crm foundations only
(``crm.config``, ``crm.contract``, ``crm.safe_yaml``). docs/architecture.md, "Channels".
"""

from __future__ import annotations

import os
from pathlib import Path

from crm.channels.base import (
    DELIVERED,
    PERMANENT_FAILURE,
    REFUSED,
    STATUSES,
    TEMPORARY_FAILURE,
    Channel,
    DeliveryResult,
    Message,
    MessageError,
    Rendered,
)
from crm.channels.delivery import RateLimiter, RetryDecision, RetryPolicy, priority_key
from crm.channels.email import SmtpConfig, SmtpEmailChannel
from crm.channels.outbox import FileOutboxChannel
from crm.channels.templates import TemplateError, TemplateRenderError, TemplateStore
from crm.channels.webhook import InvalidSignature, WebhookChannel, WebhookConfig, sign, verify_signature
from crm.contract import CHANNELS

__all__ = [
    "CHANNELS", "DELIVERED", "PERMANENT_FAILURE", "REFUSED", "STATUSES", "TEMPORARY_FAILURE", "Channel",
    "DeliveryResult", "FileOutboxChannel", "InvalidSignature", "Message", "MessageError", "RateLimiter",
    "Rendered", "RetryDecision", "RetryPolicy", "SmtpConfig", "SmtpEmailChannel", "TemplateError",
    "TemplateRenderError", "TemplateStore", "WebhookChannel", "WebhookConfig", "channel_from_env",
    "priority_key", "sign", "verify_signature",
]


def channel_from_env(name: str, outbox: str | Path, environ: dict | None = None) -> Channel:
    """The adapter configured for channel ``name``: for ``email`` SMTP when ``CRM_SMTP_URL`` is
    set; a webhook when ``CRM_WEBHOOK_URL_<NAME>`` is set; otherwise the file outbox under
    ``outbox`` (``Paths.outbox``). A half-set configuration raises rather than falling back."""
    if name not in CHANNELS:
        raise ValueError(f"channel {name!r}: not one of {', '.join(CHANNELS)}")
    env = os.environ if environ is None else environ
    if name == "email" and env.get("CRM_SMTP_URL"):
        return SmtpEmailChannel(SmtpConfig.from_env(env))
    suffix = name.upper()
    if env.get(f"CRM_WEBHOOK_URL_{suffix}") or env.get(f"CRM_WEBHOOK_SECRET_{suffix}"):
        return WebhookChannel(name, WebhookConfig.from_env(name, env))
    return FileOutboxChannel(name, outbox)
