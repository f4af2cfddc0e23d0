"""Retries, rate limits and priority: pure logic, no clock of its own, no sleeping.

The delivery queue (later) holds the state; these decide:

* :class:`RetryPolicy` — after an attempt's :class:`~crm.channels.base.DeliveryResult`: done,
  retry at a time (exponential backoff with jitter, at least the provider's ``Retry-After``), or
  dead-letter (a temporary failure on the last allowed attempt). Only ``temporary_failure`` is
  retried; ``delivered``, ``permanent_failure`` and ``refused`` are final.
* :class:`RateLimiter` — a token bucket per channel (a relay's or gateway's messages per second,
  with a burst), on a clock the caller passes in.
* :func:`priority_key` — the order to send due messages in: transactional before marketing, then
  the earliest due, then the delivery id (deterministic).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from crm.channels.base import DELIVERED, TEMPORARY_FAILURE, DeliveryResult, Message

Action = Literal["done", "retry", "dead_letter"]


@dataclass(frozen=True)
class RetryDecision:
    action: Action
    attempt: int  # the attempt this decision follows (1 = the first send)
    next_attempt_at: dt.datetime | None = None  # when action == "retry"
    reason: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` sends at most (the first one included); the wait before attempt n + 1 is
    ``base_delay * factor ** (n - 1)`` capped at ``max_delay``, with "equal jitter": a random
    point in its upper ``jitter`` share (0: no jitter, 1: anywhere from 0 to the full wait).

    The jitter is a deterministic function of (delivery id, attempt) unless an ``rng`` is given:
    the same delivery retried twice from a restarted worker waits the same, and tests need no seed.
    """

    max_attempts: int = 6
    base_delay: dt.timedelta = dt.timedelta(seconds=30)
    factor: float = 2.0
    max_delay: dt.timedelta = dt.timedelta(hours=1)
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts: at least 1")
        if self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("factor >= 1 and 0 <= jitter <= 1")
        if self.base_delay <= dt.timedelta(0) or self.max_delay < self.base_delay:
            raise ValueError("0 < base_delay <= max_delay")

    def backoff(self, attempt: int, key: str = "", rng: random.Random | None = None) -> dt.timedelta:
        """The wait after failed attempt ``attempt`` (1-based)."""
        if attempt < 1:
            raise ValueError("attempt: 1 or more")
        seconds = self.base_delay.total_seconds() * self.factor ** min(attempt - 1, 64)
        full = min(seconds, self.max_delay.total_seconds())
        if rng is not None:
            u = rng.random()
        else:
            digest = hashlib.sha256(f"{key}|{attempt}".encode()).digest()
            u = int.from_bytes(digest[:8], "big") / 2**64
        return dt.timedelta(seconds=full * (1 - self.jitter) + full * self.jitter * u)

    def decide(self, result: DeliveryResult, attempt: int, now: dt.datetime | None = None,
               rng: random.Random | None = None) -> RetryDecision:
        """What follows attempt number ``attempt`` (1-based) of a delivery that came to ``result``.
        ``now`` defaults to the attempt's time."""
        if result.status == DELIVERED:
            return RetryDecision("done", attempt, reason="delivered")
        if result.status != TEMPORARY_FAILURE:
            return RetryDecision("done", attempt, reason=f"{result.status}: not retried")
        if attempt >= self.max_attempts:
            why = f"temporary failure on attempt {attempt} of {self.max_attempts}: {result.detail}"
            return RetryDecision("dead_letter", attempt, reason=why)
        wait = self.backoff(attempt, result.delivery_id, rng)
        if result.retry_after is not None:
            wait = max(wait, dt.timedelta(seconds=min(result.retry_after, self.max_delay.total_seconds())))
        at = (now or result.attempted_at) + wait
        return RetryDecision("retry", attempt, at, f"temporary failure: attempt {attempt + 1} at {at.isoformat()}")


@dataclass
class _Bucket:
    rate: float  # tokens per second
    capacity: float  # the burst
    tokens: float
    at: float


@dataclass
class RateLimiter:
    """A token bucket per channel. ``limits``: channel -> (messages per second, burst);
    ``clock``: seconds from any fixed origin (``time.monotonic`` in a worker, a fake in tests). A
    channel without a limit is not limited. Not thread-safe: one limiter per sending loop."""

    limits: Mapping[str, tuple[float, float]]
    clock: Callable[[], float]
    _buckets: dict[str, _Bucket] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        now = self.clock()
        for channel, (rate, burst) in self.limits.items():
            if rate <= 0 or burst < 1:
                raise ValueError(f"{channel}: rate > 0 and burst >= 1")
            self._buckets[channel] = _Bucket(float(rate), float(burst), float(burst), now)

    def _refill(self, channel: str) -> _Bucket | None:
        bucket = self._buckets.get(channel)
        if bucket is not None:
            now = self.clock()
            bucket.tokens = min(bucket.capacity, bucket.tokens + max(0.0, now - bucket.at) * bucket.rate)
            bucket.at = max(bucket.at, now)
        return bucket

    def try_acquire(self, channel: str, n: int = 1) -> bool:
        """Take ``n`` tokens for ``channel`` if there are; False (nothing taken) if not."""
        bucket = self._refill(channel)
        if bucket is None:
            return True
        if n > bucket.capacity:
            raise ValueError(f"{channel}: {n} at once is more than the burst {bucket.capacity:g}")
        if bucket.tokens >= n:
            bucket.tokens -= n
            return True
        return False

    def wait_time(self, channel: str, n: int = 1) -> float:
        """Seconds until ``n`` tokens are there for ``channel`` (0 if now)."""
        bucket = self._refill(channel)
        if bucket is None or bucket.tokens >= n:
            return 0.0
        return (n - bucket.tokens) / bucket.rate


def priority_key(message: Message, due_at: dt.datetime) -> tuple[int, dt.datetime, str]:
    """Sort key for due messages: transactional (0) before marketing (1), then due time, then id."""
    return (0 if message.transactional else 1, due_at, message.delivery_id)
