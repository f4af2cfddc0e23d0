"""Campaign readouts: the statistics on synthetic data with known effects, the outcomes mart
through real dbt on a simulated casino, the readout against the simulator's truth, and the
assignment export our own dispatches write."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from _dbt import dbt_build

from crm.config import Paths
from crm.measurement import readout as R

SENT = pd.Timestamp("2025-07-01 09:00")


def _rows(n_t: int = 4000, n_c: int = 1000, seed: int = 0, campaign: str = "c1", p_t: float = 0.25,
          p_c: float = 0.20, ngr_t: float = 3000, ngr_c: float = 2000, bonus_cents: int = 1000,
          self_excl_t: float = 0.01, self_excl_c: float = 0.01, hits_t: float = 0.2, hits_c: float = 0.2,
          delivered: bool = True) -> pd.DataFrame:
    """Mart-shaped rows (fct_campaign_outcomes) with known effects; money in EUR cents."""
    rng = np.random.default_rng(seed)
    n = n_t + n_c
    treated = np.r_[np.ones(n_t, bool), np.zeros(n_c, bool)]
    conv = rng.random(n) < np.where(treated, p_t, p_c)
    deposits = np.where(conv, 1 + rng.poisson(0.5, n), 0)
    dep_at = SENT + pd.to_timedelta(rng.uniform(0.01, 6.9, n), unit="D")
    ngr = rng.normal(np.where(treated, ngr_t, ngr_c), 4000).round()
    bonus = np.where(treated, bonus_cents, 0) + rng.choice([0, 500], n, p=[0.9, 0.1])
    opened = treated & (rng.random(n) < 0.3)
    clicked = opened & (rng.random(n) < 0.3)
    open_at = SENT + pd.to_timedelta(rng.uniform(0.0, 2.0, n), unit="D")
    return pd.DataFrame({
        "campaign_id": campaign, "player_id": [f"p_{i:05d}" for i in range(n)],
        "arm": np.where(treated, "treatment", "control"), "treated": treated, "channel": "email",
        "sent_at": SENT, "sent_date": SENT.normalize(), "outcome_7d_complete": True, "outcome_14d_complete": True,
        "converted_7d": conv, "deposits_7d": deposits, "deposit_eur_7d": deposits * 2500,
        "first_deposit_at": pd.Series(dep_at).where(conv),
        "ngr_eur_14d": ngr.astype("int64"), "bonus_cost_eur_14d": bonus.astype("int64"),
        "campaign_bonus_cost_eur_14d": np.where(treated, bonus_cents, 0).astype("int64"),
        "dormant_30d_before": rng.random(n) < 0.3,
        "reactivated_14d": rng.random(n) < np.where(treated, 0.10, 0.06),
        "rg_limit_hits_14d": rng.poisson(np.where(treated, hits_t, hits_c)),
        "self_excluded_14d": rng.random(n) < np.where(treated, self_excl_t, self_excl_c),
        "first_delivery_at": pd.Series(SENT, index=range(n)).where(treated & delivered),
        "first_open_at": pd.Series(open_at).where(opened & delivered),
        "first_click_at": pd.Series(open_at + pd.Timedelta(minutes=2)).where(clicked & delivered),
        "complained": False, "unsubscribed": False,
    })


# --------------------------------------------------------------------------- statistics
def test_confidence_intervals_cover_the_truth():
    """Over repeated experiments the 95% intervals cover the true difference about 95% of the time."""
    rng = np.random.default_rng(1)
    cover_money = cover_share = 0
    reps = 400
    for _ in range(reps):
        t = rng.lognormal(3.0, 1.0, 800) + 5.0  # skewed money, true difference 5
        c = rng.lognormal(3.0, 1.0, 200)
        d = R.diff_in_means(t, c)
        cover_money += d["ci_low"] <= 5.0 <= d["ci_high"]
        s = R.diff_in_means(rng.random(800) < 0.06, rng.random(200) < 0.03, binary=True)
        cover_share += s["ci_low"] <= 0.03 <= s["ci_high"]
    assert 0.91 <= cover_money / reps <= 0.985, cover_money / reps
    assert 0.92 <= cover_share / reps <= 0.99, cover_share / reps


def test_readout_recovers_known_effects_and_roi():
    rows = _rows()
    r = R.campaign_readout(rows, expected_control_share=0.2)
    assert r["status"] == R.OK and r["arms"] == {"treatment": 4000, "control": 1000}
    assert r["srm_pvalue"] > 0.5 and not r["srm_mismatch"]
    eff = {e["metric"]: e for e in r["effects"]}
    conv, ngr = eff["converted_7d"], eff["ngr_eur_14d"]
    assert conv["ci_low"] <= 0.05 <= conv["ci_high"] and conv["significant"]
    assert ngr["ci_low"] <= 10.0 <= ngr["ci_high"]  # EUR: 30 - 20 per player
    assert ngr["incremental_total"] == pytest.approx(ngr["diff"] * 4000)
    assert conv["relative_lift"] == pytest.approx(conv["diff"] / conv["control_mean"])
    b = r["bonus"]
    assert b["cost_eur"] == pytest.approx(10.0 * 4000) and b["cost_basis"].startswith("bonuses issued under")
    assert b["roi"] == pytest.approx(ngr["incremental_total"] / 40_000)
    assert b["roi_ci"][0] < b["roi"] < b["roi_ci"][1]
    # untagged bonuses: the incremental bonus cost (treated - control) is the cost
    untagged = R.campaign_readout(rows.assign(campaign_bonus_cost_eur_14d=0))["bonus"]
    assert untagged["cost_basis"].startswith("incremental") and untagged["cost_eur"] == pytest.approx(
        untagged["incremental_bonus_cost_eur"])
    # a message-only campaign has no bonus cost, so no ROI
    none = R.campaign_readout(_rows(bonus_cents=0))["bonus"]
    assert none["cost_eur"] is None and none["roi"] is None


def test_zero_effect_is_not_flagged():
    r = R.campaign_readout(_rows(p_t=0.2, p_c=0.2, seed=3))
    assert r["guardrails_flagged"] == []
    assert not {e["metric"]: e for e in r["effects"]}["converted_7d"]["significant"]
    # the one-sided tests keep their 5% level under no effect
    rng = np.random.default_rng(5)
    false_flags = sum(
        (R.rise_pvalue(rng.random(2000) < 0.02, rng.random(500) < 0.02, binary=True) < 0.05)
        + (R.rise_pvalue(rng.poisson(0.3, 2000), rng.poisson(0.3, 500), binary=False) < 0.05)
        for _ in range(200))
    assert false_flags / 400 <= 0.08


def test_guardrail_rise_is_flagged():
    r = R.campaign_readout(_rows(self_excl_t=0.03, self_excl_c=0.005, hits_t=0.35, hits_c=0.2))
    assert set(r["guardrails_flagged"]) == {"self_excluded_14d", "rg_limit_hits_14d"}
    g = {x["metric"]: x for x in r["guardrails"]}
    assert g["self_excluded_14d"]["test"].startswith("Fisher") and g["self_excluded_14d"]["ci_low"] > 0
    # a fall is not a rise
    assert R.campaign_readout(_rows(self_excl_t=0.002, self_excl_c=0.03))["guardrails_flagged"] == []


def test_last_touch_over_claims_when_control_players_also_convert():
    r = R.campaign_readout(_rows(p_t=0.25, p_c=0.20))
    at = r["attribution"]
    # every treated converter was delivered the message before depositing: last touch takes them all
    assert at["attributed_conversions"] == at["treated_conversions"] == int(_rows()["converted_7d"][:4000].sum())
    assert sum(at["attributed_by_touch"].values()) == at["attributed_conversions"]
    assert at["attributed_by_touch"]["click"] > 0 and at["attributed_by_touch"]["open"] > 0
    # ... while the holdout says only ~5 of those 25 points were caused by the campaign
    assert at["over_claim_ratio"] > 3 and at["over_claim_ratio_low"] > 1.5
    assert at["incremental_conversions"] == pytest.approx(
        {e["metric"]: e for e in r["effects"]}["converted_7d"]["diff"] * 4000)
    # without touches nothing is attributed
    assert R.campaign_readout(_rows(delivered=False))["attribution"]["attributed_conversions"] == 0


def test_last_touch_window_and_priority():
    t = pd.Timestamp
    rows = pd.DataFrame({
        "first_deposit_at": [t("2025-07-03"), t("2025-07-03"), t("2025-07-08 12:00"), t("2025-07-01 10:00"), pd.NaT],
        "first_delivery_at": [t("2025-07-01")] * 5,
        "first_open_at": [t("2025-07-02"), t("2025-07-04"), pd.NaT, t("2025-07-01 10:00"), t("2025-07-02")],
        "first_click_at": [t("2025-07-02 00:01"), pd.NaT, pd.NaT, t("2025-07-01 10:00"), pd.NaT],
    })

    def credited(window: float) -> list:
        return [x if isinstance(x, str) else None for x in R.last_touch(rows, window)]

    # click beats open by a minute; the open after the deposit does not count; 7.5 days is too late
    assert credited(7) == ["click", "delivery", None, "click", None]
    assert credited(8) == ["click", "delivery", "delivery", "click", None]
    # a 1-day window: the deposit two days after the delivery (open came after it) is not credited
    assert credited(1) == ["click", None, None, "click", None]
    with pytest.raises(ValueError):
        R.last_touch(rows, 0)


def test_srm_maturity_figures_and_json(tmp_path):
    rows = _rows(n_t=3000, n_c=2000)
    assert R.campaign_readout(rows, expected_control_share=0.2)["srm_mismatch"]
    young = rows.assign(outcome_7d_complete=False, outcome_14d_complete=False)
    r = R.campaign_readout(young, expected_control_share=0.4)
    assert r["status"] == R.NOT_MATURED and r["arms"]["control"] == 2000 and r["effects"] == []
    assert R.readout_figures(r) == {}
    assert R.readouts(rows, ["nope"])[0]["status"] == R.NO_ASSIGNMENTS

    r = R.campaign_readout(rows)
    figs = R.readout_figures(r)
    assert set(figs) == {"effects", "attribution"}
    assert R.figure_png(figs["effects"]).startswith(b"\x89PNG")
    path = R.write_readout(Paths(tmp_path), r)
    assert path == tmp_path / "readouts" / "c1.json"
    assert json.loads(path.read_text())["attribution"]["attributed_conversions"] == r["attribution"][
        "attributed_conversions"]
    table = R.effects_table(r)
    assert len(table) == len(R.EFFECT_METRICS) + len(R.GUARDRAIL_METRICS) and "95% CI" in table.columns


# --------------------------------------------------------------------------- dispatch -> assignment export
def test_dispatch_writes_the_assignment_export_once(tmp_path):
    from test_campaigns import _audience

    from crm.campaigns.dispatch import ASSIGNMENT_SCHEMA, assignments_file, dispatch_list
    from crm.campaigns.lists import build_list, list_dir, publish, record_gate
    from crm.campaigns.spec import load_campaign
    from crm.config import CAMPAIGNS_DIR
    from crm.simulator.files import ASSIGNMENTS_SCHEMA

    assert ASSIGNMENT_SCHEMA.equals(ASSIGNMENTS_SCHEMA)
    paths = Paths(tmp_path).ensure()
    spec = load_campaign(CAMPAIGNS_DIR / "cashback_recent_losers.yaml")
    day1 = dt.date(2025, 10, 1)

    def dispatch(as_of: dt.date, n: int):
        built = build_list(spec, _audience(n), as_of)
        publish(built, paths)
        record_gate(list_dir(paths, spec.id, as_of), "campaign_list", True, {"summary": "ok"})
        return dispatch_list(paths, spec.id, as_of), built.rows

    r1, listed = dispatch(day1, 200)
    f = assignments_file(paths, spec.id, day1)
    assert f.name == f"campaign_assignments_{spec.id}_2025-10-01.parquet" and r1.assignments_written
    first_bytes, first_mtime = f.read_bytes(), f.stat().st_mtime_ns
    export = pd.read_parquet(f)
    assert len(export) == 200 and export["player_id"].is_monotonic_increasing
    arms = dict(zip(export["player_id"], export["arm"], strict=True))
    holdout = set(listed.loc[listed["variant"] == "holdout", "player_id"])
    assert {p for p, a in arms.items() if a == "control"} == holdout
    assert r1.assigned_control == len(holdout) and r1.assigned_treatment == 200 - len(holdout)
    assert (export["sent_at"] == pd.Timestamp("2025-10-01 00:00")).all() and (export["channel"] == spec.channel).all()

    r2, _ = dispatch(day1, 200)  # re-dispatch: nothing sent, the export untouched
    assert r2.new_messages == 0 and not r2.assignments_written
    assert f.read_bytes() == first_bytes and f.stat().st_mtime_ns == first_mtime

    # the next day's list repeats most players: only newly assigned ones are exported
    r3, _ = dispatch(day1 + dt.timedelta(days=1), 230)
    later = pd.read_parquet(assignments_file(paths, spec.id, day1 + dt.timedelta(days=1)))
    assert set(later["player_id"]) == {f"p_{i:04d}" for i in range(200, 230)}
    assert (later["sent_at"] == pd.Timestamp("2025-10-02")).all()


# --------------------------------------------------------------------------- the mart and the readout, end to end
START = dt.date(2025, 6, 1)
DAYS = 100
# hist_c04 (sent on day 84) has its 7-day window complete but not its 14-day one
AS_OF = START + dt.timedelta(days=94)
OWN_SENT = AS_OF - dt.timedelta(days=10)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    from crm.campaigns.dispatch import write_assignments
    from crm.ingest.landing import ingest_pending
    from crm.simulator.casino import simulate

    home = tmp_path_factory.mktemp("readout_home")
    paths = Paths(home)
    simulate(paths, players=3000, days=DAYS, seed=11, start_date=START, progress=False)
    assert ingest_pending(paths)
    # our own dispatches: one ten days before the as-of (7-day window complete), one on it (not sent yet)
    ids = sorted(pd.read_parquet(paths.truth / "players.parquet")["player_id"])
    write_assignments(paths, "own_push", OWN_SENT, "push", set(ids[:400]), set(ids[400:500]))
    write_assignments(paths, "own_today", AS_OF, "push", set(ids[:10]), set(ids[10:12]))
    dbt_build(home, AS_OF)
    return home


@pytest.fixture(scope="module")
def outcomes(home) -> pd.DataFrame:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("SELECT * FROM fct_campaign_outcomes ORDER BY campaign_id, player_id").df()


def test_outcome_mart(home, outcomes):
    o = outcomes
    paths = Paths(home)
    exported = pd.concat([pd.read_parquet(f) for f in sorted(paths.exports.glob("campaign_assignments*.parquet"))])
    expected = exported[exported["sent_at"] < pd.Timestamp(AS_OF)]
    # every assignment sent before the as-of, both arms, no filter; the operator's and ours union
    assert len(o) == len(expected) and not o.duplicated(["campaign_id", "player_id"]).any()
    assert set(o["campaign_id"]) == {"hist_c01", "hist_c02", "hist_c03", "hist_c04", "own_push"}
    keyed = expected.set_index(["campaign_id", "player_id"])["arm"]
    assert (keyed.loc[list(zip(o["campaign_id"], o["player_id"], strict=True))].to_numpy() == o["arm"]).all()
    # window flags and NULLs: data before the as-of only
    sent = pd.to_datetime(o["sent_at"])
    for n, cols in ((7, ["converted_7d", "deposits_7d", "deposit_eur_7d"]),
                    (14, ["ngr_eur_14d", "bonus_cost_eur_14d", "reactivated_14d", "rg_limit_hits_14d",
                          "self_excluded_14d", "campaign_bonus_cost_eur_14d"])):
        done = o[f"outcome_{n}d_complete"].astype(bool)
        assert (done == (sent + pd.Timedelta(days=n) <= pd.Timestamp(AS_OF))).all()
        assert o.loc[done, cols].notna().all().all() and o.loc[~done, cols].isna().all().all()
    c04 = o[o["campaign_id"] == "hist_c04"]
    assert c04["outcome_7d_complete"].all() and not c04["outcome_14d_complete"].any()
    own = o[o["campaign_id"] == "own_push"]
    assert len(own) == 500 and (own["arm"] == "treatment").sum() == 400
    assert (pd.to_datetime(own["sent_at"]) == pd.Timestamp(OWN_SENT)).all() and (own["channel"] == "push").all()

    # outcomes recomputed independently from the daily mart and the landed events
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        daily = con.execute("SELECT player_id, activity_date, deposits, ngr_eur, rg_limit_hits, is_active "
                            "FROM fct_player_daily").df()
        msgs = con.execute("SELECT player_id, campaign_id, event_type, occurred_at FROM stg_casino__crm_messages").df()
    rows = o[o["outcome_14d_complete"]].sample(400, random_state=0)
    d = rows[["campaign_id", "player_id", "sent_date"]].merge(daily, on="player_id")
    age = (pd.to_datetime(d["activity_date"]) - pd.to_datetime(d["sent_date"])).dt.days
    win7, win14 = d[(age >= 0) & (age < 7)], d[(age >= 0) & (age < 14)]
    key = ["campaign_id", "player_id"]
    got = rows.set_index(key)
    conv = win7.groupby(key)["deposits"].sum().reindex(got.index, fill_value=0)
    assert ((conv > 0) == got["converted_7d"].astype(bool)).all() and (conv == got["deposits_7d"]).all()
    ngr = win14.groupby(key)["ngr_eur"].sum().reindex(got.index, fill_value=0)
    assert (ngr == got["ngr_eur_14d"]).all()
    before = d[(age >= -30) & (age < 0) & d["is_active"]].groupby(key).size().reindex(got.index, fill_value=0)
    active = win14[win14["is_active"]].groupby(key).size().reindex(got.index, fill_value=0)
    assert (((active > 0) & (before == 0)) == got["reactivated_14d"].astype(bool)).all()
    first = (msgs[msgs["event_type"] == "crm.delivery"].groupby(key)["occurred_at"].min()
             .reindex(got.index))
    assert (first.isna() == got["first_delivery_at"].isna()).all()
    assert (first.dropna() == pd.to_datetime(got["first_delivery_at"]).dropna()).all()
    assert got.loc[got["arm"] == "control", "first_delivery_at"].isna().all()
    assert not o.loc[o["arm"] == "control", ["complained", "unsubscribed"]].any().any()


def test_readout_recovers_the_true_effect_of_a_bonus_campaign(home, outcomes):
    paths = Paths(home)
    found = {r["campaign_id"]: r for r in R.readout(paths, expected_control_share={"own_push": 0.2})}
    assert set(found) == {"hist_c01", "hist_c02", "hist_c03", "hist_c04", "own_push"}
    assert found["own_push"]["srm_pvalue"] is not None and found["hist_c02"]["srm_pvalue"] is None
    truth = pd.read_parquet(paths.truth / "campaign_effects.parquet")
    c02 = found["hist_c02"]
    conv = {e["metric"]: e for e in c02["effects"]}["converted_7d"]
    tau = truth.loc[truth["campaign_id"] == "hist_c02", "true_effect_deposit_prob"].mean()
    print(f"\nhist_c02 (bonus): conversion effect {conv['diff']:+.4f} "
          f"[{conv['ci_low']:+.4f}, {conv['ci_high']:+.4f}] vs true {tau:+.4f}; "
          f"ROI {c02['bonus']['roi']}; over-claim {c02['attribution']['over_claim_ratio']}")
    assert tau > 0 and conv["diff"] > 0 and conv["ci_low"] <= tau <= conv["ci_high"]
    # the campaign's bonuses are its cost: at most 10 EUR per treated player
    b = c02["bonus"]
    assert b["cost_basis"].startswith("bonuses issued under") and 0 < b["cost_eur"] <= 10 * c02["arms"]["treatment"]
    assert b["roi"] is not None
    assert c02["attribution"]["attributed_conversions"] > conv["incremental_total"]  # last touch over-claims
    # hist_c04: the 7-day effects are read out, the 14-day ones (NGR, so ROI) not yet
    c04 = {e["metric"]: e for e in found["hist_c04"]["effects"]}
    assert c04["converted_7d"]["diff"] is not None and c04["ngr_eur_14d"]["n_treatment"] == 0
    assert found["hist_c04"]["bonus"]["roi"] is None


def test_readout_assets_materialize(home, tmp_path, monkeypatch):
    """The Dagster assets: one per campaign file (here own_push) and past_campaign_readouts."""
    from dagster import materialize

    from crm.campaigns.spec import load_campaign
    from orchestration.assets._keys import campaign_key
    from orchestration.assets.readouts import readout_assets
    from orchestration.resources import CrmResource

    for var in ("DAGSTER_HOME", "MLFLOW_TRACKING_URI", "DBT_LOG_PATH"):  # export_env() sets them
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CRM_HOME", str(home))
    spec_file = tmp_path / "own_push.yaml"
    spec_file.write_text("id: own_push\nname: Own push\nchannel: push\nexperiment: {holdout: 0.2, variants: {A: 1}}\n")
    never = tmp_path / "never_sent.yaml"
    never.write_text("id: never_sent\nname: Never sent\nchannel: sms\n")
    specs = [load_campaign(spec_file), load_campaign(never)]
    result = materialize(readout_assets(specs), resources={"crm": CrmResource()}, partition_key=AS_OF.isoformat())
    assert result.success
    meta = {tuple(e.asset_key.path): e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()}
    own = meta[tuple(campaign_key("own_push", "readout").path)]
    assert own["status"].value == "ok" and own["treatment_players"].value == 400
    assert own["expected_control_share"].value == 0.2 and own["srm_pvalue"].value > 0.001
    assert "data:image/png;base64," in own["effects_plot"].value and "conversion" in own["effects"].value
    assert meta[("campaigns", "never_sent", "never_sent_readout")]["status"].value == R.NOT_MATURED
    past = meta[("past_campaign_readouts",)]
    assert past["campaigns"].value == 5 and "hist_c02" in past["readouts"].value
    assert {p.stem for p in (home / "readouts").glob("*.json")} == {
        "hist_c01", "hist_c02", "hist_c03", "hist_c04", "own_push"}


def test_readout_command(home, monkeypatch):
    from click.testing import CliRunner

    from crm.cli import main

    for var in ("DAGSTER_HOME", "MLFLOW_TRACKING_URI", "DBT_LOG_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CRM_HOME", str(home))
    runner = CliRunner()
    r = runner.invoke(main, ["readout", "--campaign", "hist_c02", "--json", "--window-days", "2"])
    assert r.exit_code == 0, r.output
    [got] = json.loads(r.output)
    assert got["campaign_id"] == "hist_c02" and got["attribution"]["window_days"] == 2.0
    r = runner.invoke(main, ["readout"])
    assert r.exit_code == 0, r.output
    assert "== hist_c04: ok" in r.output and "ROI" in r.output and "95% CI" in r.output
    r = runner.invoke(main, ["readout", "--campaign", "nope"])
    assert r.exit_code != 0 and "nope" in r.output
