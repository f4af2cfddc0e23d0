"""``make ui`` (``python -m crm.cli.ui``): the Dagster UI, the MLflow UI and the Data Docs server as one
supervised group.

Shell job control does not stop them: ``dagster dev`` started in the background of a shell ignores
SIGINT, and MLflow kept running when Dagster died. Here each server is a child in a process group of
its own; on SIGINT (Ctrl-C), SIGTERM (a kill of ``make ui``: make passes SIGTERM on to its child),
SIGHUP, the exit of any child, or the death of the process that started this one, every group gets
SIGINT (what Ctrl-C in a terminal sends it), then SIGTERM, then SIGKILL, and :func:`supervise` returns
when none is left. A child
also gets SIGTERM if this process is killed outright (Linux ``PR_SET_PDEATHSIG``).

No Dagster or MLflow import here: the servers are commands.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from crm.config import REPO_ROOT, export_env


@dataclass(frozen=True)
class Child:
    name: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the environment
    url: str = ""


def stop_on_signals(logger: str, what: str):
    """A ``threading.Event`` set by Ctrl-C or SIGTERM (logged to ``logger``: "stopping after
    ``what``"): how a worker command finishes what it holds and stops."""
    import logging
    import threading

    stop = threading.Event()

    def _stop(signum, _frame) -> None:
        logging.getLogger(logger).info("signal %d: stopping after %s", signum, what)
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    return stop


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the signal handlers and the parent watch still apply
        pass


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (zombies do not count)."""
    proc = Path("/proc")
    if proc.is_dir():
        for d in proc.iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
            if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
                return True
        return False
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def supervise(children: list[Child], *, grace: float = 20.0, poll: float = 0.2, cwd: str | Path | None = None,
              echo=print) -> int:
    """Start ``children``, each in a new session (its own process group); return when they are all gone.

    Stops everything on SIGINT / SIGTERM / SIGHUP, when a child exits, or when the parent process
    goes away. Returns 0 after a signal, else the exit code of the child that ended first (1 if 0).
    """
    stop: list[str] = []
    previous = {}

    def on_signal(signum, _frame):
        stop.append(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, on_signal)
    procs: list[tuple[Child, subprocess.Popen]] = []
    parent = os.getppid()
    code = 0
    try:
        for child in children:
            p = subprocess.Popen(child.cmd, cwd=cwd, env={**os.environ, **child.env}, start_new_session=True,
                                 preexec_fn=_die_with_parent)
            procs.append((child, p))
            echo(f"started {child.name} (pid {p.pid}){': ' + child.url if child.url else ''}")
        while not stop:
            ended = [(c, p) for c, p in procs if p.poll() is not None]
            if ended:
                c, p = ended[0]
                code = p.returncode or 1
                stop.append(f"{c.name} exited with code {p.returncode}")
            elif os.getppid() != parent:
                stop.append("the parent process is gone")
            else:
                time.sleep(poll)
    finally:
        echo(f"stopping {', '.join(c.name for c, _ in procs)} ({stop[0] if stop else 'error'})")
        # what a terminal's Ctrl-C does (SIGINT to the whole group: dagster dev and uvicorn shut down
        # their workers on it), then SIGTERM, then SIGKILL
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, min(grace, 3.0)), (signal.SIGKILL, 0)):
            alive = [(c, p) for c, p in procs if _group_alive(p.pid)]
            if not alive:
                break
            if sig == signal.SIGKILL:
                echo(f"{', '.join(c.name for c, _ in alive)} did not stop: SIGKILL")
            for _, p in alive:
                _signal_group(p.pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(_group_alive(p.pid) for _, p in alive):
                for _, p in alive:
                    p.poll()
                time.sleep(poll)
        for _, p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def ui_children(host: str = "127.0.0.1", dagster_port: int = 3000, mlflow_port: int = 5000,
                docs_port: int = 3001) -> list[Child]:
    """The three servers over the data home ($CRM_HOME, exported for them)."""
    paths = export_env()
    paths.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    docs_url = f"http://{host}:{docs_port}"
    env = {"CRM_DATA_DOCS_URL": docs_url}  # the Data Docs links Dagster shows point at this server
    return [
        Child("mlflow", [py, "-m", "mlflow", "ui", "--backend-store-uri", paths.mlflow_tracking_uri,
                         "--default-artifact-root", str(paths.mlflow_artifacts), "--host", host,
                         "--port", str(mlflow_port)], env, f"http://{host}:{mlflow_port}"),
        Child("data-docs", [py, "-m", "expectations.data_docs", "serve", "--host", host, "--port", str(docs_port)],
              env, docs_url + "/"),
        Child("dagster", [py, "-m", "dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-h", host,
                          "-p", str(dagster_port)], env, f"http://{host}:{dagster_port}"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crm.cli.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--dagster-port", type=int, default=int(os.environ.get("DAGSTER_PORT", 3000)))
    parser.add_argument("--mlflow-port", type=int, default=int(os.environ.get("MLFLOW_PORT", 5000)))
    parser.add_argument("--docs-port", type=int, default=int(os.environ.get("DOCS_PORT", 3001)))
    parser.add_argument("--grace", type=float, default=20.0, help="seconds to stop on SIGINT")
    args = parser.parse_args(argv)
    children = ui_children(args.host, args.dagster_port, args.mlflow_port, args.docs_port)
    print("  ".join(f"{c.name}: {c.url}" for c in children) + "   (Ctrl-C stops all three)", flush=True)
    return supervise(children, grace=args.grace, cwd=REPO_ROOT, echo=lambda m: print(f"[ui] {m}", flush=True))


if __name__ == "__main__":
    sys.exit(main())
