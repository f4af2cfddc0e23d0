"""One writer per data home: a second `crm run` (or ingest, or Dagster run) stops with a clear
message instead of a DuckDB lock traceback, and a killed run never leaves the home locked."""

import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from dagster import asset, materialize

from crm.config import Paths
from crm.run_lock import RunInProgress, holder, run_lock
from orchestration.resources import CrmResource

HOLD = """
import sys, time
from crm.config import Paths
from crm.run_lock import run_lock
from pathlib import Path
with run_lock(Paths(Path(sys.argv[1])), "crm run --date 2025-08-30"):
    print("locked", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def held(tmp_path):
    """Another process holding the run lock of a home, as a running `crm run` would."""
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(home)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield Paths(home), proc
    proc.kill()
    proc.wait()


def test_a_second_run_stops_with_a_clear_message(held):
    paths, proc = held
    env = os.environ | {"CRM_HOME": str(paths.home)}
    res = subprocess.run([sys.executable, "-m", "orchestration.run", "--date", "2025-08-30"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert "a run is in progress" in res.stderr and "crm run --date 2025-08-30" in res.stderr
    assert f"pid {proc.pid}" in res.stderr
    assert "Traceback" not in res.stderr and "IO Error" not in res.stderr


def test_ingest_waits_for_no_one_and_says_why(held, tmp_path, monkeypatch):
    from crm.cli import main

    paths, _ = held
    monkeypatch.setenv("CRM_HOME", str(paths.home))
    src = tmp_path / "e.jsonl"
    src.write_text('{"event_id": "e1"}\n')
    res = CliRunner().invoke(main, ["ingest", str(src)])
    assert res.exit_code == 1 and "a run is in progress" in res.output
    assert not paths.ingest_log.exists()  # nothing was landed


@asset
def touches_the_home(crm: CrmResource) -> None:
    raise AssertionError("must not run while another run holds the home")


def test_a_dagster_run_holds_the_lock_too(held, monkeypatch):
    paths, _ = held
    monkeypatch.setenv("CRM_HOME", str(paths.home))
    result = materialize([touches_the_home], resources={"crm": CrmResource()}, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_failure)
    assert "a run is in progress" in str(failure.event_specific_data.error)


def test_the_lock_is_reentrant_in_one_process_and_freed_when_its_holder_dies(tmp_path):
    paths = Paths(tmp_path / "home")
    with run_lock(paths, "outer"), run_lock(paths, "inner"):  # crm run, then the Dagster run it starts
        assert holder(paths)["what"] == "outer"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(paths.home)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(RunInProgress, match="crm run --date 2025-08-30"):
        with run_lock(paths, "second"):
            pass
    os.kill(proc.pid, signal.SIGKILL)  # kill -9: no clean-up runs
    proc.wait()
    deadline = time.time() + 10
    while True:
        try:
            with run_lock(paths, "after the crash"):
                break
        except RunInProgress:
            assert time.time() < deadline, "the lock of a dead process was not released"
            time.sleep(0.1)
