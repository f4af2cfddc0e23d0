"""The delivery worker: claims due deliveries from the store and sends them through the channels.

One loop (``crm deliveries work``; run several, on one machine or many: the claim is atomic,
:func:`crm.store.queue.claim_due`). Per claimed delivery, in send order (transactional first):

1. **a bounced address** (``address_suppressions``: a hard bounce on this player's address on this
   channel) -> ``refused`` "address suppressed";
2. **a stop since the delivery was created** (``profile_stops`` not yet retired: a withdrawal on
   the delivery's channel or every channel, a self-exclusion, a cooling-off;
   :func:`crm.store.queue.holding_stop`) -> ``refused`` "withdrawn before the send". Fail closed:
   transactional messages are held too;
3. **the address**: for ``email`` and ``sms`` the player must have one in ``contacts`` (its
   pseudonym) and the clear address is read from the PII vault (:mod:`crm.store.vault`) right
   before the send (none, or a forgotten player -> ``refused`` "no address"); the player id for
   ``push`` and ``in_app`` (the gateway behind the webhook knows the devices);
4. **the content**: :class:`~crm.channels.TemplateStore` (``$CRM_TEMPLATES_DIR``, default
   ``templates/``) in the delivery's locale (the template's default when it has none); a template
   that cannot be rendered, or whose locale is not at a version a reviewer approved
   (:mod:`crm.campaigns.template_reviews`) -> ``refused`` with the reason;
5. **the rate limit** of the channel (``CRM_RATE_LIMIT_<CHANNEL>=rate[/burst]``, messages per
   second): wait for a token while the lease allows, else hand the delivery back untried;
6. **the send**: :func:`~crm.channels.channel_from_env` per channel, made once and kept (SMTP keeps
   one connection for the worker's life); its :class:`~crm.channels.DeliveryResult` and the
   :class:`~crm.channels.RetryPolicy`'s decision are recorded (:func:`crm.store.queue.record_result`).

A send starts only while the lease has ``send_margin`` left (more than an adapter's timeout:
SMTP 30 s, webhooks 10 s by default), so a slow batch hands its tail back rather than sending
after another worker may have claimed it. Nothing here logs an address: log lines name the
delivery id, channel, status and attempt; adapters blank the address out of their details.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping

import sqlalchemy as sa

from crm.campaigns.template_reviews import ApprovedTemplates
from crm.channels import (
    REFUSED,
    TEMPORARY_FAILURE,
    Channel,
    DeliveryResult,
    Message,
    MessageError,
    RateLimiter,
    RetryPolicy,
    TemplateError,
    TemplateRenderError,
    TemplateStore,
    channel_from_env,
)
from crm.config import Paths
from crm.store import deliveries as dl
from crm.store import queue
from crm.store.profile import suppression_reason
from crm.store.schema import contacts
from crm.store.vault import Vault

log = logging.getLogger("crm.deliveries")

ADDRESSED_CHANNELS = ("email", "sms")  # read from contacts; the others are addressed by player id
RATE_ENV = "CRM_RATE_LIMIT_"


class WorkerConfigError(ValueError):
    """A worker setting that cannot be read (a rate limit)."""


def rate_limits_from_env(environ: Mapping[str, str] | None = None) -> dict[str, tuple[float, float]]:
    """``CRM_RATE_LIMIT_<CHANNEL>=rate[/burst]`` (messages per second; burst default: the rate, at
    least 1) -> ``{channel: (rate, burst)}`` for :class:`~crm.channels.RateLimiter`."""
    env = os.environ if environ is None else environ
    limits: dict[str, tuple[float, float]] = {}
    for key, value in env.items():
        if not key.startswith(RATE_ENV) or not value.strip():
            continue
        channel = key[len(RATE_ENV):].lower()
        rate_s, _, burst_s = value.strip().partition("/")
        try:
            rate = float(rate_s)
            burst = float(burst_s) if burst_s else max(1.0, rate)
        except ValueError:
            raise WorkerConfigError(f"{key}={value!r}: expected rate[/burst], e.g. 20 or 20/50") from None
        if not (0 < rate < float("inf") and 1 <= burst < float("inf")):
            raise WorkerConfigError(f"{key}={value!r}: rate > 0 and burst >= 1")
        limits[channel] = (rate, burst)
    return limits


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class DeliveryWorker:
    """Sends due deliveries: :meth:`run_once` one batch, :meth:`run_forever` until told to stop.

    ``channels``: adapters by channel name (default: :func:`~crm.channels.channel_from_env` with
    ``paths.outbox``, made on first use and kept); ``templates``: a :class:`TemplateStore`;
    ``limiter``: a :class:`RateLimiter` (default: from ``CRM_RATE_LIMIT_<CHANNEL>``); ``clock``:
    the store's time (naive UTC); ``monotonic`` and ``sleep``: for the rate limiter's waits.
    Not thread-safe: one worker per thread (each with its own adapters and connections).
    """

    def __init__(self, paths: Paths, engine: sa.Engine, channels: Mapping[str, Channel] | None = None,
                 templates: TemplateStore | None = None, retry: RetryPolicy = RetryPolicy(),
                 limiter: RateLimiter | None = None, clock: Callable[[], dt.datetime] = dl.now,
                 monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 worker_id: str | None = None, lease: dt.timedelta = dt.timedelta(seconds=120),
                 send_margin: dt.timedelta = dt.timedelta(seconds=40), environ: Mapping[str, str] | None = None):
        if send_margin >= lease:
            raise ValueError("send_margin must be shorter than the lease")
        self.paths, self.engine, self.retry = paths, engine, retry
        self.templates = templates or TemplateStore()
        self.clock, self.sleep = clock, sleep
        self.environ = environ
        self.limiter = limiter or RateLimiter(rate_limits_from_env(environ), monotonic)
        self.worker_id = worker_id or default_worker_id()
        self.lease, self.send_margin = lease, send_margin
        self._given = dict(channels or {})
        self._made: dict[str, Channel] = {}
        self._vault: Vault | None = None
        self.approved_templates = ApprovedTemplates(paths)  # content review: approved versions only

    @property
    def vault(self) -> Vault:
        """The PII vault the addresses are read from (opened on first use)."""
        if self._vault is None:
            self._vault = Vault(self.paths, self.environ)
        return self._vault

    # ------------------------------------------------------------------ adapters
    def channel(self, name: str) -> Channel:
        """The adapter of channel ``name`` (given, or made from the environment once and kept)."""
        if name in self._given:
            return self._given[name]
        if name not in self._made:
            adapter = channel_from_env(name, self.paths.outbox, dict(self.environ) if self.environ is not None
                                       else None)
            enter = getattr(adapter, "__enter__", None)
            if enter is not None:
                enter()  # SMTP: one kept connection for the worker's life
            self._made[name] = adapter
        return self._made[name]

    def close(self) -> None:
        """Close the adapters this worker made (SMTP's kept connection)."""
        made, self._made = self._made, {}
        if self._vault is not None:
            self._vault.dispose()
            self._vault = None
        for adapter in made.values():
            exit_ = getattr(adapter, "__exit__", None)
            if exit_ is not None:
                try:
                    exit_(None, None, None)
                except Exception:  # noqa: BLE001 - closing is best effort
                    log.warning("closing the %s adapter failed", adapter.name, exc_info=True)

    def __enter__(self) -> DeliveryWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the loop
    def run_once(self, limit: int = 50) -> dict[str, int]:
        """Claim up to ``limit`` due deliveries and handle each; returns counts: ``claimed`` and
        per outcome (``sent``, ``retry``, ``dead_letter``, ``refused``, ``bounced``, ``released``,
        ``stale``: the row was no longer this attempt's when its result came)."""
        rows = queue.claim_due(self.engine, limit, self.worker_id, lease=self.lease, now=self.clock(),
                               max_attempts=self.retry.max_attempts)
        counts: Counter[str] = Counter(claimed=len(rows))
        if rows:
            # two pool checkouts for the batch: one for the writes (a transaction per result), one
            # in autocommit for the checks before each send (one statement, no BEGIN / COMMIT
            # round trips: on PostgreSQL three round trips became one)
            with self.engine.connect() as conn, self.engine.connect() as reader:
                reader = reader.execution_options(isolation_level="AUTOCOMMIT")
                for row in rows:
                    counts[self._handle(conn, reader, row)] += 1
        return dict(counts)

    def run_forever(self, stop_event: threading.Event, idle_sleep: float = 1.0, limit: int = 50,
                    on_batch: Callable[[dict], None] | None = None) -> None:
        """Run batches until ``stop_event`` is set; sleep ``idle_sleep`` seconds when nothing was due
        (or after an error of the store, logged: a locked or unreachable database is waited out)."""
        try:
            while not stop_event.is_set():
                try:
                    counts = self.run_once(limit)
                except sa.exc.SQLAlchemyError:
                    log.exception("delivery worker %s: the store failed; trying again in %.1f s",
                                  self.worker_id, idle_sleep)
                    stop_event.wait(idle_sleep)
                    continue
                if on_batch is not None and counts.get("claimed"):
                    on_batch(counts)
                if not counts.get("claimed"):
                    stop_event.wait(idle_sleep)
        finally:
            self.close()

    # ------------------------------------------------------------------ one delivery
    def _handle(self, conn: sa.Connection, reader: sa.Connection, row: dict) -> str:
        did, attempt, channel = row["delivery_id"], row["attempts"], row["channel"]
        refusal, message, rendered = self._prepare(reader, row)
        if refusal is None:
            wait = self._rate_wait(channel, row["lease_until"])
            if wait is not None:
                reason = f"rate limit of {channel}" if wait else "the lease is too close to its end to start a send"
                queue.release(conn, did, attempt, self.clock() + dt.timedelta(seconds=wait), reason,
                              now=self.clock())
                log.info("delivery %s (%s) attempt %d released untried", did, channel, attempt)
                return "released"
            result = self._send(channel, message, rendered)
        else:
            result = DeliveryResult(did, REFUSED, refusal)
        decision = self.retry.decide(result, attempt, now=self.clock())
        status = queue.record_result(conn, did, result, decision, now=self.clock())
        if status is None:
            log.warning("delivery %s (%s) attempt %d: %s, but the row is no longer this attempt's (lease "
                        "expired): not recorded", did, channel, attempt, result.status)
            return "stale"
        log.info("delivery %s (%s) attempt %d: %s -> %s", did, channel, attempt, result.status, status)
        return "retry" if status == dl.QUEUED else status

    def _prepare(self, conn: sa.Connection, row: dict) -> tuple[str | None, Message | None, object]:
        """(a refusal, None, None) or (None, the message with its address, its rendered content);
        ``conn`` in autocommit.
        The suppression, the stops and the address are read in one statement, right before this
        delivery's send (not once per batch: a stop that lands mid-batch holds the rest of it)."""
        brand, player, channel = row["brand_id"], row["player_id"], row["channel"]
        checks = [suppression_reason(brand, player, channel), queue.holding_stop_id(row)]
        if channel in ADDRESSED_CHANNELS:
            checks.append(sa.select(contacts.c.address_pseudonym).where(
                contacts.c.brand_id == brand, contacts.c.player_id == player, contacts.c.channel == channel)
                .limit(1).scalar_subquery())
        suppressed, stop_id, *contact = conn.execute(sa.select(*checks)).one()
        if suppressed is not None:
            return f"address suppressed ({suppressed})", None, None
        stop = queue.holding_stop(conn, row) if stop_id is not None else None
        if stop is not None:
            return (f"withdrawn before the send: {stop['event_type']} ({stop['kind']}"
                    f"{', ' + stop['channel'] if stop.get('channel') else ''}) at "
                    f"{stop['occurred_at'].isoformat(timespec='seconds')}"), None, None
        if contact and contact[0]:
            # the clear address, from the PII vault, at the channel edge only (never stored or logged)
            address = self.vault.contact(brand, player, channel)
        else:
            address = None if contact else player  # push / in_app: the gateway knows the devices
        if not address:
            return f"no address for {channel}", None, None
        try:
            template = self.templates.get(row["template_id"])
            locale = row["locale"] or template.default_locale
            rendered = self.templates.render(row["template_id"], locale, row["params"])
            version = template.version(rendered.locale)
            if (template.id, rendered.locale, version) not in self.approved_templates:
                return (f"template {template.id} ({rendered.locale}) version {version[:12]} is not approved by a "
                        "reviewer (crm templates review, or the web page's review)"), None, None
            message = Message(row["delivery_id"], row["channel"], row["player_id"], row["brand_id"], locale,
                              row["template_id"], row["params"], bool(row["transactional"]), row["campaign_id"],
                              address)
        except (TemplateError, TemplateRenderError, MessageError) as e:
            return f"cannot render: {e}", None, None
        return None, message, rendered

    def _rate_wait(self, channel: str, lease_until: dt.datetime) -> float | None:
        """None when a send may start now (a token taken, waiting for it if need be); else the
        seconds to hand the delivery back for (0: the lease is too close to its end)."""
        while True:
            left = (lease_until - self.send_margin - self.clock()).total_seconds()
            if left <= 0:
                return 0.0
            if self.limiter.try_acquire(channel):
                return None
            wait = self.limiter.wait_time(channel)
            if wait > left:
                return wait
            self.sleep(wait)

    def _send(self, channel: str, message: Message, rendered) -> DeliveryResult:
        try:
            adapter = self.channel(channel)
        except Exception as e:  # noqa: BLE001 - a configuration problem: retried, and loud in the log
            log.error("channel %s is not usable: %s", channel, e)
            return DeliveryResult(message.delivery_id, TEMPORARY_FAILURE, f"channel {channel} not usable: {e}")
        try:
            return adapter.send(message, rendered)
        except Exception as e:  # noqa: BLE001 - adapters never raise for a delivery; a bug is retried
            log.exception("adapter %s raised on delivery %s", channel, message.delivery_id)
            return DeliveryResult(message.delivery_id, TEMPORARY_FAILURE,
                                  f"adapter {channel} raised {type(e).__name__}")
