"""`make ui`'s supervisor (crm/cli/ui.py): a SIGTERM, a Ctrl-C or one server's exit stops every server,
their own children too, SIGKILL for one that ignores SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from crm.cli.ui import _group_alive

REPO = Path(__file__).resolve().parents[1]

# a server that starts a worker of its own (like dagster dev), records both pids, and waits
SERVER = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    name, out, ignore_term = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    if ignore_term:  # like dagster dev started in a shell's background
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(os.path.join(out, name + ".pids"), "w") as f:
        f.write(f"{os.getpid()} {worker.pid}")
    time.sleep(float(sys.argv[4]) if len(sys.argv) > 4 else 600)
""")

SUPERVISOR = textwrap.dedent("""
    import json, sys
    from crm.cli.ui import Child, supervise
    children = [Child(c["name"], c["cmd"]) for c in json.loads(sys.argv[1])]
    sys.exit(supervise(children, grace=float(sys.argv[2]), poll=0.05))
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp_path: Path, children: list[dict], grace: float = 1.0) -> subprocess.Popen:
    script = tmp_path / "supervisor.py"
    script.write_text(SUPERVISOR)
    server = tmp_path / "server.py"
    server.write_text(SERVER)
    for c in children:
        c["cmd"] = [a.replace("{server}", str(server)) for a in c["cmd"]]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(script), json.dumps(children), str(grace)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def _pids(tmp_path: Path, names: list[str]) -> list[int]:
    _wait_for(lambda: all((tmp_path / f"{n}.pids").exists() and (tmp_path / f"{n}.pids").read_text()
                          for n in names))
    return [int(p) for n in names for p in (tmp_path / f"{n}.pids").read_text().split()]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_server_and_their_children(tmp_path, sig):
    port = _free_port()
    children = [
        {"name": "dagster", "cmd": [sys.executable, "{server}", "dagster", str(tmp_path), "1"]},  # ignores INT, TERM
        {"name": "mlflow", "cmd": [sys.executable, "{server}", "mlflow", str(tmp_path), "0"]},
        {"name": "data-docs", "cmd": [sys.executable, "-m", "expectations.data_docs", "serve",
                                      "--root", str(tmp_path / "docs"), "--port", str(port)]},
    ]
    sup = _start(tmp_path, children)
    try:
        pids = _pids(tmp_path, ["dagster", "mlflow"])

        def docs_up() -> bool:
            try:
                return b"Data Docs" in urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
            except OSError:
                return False

        _wait_for(docs_up)
        assert all(_alive(p) for p in pids)
        sup.send_signal(sig)
        assert sup.wait(timeout=30) == 0
        out = sup.stdout.read()
        assert "dagster did not stop: SIGKILL" in out  # the others stopped on SIGINT or SIGTERM
        _wait_for(lambda: not any(_alive(p) for p in pids), timeout=10)
        assert not docs_up()
    finally:
        if sup.poll() is None:
            sup.kill()


def test_one_server_exiting_stops_the_others(tmp_path):
    children = [
        {"name": "mlflow", "cmd": [sys.executable, "{server}", "mlflow", str(tmp_path), "0"]},
        {"name": "dagster", "cmd": [sys.executable, "{server}", "dagster", str(tmp_path), "0", "1.5"]},  # dies
    ]
    sup = _start(tmp_path, children)
    try:
        pids = _pids(tmp_path, ["mlflow", "dagster"])
        assert sup.wait(timeout=30) != 0
        assert "dagster exited" in sup.stdout.read()
        _wait_for(lambda: not any(_alive(p) for p in pids), timeout=10)
    finally:
        if sup.poll() is None:
            sup.kill()


def test_group_alive_sees_a_running_group_and_not_an_ended_one():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        assert _group_alive(p.pid)
    finally:
        p.kill()
        p.wait()
    assert not _group_alive(p.pid)
