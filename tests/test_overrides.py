"""Gate overrides: named, reasoned, audit-logged, scoped to one check / date / list; never compliance.

No ``from __future__ import annotations``: a Dagster asset check is defined below.
"""

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from crm.campaigns import approvals, audit
from crm.campaigns.dispatch import DispatchBlocked, dispatch_list
from crm.campaigns.lists import GATE_FILE, build_list, list_dir, publish
from crm.campaigns.overrides import (
    NON_OVERRIDABLE,
    OverrideError,
    active_overrides,
    apply_overrides,
    overridable,
    override,
    record_list_gate,
)
from crm.campaigns.spec import load_campaign
from crm.cli import main
from crm.config import CAMPAIGNS_DIR, Paths
from expectations.validate import GateResult, outcome

DAY = dt.date(2025, 10, 1)
BAND = "expect_table_row_count_to_be_between"
RATE = "expect_column_values_to_be_between(quarantine_rate)"  # as the landing suite names it


def _land(paths: Paths, name: str = "a") -> str:
    """Land a one-event file (a batch waiting for the landing gate); returns its batch id."""
    from crm.ingest.landing import ingest_file

    src = paths.home / f"{name}.jsonl"
    src.write_text(json.dumps({"event_id": f"ev_{name}", "event_type": "session.started", "trace_id": "t",
                               "player_id": "p_1", "brand_id": "A", "occurred_at": "2025-09-30T10:00:00Z",
                               "payload": {"session_id": "s"}}) + "\n")
    return ingest_file(src, paths).batch_id


def _home(tmp_path) -> Paths:
    """A data home with one landed batch waiting for the landing gate."""
    paths = Paths(tmp_path).ensure()
    _land(paths)
    return paths


def _result(*failing: tuple[str, str | None]) -> GateResult:
    outs = [outcome("expect_column_values_to_not_be_null", True, column="event_id")]
    outs += [outcome(e, False, 42, column=c, unexpected_count=1, sample=["p_1"]) for e, c in failing]
    return GateResult("landing", False, 10, outs)


def test_compliance_expectations_are_never_overridable(tmp_path):
    paths = _home(tmp_path)
    for name in [*NON_OVERRIDABLE, "expect_column_values_to_be_in_set(consent_email_version_is_latest)",
                 "expect_column_values_to_be_between(age_years)", "EXPECT_COLUMN_VALUES_TO_BE_UNIQUE(player_id)"]:
        assert not overridable(name)[0], name
        with pytest.raises(OverrideError, match="cannot be overridden"):
            override(paths, check="landing_gate", as_of=DAY, expectations=[RATE, name], by="Bob", reason="x")
    assert overridable(BAND + "()")[0] and overridable(RATE)[0]
    assert not audit.read_entries(paths)  # nothing recorded by a refused override


@pytest.mark.parametrize("by,reason,match", [("", "why", "--by"), ("  ", "why", "--by"),
                                              ("pipeline", "why", "not a person"), ("Dagster", "why", "not a person"),
                                              ("Bob", "", "--reason"), ("Bob", "   ", "--reason")])
def test_refuses_without_a_person_or_a_reason(tmp_path, by, reason, match):
    paths = _home(tmp_path)
    with pytest.raises(OverrideError, match=match):
        override(paths, check="landing_gate", as_of=DAY, expectations=[RATE], by=by, reason=reason)
    assert not audit.read_entries(paths)


def test_refuses_unknown_checks_no_expectation_and_misplaced_campaigns(tmp_path):
    paths = _home(tmp_path)
    kw = {"as_of": DAY, "by": "Bob", "reason": "known issue"}
    with pytest.raises(OverrideError, match="unknown gate"):
        override(paths, check="landing_gat", expectations=[RATE], **kw)
    for none in (None, [], ["  "]):
        with pytest.raises(OverrideError, match="never overridden as a whole"):
            override(paths, check="landing_gate", expectations=none, **kw)
    with pytest.raises(OverrideError, match="--campaign"):
        override(paths, check="compliance_gate", expectations=[BAND], **kw)
    with pytest.raises(OverrideError, match="no published list"):
        override(paths, check="compliance_gate", expectations=[BAND], campaign_id="nope", **kw)
    with pytest.raises(OverrideError, match="not a campaign gate"):
        override(paths, check="scores_gate", expectations=[BAND], campaign_id="nope", **kw)


def test_recorded_in_the_audit_log_scoped_to_check_and_date_and_the_log_still_verifies(tmp_path):
    paths = _home(tmp_path)
    e = override(paths, check="landing_gate", as_of=DAY, expectations=[RATE, RATE.upper()], by=" Bob ",
                 reason="vendor resent the file")
    assert e["kind"] == "gate_override" and e["by"] == "Bob" and e["reason"] == "vendor resent the file"
    from crm.ingest.landing import batches_to_gate

    assert e["details"] == {"check": "landing_gate", "as_of_date": "2025-10-01", "expectations": [RATE],
                            "list_sha256": None, "batches": batches_to_gate(paths)}
    assert audit.verify(paths).ok
    assert active_overrides(paths, "landing_gate", DAY) == {RATE}
    assert active_overrides(paths, "landing_gate", DAY + dt.timedelta(days=1)) == set()  # never a later date
    assert active_overrides(paths, "landing_gate", DAY - dt.timedelta(days=1)) == set()
    assert active_overrides(paths, "scores_gate", DAY) == set()  # another check

    # a pipeline-named entry written behind the API's back never counts, nor a compliance name
    audit.append(paths, "gate_override", by="pipeline", reason="auto",
                 details={"check": "landing_gate", "as_of_date": "2025-10-01", "expectations": [BAND],
                          "list_sha256": None})
    audit.append(paths, "gate_override", by="Mallory", reason="shh",
                 details={"check": "landing_gate", "as_of_date": "2025-10-01", "list_sha256": None,
                          "expectations": ["expect_column_values_to_be_in_set(compliance_violation)"]})
    assert active_overrides(paths, "landing_gate", DAY) == {RATE}

    # a broken log means no override at all
    lines = audit.log_file(paths).read_bytes().splitlines(keepends=True)
    audit.log_file(paths).write_bytes(b"".join(lines[:-1]))
    assert active_overrides(paths, "landing_gate", DAY) == set()


def test_cli_override_list_and_audit_verify(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_HOME", str(tmp_path / "home"))
    runner = CliRunner()

    def run(*args):
        return runner.invoke(main, list(args))

    for cmd in (["gate"], ["gate", "override"], ["gate", "overrides"]):
        assert run(*cmd, "--help").exit_code == 0
    r = run("gate", "override", "landing_gate", "--date", "2025-10-01", "--expectation", RATE, "--by", "Bob")
    assert r.exit_code == 2 and "Missing option '--reason'" in r.output
    r = run("gate", "override", "compliance_gate", "--date", "2025-10-01", "--campaign", "x", "--by", "Bob",
            "--reason", "r", "--expectation", "expect_column_values_to_be_in_set(compliance_violation)")
    assert r.exit_code == 1 and "cannot be overridden" in r.output
    r = run("gate", "override", "landing_gate", "--date", "2025-10-01", "--expectation", RATE, "--by", "Bob",
            "--reason", "vendor resent the file")
    assert r.exit_code == 1 and "nothing to override" in r.output  # no batch waiting for the gate
    _home(tmp_path / "home")
    r = run("gate", "override", "landing_gate", "--date", "2025-10-01", "--expectation", RATE, "--by", "Bob",
            "--reason", "vendor resent the file")
    assert r.exit_code == 0 and "seq 1" in r.output, r.output
    r = run("gate", "overrides", "--date", "2025-10-01")
    assert r.exit_code == 0 and "landing_gate" in r.output and "by Bob: vendor resent the file" in r.output
    assert "no gate overrides" in run("gate", "overrides", "--date", "2025-10-02").output
    assert json.loads(run("gate", "overrides", "--json").output)["overrides"][0]["details"]["expectations"] == [RATE]
    r = run("audit", "verify")
    assert r.exit_code == 0 and r.output.startswith("ok: 1 entries")


def test_a_waived_expectation_turns_the_check_green_naming_who_and_why(tmp_path):
    from orchestration.assets._gates import gate_check_result

    paths = _home(tmp_path)
    override(paths, check="landing_gate", as_of=DAY, expectations=[RATE], by="Bob", reason="vendor resent the file")
    scope = (paths, "landing_gate", DAY)

    res = gate_check_result(_result(("expect_column_values_to_be_between", "quarantine_rate")), scope=scope)
    assert res.passed and res.metadata["status"].value == "OVERRIDDEN"
    overrides = str(res.metadata["overrides"].value)  # a native Dagster table
    assert "Bob" in overrides and "vendor resent the file" in overrides
    assert "overridden by Bob: vendor resent the file" in res.description

    # a non-waived failure keeps it red, even next to a waived one
    both = _result(("expect_column_values_to_be_between", "quarantine_rate"),
                   ("expect_column_values_to_be_unique", "event_id"))
    res = gate_check_result(both, scope=scope)
    assert not res.passed and res.metadata["status"].value == "FAIL"
    assert "unique" in str(res.metadata["failed_expectations"].value)

    # another date / check: not waived; no scope outside a Dagster run: not waived
    assert not gate_check_result(_result(("expect_column_values_to_be_between", "quarantine_rate")),
                                 scope=(paths, "landing_gate", DAY + dt.timedelta(days=1))).passed
    assert not gate_check_result(_result(("expect_column_values_to_be_between", "quarantine_rate"))).passed

    # a compliance failure is never waived, even by an entry that names it
    audit.append(paths, "gate_override", by="Mallory", reason="shh",
                 details={"check": "landing_gate", "as_of_date": "2025-10-01", "list_sha256": None,
                          "expectations": ["expect_column_values_to_be_unique(player_id)"]})
    out, applied = apply_overrides(paths, _result(("expect_column_values_to_be_unique", "player_id")),
                                   "landing_gate", DAY)
    assert not out.success and applied == []


def test_list_size_band_override_lets_dispatch_proceed_but_never_a_compliance_failure(tmp_path, monkeypatch):
    from test_campaigns import _audience

    from expectations.campaign_list import GateContext, GatedList, gate_list

    monkeypatch.setenv(approvals.THRESHOLD_ENV, "1000000")
    paths = _home(tmp_path)
    spec = load_campaign(CAMPAIGNS_DIR / "cashback_recent_losers.yaml")
    profile = _audience(200)
    publish(build_list(spec, profile, DAY), paths)
    directory = list_dir(paths, spec.id, DAY)
    import pandas as pd

    lst = pd.read_parquet(directory / "list.parquet")

    def gate(profile=profile):
        return gate_list(GatedList(lst, profile, spec.experiment.holdout, list(spec.experiment.variants)),
                         GateContext(size_history=[20, 20, 20]))  # a list far outside the band of recent runs

    v = record_list_gate(paths, spec.id, DAY, gate())
    assert not v.passed and [o.name for o in v.result.failed] == [BAND]
    with pytest.raises(DispatchBlocked, match="gate failed"):
        dispatch_list(paths, spec.id, DAY, spec=spec)

    override(paths, check="compliance_gate", as_of=DAY, campaign_id=spec.id, expectations=[BAND + "()"],
             by="Carol Ops", reason="first week of a wider segment")
    assert active_overrides(paths, "compliance_gate", DAY, spec.id) == {BAND}
    assert active_overrides(paths, "compliance_gate", DAY, "other_campaign") == set()
    v = record_list_gate(paths, spec.id, DAY, gate())
    assert v.passed and v.overrides[0]["by"] == "Carol Ops" and v.result.overridden[0].name == BAND
    recorded = json.loads((directory / GATE_FILE).read_text())
    assert recorded["success"] and recorded["overrides"][0]["reason"] == "first week of a wider segment"
    assert dispatch_list(paths, spec.id, DAY, spec=spec).status == "dispatched"

    # a compliance failure on the same list still blocks, override or not
    harmful = profile.assign(harm_risk_flag=profile["player_id"] == lst["player_id"].iloc[0])
    v = record_list_gate(paths, spec.id, DAY, gate(harmful))
    names = [o.name for o in v.result.failed]
    assert not v.passed and names == ["expect_column_values_to_be_in_set(compliance_violation)"]
    with pytest.raises(DispatchBlocked, match="gate failed"):
        dispatch_list(paths, spec.id, DAY, spec=spec)

    # a changed list (other bytes) is not covered by the override given for the old one
    lst2 = lst.iloc[:-1]
    lst2.to_parquet(directory / "list.parquet", index=False)
    assert active_overrides(paths, "compliance_gate", DAY, spec.id) == set()
    assert audit.verify(paths).ok


def test_a_running_dagster_check_finds_its_own_name_and_date(tmp_path, monkeypatch):
    import dagster as dg

    from orchestration.assets._gates import gate_check_result
    from orchestration.resources import CrmResource

    monkeypatch.setenv("CRM_HOME", str(tmp_path))
    override(_home(tmp_path), check="landing_gate", as_of=DAY, expectations=[RATE], by="Bob", reason="ok")

    from orchestration.resources import DAILY

    @dg.asset(partitions_def=DAILY)
    def landed():
        return 1

    @dg.asset_check(asset=landed, name="landing_gate")
    def landing_gate(crm: CrmResource):
        return gate_check_result(_result(("expect_column_values_to_be_between", "quarantine_rate")))

    for day, status in ((DAY, "OVERRIDDEN"), (DAY + dt.timedelta(days=1), "FAIL")):
        run = dg.materialize([landed, landing_gate], resources={"crm": CrmResource()}, partition_key=day.isoformat())
        [ev] = run.get_asset_check_evaluations()
        assert ev.passed == (status == "OVERRIDDEN") and ev.metadata["status"].value == status


def test_a_landing_override_covers_only_the_batches_waiting_when_it_was_given(tmp_path):
    from crm.ingest.landing import batches_to_gate, record_landing_gate

    paths = _home(tmp_path)
    failing = _result(("expect_column_values_to_be_between", "quarantine_rate"))
    e = override(paths, check="landing_gate", as_of=DAY, expectations=[RATE], by="Bob", reason="vendor resent")
    assert e["details"]["batches"] == batches_to_gate(paths) and len(e["details"]["batches"]) == 1
    assert apply_overrides(paths, failing, "landing_gate", DAY)[0].success
    # a later batch fails the same way on the same as-of date: not covered
    _land(paths, "b")
    assert active_overrides(paths, "landing_gate", DAY) == set()
    assert not apply_overrides(paths, failing, "landing_gate", DAY)[0].success
    override(paths, check="landing_gate", as_of=DAY, expectations=[RATE], by="Bob", reason="both files checked")
    assert apply_overrides(paths, failing, "landing_gate", DAY)[0].success
    # nothing waiting: nothing to override
    record_landing_gate(paths, batches_to_gate(paths), passed=True)
    with pytest.raises(OverrideError, match="nothing to override"):
        override(paths, check="landing_gate", as_of=DAY, expectations=[RATE], by="Bob", reason="x")
