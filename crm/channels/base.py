"""The one channel contract: a :class:`Message`, its :class:`Rendered` content, a :class:`DeliveryResult`.

Every adapter (SMTP email, signed webhook, file outbox) implements :class:`Channel`:
``send(message, rendered) -> DeliveryResult``. An adapter never raises for a delivery problem:
whatever happens on the wire becomes a status, so the caller (the delivery queue, later) decides
retries with :class:`crm.channels.delivery.RetryPolicy` from the status alone.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, runtime_checkable

from crm.contract import CHANNELS

DELIVERED = "delivered"
TEMPORARY_FAILURE = "temporary_failure"  # retry later: 4xx, 429, 5xx of an HTTP endpoint, timeouts, no connection
PERMANENT_FAILURE = "permanent_failure"  # a hard bounce: the address does not exist (5xx at SMTP RCPT, HTTP 4xx)
REFUSED = "refused"  # not sent and not to be retried as is, and not the address's fault (see DeliveryResult)
STATUSES = (DELIVERED, TEMPORARY_FAILURE, PERMANENT_FAILURE, REFUSED)
Status = Literal["delivered", "temporary_failure", "permanent_failure", "refused"]

# delivery ids travel in headers (Message-ID, X-CRM-Delivery-Id) and file names: a safe alphabet only
DELIVERY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_DETAIL_CHARS = 500


class MessageError(ValueError):
    """A message that does not fit the contract (unknown channel, unsafe delivery id)."""


@dataclass(frozen=True)
class Message:
    """One message to one player on one channel.

    ``params`` are the template's personalization values (pseudonymous data only: offer amounts,
    game names, the player's first name at most). ``address`` is the contact address (email,
    phone, device token, webhook recipient id) and is given at the channel edge only, read from the
    PII vault just before the send; it is left out of ``repr`` (logs) and of what the file outbox
    writes unless asked. ``transactional`` messages (a payment failure, a password reset) go before
    marketing ones (:func:`crm.channels.delivery.priority_key`).
    """

    delivery_id: str
    channel: str
    player_id: str
    brand_id: str
    locale: str
    template_id: str
    params: Mapping[str, object] = field(default_factory=dict)
    transactional: bool = False
    campaign_id: str | None = None  # the campaign or journey that sent it, for feedback events
    address: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.delivery_id, str) or not DELIVERY_ID.fullmatch(self.delivery_id):
            raise MessageError(f"delivery_id {str(self.delivery_id)[:40]!r}: 1-128 characters of "
                               "A-Z a-z 0-9 . _ - (starting with a letter or digit)")
        if self.channel not in CHANNELS:
            raise MessageError(f"channel {str(self.channel)[:40]!r}: not one of {', '.join(CHANNELS)}")
        if not isinstance(self.params, Mapping):
            raise MessageError("params: a mapping of names to values")

    def with_address(self, address: str) -> Message:
        """This message with its contact address (at the channel edge)."""
        return Message(self.delivery_id, self.channel, self.player_id, self.brand_id, self.locale,
                       self.template_id, self.params, self.transactional, self.campaign_id, address)


@dataclass(frozen=True)
class Rendered:
    """A template rendered for one message (:meth:`crm.channels.templates.TemplateStore.render`)."""

    template_id: str
    locale: str  # the locale actually used, after the fallback chain
    subject: str  # one line ('' for channels without one)
    text: str
    html: str | None = None


@dataclass(frozen=True)
class DeliveryResult:
    """What one attempt at one message came to.

    ``status``: ``delivered`` (the provider accepted it), ``temporary_failure`` (try again later),
    ``permanent_failure`` (a hard bounce: the address is bad; suppress it, never retry) or
    ``refused`` (not handed over, or refused for a reason that is not the address: no address,
    a relay that refuses the sender or the content, a 5xx answer to the message body; not retried
    and the address is not marked bounced). ``detail`` is a short text for people (it may quote the
    provider's answer, never the address), ``provider_id`` the provider's id of the message (SMTP:
    the Message-ID; webhook: the ``id`` of the JSON answer), ``retry_after`` the provider's own
    wait in seconds (HTTP ``Retry-After``), honoured by :class:`crm.channels.delivery.RetryPolicy`.
    """

    delivery_id: str
    status: Status
    detail: str = ""
    provider_id: str | None = None
    attempted_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    code: int | None = None  # the SMTP or HTTP status code, when there was one
    retry_after: float | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r}: not one of {', '.join(STATUSES)}")
        if len(self.detail) > MAX_DETAIL_CHARS:
            object.__setattr__(self, "detail", self.detail[: MAX_DETAIL_CHARS - 1] + "…")

    @property
    def retryable(self) -> bool:
        return self.status == TEMPORARY_FAILURE

    @property
    def hard_bounce(self) -> bool:
        return self.status == PERMANENT_FAILURE

    def to_dict(self) -> dict:
        return {"delivery_id": self.delivery_id, "status": self.status, "detail": self.detail,
                "provider_id": self.provider_id, "attempted_at": self.attempted_at.isoformat(),
                "code": self.code, "retry_after": self.retry_after}


@runtime_checkable
class Channel(Protocol):
    """A way to deliver messages (not :class:`crm.contract.Channel`, the vocabulary entry with caps)."""

    name: str

    def send(self, message: Message, rendered: Rendered) -> DeliveryResult: ...


def scrubbed(result: DeliveryResult, address: str | None) -> DeliveryResult:
    """``result`` with the contact address blanked out of its detail (a server's answer often quotes it)."""
    if not address or address not in result.detail:
        return result
    return replace(result, detail=result.detail.replace(address, "<address>"))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
