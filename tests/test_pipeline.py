"""The whole asset graph, materialized through Dagster on a small simulated casino.

One real run (dbt on DuckDB, LightGBM + MLflow, Great Expectations, Dagster) is shared
by the tests below; they then poison a list and prove it is not dispatched, in the same
run and in a later one.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import duckdb
import numpy as np
import pandas as pd
import pytest

from expectations.data_docs import docs_root

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def first_run(pipeline_home):
    from dagster import DagsterInstance

    from orchestration.run import run_refresh

    instance = DagsterInstance.ephemeral()
    result, as_of = run_refresh(instance)
    return result, instance


def _paths():
    from crm.config import paths

    return paths()


def test_whole_graph_materializes(first_run):
    result, _ = first_run
    failures = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert result.success, failures
    p = _paths()
    with duckdb.connect(str(p.warehouse), read_only=True) as con:
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("dim_player", "fct_player_daily", "player_features", "player_feature_snapshots",
                            "player_labels", "player_scores")}
        cols = {r[0] for r in con.execute("DESCRIBE dim_player").fetchall()}
        scored_without_consent = con.execute("""
            SELECT count(*) FROM player_scores s JOIN dim_player d USING (player_id)
            WHERE NOT d.consent_profiling""").fetchone()[0]
    assert counts["dim_player"] == 800 and all(counts.values()), counts
    assert not {"email", "phone", "ip", "birth_date", "device_id"} & cols  # PII stays out of the marts
    assert scored_without_consent == 0
    from crm.ingest.landing import default_as_of
    from crm.warehouse import read_audience

    audience = read_audience(p, default_as_of(p))
    assert audience.columns.is_unique and len(audience) == counts["dim_player"]
    # the quality suites (expectations/) ran as asset checks and passed, each linking its Data Docs; a
    # gate with warnings only (drift on a small casino) is WARN, not a failure; every other check passed
    gates = {"landing_gate", "marts_dim_player_gate", "marts_fct_player_daily_gate", "features_gate", "scores_gate",
             "compliance_gate"}
    checks = {e.check_name: e.passed or (e.check_name in gates and e.severity.value == "WARN"
                                         and e.metadata["status"].value == "WARN")
              for e in result.get_asset_check_evaluations() if e.check_name != "dispatch_status"}
    assert checks and all(checks.values()), checks
    assert gates <= set(checks), gates - set(checks)
    for e in result.get_asset_check_evaluations():
        if e.check_name in gates - {"landing_gate"} or (e.check_name == "landing_gate" and "batches" in e.metadata
                                                         and e.metadata["batches"].value):
            url = e.metadata["data_docs"].value  # on the Data Docs server of `make ui`, never file://
            page = docs_root(_paths().home) / unquote(urlparse(url).path).lstrip("/")
            assert url.startswith("http://") and page.exists(), (e.check_name, url)


def test_one_asset_per_campaign_equals_the_day_built_at_once(first_run):
    """Each list asset read the published lists of the higher-priority campaigns of its date:
    together they are exactly the day built in one go (crm.campaigns.day.build_all)."""
    from crm.campaigns.day import build_all
    from crm.campaigns.lists import list_dir
    from crm.campaigns.spec import load_campaigns
    from crm.config import campaigns_dir
    from crm.ingest.landing import default_as_of

    p = _paths()
    as_of = default_as_of(p)
    specs, _ = load_campaigns(campaigns_dir())
    # the lists were built before the day's dispatch: rebuild them without its outbox (a rebuild
    # after dispatch takes what was sent as a fact, tests/test_rerun_day.py)
    aside = p.outbox.with_name("outbox.aside")
    p.outbox.rename(aside)
    try:
        day = build_all(p, specs, as_of)
    finally:
        aside.rename(p.outbox)
    assert [b.campaign.id for b in day] == [s.id for s in sorted(specs, key=lambda s: (s.priority, s.id))]
    for b in day:
        d = list_dir(p, b.campaign.id, as_of)
        assert b.rows.equals(pd.read_parquet(d / "list.parquet")), b.campaign.id
        assert (d / "list.xlsx").exists() and json.loads((d / "suppression.json").read_text())["first_failing_rule"] \
            == b.suppression["first_failing_rule"]


def test_uplift_models_trained_and_champions_scored(first_run):
    """Both uplift models train from the exposures mart; each champion scores the profiling-consent
    population into player_scores (a model without a champion scores nobody)."""
    from ml import registry
    from ml.uplift_train import UPLIFT_MODELS

    result, _ = first_run
    meta = {e.asset_key.path[-1]: e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()}
    p = _paths()
    client = registry.get_client(p.mlflow_tracking_uri)
    with duckdb.connect(str(p.warehouse), read_only=True) as con:
        scored = dict(con.execute("SELECT model, count(*) FROM player_scores GROUP BY model").fetchall())
        population = con.execute("SELECT count(*) FROM player_features JOIN dim_player USING (player_id) "
                                 "WHERE consent_profiling").fetchone()[0]
    for name in UPLIFT_MODELS:
        md = meta[f"{name}_model"]
        assert md["trained"].value is True, md.get("reason")
        assert md["valid_rows"].value > 100 and "qini_auc" in md and "qini_curve" in md
        # the churn champion trained in the same run ranks the same rows: the baseline
        assert isinstance(md["baseline_churn_qini_auc"].value, float)
        champ = registry.champion_version(client, name)
        assert scored.get(name, 0) == (population if champ is not None else 0), (name, md["decision"].value)


def test_next_best_game_is_trained_and_its_recommendations_keep_the_rules(first_run):
    """The ranker trains against its baselines and becomes champion; every recommendation is a game of
    a provider licensed in the player's jurisdiction, never high-volatility or long-session to a
    player with an RG marker (checked here in SQL, apart from the Python that wrote them), personal
    only with profiling consent; the lists carry the first as recommended_game."""
    from crm.campaigns.lists import published_lists
    from ml import registry

    result, _ = first_run
    meta = {e.asset_key.path[-1]: e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()}
    md = meta["next_best_game_model"]
    assert md["trained"].value is True and md["promoted_to_champion"].value is True, md.get("reason")
    assert 0 < md["discovery_recall_at_3"].value <= 1
    p = _paths()
    client = registry.get_client(p.mlflow_tracking_uri)
    run = client.get_run(registry.champion_version(client, "next_best_game").run_id)
    assert {"discovery_recall_at_3", "popularity_discovery_recall_at_3", "favourite_provider_discovery_recall_at_3",
            "all_coverage_at_3"} <= set(run.data.metrics)
    with duckdb.connect(str(p.warehouse), read_only=True) as con:
        n_players, with_rec = con.execute(
            "SELECT (SELECT count(*) FROM dim_player), count(DISTINCT player_id) FROM game_recommendations").fetchone()
        violations = con.execute("""
            SELECT count(*) FROM game_recommendations r
            JOIN dim_player d USING (player_id)
            JOIN games g USING (game)
            LEFT JOIN provider_licences l ON l.provider = g.provider AND l.jurisdiction = d.country
            WHERE l.provider IS NULL
               OR ((d.harm_risk_flag IS DISTINCT FROM false OR d.self_excluded_now IS DISTINCT FROM false
                    OR d.cooling_off_now IS DISTINCT FROM false OR d.ever_self_excluded IS DISTINCT FROM false
                    OR coalesce(d.rg_limit_hits_30d, 1) > 0)
                   AND (g.volatility NOT IN ('low', 'medium') OR g.long_session IS DISTINCT FROM false))
               OR (r.basis = 'model' AND d.consent_profiling IS DISTINCT FROM true)""").fetchone()[0]
        ranks = con.execute("SELECT max(rank), count(*) FILTER (WHERE rank = 1) FROM game_recommendations").fetchone()
        marked = con.execute("""
            SELECT count(DISTINCT r.player_id) FROM game_recommendations r JOIN dim_player d USING (player_id)
            WHERE d.harm_risk_flag OR d.ever_self_excluded OR d.rg_limit_hits_30d > 0""").fetchone()[0]
        first = dict(con.execute("SELECT player_id, game FROM game_recommendations WHERE rank = 1").fetchall())
    assert violations == 0
    assert with_rec > 0.9 * n_players and ranks == (3, with_rec)
    assert marked > 0  # the rule was exercised: players with a marker got a (safe) game
    listed = [m for m in published_lists(p) if m["counts"]["listed"]]
    assert listed
    for m in listed:
        df = pd.read_parquet(Path(m["path"]) / "list.parquet")
        assert (df["recommended_game"].fillna("") == df["player_id"].map(first).fillna("")).all(), m["campaign_id"]


def test_uplift_champion_scores_after_a_manual_promotion(first_run):
    """On 800 players an uplift model may not beat random targeting, so nothing is promoted
    automatically; a data scientist's `crm ml promote` makes the next scoring use it."""
    from dagster import AssetKey

    from crm.ingest.landing import default_as_of
    from crm.warehouse import observed_house_margin, read_audience, read_table
    from ml import registry
    from orchestration.run import run_refresh

    _, instance = first_run
    p = _paths()
    client = registry.get_client(p.mlflow_tracking_uri)
    if registry.champion_version(client, "uplift_deposit") is None:
        registry.promote(p.mlflow_tracking_uri, "uplift_deposit", "1", "pipeline test: score with v1", by="tester")
    as_of = default_as_of(p)
    result, _ = run_refresh(instance, as_of.isoformat(), asset_selection=[AssetKey("player_scores")])
    assert result.success
    audience = read_audience(p, as_of)
    scored = audience["uplift_value_score"].notna()
    assert scored.any() and not (scored & ~audience["consent_profiling"].astype(bool)).any()
    champion = str(registry.champion_version(client, "uplift_deposit").version)
    assert set(audience.loc[scored, "uplift_value_model_version"]) == {champion}
    # the value is the deposit uplift x the 30-day stake x the house margin of the last 90 days
    margin, ggr, stake = observed_house_margin(p, as_of)
    assert 0 < margin < 0.2 and ggr > 0 and stake > 0
    deposit = read_table(p, "player_scores", "WHERE model = 'uplift_deposit' AND as_of_date = ?", [as_of])
    features = read_table(p, "player_features")[["player_id", "stake_eur_30d"]]
    expected = deposit.merge(features, on="player_id").set_index("player_id")
    expected = expected["score"] * expected["stake_eur_30d"].fillna(0).clip(lower=0) * margin
    got = audience.loc[scored].set_index("player_id")["uplift_value_score"]
    assert len(got) == len(expected) and np.allclose(got.loc[expected.index], expected, rtol=1e-9, atol=1e-9)
    assert (got < 0).any() and (got > 0).any()  # an uplift times a win: either sign, not a probability


def test_lists_are_published_gated_and_dispatched(first_run):
    from crm.campaigns.lists import gate_verdict, published_lists

    p = _paths()
    lists = published_lists(p)
    from crm.config import CAMPAIGNS_DIR

    expected = {f.stem for f in CAMPAIGNS_DIR.glob("*.yaml") if not f.stem.startswith("_")} | {"everyone_push"}
    assert {m["campaign_id"] for m in lists} == expected and len(expected) >= 3
    for m in lists:
        d = Path(m["path"])
        assert (d / "list_with_holdout.csv").exists() and (d / "list.parquet").exists()
        assert gate_verdict(d)[0]
        df = pd.read_parquet(d / "list.parquet")
        assert len(df) == m["counts"]["listed"] and df["player_id"].is_unique
        assert not {"email", "phone"} & set(df.columns)
    everyone = next(m for m in lists if m["campaign_id"] == "everyone_push")
    assert everyone["counts"]["listed"] > 100
    # everyone_push drew from every profile row: the suppression report explains the rest
    assert sum(everyone["suppression"].values()) == everyone["counts"]["in_segment"] - everyone["counts"]["eligible"]
    assert "self_excluded" in everyone["suppression"] or "excluded_not_returned" in everyone["suppression"]
    outbox = list((p.outbox / "push" / "everyone_push").glob("*.jsonl"))
    assert len(outbox) == 1
    msgs = [json.loads(x) for x in outbox[0].read_text().splitlines()]
    assert len(msgs) == everyone["counts"]["listed"] - everyone["counts"]["holdout"]


def test_model_is_registered_as_champion(first_run):
    from mlflow import MlflowClient

    client = MlflowClient(_paths().mlflow_tracking_uri)
    for name in ("churn_lgbm", "deposit_intent_lgbm"):
        mv = client.get_model_version_by_alias(name, "champion")
        run = client.get_run(mv.run_id)
        assert 0.5 < run.data.metrics["roc_auc"] < 0.995, name
        assert "baseline_logreg_roc_auc" in run.data.metrics
        assert run.data.tags.get("dbt_manifest_sha256", "unknown") != "unknown"
    with duckdb.connect(str(_paths().warehouse), read_only=True) as con:
        models = dict(con.execute("SELECT model, count(*) FROM player_scores GROUP BY model").fetchall())
    # uplift models score too once they have a champion (test_uplift_models_trained_and_champions_scored)
    assert {"churn", "deposit_intent"} <= set(models) <= {"churn", "deposit_intent", "uplift_deposit", "uplift_ngr",
                                                                  "uplift_value"}
    assert len(set(models.values())) == 1


def test_poisoned_list_is_not_dispatched(first_run, monkeypatch):
    """A list builder that admits everyone (a compliance bug) is stopped by the gate."""
    from dagster import DagsterInstance

    import crm.campaigns.eligibility
    from crm.campaigns.dispatch import DispatchBlocked, outbox_file
    from crm.campaigns.lists import gate_verdict, list_dir
    from crm.ingest.landing import default_as_of
    from orchestration.assets._keys import campaign_key
    from orchestration.run import run_refresh

    p = _paths()
    as_of = default_as_of(p)
    box = outbox_file(p, "push", "everyone_push", as_of)
    box.unlink()  # forget the first run's dispatch so we can see that nothing new is written

    real = crm.campaigns.eligibility.evaluate

    def admit_everyone(profile, campaign, *args, **kwargs):
        out = real(profile, campaign, *args, **kwargs)
        out["eligible"] = True
        out["reason"] = None
        return out

    monkeypatch.setattr(crm.campaigns.eligibility, "evaluate", admit_everyone)
    list_key = campaign_key("everyone_push", "list")
    dispatch_key = campaign_key("everyone_push", "dispatch")
    instance = DagsterInstance.ephemeral()
    result, _ = run_refresh(instance, as_of.isoformat(), asset_selection=[list_key, dispatch_key])
    listed = pd.read_parquet(list_dir(p, "everyone_push", as_of) / "list.parquet")
    with duckdb.connect(str(p.warehouse), read_only=True) as con:
        excluded = {r[0] for r in con.execute(
            "SELECT player_id FROM dim_player WHERE self_excluded_now OR ever_self_excluded").fetchall()}
    assert excluded & set(listed["player_id"]), "the poisoned list should contain an excluded player"
    gate = [e for e in result.get_asset_check_evaluations() if e.check_name == "compliance_gate"]
    assert len(gate) == 1 and not gate[0].passed
    failed_md = str(gate[0].metadata["failed_expectations"].value)
    assert "compliance_violation" in failed_md
    # not dispatched in the same run ...
    assert not box.exists()
    mats = {tuple(e.asset_key.path) for e in result.get_asset_materialization_events()}
    assert tuple(dispatch_key.path) not in mats
    # ... nor by a later run that only asks for dispatch
    later, _ = run_refresh(instance, as_of.isoformat(), asset_selection=[dispatch_key])
    assert not later.success and not box.exists()
    assert not gate_verdict(list_dir(p, "everyone_push", as_of))[0]
    with pytest.raises(DispatchBlocked):
        from crm.campaigns.dispatch import dispatch_list

        dispatch_list(p, "everyone_push", as_of)


def test_ml_commands_on_the_pipeline_registry(first_run):
    """`crm ml` list / evaluate / train / promote / rollback against the run's MLflow store."""
    from click.testing import CliRunner

    from crm.cli import main

    runner = CliRunner()

    def run(*args):
        r = runner.invoke(main, ["ml", *args, "--json"])
        assert r.exit_code == 0, r.output
        return json.loads(r.output)

    listed = {m["name"]: m for m in run("list")}
    assert {"churn_lgbm", "deposit_intent_lgbm"} <= set(listed)
    champion = str(listed["churn_lgbm"]["champion"])
    ev = run("evaluate", "churn")
    assert ev["version"] == champion and 0.5 < ev["roc_auc"] < 1
    trained = run("train", "deposit_intent", "--no-promote")
    assert not trained["promoted"] and trained["model_name"] == "deposit_intent_lgbm"
    promoted = run("promote", "deposit_intent", trained["model_version"], "--reason", "manual test", "--by", "qa")
    assert promoted["champion"] == str(trained["model_version"])
    back = run("rollback", "deposit_intent", "--reason", "undo manual test", "--by", "qa")
    assert back["champion"] != str(trained["model_version"])
    r = runner.invoke(main, ["ml", "promote", "churn", "999", "--reason", "x"])
    assert r.exit_code != 0 and "999" in r.output


# ---- backfill (orchestration/backfill.py) -----------------------------------------------------

def _backfill_dates_and_keys():
    import datetime as dt

    from dagster import AssetKey

    from crm.ingest.landing import default_as_of
    from orchestration.assets._keys import parse_campaign_key

    as_of = default_as_of(_paths())
    dates = [(as_of - dt.timedelta(days=n)).isoformat() for n in (14, 7)]  # a week apart: apart in caps and cooldowns
    from orchestration.definitions import defs

    # every campaign's list and dispatch: a list is built after the higher-priority lists of its day
    keys = sorted((k for k in defs.resolve_asset_graph().materializable_asset_keys
                   if (parse_campaign_key(k) or ("", ""))[1] in ("list", "dispatch")), key=str)
    # the lineage labels a node with its key's last part: it names the campaign
    assert AssetKey(["campaigns", "everyone_push", "everyone_push_list"]) in keys
    assert all(k.path[-1].startswith(k.path[1] + "_") for k in keys)
    return dates, keys


def test_a_backfill_runs_its_dates_oldest_first_as_partitions_of_one_dagster_backfill(first_run):
    from dagster import DagsterInstance, RunsFilter
    from dagster._core.execution.backfill import BulkActionStatus

    from orchestration.backfill import run_backfill

    dates, keys = _backfill_dates_and_keys()
    instance = DagsterInstance.ephemeral()
    order = []
    outcome = run_backfill(instance, list(reversed(dates)), asset_selection=keys,
                           on_date=lambda i, d: order.append(d))
    assert outcome.success and order == dates and outcome.ok == dates
    for key in keys:  # the UI shows lists and dispatches by date
        assert instance.get_materialized_partitions(key) == set(dates)
    [backfill] = instance.get_backfills()  # on the UI's Backfills page
    assert backfill.backfill_id == outcome.backfill_id and backfill.status == BulkActionStatus.COMPLETED_SUCCESS
    runs = instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
    assert sorted(r.tags["dagster/partition"] for r in runs) == dates and all(r.is_success for r in runs)
    for d in dates:
        assert (_paths().lists / "everyone_push" / d / "manifest.json").exists()


def test_a_failed_backfill_date_stops_the_later_ones_unless_keep_going(first_run, monkeypatch):
    from dagster import DagsterInstance
    from dagster._core.execution.backfill import BulkActionStatus

    import orchestration.assets.campaigns as campaign_assets
    from orchestration.assets._keys import parse_campaign_key
    from orchestration.backfill import run_backfill

    dates, keys = _backfill_dates_and_keys()
    real = campaign_assets.build_one

    def broken_on_the_first_date(paths, spec, specs, as_of, audience=None):
        if as_of.isoformat() == dates[0]:
            raise RuntimeError("list builder broke")
        return real(paths, spec, specs, as_of, audience=audience)

    monkeypatch.setattr(campaign_assets, "build_one", broken_on_the_first_date)
    instance = DagsterInstance.ephemeral()
    stopped = run_backfill(instance, dates, asset_selection=keys)
    assert stopped.failed == [dates[0]] and stopped.not_run == [dates[1]] and list(stopped.run_ids) == [dates[0]]
    assert not any(instance.get_materialized_partitions(k) for k in keys)
    assert instance.get_backfill(stopped.backfill_id).status == BulkActionStatus.COMPLETED_FAILED

    went_on = run_backfill(instance, dates, keep_going=True, asset_selection=keys)
    assert went_on.failed == [dates[0]] and went_on.ok == [dates[1]]
    lists = [k for k in keys if parse_campaign_key(k)[1] == "list"]
    assert lists and all(instance.get_materialized_partitions(k) == {dates[1]} for k in lists)


def test_a_consecutive_day_backfill_after_the_run_fails_only_the_size_band_and_names_it(first_run):
    """Backfilling as_of-2 then as_of-1 after the run of as_of: a campaign with a 7-day dedup lists on
    as_of-1 only the few players it did not send to on as_of-2 (all lists built on the marts of
    as_of), so a gate may fail, but on the list-size band (or a tiny list's holdout share) alone, and
    says so: no compliance expectation fails (the outcome of the band was once described as "no ineligible player
    (recomputed from the profile)"). Which gates fail depends on what earlier tests left in the home."""
    import datetime as dt
    import os

    from dagster import DagsterInstance

    from crm.campaigns.overrides import overridable
    from crm.campaigns.spec import load_campaign
    from crm.ingest.landing import default_as_of
    from orchestration.assets.campaigns import gate_published_list
    from orchestration.backfill import run_backfill

    as_of = default_as_of(_paths())
    dates = [(as_of - dt.timedelta(days=n)).isoformat() for n in (2, 1)]
    _, keys = _backfill_dates_and_keys()
    outcome = run_backfill(DagsterInstance.ephemeral(), dates, keep_going=True, asset_selection=keys)
    specs = [load_campaign(p) for p in sorted(Path(os.environ["CRM_CAMPAIGNS_DIR"]).glob("[!_]*.yaml"))]
    failed_gates = []
    for d in dates:
        for spec in specs:
            gate_file = _paths().lists / spec.id / d / "gate.json"
            if gate_file.exists() and not json.loads(gate_file.read_text())["success"]:
                result = gate_published_list(_paths(), spec, specs, dt.date.fromisoformat(d))
                failed_gates.append((d, spec.id))
                # the list-size band (and on a tiny list, the holdout share): never a compliance one,
                # and each outcome carries its own description
                assert result.failed and all(overridable(o.name)[0] for o in result.failed), (d, spec.id)
                described = {"expect_table_row_count_to_be_between": "list size",
                             "expect_column_mean_to_be_between": "holdout share"}
                assert all(o.description.startswith(described[o.expectation]) for o in result.failed), (d, spec.id)
    assert sorted(outcome.failed) == sorted({d for d, _ in failed_gates})  # a date fails by its gates only


def test_a_run_past_the_feed_stops_at_landing_with_a_feed_outage(first_run):
    """A day with no landed event: the blocking landing check names the outage and the warehouse,
    models and lists of that day are not built (not a drift failure at the features gate)."""
    from dagster import AssetKey

    from crm.ingest.landing import default_as_of
    from orchestration.run import run_refresh

    _, instance = first_run
    beyond = default_as_of(_paths()) + dt.timedelta(days=1)  # nothing landed for the day before it
    result, _ = run_refresh(instance, beyond.isoformat(),
                            asset_selection=[AssetKey("landed_events"), AssetKey("stg_casino__events")])
    assert not result.success
    evals = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
             for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert not evals["feed_complete"].passed
    assert "feed outage: no data landed" in evals["feed_complete"].description
    built = {e.asset_key.path[-1] for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert "stg_casino__events" not in built


def test_backup_restores_into_a_new_home_with_the_same_lists_scores_and_audit_chain(first_run, tmp_path):
    import io
    import sqlite3
    import tarfile

    from crm.backup import BackupError, backup, restore
    from crm.campaigns.audit import read_entries, verify
    from crm.config import Paths

    src = _paths()
    report = backup(src, tmp_path / "home.tar.gz")
    assert report.files > 50 and report.sqlite_snapshots >= 1
    target = tmp_path / "restored"
    manifest = restore(report.archive, target)
    new = Paths(target)
    assert manifest["home"] == str(src.home.resolve())

    lists = sorted(p.relative_to(src.lists) for p in src.lists.rglob("*") if p.is_file())
    assert any(p.name == "list.parquet" for p in lists)
    for rel in lists:
        assert (new.lists / rel).read_bytes() == (src.lists / rel).read_bytes(), rel
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{src.warehouse}' AS a (READ_ONLY)")
        con.execute(f"ATTACH '{new.warehouse}' AS b (READ_ONLY)")
        scores = con.execute("SELECT count(*) FROM a.player_scores").fetchone()[0]
        differ = con.execute("SELECT count(*) FROM (SELECT * FROM a.player_scores EXCEPT ALL "
                             "SELECT * FROM b.player_scores)").fetchone()[0]
    assert scores > 0 and differ == 0
    assert verify(new).ok and read_entries(new) == read_entries(src) and read_entries(new)
    # MLflow points at the new home's artifacts, and its champion loads from there
    db = next((target / "mlflow").glob("*.db"))
    with sqlite3.connect(db) as con:
        locations = [r[0] for r in con.execute("SELECT artifact_location FROM experiments")]
    assert locations and all(str(target) in loc for loc in locations if loc.startswith("file:"))

    # a damaged archive, a member outside the home, a non-empty target: refused, nothing written
    with tarfile.open(report.archive) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    for name, mutate in (("damaged.tar", "flip"), ("escape.tar", "escape")):
        with tarfile.open(tmp_path / name, "w") as out:
            for m, data in members:
                if mutate == "flip" and m.name.endswith("list.parquet"):
                    data = bytes([data[0] ^ 1]) + data[1:]
                    mutate = "done"
                out.addfile(m, io.BytesIO(data) if data is not None else None)
            if mutate == "escape":
                evil = tarfile.TarInfo("home/../../evil.txt")
                evil.size = 4
                out.addfile(evil, io.BytesIO(b"evil"))
        with pytest.raises(BackupError, match="checksum|not in the manifest"):
            restore(tmp_path / name, tmp_path / f"from_{name}")
        assert not (tmp_path / f"from_{name}").exists() and not (tmp_path / "evil.txt").exists()
    with pytest.raises(BackupError, match="not empty"):
        restore(report.archive, target)
    with pytest.raises(BackupError, match="outside the data home"):
        backup(src, src.home / "inside.tar")


def test_forgetting_a_player_leaves_none_of_their_identifiers_under_the_home(first_run, tmp_path):
    """The right to be forgotten after a whole run: on a copy of the home (landing, warehouse, store,
    vault, MLflow, Dagster, Data Docs, lists, logs), ``crm privacy forget`` for one simulated player,
    then every byte under the home is searched (compressed Parquet, DuckDB, zip and gzip content
    decoded) for their emails, phone, device id and IP: none remains; another player's are kept."""
    import shutil

    from click.testing import CliRunner

    from crm.cli import main
    from crm.config import Paths
    from crm.store.vault import Vault, vault_keys
    from tests._pii_search import occurrences

    src = _paths().home
    home = tmp_path / "home"
    shutil.copytree(src, home, ignore=shutil.ignore_patterns(".run.lock*"))
    vault = Vault(Paths(home), {})
    with vault.engine(vault.default_url).connect() as conn:
        players = [(r.brand_id, r.player_id) for r in conn.execute(vault_keys.select().order_by("player_id"))]
    held = {p: vault.values(*p) for p in players}
    vault.dispose()
    assert len(held) >= 700 and all(v.get("email") for v in held.values())
    ips = [v.get("ip") for v in held.values()]
    # a player whose IP is their own (a shared one stays in the other players' records, rightly),
    # with an address changed since registration (the old one is in the raw files only)
    brand, player = next(p for p, v in held.items() if ips.count(v.get("ip")) == 1 and v.get("phone")
                         and ".net" in v["email"])
    mine = held[(brand, player)]
    [(registered,)] = duckdb.connect().execute(
        "SELECT payload FROM read_parquet(?) WHERE player_id = ? AND event_type = 'player.registered'",
        [str(home / "landing" / "incoming" / "*.parquet"), player]).fetchall()
    old_email = json.loads(registered)["email"]
    assert old_email != mine["email"]
    needles = [mine["email"], old_email, mine["phone"], mine["device_id"], mine["ip"]]
    other = next(v for p, v in held.items() if p != (brand, player))
    assert {n.lower() for _, n in occurrences(home, needles)} == {n.lower() for n in needles}

    env = {"CRM_HOME": str(home), "CRM_DATABASE_URL": f"sqlite:///{home / 'service' / 'service.db'}"}
    out = CliRunner().invoke(main, ["privacy", "forget", player, "--brand", brand, "--by", "Dana DPO",
                                    "--reason", "erasure request #1"], env=env, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    left = occurrences(home, needles)
    assert left == [], left
    assert occurrences(home, [other["email"]]), "another player's identifiers are untouched"
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM dim_player WHERE player_id = ?", [player]).fetchone()[0] == 1
