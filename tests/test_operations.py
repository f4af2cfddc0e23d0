"""Running on its own: the landing sensor, mart freshness checks, failure notifications.

Fast: tiny files and toy assets in an ephemeral Dagster instance; the webhook is a local
http.server on loopback.
"""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty data home; every variable export_env() sets is restored afterwards."""
    h = tmp_path / "home"
    for var in ("CRM_HOME", "DAGSTER_HOME", "MLFLOW_TRACKING_URI", "DBT_LOG_PATH", "CRM_NOTIFY_WEBHOOK"):
        monkeypatch.setenv(var, os.environ.get(var, ""))
    monkeypatch.setenv("CRM_HOME", str(h))
    monkeypatch.delenv("CRM_NOTIFY_WEBHOOK")
    from crm.config import export_env

    export_env()
    return h


def _notifications(home: Path) -> list[dict]:
    p = home / "notifications.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


# ---- crm.notify -----------------------------------------------------------------------------

def test_notify_logs_a_json_line(home, caplog):
    from crm.notify import notify

    with caplog.at_level("ERROR", logger="crm.notify"):
        out = notify({"kind": "run_failure", "summary": "daily_refresh failed", "run_id": "r1"})
    assert out == {"logged": True, "webhook": None}
    [line] = _notifications(home)
    assert line["kind"] == "run_failure" and line["run_id"] == "r1" and line["notified_at"]
    assert "daily_refresh failed" in caplog.text


class _Recorder(BaseHTTPRequestHandler):
    received: list = []
    status = 200

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    class Handler(_Recorder):
        received: list = []

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", Handler
    server.shutdown()
    server.server_close()


def test_notify_posts_the_event_to_the_webhook(home, webhook, monkeypatch):
    from crm.notify import notify

    url, handler = webhook
    monkeypatch.setenv("CRM_NOTIFY_WEBHOOK", url)
    out = notify({"kind": "gate_failure", "summary": "list blocked", "failed_checks": [{"check": "compliance_gate"}]})
    assert out == {"logged": True, "webhook": "sent"}
    [(path, ctype, payload)] = handler.received
    assert path == "/hook" and ctype == "application/json"
    assert payload["kind"] == "gate_failure" and payload["failed_checks"] == [{"check": "compliance_gate"}]
    assert payload == _notifications(home)[0]  # the same event as the log line


def test_a_failing_webhook_never_raises(home, webhook, monkeypatch):
    from crm.notify import notify

    url, handler = webhook
    handler.status = 500
    monkeypatch.setenv("CRM_NOTIFY_WEBHOOK", url)
    assert notify({"kind": "run_failure"})["webhook"].startswith("failed: HTTPError")
    monkeypatch.setenv("CRM_NOTIFY_WEBHOOK", "http://127.0.0.1:9/nothing-listens-here")  # refused
    monkeypatch.setenv("CRM_NOTIFY_TIMEOUT", "1")
    assert notify({"kind": "run_failure"})["webhook"].startswith("failed:")
    monkeypatch.setenv("CRM_NOTIFY_WEBHOOK", "not a url")
    assert notify({"kind": "run_failure"})["webhook"].startswith("failed:")
    assert len(_notifications(home)) == 3  # still logged every time


# ---- landing sensor -------------------------------------------------------------------------

EVENT = {"event_id": "ev_1", "event_type": "player.registered", "trace_id": "tr_1", "player_id": "p_1",
         "brand_id": "A", "occurred_at": "2025-10-23T11:21:05Z",
         "payload": {"country": "MT", "region": "MT", "locale": "en-MT", "birth_date": "1990-01-01",
                     "timezone": "Europe/Malta", "email": "x@example.com", "phone": "+3560000",
                     "device_id": "d1", "ip": "10.0.0.1"}}


def _drop(home: Path, name: str, event_id: str, mtime: float) -> Path:
    p = home / "landing" / "incoming" / name
    p.write_text(json.dumps({**EVENT, "event_id": event_id}) + "\n")
    os.utime(p, (mtime, mtime))
    return p


def _tick(cursor):
    from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context

    from orchestration.sensors import landing_sensor

    with DagsterInstance.ephemeral() as instance:
        out = landing_sensor(build_sensor_context(instance=instance, cursor=cursor))
    if isinstance(out, SkipReason):
        return [], cursor, out.skip_message
    assert isinstance(out, SensorResult)
    return list(out.run_requests or []), out.cursor, out.skip_reason.skip_message if out.skip_reason else ""


def test_landing_sensor_requests_one_run_per_new_file(home):
    now = time.time()
    reqs, cursor, why = _tick(None)
    assert not reqs and "no new files" in why

    _drop(home, "a.jsonl", "ev_a", now - 60)
    (home / "landing" / "incoming" / "notes.txt").write_text("not a contract file")
    [req], cursor, _ = _tick(None)
    assert req.tags["crm/files"] == "a.jsonl" and req.tags["crm/trigger"] == "landing_sensor"
    assert json.loads(cursor)["name"] == "a.jsonl"

    reqs, same, why = _tick(cursor)  # the same file never triggers twice
    assert not reqs and same == cursor and "no new files" in why

    _drop(home, "b.jsonl", "ev_b", now - 30)
    [req_b], cursor_b, _ = _tick(cursor)
    assert req_b.tags["crm/files"] == "b.jsonl" and req_b.run_key != req.run_key
    assert json.loads(cursor_b)["name"] == "b.jsonl"


def test_landing_sensor_skips_content_already_landed_but_advances(home):
    from crm.config import Paths
    from crm.ingest.landing import ingest_file

    p = _drop(home, "c.jsonl", "ev_c", time.time() - 10)
    report = ingest_file(p, Paths(home))  # e.g. `crm ingest` got there first
    assert report.records == 1  # landed (loaded or quarantined, either way logged)
    reqs, cursor, why = _tick(None)
    assert not reqs and "already landed" in why and json.loads(cursor)["name"] == "c.jsonl"


def test_the_landing_run_lands_the_file(home):
    """What the sensor requests (job land_incoming) lands the file and its check passes."""
    from dagster import DagsterInstance, materialize

    from orchestration.assets.landing import landed_events, landing_counts_add_up
    from orchestration.resources import CrmResource
    from orchestration.sensors import land_incoming

    _drop(home, "d.jsonl", "ev_d", time.time())
    assert land_incoming.name == "land_incoming"
    result = materialize([landed_events, landing_counts_add_up], instance=DagsterInstance.ephemeral(),
                         resources={"crm": CrmResource()})
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    assert _tick(None)[0] == []  # landed: nothing left for the sensor


# ---- failure and gate notifications ---------------------------------------------------------

def _toy_graph():
    from dagster import AssetCheckResult, AssetCheckSeverity, asset, asset_check

    @asset
    def campaign_list():
        return 1

    @asset_check(asset=campaign_list, blocking=True)
    def compliance_gate():
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR,
                                description="2 self-excluded players on the list")

    @asset(deps=[campaign_list])
    def dispatch():
        return 1

    @asset
    def boom():
        raise RuntimeError("warehouse locked")

    return campaign_list, compliance_gate, dispatch, boom


def _sensor_context(result, instance):
    from dagster import build_run_status_sensor_context

    return build_run_status_sensor_context(
        sensor_name="notify_on_run_failure", dagster_event=result.get_run_failure_event(),
        dagster_instance=instance, dagster_run=result.dagster_run).for_run_failure()


def test_a_failed_run_notifies_with_the_failed_step(home):
    from dagster import DagsterInstance, materialize

    from orchestration.sensors import notify_on_run_failure

    *_, boom = _toy_graph()
    with DagsterInstance.ephemeral() as instance:
        result = materialize([boom], instance=instance, raise_on_error=False)
        assert not result.success
        notify_on_run_failure(_sensor_context(result, instance))
    [n] = _notifications(home)
    assert n["kind"] == "run_failure" and n["run_id"] == result.run_id and n["failed_steps"] == ["boom"]
    assert n["failed_checks"] == [] and n["url"].endswith(f"/runs/{result.run_id}")


def test_a_blocking_gate_failure_notifies_naming_the_check(home):
    from dagster import DagsterInstance, materialize

    from orchestration.sensors import notify_on_run_failure

    campaign_list, gate, dispatch, _ = _toy_graph()
    with DagsterInstance.ephemeral() as instance:
        result = materialize([campaign_list, gate, dispatch], instance=instance, raise_on_error=False)
        assert not result.success  # the gate blocked dispatch and failed the run
        notify_on_run_failure(_sensor_context(result, instance))
    [n] = _notifications(home)
    assert n["failed_checks"] == [{"asset": "campaign_list", "check": "compliance_gate", "severity": "ERROR",
                                   "description": "2 self-excluded players on the list"}]
    assert "campaign_list:compliance_gate" in n["summary"]


# ---- freshness ------------------------------------------------------------------------------

def _imported_until(home: Path, first: str, last: str) -> None:
    """Imported daily aggregates from ``first`` to ``last`` (what default_as_of and the partition start read)."""
    import pandas as pd

    d = home / "landing" / "imported_daily"
    d.mkdir(parents=True, exist_ok=True)
    days = pd.date_range(first, last, freq="D").date
    pd.DataFrame({"player_id": "p1", "activity_date": days}).to_parquet(d / "import_t.parquet")


def test_mart_freshness_follows_the_data_dates_not_the_wall_clock(home):
    """A 2025 history opened in 2026: fresh when its latest as-of date (the day after the data) was run,
    whatever today is; a backfill of an old date leaves the tables describing that date (stale) but not the
    scores (their latest partition is still there)."""
    import datetime as dt

    from dagster import AssetCheckSeverity, AssetSelection, DagsterInstance, asset, materialize

    from orchestration.resources import DAILY
    from orchestration.sensors import (
        FRESH_MARTS,
        FRESH_PARTITIONED,
        expected_as_of,
        freshness_checks_sensor,
        latest_deadline,
        mart_freshness_checks,
    )

    names = [*FRESH_MARTS, *FRESH_PARTITIONED]
    keys = {k.asset_key.to_user_string() for c in mart_freshness_checks for k in c.check_keys}
    assert keys == set(names) == {"dim_player", "fct_player_daily", "player_features", "player_scores"}
    assert freshness_checks_sensor.name == "freshness_checks_sensor"
    _imported_until(home, "2025-06-01", "2025-09-28")
    from crm.config import export_env

    assert expected_as_of(export_env()) == (dt.date(2025, 9, 29), dt.date(2025, 9, 29))
    # data arriving during a day is due at the next 09:00 UTC deadline, not before
    morning = dt.datetime(2025, 9, 29, 5, tzinfo=dt.UTC)
    assert latest_deadline(morning) == dt.datetime(2025, 9, 28, 9, tzinfo=dt.UTC)
    assert expected_as_of(export_env(), morning) == (dt.date(2025, 9, 28), dt.date(2025, 9, 29))

    def stand_in(name):  # same keys, daily-partitioned like the real ones
        @asset(name=name, partitions_def=DAILY)
        def _a():
            return None
        return _a

    marts = [stand_in(n) for n in names]
    checks_only = AssetSelection.checks(*mart_freshness_checks)

    def verdicts(instance):
        result = materialize([*marts, *mart_freshness_checks], instance=instance, selection=checks_only)
        evs = result.get_asset_check_evaluations()
        assert all(e.severity == AssetCheckSeverity.WARN for e in evs)
        assert all(e.metadata["expected_partition"].value == "2025-09-29" for e in evs)
        return {e.asset_key.to_user_string(): e.passed for e in evs}

    with DagsterInstance.ephemeral() as instance:
        assert verdicts(instance) == dict.fromkeys(names, False)
        materialize(marts, instance=instance, partition_key="2025-09-29")  # crm run: the data's latest date
        assert verdicts(instance) == dict.fromkeys(names, True)
        # a backfill of an old date just now: the tables describe that date again, the scores of 09-29 stay
        materialize(marts, instance=instance, partition_key="2025-09-01")
        assert verdicts(instance) == {**dict.fromkeys(FRESH_MARTS, False), **dict.fromkeys(FRESH_PARTITIONED, True)}


def test_partitions_start_on_the_first_day_of_the_data(home, monkeypatch):
    import datetime as dt

    from crm.config import export_env
    from crm.contract import EARLIEST_EVENT_TIME
    from orchestration.resources import partitions_start

    monkeypatch.delenv("CRM_PARTITIONS_START", raising=False)
    assert partitions_start(export_env()) == EARLIEST_EVENT_TIME.date()  # no data yet: any history fits
    _imported_until(home, "2013-03-01", "2013-06-30")
    assert partitions_start(export_env()) == dt.date(2013, 3, 1)
    monkeypatch.setenv("CRM_PARTITIONS_START", "2020-01-01")
    assert partitions_start(export_env()) == dt.date(2020, 1, 1)


def test_definitions_wire_the_sensors_and_keep_freshness_out_of_the_refresh(pipeline_home):
    from orchestration.definitions import defs

    names = {s.name: s for s in defs.sensors}
    assert set(names) >= {"landing_sensor", "freshness_checks_sensor", "notify_on_run_failure",
                          "notify_on_failed_gate"}
    assert all(s.default_status.value == "RUNNING" for s in names.values())
    assert defs.resolve_job_def("land_incoming")
    refresh_checks = defs.resolve_job_def("daily_refresh").asset_layer.asset_graph.asset_check_keys
    assert not [k for k in refresh_checks if k.name == "freshness_check"]
    assert any(k.name == "compliance_gate" for k in refresh_checks)


def test_a_successful_run_with_a_failed_error_check_notifies(home):
    from dagster import (
        AssetCheckResult,
        AssetCheckSeverity,
        DagsterInstance,
        asset,
        asset_check,
        build_run_status_sensor_context,
        materialize,
    )

    from orchestration.sensors import notify_on_failed_gate

    @asset
    def scores():
        return 1

    @asset_check(asset=scores)  # not blocking: the run succeeds, ops must still hear of it
    def score_drift():
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, description="PSI 0.4 > 0.25")

    @asset_check(asset=scores)
    def soft_signal():
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN, description="PSI 0.15")

    with DagsterInstance.ephemeral() as instance:
        result = materialize([scores, score_drift, soft_signal], instance=instance)
        assert result.success
        notify_on_failed_gate(build_run_status_sensor_context(
            sensor_name="notify_on_failed_gate", dagster_event=result.get_run_success_event(),
            dagster_instance=instance, dagster_run=result.dagster_run))
    [n] = _notifications(home)
    assert n["kind"] == "gate_failure" and [c["check"] for c in n["failed_checks"]] == ["score_drift"]


# ---- backfill -------------------------------------------------------------------------------

def test_crm_backfill_starts_one_dagster_backfill_of_the_range(home, monkeypatch):
    from click.testing import CliRunner

    from crm.cli import root

    calls = []

    def fake_call(cmd):
        calls.append(cmd[1:])
        return 1

    monkeypatch.setattr(root.subprocess, "call", fake_call)
    r = CliRunner().invoke(root.main, ["backfill", "--start", "2025-02-27", "--end", "2025-03-03"])
    assert r.exit_code == 1 and calls == [["-m", "orchestration.backfill", "--start", "2025-02-27",
                                           "--end", "2025-03-03"]]
    r = CliRunner().invoke(root.main, ["backfill", "--from", "2025-02-27", "--to", "2025-03-03", "--keep-going"])
    assert calls[-1][-1] == "--keep-going" and len(calls) == 2
    r = CliRunner().invoke(root.main, ["backfill", "--start", "2025-03-03", "--end", "2025-03-01"])
    assert r.exit_code == 2 and "before --start" in r.output and len(calls) == 2


def test_an_earlier_failed_date_holds_back_later_runs_unless_told_to_keep_going(home):
    """The guard for backfills and runs launched in the UI (orchestration.resources.earlier_date_failed)."""
    from dagster import DagsterInstance, asset, materialize

    from orchestration.resources import DAILY, CrmResource, earlier_date_failed

    calls = []

    @asset(partitions_def=DAILY)
    def dated(context, crm: CrmResource):
        calls.append(context.partition_key)
        if context.partition_key == "2025-03-01":
            raise RuntimeError("boom")

    def run(day, **tags):
        return materialize([dated], instance=instance, partition_key=day, tags=tags, raise_on_error=False,
                           resources={"crm": CrmResource()})

    with DagsterInstance.ephemeral() as instance:
        bf = {"dagster/backfill": "bf1"}
        assert not run("2025-03-01", **bf).success
        later = run("2025-03-02", **bf)
        assert not later.success and calls == ["2025-03-01"]  # refused before the asset ran
        why = earlier_date_failed(instance, later.dagster_run)
        assert "earlier date 2025-03-01 of backfill bf1 failed" in why and "crm/keep_going" in why
        assert run("2025-03-02", **bf, **{"crm/keep_going": "true"}).success and calls[-1] == "2025-03-02"
        assert run("2025-03-03", **{"dagster/backfill": "bf2"}).success  # another backfill
        # launched by hand: the latest run of the day before failed; `crm run --date` is not held back
        assert not run("2025-03-02").success and calls[-1] == "2025-03-03"
        assert run("2025-03-02", **{"crm/trigger": "cli"}).success and calls[-1] == "2025-03-02"
        assert run("2025-03-01", **{"crm/keep_going": "true"}) and run("2025-03-02").success is False


# ---- what the UI and `crm run` show ---------------------------------------------------------

@pytest.mark.parametrize("status", ["awaiting_approval", "rejected", "dispatched"])
def test_a_dispatch_that_sent_nothing_is_a_warn_check_and_a_status_in_the_run_summary(home, monkeypatch, capsys,
                                                                                      status):
    """Waiting for approval is a normal state (the run succeeds, nothing downstream is blocked) but not a
    green send: the dispatch asset's `dispatch_status` check fails with WARN severity, its metadata says
    `status`, and `crm run`'s summary shows it per campaign."""
    from dagster import AssetCheckSeverity, DagsterInstance, materialize

    import orchestration.assets.campaigns as campaign_assets
    from crm.campaigns.dispatch import DispatchReport
    from crm.campaigns.spec import load_campaign
    from crm.config import CAMPAIGNS_DIR
    from orchestration.assets._keys import campaign_key
    from orchestration.resources import CrmResource
    from orchestration.run import dispatches, print_summary

    spec = load_campaign(CAMPAIGNS_DIR / "reengage_dormant_vip.yaml")
    waiting = "awaits a second person's approval of spec abc123 (owner: Alice)"

    def fake_dispatch(paths, campaign_id, as_of, spec=None):
        sent = status == "dispatched"
        return DispatchReport(campaign_id, as_of.isoformat(), "outbox.jsonl", listed=10, holdout=2,
                              new_messages=8 if sent else 0, already_in_outbox=0, status=status,
                              approval="approved by Bob" if sent else waiting, spec_hash="abc123")

    monkeypatch.setattr(campaign_assets, "dispatch_list", fake_dispatch)
    assets, _ = campaign_assets.campaign_assets(spec)
    key = campaign_key(spec.id, "dispatch")
    result = materialize(assets, selection=[key], instance=DagsterInstance.ephemeral(),
                         resources={"crm": CrmResource()}, partition_key="2025-09-29")
    assert result.success  # not a failure: nothing downstream is held back
    [mat] = result.get_asset_materialization_events()
    assert mat.asset_key == key and mat.event_specific_data.materialization.metadata["status"].value == status
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "dispatch_status" and check.severity == AssetCheckSeverity.WARN
    assert check.passed == (status == "dispatched")
    if status != "dispatched":
        assert f"NOT SENT, {status}" in check.description and "second person" in check.description

    assert dispatches(result) == [{"campaign_id": spec.id, "status": status, "new_messages": 8 if status ==
                                   "dispatched" else 0, "approval": "approved by Bob" if status == "dispatched"
                                   else waiting}]
    print_summary({"as_of_date": "2025-09-29", "success": True, "seconds": 1.0, "run_id": result.run_id,
                   "landing": {}, "marts": {}, "models": {}, "lists": [], "dispatch": dispatches(result),
                   "gates": [], "failed_steps": [], "skipped_steps": []})
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if spec.id in x)
    assert (f"NOT SENT ({status})" in line) if status != "dispatched" else "dispatched: 8 new messages" in line


def test_crm_run_tags_its_landing_and_refresh_runs_apart():
    from orchestration.run import run_tags

    landing, refresh = run_tags("landing"), run_tags("refresh", extra={"crm/keep_going": "true"})
    assert landing["crm/step"] == "landing" and refresh["crm/step"] == "refresh"
    assert landing["crm/trigger"] == refresh["crm/trigger"] == "cli" and refresh["crm/keep_going"] == "true"
    assert landing["user"].endswith("via crm run")  # the UI shows who launched it, not "Manually launched"
    assert run_tags("refresh", extra={"crm/trigger": "backfill"})["user"].endswith("via crm backfill")
