"""One line per step on the terminal while the full Dagster and dbt log goes to a file.

`crm run` and `crm backfill` (``python -m orchestration.run`` / ``.backfill``) run inside
:func:`quiet_terminal` and enable the ``progress`` logger with the file descriptor of the real
terminal; Dagster's own console logger and dbt's output go to ``$CRM_HOME/logs/``. Runs
started from the UI or a schedule do not configure it and log as usual.

Dagster hands loggers the structured event of a log record as the record's ``dagster_meta``
attribute (what its own JSON and console formatters read); that is the one hook for live step
progress of an in-process run, so it is read here rather than polling the event log.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dagster import Field, InitLoggerContext, logger

_CHECK_FAILED = "ASSET_CHECK_EVALUATION"


class _ProgressHandler(logging.Handler):
    def __init__(self, fd: int):
        super().__init__(level=logging.DEBUG)
        self.fd = fd
        self.started: dict[str, float] = {}
        self.materialized: dict[str, int] = {}
        self.tty = os.isatty(fd)

    def _write(self, text: str) -> None:
        os.write(self.fd, text.encode("utf-8", "replace"))

    def emit(self, record: logging.LogRecord) -> None:
        event = (getattr(record, "dagster_meta", None) or {}).get("dagster_event")
        if event is None or not event.step_key:
            return
        step, kind = event.step_key, event.event_type_value
        if kind == "STEP_START":
            self.started[step] = time.monotonic()
            self.materialized[step] = 0
            if self.tty:
                self._write(f"  ..    {step}\r")
        elif kind == "ASSET_MATERIALIZATION":
            self.materialized[step] = self.materialized.get(step, 0) + 1
            if self.tty and self.materialized[step] > 1:
                self._write(f"  ..    {step}  {self.materialized[step]} assets\r")
        elif kind == _CHECK_FAILED and not event.event_specific_data.passed:
            data = event.event_specific_data
            # a WARN-severity check (a gate's warnings, a campaign waiting for approval) does not block
            verdict = "WARN" if data.severity.value == "WARN" else "FAIL"
            self._write(f"  {verdict}  check {'/'.join(data.asset_key.path)}:{data.check_name}\n")
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            seconds = time.monotonic() - self.started.get(step, time.monotonic())
            count = self.materialized.get(step, 0)
            assets = f"  {count} assets" if count > 1 else ""
            if kind == "STEP_SUCCESS":
                self._write(f"  ok    {step:<58} {seconds:7.1f} s{assets}\n")
            elif kind == "STEP_SKIPPED":
                self._write(f"  skip  {step:<58} (blocked upstream)\n")
            else:
                error = getattr(event.event_specific_data, "error", None)
                reason = (error.message.strip().splitlines() or [""])[-1][:200] if error else ""
                self._write(f"  FAIL  {step:<58} {seconds:7.1f} s  {reason}\n")


@logger(
    config_schema={"fd": Field(int, description="file descriptor to write the step lines to")},
    description="One line per step (ok / FAIL / skip, seconds) for `crm run` on a terminal.",
)
def progress_logger(init_context: InitLoggerContext) -> logging.Logger:
    log = logging.getLogger(f"crm.progress.{init_context.run_id}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.handlers = [_ProgressHandler(init_context.logger_config["fd"])]
    return log


@dataclass
class Terminal:
    """Where a command's output goes while it runs: ``progress_fd`` gets the step lines (None with
    ``--verbose``); ``log_file`` holds the full log (None with ``--verbose``: it streams to stderr)."""

    progress_fd: int | None
    log_file: str | None

    def say(self, text: str) -> None:
        if self.progress_fd is not None:
            os.write(self.progress_fd, (text + "\n").encode("utf-8", "replace"))


def _log_path(home: Path, command: str) -> str:
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return str(logs / f"{command.split()[-1]}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.log")


@contextmanager
def quiet_terminal(home: Path, command: str, *, verbose: bool = False, log_file: str | None = None,
                   json_output: bool = False) -> Iterator[Terminal]:
    """Send everything written to stdout and stderr (Dagster, dbt subprocesses) to a log file under
    ``$CRM_HOME/logs/`` while the block runs, keeping the terminal for one line per step; with
    ``verbose``, the full log goes to stderr instead. With ``json_output`` the step lines go to
    stderr, so stdout carries only the JSON printed after the block. The terminal is restored on
    any exit; on an error the log's path is named."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_stdout, saved_stderr = os.dup(1), os.dup(2)
    log_file = None if verbose else (log_file or _log_path(home, command))
    sink = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if log_file else None
    os.dup2(sink if sink is not None else saved_stderr, 1)
    os.dup2(sink if sink is not None else saved_stderr, 2)
    terminal = Terminal(None if verbose else (saved_stderr if json_output else saved_stdout), log_file)
    terminal.say(f"{command}: one line per step; the full log is in {log_file}" if log_file else "")
    try:
        yield terminal
    except BaseException:
        _restore(saved_stdout, saved_stderr, sink)
        if log_file:
            print(f"{command} stopped: the full log is in {log_file}", file=sys.stderr)
        raise
    _restore(saved_stdout, saved_stderr, sink)


def _restore(saved_stdout: int, saved_stderr: int, sink: int | None) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(saved_stdout, 1)
    os.dup2(saved_stderr, 2)
    for fd in (saved_stdout, saved_stderr, sink):
        if fd is not None:
            os.close(fd)
