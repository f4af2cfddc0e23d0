"""One writer at a time per data home: the run lock.

DuckDB allows one writing process per warehouse file, and landing appends to logs that two
processes would interleave. So every command that writes the home (``crm run``, ``crm backfill``,
``crm ingest``, ``crm import-daily``, and any Dagster run: its ``crm`` resource takes the lock for
the run) holds ``$CRM_HOME/.run.lock`` while it works. A second one does not wait and does not
crash on a DuckDB lock: it stops with :class:`RunInProgress`, naming what holds the lock, since
when and which process.

The lock is an OS file lock (``filelock``, a well-kept library): it is released when its process
ends, even on ``kill -9``, so a dead run never leaves the home locked. One lock object per home
and process, re-entrant: ``crm run`` holds it and the Dagster run it starts in the same process
takes it again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from filelock import FileLock, Timeout

from crm.config import Paths


class RunInProgress(RuntimeError):
    """Another process holds the home's run lock."""


def _lock(paths: Paths) -> FileLock:
    # is_singleton: the same object for the same file in this process (re-entrant across callers)
    return FileLock(paths.home / ".run.lock", timeout=0, thread_local=False, is_singleton=True)


def _holder_file(paths: Paths):
    return paths.home / ".run.lock.json"


def holder(paths: Paths) -> dict:
    """What the last holder of the lock recorded (what, since, pid, host); {} if unknown."""
    try:
        return json.loads(_holder_file(paths).read_text())
    except (OSError, ValueError):
        return {}


@contextmanager
def run_lock(paths: Paths, what: str) -> Iterator[None]:
    """Hold the home's run lock while the block runs; :class:`RunInProgress` if another process has it."""
    paths.home.mkdir(parents=True, exist_ok=True)
    lock = _lock(paths)
    try:
        lock.acquire()
    except Timeout:
        h = holder(paths)
        by = (f"{h.get('what', 'a run')} (pid {h.get('pid', '?')} on {h.get('host', '?')}, since {h.get('since', '?')})"
              if h else "another process")
        raise RunInProgress(f"a run is in progress on {paths.home}: {by}. Wait for it to finish (the Dagster UI "
                            "shows its progress), then try again.") from None
    try:
        if lock.lock_counter == 1:
            tmp = _holder_file(paths).with_suffix(".tmp")
            tmp.write_text(json.dumps({"what": what, "pid": os.getpid(), "host": socket.gethostname(),
                                       "since": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}))
            os.replace(tmp, _holder_file(paths))
        yield
    finally:
        lock.release()
