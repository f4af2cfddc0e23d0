"""The `crm` command: --help everywhere, clear errors on bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from crm.cli import main

COMMANDS = [["simulate"], ["ingest"], ["run"], ["lists"], ["campaigns"], ["import-daily"], ["ml"],
            ["ml", "train"], ["ml", "evaluate"], ["ml", "promote"], ["ml", "rollback"], ["ml", "list"],
            ["ml", "uplift"], ["ml", "uplift", "train"], ["ml", "uplift", "score"], ["serve"], ["api-keys"],
            ["api-keys", "create"], ["api-keys", "list"], ["api-keys", "revoke"], ["api-events"],
            ["api-events", "hand-off"], ["api-events", "status"]]


@pytest.mark.parametrize("cmd", [[], *COMMANDS])
def test_every_command_has_help(cmd):
    r = CliRunner().invoke(main, [*cmd, "--help"])
    assert r.exit_code == 0 and "Usage:" in r.output


def test_simulate_ingest_lists_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_HOME", str(tmp_path))
    runner = CliRunner()
    r = runner.invoke(main, ["simulate", "--players", "50", "--days", "20", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["players"] == 50
    r = runner.invoke(main, ["ingest", str(tmp_path / "landing" / "incoming"), "--json"])
    reports = json.loads(r.output)
    assert all(x["records"] == x["loaded"] + x["quarantined"] + x["duplicates"] for x in reports)
    r = runner.invoke(main, ["ingest", str(tmp_path / "landing" / "incoming")])
    assert "already ingested: nothing changed" in r.output
    r = runner.invoke(main, ["lists"])
    assert r.exit_code == 0 and "no published lists" in r.output


def test_bad_inputs_get_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_HOME", str(tmp_path))
    runner = CliRunner()
    r = runner.invoke(main, ["run", "--date", "31/12/2025"])
    assert r.exit_code != 0 and "expected YYYY-MM-DD" in r.output
    bad = tmp_path / "events.xml"
    bad.write_text("<events/>")
    r = runner.invoke(main, ["ingest", str(bad)])
    assert r.exit_code != 0 and "unsupported file type '.xml'" in r.output
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "oops.yaml").write_text("id: oops\nname: x\nchannel: carrier_pigeon\n")
    r = runner.invoke(main, ["campaigns", "--dir", str(tmp_path / "c")])
    assert r.exit_code == 1 and "oops.yaml" in r.output and "field 'channel'" in r.output
