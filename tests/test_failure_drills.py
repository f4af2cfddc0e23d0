"""Failure drills: each kind of bad data is stopped by the right gate, nothing is (half-)dispatched,
and once the fault is fixed a rerun of the same as-of date dispatches exactly once.

One data home of this module's own (600 players), one full run; each drill then injects its fault
the way it would arrive (a poisoned list builder, a drifting scorer, a loader that writes a broken
batch), re-runs only the asset selection it needs, fixes the fault, and re-runs.

Where a drill goes around the pipeline it says so: the list-size history of the empty-list drill
is made by writing manifests of earlier as-of dates (only their ``counts`` are read), and the
landing drill's "fix" repairs the landed batch file in place (a landed batch is never re-landed).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

CAMPAIGN = "everyone_push"
LIST_KEY = ["campaigns", CAMPAIGN, f"{CAMPAIGN}_list"]  # orchestration.assets._keys
DISPATCH_KEY = ["campaigns", CAMPAIGN, f"{CAMPAIGN}_dispatch"]


@pytest.fixture(scope="module")
def drill_home(tmp_path_factory):
    """A data home of this module only; its environment is restored after the module (the other
    modules use the session home of conftest)."""
    from crm.config import Paths
    from tests.conftest import make_home

    home = tmp_path_factory.mktemp("crm_drill_home")
    campaigns = make_home(home, players=600, reason="drill fixture")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRM_HOME", str(home))
        mp.setenv("CRM_CAMPAIGNS_DIR", str(campaigns))
        # crm.config.export_env() writes these into os.environ: set them here so they are restored too
        p = Paths(home)
        mp.setenv("DAGSTER_HOME", str(p.dagster_home))
        mp.setenv("MLFLOW_TRACKING_URI", p.mlflow_tracking_uri)
        mp.setenv("DBT_LOG_PATH", str(home / "dbt" / "logs"))
        yield home


@pytest.fixture(scope="module")
def first_run(drill_home):
    from dagster import DagsterInstance

    from orchestration.run import run_refresh

    instance = DagsterInstance.ephemeral()
    result, as_of = run_refresh(instance)
    failures = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert result.success, failures
    return instance, dt.date.fromisoformat(as_of)


def _paths():
    from crm.config import paths

    return paths()


def _keys(*paths):
    from dagster import AssetKey

    return [AssetKey(p) for p in paths]


def _run(instance, as_of: dt.date, *selection):
    from orchestration.run import run_refresh

    result, _ = run_refresh(instance, as_of.isoformat(), asset_selection=_keys(*selection) if selection else None)
    return result


def _sent_files(p) -> dict[str, str]:
    """Every outbox and assignment-export file (and any leftover temp file) with its checksum."""
    files = [*p.outbox.rglob("*"), *p.exports.glob("campaign_assignments_*"), *p.exports.glob(".campaign_*")]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


def _forget_dispatch(p, as_of: dt.date) -> None:
    """Remove the campaign's dispatch of ``as_of`` (outbox + assignment export) so a drill sees whether
    anything new is written."""
    from crm.campaigns.dispatch import assignments_file, outbox_file

    outbox_file(p, "push", CAMPAIGN, as_of).unlink(missing_ok=True)
    assignments_file(p, CAMPAIGN, as_of).unlink(missing_ok=True)


def _forget_list(p, as_of: dt.date) -> None:
    """Remove the campaign's published list of ``as_of``, as on the first run of a day (a list that
    passed its gate in an earlier run of the date stays dispatchable: its verdict is bound to its bytes)."""
    from crm.campaigns.lists import list_dir

    shutil.rmtree(list_dir(p, CAMPAIGN, as_of))


def _check(result, name: str, asset_path: list[str] | None = None):
    evs = [e for e in result.get_asset_check_evaluations() if e.check_name == name
           and (asset_path is None or list(e.asset_key.path) == asset_path)]
    assert len(evs) == 1, (name, [(e.asset_key.path, e.check_name) for e in result.get_asset_check_evaluations()])
    return evs[0]


def _failed(ev) -> str:
    return str(ev.metadata["failed_expectations"].value)


def _ok(ev) -> bool:
    """A gate's verdict is a pass: it passed, or only its warnings failed (WARN severity, not blocking)."""
    return ev.passed or ev.severity.value == "WARN"


def _only_failing(result, name: str) -> None:
    """``name`` is the one blocking (ERROR) check that failed in the run."""
    from dagster import AssetCheckSeverity

    bad = {e.check_name for e in result.get_asset_check_evaluations()
           if not e.passed and e.severity == AssetCheckSeverity.ERROR}
    assert bad == {name}, bad


def _assert_nothing_dispatched(result, p, as_of: dt.date, before: dict[str, str]) -> None:
    from crm.campaigns.dispatch import DispatchBlocked, assignments_file, dispatch_list, outbox_file

    mats = {tuple(e.asset_key.path) for e in result.get_asset_materialization_events()}
    assert tuple(DISPATCH_KEY) not in mats
    assert not any(k[-1] == "dispatch" for k in mats), mats
    # no outbox or export file was written, changed, or left half-written (temp file)
    assert _sent_files(p) == before
    assert not outbox_file(p, "push", CAMPAIGN, as_of).exists()
    assert not assignments_file(p, CAMPAIGN, as_of).exists()
    assert not [f for f in p.outbox.rglob("*.tmp")] and not list(p.exports.glob(".*.tmp"))
    # nor by a later dispatch outside the run (the gate verdict travels with the list)
    with pytest.raises(DispatchBlocked):
        dispatch_list(p, CAMPAIGN, as_of)
    assert _sent_files(p) == before


def _assert_dispatched_once(result, instance, p, as_of: dt.date) -> None:
    """The fixed rerun passed its gate and sent every treated row once; a further rerun adds nothing."""
    import pyarrow.parquet as pq

    from crm.campaigns.dispatch import assignments_file, outbox_file, read_outbox
    from crm.campaigns.lists import gate_verdict, list_dir

    failures = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert result.success, failures
    assert _ok(_check(result, "compliance_gate", LIST_KEY))
    d = list_dir(p, CAMPAIGN, as_of)
    assert gate_verdict(d)[0]
    rows = pd.read_parquet(d / "list.parquet")
    treated = set(rows.loc[rows["variant"] != "holdout", "player_id"].astype(str))
    box = outbox_file(p, "push", CAMPAIGN, as_of)
    msgs = read_outbox(box)
    assert len(msgs) == len(treated) > 0
    assert {m["player_id"] for m in msgs} == treated
    assert len({m["idempotency_key"] for m in msgs}) == len(msgs)
    export = assignments_file(p, CAMPAIGN, as_of)
    assert export.exists() and pq.read_table(export).num_rows == len(rows)
    before = _sent_files(p)
    again = _run(instance, as_of, DISPATCH_KEY)
    assert again.success
    md = {tuple(e.asset_key.path): e.event_specific_data.materialization.metadata
          for e in again.get_asset_materialization_events()}
    assert md[tuple(DISPATCH_KEY)]["new_messages"].value == 0
    assert _sent_files(p) == before


def _poison_builder(monkeypatch, poison) -> None:
    """Make the campaign's list asset publish ``poison(rows)`` instead of what the builder built."""
    import orchestration.assets.campaigns as assets

    real = assets.build_one

    def poisoned(paths, spec, specs, as_of, *args, **kwargs):
        built = real(paths, spec, specs, as_of, *args, **kwargs)
        if spec.id != CAMPAIGN:
            return built
        rows = poison(built.rows.copy()).reset_index(drop=True)
        funnel = {**built.funnel, "listed": len(rows), "holdout": int((rows["variant"] == "holdout").sum())}
        return dataclasses.replace(built, rows=rows, funnel=funnel)

    monkeypatch.setattr(assets, "build_one", poisoned)


def _list_drill(first_run, poison, expectation: str, *, also_in_failed: str | None = None) -> None:
    instance, as_of = first_run
    p = _paths()
    _forget_dispatch(p, as_of)
    before = _sent_files(p)
    with pytest.MonkeyPatch.context() as mp:
        _poison_builder(mp, poison)
        result = _run(instance, as_of, LIST_KEY, DISPATCH_KEY)
    gate = _check(result, "compliance_gate", LIST_KEY)
    assert not gate.passed
    _only_failing(result, "compliance_gate")
    failed = _failed(gate)
    assert expectation in failed, failed
    if also_in_failed:
        assert also_in_failed in failed, failed
    _assert_nothing_dispatched(result, p, as_of, before)
    # fixed (the real builder again): the same as-of date passes and dispatches exactly once
    fixed = _run(instance, as_of, LIST_KEY, DISPATCH_KEY)
    _assert_dispatched_once(fixed, instance, p, as_of)


def _new_incoming_file(p, name: str) -> None:
    """A new file from the operator in landing/incoming: a few events of an existing file, as new events."""
    import pyarrow.parquet as pq

    raw = pq.read_table(sorted(p.incoming.glob("*.parquet"))[0]).to_pandas().head(40)
    raw["event_id"] = [str(uuid.uuid4()) for _ in range(len(raw))]
    raw.to_parquet(p.incoming / name, index=False)


def _breaking_loader(break_table, good: dict[Path, bytes]):
    """``ingest_pending`` with a loader regression: each batch it lands is rewritten by ``break_table``
    (the correct bytes are kept in ``good`` to repair it)."""
    import pyarrow.parquet as pq

    import orchestration.assets.landing as landing_assets

    real = landing_assets.ingest_pending

    def broken_loader(paths, *args, **kwargs):
        reports = real(paths, *args, **kwargs)
        for r in reports:
            f = paths.events / f"batch_{r.batch_id}.parquet"
            if f.exists():
                good[f] = f.read_bytes()
                pq.write_table(break_table(pq.read_table(f)), f)
        return reports

    return broken_loader


def _drop_trace_id(t):
    return t.drop(["trace_id"])


def _treated(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["variant"] != "holdout"]


def test_first_run_dispatched(first_run):
    from crm.campaigns.dispatch import outbox_file

    _, as_of = first_run
    assert outbox_file(_paths(), "push", CAMPAIGN, as_of).exists()


def test_self_excluded_player_in_list(first_run):
    from crm.warehouse import read_table

    profile = read_table(_paths(), "dim_player")
    excluded = str(profile.loc[profile["self_excluded_now"].astype(bool), "player_id"].iloc[0])

    def poison(rows):
        extra = _treated(rows).head(1).assign(player_id=excluded)
        return pd.concat([rows, extra], ignore_index=True)

    _list_drill(first_run, poison, "expect_column_values_to_be_in_set(compliance_violation)", also_in_failed=excluded)


def test_duplicated_player_in_list(first_run):
    _list_drill(first_run, lambda rows: pd.concat([rows, _treated(rows).head(3)], ignore_index=True),
                "expect_column_values_to_be_unique(player_id)")


def test_offer_cost_over_cap(first_run):
    from crm.campaigns.eligibility import effective_caps
    from crm.campaigns.policy import POLICY
    from crm.campaigns.spec import load_campaign
    from crm.config import campaigns_dir

    cap = int(effective_caps(load_campaign(campaigns_dir() / f"{CAMPAIGN}.yaml"), POLICY)["cost_per_player_day_cents"])

    def poison(rows):
        i = _treated(rows).index[0]
        rows["offer_cost_eur_cents"] = rows["offer_cost_eur_cents"].astype("int64")
        rows.loc[i, "offer_cost_eur_cents"] = cap + 1
        return rows

    _list_drill(first_run, poison, "expect_column_values_to_be_in_set(day_cost_within_cap)")


def test_score_drift(first_run):
    import orchestration.assets.ml as ml_assets

    instance, as_of = first_run
    p = _paths()
    _forget_dispatch(p, as_of)
    _forget_list(p, as_of)
    before = _sent_files(p)
    real = ml_assets.score_model

    def drifted(config, features, *args, **kwargs):
        res = real(config, features, *args, **kwargs)
        res.scores["score"] = 0.999  # a scorer bug: every player at the top of the scale
        return res

    selection = (["player_scores"], LIST_KEY, DISPATCH_KEY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ml_assets, "score_model", drifted)
        result = _run(instance, as_of, *selection)
    gate = _check(result, "scores_gate", ["player_scores"])
    assert not gate.passed
    _only_failing(result, "scores_gate")
    failed = _failed(gate)
    assert "expect_column_values_to_be_between(score_psi)" in failed, failed
    assert any(k.endswith("_score_psi") and v.value > 0.5 for k, v in gate.metadata.items()), gate.metadata
    mats = {tuple(e.asset_key.path) for e in result.get_asset_materialization_events()}
    assert mats == {("player_scores",)}, mats  # the list was not rebuilt on drifted scores
    _assert_nothing_dispatched(result, p, as_of, before)
    fixed = _run(instance, as_of, *selection)
    assert _ok(_check(fixed, "scores_gate", ["player_scores"]))
    _assert_dispatched_once(fixed, instance, p, as_of)


@pytest.mark.slower  # two whole-graph runs; CI keeps the other drills' gate-fails-nothing-dispatched path
def test_schema_break_in_landing(first_run):
    """A loader regression lands a batch without a column: landing_gate fails on the schema and
    nothing downstream runs. The fault arrives with a real new file in landing/incoming."""
    import orchestration.assets.landing as landing_assets

    instance, as_of = first_run
    p = _paths()
    _new_incoming_file(p, "zz_drill_late_events.parquet")
    _forget_dispatch(p, as_of)
    _forget_list(p, as_of)
    before = _sent_files(p)
    good: dict[Path, bytes] = {}
    broken_loader = _breaking_loader(_drop_trace_id, good)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(landing_assets, "ingest_pending", broken_loader)
        result = _run(instance, as_of)  # the whole graph
    assert good, "the drill file was not landed"
    gate = _check(result, "landing_gate", ["landed_events"])
    assert not gate.passed
    _only_failing(result, "landing_gate")
    failed = _failed(gate)
    assert "expect_column_pair_values_to_be_equal" in failed and "schema of each landed batch" in failed, failed
    # the failing row names the batch file and the dropped column
    batch = _batch_of(p, "zz_drill_late_events.parquet")
    assert f"{batch}.trace_id" in failed and f"{batch}.payload" not in failed, failed
    mats = {tuple(e.asset_key.path) for e in result.get_asset_materialization_events()}
    assert mats == {("landed_events",)}, mats  # nothing downstream of the landing ran
    _assert_nothing_dispatched(result, p, as_of, before)
    # fixed: the batch is repaired in place (a landed file is never landed again)
    for f, data in good.items():
        f.write_bytes(data)
    fixed = _run(instance, as_of)
    # the repaired batch is checked again (the gate ledger keeps it pending until it passes)
    gate = _check(fixed, "landing_gate", ["landed_events"])
    assert _ok(gate)
    assert _batch_of(p, "zz_drill_late_events.parquet") in str(gate.metadata["batches"].value)
    _assert_dispatched_once(fixed, instance, p, as_of)


def test_empty_list_against_recent_sizes(first_run):
    """An empty list, when recent runs listed hundreds, fails the list-size band."""
    from crm.campaigns.lists import list_dir, read_manifest

    instance, as_of = first_run
    p = _paths()
    # history of recent runs: manifests of earlier as-of dates with the size of this date's list
    # (around the pipeline: only their counts are read by recent_list_sizes)
    listed = read_manifest(list_dir(p, CAMPAIGN, as_of))["counts"]["listed"]
    assert listed > 50
    for k in range(1, 4):
        d = list_dir(p, CAMPAIGN, as_of - dt.timedelta(days=k))
        d.mkdir(parents=True, exist_ok=True)
        (d / "manifest.json").write_text(json.dumps({"campaign_id": CAMPAIGN, "as_of_date": d.name, "path": str(d),
                                                     "counts": {"listed": listed}}))
    _list_drill(first_run, lambda rows: rows.iloc[0:0], "expect_table_row_count_to_be_between")


def _batch_of(p, name: str) -> str:
    from crm.ingest.landing import file_digest

    return file_digest(p.incoming / name)[:16]


def _landing_drill(first_run, name: str, break_table):
    """Land one new file through a broken loader (landed_events only), run landing again without
    fixing, repair the batch in place and run a third time; returns landing_gate's evaluation of
    each run (the faulty one, the next one, the one after the repair)."""
    import orchestration.assets.landing as landing_assets

    instance, as_of = first_run
    p = _paths()
    _new_incoming_file(p, name)
    good: dict[Path, bytes] = {}
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(landing_assets, "ingest_pending", _breaking_loader(break_table, good))
            first = _run(instance, as_of, ["landed_events"])
        assert good, "the drill file was not landed"
        again = _run(instance, as_of, ["landed_events"])
    finally:
        for f, data in good.items():
            f.write_bytes(data)
    repaired = _run(instance, as_of, ["landed_events"])
    return tuple(_check(r, "landing_gate", ["landed_events"]) for r in (first, again, repaired))


# Run last: they land files through a broken loader, then repair them.
def test_failed_landing_batch_is_still_blocked_on_the_next_run(first_run):
    """A batch is landed once: the gate ledger keeps a failed batch in front of landing_gate on every
    later run (nothing new landed then) until it passes; then it is not checked again."""
    p = _paths()
    faulty, next_run, repaired = _landing_drill(first_run, "zz_drill_second_late_events.parquet", _drop_trace_id)
    batch = _batch_of(p, "zz_drill_second_late_events.parquet")
    assert not faulty.passed and not next_run.passed
    assert f"{batch}.trace_id" in _failed(next_run)
    assert batch in str(next_run.metadata["batches"].value)
    assert _ok(repaired) and batch in str(repaired.metadata["batches"].value)
    from crm.ingest.landing import batches_to_gate

    assert batch not in batches_to_gate(p)


def test_wrong_type_in_landed_batch_fails_landing_gate(first_run):
    """Column names right, a type wrong (event time written as text): the type expectation fails and
    names the batch and column."""
    import pyarrow as pa

    def occurred_at_as_text(t):
        i = t.schema.get_field_index("occurred_at")
        return t.set_column(i, "occurred_at", t.column("occurred_at").cast(pa.string()))

    p = _paths()
    faulty, _, repaired = _landing_drill(first_run, "zz_drill_third_late_events.parquet", occurred_at_as_text)
    assert not faulty.passed
    failed = _failed(faulty)
    assert "expect_column_pair_values_to_be_equal" in failed, failed
    assert f"{_batch_of(p, 'zz_drill_third_late_events.parquet')}.occurred_at" in failed, failed
    assert _ok(repaired)
