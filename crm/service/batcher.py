"""Concurrent requests handled together, in one thread: what a CPU-bound check costs per batch,
not per request.

The send check (:mod:`crm.campaigns.online`) runs the batch's vectorised rule table; on one row
its cost is almost all fixed overhead (about 7 ms of pandas), so checking every send that is
waiting in one call, in one transaction, is what lets the service keep up with a burst. There
is no waiting window: the thread takes whatever is queued when it is free, so a lone request is
handled at once (a batch of one) and a burst forms batches by itself, as large as the backlog.

Two items with the same *conflict keys* (the same player, the same idempotency key) never share
a batch: the later one waits for the next, so it sees what the earlier one wrote (its
delivery counts against caps and dedup; its stored answer is replayed). Order is kept.

Hand-written, not a library: a micro-batcher over a thread and futures is ~80 lines, and the
libraries for it are async-only or bring a broker.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("crm.service")


@dataclass
class Item:
    value: Any
    conflicts: tuple[Hashable, ...]
    future: Future = field(default_factory=Future)


# run(values) -> one result per value, in order: a value, or an exception to raise for that value
Runner = Callable[[Sequence[Any]], Sequence[Any]]


class Batcher:
    def __init__(self, run: Runner, name: str = "batcher", max_batch: int = 256):
        self._run, self._name, self.max_batch = run, name, max_batch
        self._cv = threading.Condition()
        self._pending: collections.deque[Item] = collections.deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0  # how many batches ran, and how many items they held (for /v1/metrics and tests)
        self.items = 0
        self.largest = 0

    def submit(self, value: Any, conflicts: tuple[Hashable, ...] = ()) -> Future:
        """Queue ``value``; the future holds its result (or raises its exception)."""
        item = Item(value, conflicts)
        with self._cv:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            self._pending.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cv.notify()
        return item.future

    def close(self, timeout: float = 30) -> None:
        """Finish what is queued, then stop the thread."""
        with self._cv:
            self._closed = True
            self._cv.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _take(self) -> list[Item] | None:
        with self._cv:
            while not self._pending and not self._closed:
                self._cv.wait()
            if not self._pending:
                return None
            batch, later, seen, held = [], [], set(), set()
            while self._pending and len(batch) < self.max_batch:
                item = self._pending.popleft()
                if seen.intersection(item.conflicts) or held.intersection(item.conflicts):
                    later.append(item)  # after the one it conflicts with, and before anything of its own keys
                    held.update(item.conflicts)
                else:
                    batch.append(item)
                    seen.update(item.conflicts)
            self._pending.extendleft(reversed(later))
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            self.batches, self.items = self.batches + 1, self.items + len(batch)
            self.largest = max(self.largest, len(batch))
            try:
                results = self._run([i.value for i in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{self._name}: {len(results)} results for {len(batch)} items")
            except BaseException as e:  # noqa: BLE001 - every waiting caller must hear of it
                log.exception("%s: a batch of %d failed", self._name, len(batch))
                results = [e] * len(batch)
            for item, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)
