"""The campaign engine around the rules: spec fields, named segments, the calendar, message
history from the warehouse and the outbox, one asset per campaign vs the whole day,
byte-identical XLSX, the gate's new checks and `crm explain`."""

from __future__ import annotations

import datetime as dt
import json
import time
import zipfile

import duckdb
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from crm.campaigns.budget import spent_before
from crm.campaigns.day import (
    HigherPriorityListMissing,
    build_all,
    build_one,
    day_context,
    explain_player,
    higher_priority,
)
from crm.campaigns.eligibility import Context
from crm.campaigns.history import (
    SENT_TODAY,
    load_history,
    players_offered_a_bonus,
    split_own_sends,
)
from crm.campaigns.lists import build_day, build_list, list_dir, publish, segment_mask, verify_manifest
from crm.campaigns.policy import CalendarError, load_calendar
from crm.campaigns.segments import NAMED_SEGMENTS
from crm.campaigns.spec import CampaignError, CampaignSpec, load_campaign, load_campaigns
from crm.config import CAMPAIGNS_DIR, Paths
from expectations.campaign_list import DayLimits, GateContext, GatedList, gate_list, recompute_violations

AS_OF = dt.date(2025, 10, 1)
BASE = "id: broken\nname: x\nchannel: email\n"


# --------------------------------------------------------------------------- the spec

@pytest.mark.parametrize("body, expected", [
    ("segment: {named: sleepy}\n", "unknown named segment 'sleepy'"),
    ("schedule: {send_time_utc: 10:00}\n", 'expected a time "HH:MM" in quotes'),
    ("schedule: {send_time_utc: '25:00'}\n", "field 'schedule.send_time_utc'"),
    ("schedule: {start: 2025-10-02, end: 2025-10-01}\n", "before schedule.start"),
    ("schedule: {weekdays: [funday]}\n", "field 'schedule.weekdays.0'"),
    ("priority: 0\n", "field 'priority'"),
    ("budget: {total_eur: 100}\n", "a budget is set but the offer (none) costs nothing"),
    ("offer: {template: bonus, value_eur: 20}\nbudget: {per_player_per_day_eur: 10}\n",
     "no player could ever get it"),
    ("offer: {template: bonus, value_eur: 200}\n", "exceeds the policy's maximum cost per player per day"),
    ("offer: {template: bonus, value_eur: 20}\nbudget: {total_eur: 10}\n", "below one offer"),
    ("frequency: {max_per_day: 3}\n", "max_per_day 3 exceeds the policy's email cap of 1 per day"),
    ("frequency: {cooldown_hours: 1}\n", "cooldown_hours 1 is below the policy's 12"),
    ("frequency: {dedup_days: 1}\n", "dedup_days 1 is below the policy's 7"),
    ("transactional: true\noffer: {template: bonus, value_eur: 5}\n", "a transactional message cannot carry an offer"),
    ("product: slots\n", "field 'product'"),
])
def test_broken_engine_fields_name_file_and_field(tmp_path, body, expected):
    path = tmp_path / "broken.yaml"
    path.write_text(BASE + body)
    with pytest.raises(CampaignError) as e:
        load_campaign(path)
    assert str(path) in str(e.value) and expected in str(e.value), str(e.value)


def test_shipped_campaigns_use_the_new_fields_and_old_files_still_load(tmp_path):
    specs, errors = load_campaigns(CAMPAIGNS_DIR)
    assert not errors, errors
    by_id = {s.id: s for s in specs}
    assert len({s.priority for s in specs}) == len(specs)  # the demo day has a clear order
    assert any(s.transactional for s in specs) and any(s.segment.named for s in specs)
    assert any(s.budget.total_cents for s in specs) and by_id["winback_uplift_bonus"].target.by == "uplift"
    # a file of the old shape (no engine fields) keeps its meaning: defaults everywhere
    old = tmp_path / "old_style.yaml"
    old.write_text("id: old_style\nname: o\nchannel: sms\nsegment: {rules: [{field: tenure_days, op: '>=', "
                   "value: 3}]}\n")
    s = load_campaign(old)
    assert (s.priority, s.transactional, s.product, s.schedule.send_time_utc) == (100, False, "casino", "10:00")
    assert s.schedule.active_on(AS_OF) and s.dedup_key == "old_style" and s.budget.total_cents is None


def test_files_starting_with_underscore_are_not_campaigns(tmp_path):
    (tmp_path / "_calendar.yaml").write_text("blackouts: []\n")
    (tmp_path / "good_one.yaml").write_text("id: good_one\nname: g\nchannel: sms\n")
    specs, errors = load_campaigns(tmp_path)
    assert [s.id for s in specs] == ["good_one"] and not errors


def test_named_segments_are_defined_once_and_narrowed_by_rules():
    assert set(NAMED_SEGMENTS) == {"newcomers", "active", "vip", "high_value", "dormant", "at_risk"}
    df = pd.DataFrame({"player_id": ["a", "b", "c", "d"], "days_since_last_active": [40, 40, 3, None],
                       "deposit_eur_90d": [20_000, 0, 20_000, 20_000], "churn_score": [0.9, 0.9, 0.9, 0.9]})
    dormant = CampaignSpec.model_validate({"id": "seg", "name": "s", "channel": "email", "segment": {
        "named": "dormant", "rules": [{"field": "deposit_eur_90d", "op": ">=", "value": 10_000}]}})
    assert list(df[segment_mask(df, dormant)]["player_id"]) == ["a"]
    at_risk = CampaignSpec.model_validate({"id": "seg", "name": "s", "channel": "email",
                                           "segment": {"named": ["at_risk"], "scores": {"churn_score": {"min": 0.95}}}})
    assert at_risk.uses_ml  # a named segment with a score is ML targeting: profiling consent needed
    assert at_risk.segment.all_scores["churn_score"].min == 0.95  # the narrower bound wins
    assert not dormant.uses_ml


def test_calendar_file(tmp_path):
    assert load_calendar(tmp_path).blackouts == []
    (tmp_path / "_calendar.yaml").write_text("blackouts:\n  - {name: x, start: 2025-10-02, end: 2025-10-01}\n")
    with pytest.raises(CalendarError, match="field 'blackouts.0'"):
        load_calendar(tmp_path)
    (tmp_path / "_calendar.yaml").write_text("blackouts:\n  - {name: x, start: 2025-10-01, end: 2025-10-01, "
                                             "jurisdictions: [XX]}\n")
    with pytest.raises(CalendarError, match="jurisdictions"):
        load_calendar(tmp_path)
    assert load_calendar(CAMPAIGNS_DIR).blackouts  # the shipped calendar is valid


# --------------------------------------------------------------------------- history

def _outbox(paths: Paths, channel: str, campaign: str, day: dt.date, rows: list[dict]) -> None:
    f = paths.outbox / channel / campaign / f"{day.isoformat()}.jsonl"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("".join(json.dumps({"idempotency_key": f"k{i}", "campaign_id": campaign, "channel": channel,
                                     "as_of_date": day.isoformat(), "variant": "A", "locale": "x", "timezone": "x",
                                     "offer_template": "none", "offer_cost_eur_cents": 0} | r) + "\n"
                         for i, r in enumerate(rows)))


def test_history_from_warehouse_deliveries_and_our_outbox(tmp_path):
    paths = Paths(tmp_path).ensure()
    spec = CampaignSpec.model_validate({"id": "ours", "name": "o", "channel": "email", "schedule": {
        "send_time_utc": "09:00"}, "offer": {"template": "bonus", "value_eur": 10, "expiry_days": 3},
        "budget": {"total_eur": 1000}})
    con = duckdb.connect(str(paths.warehouse))
    con.execute("""CREATE TABLE stg_casino__crm_messages AS SELECT * FROM (VALUES
        ('e1', 'crm.delivery', 'p1', 'A', TIMESTAMP '2025-09-29 08:00:00', 'd1', 'hist', 'push'),
        ('e2', 'crm.open',     'p1', 'A', TIMESTAMP '2025-09-29 08:05:00', 'd1', 'hist', 'push'),
        ('e3', 'crm.delivery', 'p2', 'A', TIMESTAMP '2025-09-30 09:01:00', 'd2', 'ours', 'email'),
        ('e4', 'crm.delivery', 'p3', 'A', TIMESTAMP '2025-10-01 00:01:00', 'd3', 'hist', 'sms'),
        ('e5', 'crm.delivery', 'p4', 'A', TIMESTAMP '2025-08-01 00:00:00', 'd4', 'hist', 'sms')
        ) t(event_id, event_type, player_id, brand_id, occurred_at, delivery_id, campaign_id, channel)""")
    con.close()
    _outbox(paths, "email", "ours", dt.date(2025, 9, 30),
            [{"player_id": "p2", "offer_template": "bonus", "offer_cost_eur_cents": 1000},
             {"player_id": "p5", "offer_template": "bonus", "offer_cost_eur_cents": 1000},
             # released late the same day: its own time; released by a backfill months later: planned
             {"player_id": "p8", "sent_at": "2025-09-30T11:30:00Z", "planned_send_at": "2025-09-30T09:00:00Z"},
             {"player_id": "p9", "sent_at": "2026-03-01T10:00:00Z", "planned_send_at": "2025-09-30T08:00:00Z"}])
    _outbox(paths, "email", "ours", AS_OF, [{"player_id": "p6", "offer_template": "bonus",
                                            "offer_cost_eur_cents": 1000}])  # today's own: its list re-plans it
    _outbox(paths, "push", "gone", AS_OF, [{"player_id": "p7"}])  # today's, campaign no longer defined: counts
    h = load_history(paths, AS_OF, [spec], days=30).sort_values(["player_id", "sent_at"]).reset_index(drop=True)
    # no open, no as-of-day delivery event, p2 counted once; what was sent today is a fact
    assert list(h["player_id"]) == ["p1", "p2", "p5", "p6", "p7", "p8", "p9"]
    p2 = h[h["player_id"] == "p2"].iloc[0]
    assert p2["source"] == "outbox" and p2["sent_at"] == pd.Timestamp("2025-09-30 09:00")
    assert p2["is_bonus_offer"] and p2["offer_ends_at"] == pd.Timestamp("2025-10-03 09:00")
    at = dict(zip(h["player_id"], h["sent_at"], strict=True))
    assert at["p7"] == pd.Timestamp("2025-10-01 23:59:59")  # unknown campaign: as late as possible
    assert at["p8"] == pd.Timestamp("2025-09-30 11:30") and at["p9"] == pd.Timestamp("2025-09-30 08:00")
    assert list(h.loc[h["source"] == SENT_TODAY, "player_id"]) == ["p6", "p7"]
    mine, sent = split_own_sends(h, "ours", "email")  # the campaign's own sends of the day leave its history
    assert "p6" not in set(mine["player_id"]) and list(sent["player_id"]) == ["p6"]
    assert split_own_sends(h, "gone", "email")[0].equals(h)  # another channel: another message, it stays
    # the spend ledger, backfilled from this home's outbox: earlier dates only (today's: in the history)
    assert spent_before(paths, ["ours"], AS_OF) == {"ours": 2000}
    assert players_offered_a_bonus(paths, AS_OF) == frozenset({"p2", "p5"})
    ctx = day_context(paths, AS_OF, [spec])
    assert ctx.spent_cents == {"ours": 2000} and len(ctx.history) == 7


# --------------------------------------------------------------------------- one asset per campaign == the day

def _audience(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame({
        "player_id": [f"p_{i:04d}" for i in range(n)], "brand_id": "A", "country": rng.choice(["DE", "UK", "SE"], n),
        "locale": "de-DE", "timezone": "Europe/Berlin", "age_years": 30, "age_verified": True,
        "self_excluded_now": False, "ever_self_excluded": False, "returned_after_exclusion": False,
        "cooling_off_now": False, "harm_risk_flag": False, "consent_email": True, "consent_push": True,
        "consent_sms": True, "consent_in_app": True, "consent_profiling": True, "consent_email_products": "casino",
        "consent_push_products": "casino", "consent_sms_products": "casino", "consent_in_app_products": "casino",
        "bonuses_received": rng.integers(0, 2, n), "churn_score": rng.uniform(0, 1, n), "churn_model_version": "3",
        "net_loss_eur_7d": rng.integers(0, 60_000, n), "days_since_last_active": rng.integers(0, 60, n),
        "tenure_days": rng.integers(0, 90, n), "active_days_7d": 1, "deposit_eur_90d": 50_000,
        "deposit_failures_30d": rng.integers(0, 4, n), "days_since_last_deposit": rng.integers(0, 30, n),
    })


def test_one_asset_per_campaign_builds_the_same_lists_as_the_whole_day(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_CAMPAIGNS_DIR", str(CAMPAIGNS_DIR))
    paths = Paths(tmp_path).ensure()
    specs, _ = load_campaigns(CAMPAIGNS_DIR)
    aud = _audience()
    whole = {b.campaign.id: b for b in build_all(paths, specs, AS_OF, audience=aud)}
    assert sum(len(b.rows) for b in whole.values()) > 50
    lowest = max(specs, key=lambda s: s.order_key)
    with pytest.raises(HigherPriorityListMissing, match="materialize it first"):
        build_one(paths, lowest, specs, AS_OF, audience=aud)
    for spec in sorted(specs, key=lambda s: s.order_key):  # as Dagster runs the assets
        one = build_one(paths, spec, specs, AS_OF, audience=aud)
        assert one.rows.equals(whole[spec.id].rows) and one.suppression == whole[spec.id].suppression, spec.id
        publish(one, paths)
    # a higher-priority list built from another version of its file is not trusted
    first = min(specs, key=lambda s: s.order_key)
    changed = [first.model_copy(update={"name": "edited"}) if s.id == first.id else s for s in specs]
    with pytest.raises(HigherPriorityListMissing, match="another version"):
        build_one(paths, lowest, changed, AS_OF, audience=aud)
    assert [h.id for h in higher_priority(lowest, specs)] == [s.id for s in sorted(specs, key=lambda s: s.order_key)
                                                               if s.id != lowest.id]
    # explain agrees with the published list, for every player of one campaign
    spec = sorted(specs, key=lambda s: s.order_key)[2]
    published = pd.read_parquet(list_dir(paths, spec.id, AS_OF) / "list.parquet")
    for pid in aud["player_id"].iloc[:30]:
        e = explain_player(paths, pid, spec, specs, AS_OF, audience=aud)
        assert e["listed"] == (pid in set(published["player_id"])) and e["published_list"].startswith(
            "listed" if e["listed"] else "not listed")
        assert e["context"] == "published higher-priority lists"
        if not e["listed"] and e["decision"].startswith("ineligible"):
            assert any(r["verdict"] == "FAIL" for r in e["rules"])


def test_campaign_budget_holds_over_the_campaigns_life():
    spec = CampaignSpec.model_validate({"id": "budgeted", "name": "b", "channel": "email",
                                        "offer": {"template": "bonus", "value_eur": 10},
                                        "budget": {"total_eur": 100}, "experiment": {"holdout": 0.2}})
    aud = _audience().assign(country="DE")
    full = build_list(spec, aud, AS_OF, Context(AS_OF))
    treated = full.rows[full.rows["variant"] != "holdout"]
    assert len(treated) == 10 and full.suppression["after_eligibility"]["campaign_budget"] > 0
    assert full.targeting["stopped_by"] == "budget"
    later = build_list(spec, aud, AS_OF, Context(AS_OF, spent_cents={"budgeted": 9_500}))
    assert (later.rows["variant"] != "holdout").sum() == 0  # EUR 5 left: no EUR 10 bonus fits
    assert build_list(spec, aud, AS_OF, Context(AS_OF, spent_cents={"budgeted": 10_000})).rows.empty


# --------------------------------------------------------------------------- files

def test_xlsx_is_byte_identical_with_fixed_zip_and_document_dates(tmp_path):
    spec = load_campaign(CAMPAIGNS_DIR / "cashback_recent_losers.yaml")
    built = build_list(spec, _audience(), AS_OF)
    assert len(built.rows) > 10
    a, b = Paths(tmp_path / "a").ensure(), Paths(tmp_path / "b").ensure()
    publish(built, a)
    time.sleep(1.1)  # a second later: a writer that stamped "now" would differ
    publish(build_list(spec, _audience(), AS_OF), b)
    da, db = list_dir(a, spec.id, AS_OF), list_dir(b, spec.id, AS_OF)
    for name in ("list_with_holdout.csv", "list.parquet", "list.xlsx", "suppression.json", "manifest.json"):
        assert (da / name).read_bytes() == (db / name).read_bytes(), name
    with zipfile.ZipFile(da / "list.xlsx") as z:
        assert {i.date_time[:3] for i in z.infolist()} <= {(1980, 1, 1), (1980, 1, 31)}
        core = z.read("docProps/core.xml").decode()
        assert "2025-10-01T00:00:00Z" in core and core.count("2025-10-01T00:00:00Z") == 2  # created, modified
    from openpyxl import load_workbook

    # the marketer's file: the players to contact only (tests/test_marketer_files.py has the rest)
    ws = load_workbook(da / "list.xlsx", read_only=True)["send A"]
    values = list(ws.values)
    contact = built.rows[built.rows["variant"] != "holdout"]
    assert values[0][0] == "Player ID" and len(values) == len(contact) + 1
    assert values[1][0] == contact["player_id"].iloc[0]
    manifest = json.loads((da / "manifest.json").read_text())
    assert set(manifest["files"]) == {"list_with_holdout.csv", "list.parquet", "list.xlsx", "suppression.json"}
    assert manifest["spec_hash"] == spec.spec_hash() and verify_manifest(da) == []
    assert "email" not in built.rows.columns and "phone" not in built.rows.columns


# --------------------------------------------------------------------------- the gate

def test_gate_recomputes_the_jurisdiction_rules_from_the_profile():
    aud = _audience(4).assign(player_id=["uk", "se", "nl", "ok"], country=["UK", "SE", "NL", "DE"],
                              bonuses_received=[0, 1, 0, 0], age_years=[30, 30, 23, 30],
                              consent_email_products=["sports", "casino", "casino", "casino"])
    spec = CampaignSpec.model_validate({"id": "gated", "name": "g", "channel": "email",
                                        "offer": {"template": "bonus", "value_eur": 10, "wagering": 10}})
    rows = build_list(spec, aud.assign(country="MT"), AS_OF).rows  # built as if all were MT: a poisoned list
    v = {p: (None if pd.isna(x) else x) for p, x in zip(rows["player_id"], recompute_violations(rows, aud),
                                                          strict=True)}
    assert v == {"uk": "no consent for product casino (UK)", "se": "bonus after a first bonus (SE)",
                 "nl": "bonus under 24 (NL)", "ok": None}
    # DE asks for consent naming the product too; a withdrawn product fails everywhere
    aud2 = _audience(3).assign(player_id=["de", "mt_withdrawn", "ok"], country=["DE", "MT", "DE"],
                               consent_email_products=["sports", "casino", "casino"],
                               consent_email_products_withdrawn=[None, "casino", "sports"])
    rows = build_list(spec, aud2.assign(country="MT", consent_email_products_withdrawn=None), AS_OF).rows
    v = dict(zip(rows["player_id"], recompute_violations(rows, aud2), strict=True))
    assert {p: (None if pd.isna(x) else x) for p, x in v.items()} == {
        "de": "no consent for product casino (DE)", "mt_withdrawn": "product casino withdrawn on email", "ok": None}
    # a linked account's self-exclusion, as the warehouse joins it (NULL: no linked account)
    aud3 = _audience(3).assign(player_id=["linked", "unlinked", "clear"], linked_self_excluded=[True, None, False],
                               country="DE")
    rows = build_list(spec, aud3.assign(linked_self_excluded=None), AS_OF).rows  # poisoned: the column dropped
    v = dict(zip(rows["player_id"], recompute_violations(rows, aud3), strict=True))
    assert {p: (None if pd.isna(x) else x) for p, x in v.items()} == {
        "linked": "a linked account is self-excluded", "unlinked": None, "clear": None}
    assert "linked" not in set(build_list(spec, aud3, AS_OF).rows["player_id"])


def test_gate_checks_the_days_limits_across_lists():
    aud = _audience(20).assign(country="DE", bonuses_received=0)
    high = CampaignSpec.model_validate({"id": "high", "name": "h", "channel": "push", "priority": 1,
                                        "offer": {"template": "bonus", "value_eur": 60},
                                        "experiment": {"holdout": 0.0}})
    low = CampaignSpec.model_validate({"id": "low", "name": "l", "channel": "push", "priority": 2,
                                       "offer": {"template": "bonus", "value_eur": 50},
                                       "experiment": {"holdout": 0.0}})
    first = build_list(high, aud, AS_OF).rows
    poisoned = build_list(low, aud, AS_OF).rows  # built without seeing `high`
    assert len(first) == len(poisoned) == 20
    limits = DayLimits(max_cost_per_player_cents=10_000, bonus_offers_per_day=1, channel_day_cap=1, global_day_cap=2)
    assert build_day([high, low], aud, AS_OF)[1].rows.empty  # the builder keeps them apart
    bad = gate_list(GatedList(poisoned, aud, 0.0, ["A"]), GateContext(day_lists=[first], limits=limits))
    assert not bad.success
    assert {o.column for o in bad.failed} == {"day_cost_within_cap", "one_bonus_offer_per_day", "channel_day_cap"}
    assert gate_list(GatedList(first, aud, 0.0, ["A"]), GateContext(limits=limits)).success
    # a negative cost on an earlier list (a broken, overridden list) never makes room under the cap
    refund = first.assign(offer_cost_eur_cents=-10_000)
    costly = poisoned.assign(offer_cost_eur_cents=15_000)
    day = gate_list(GatedList(costly, aud, 0.0, ["A"]),
                    GateContext(day_lists=[refund], limits=DayLimits(max_cost_per_player_cents=10_000)))
    assert "day_cost_within_cap" in {o.column for o in day.failed}


# --------------------------------------------------------------------------- crm explain

def test_crm_explain_prints_every_rule_and_the_decision(tmp_path, monkeypatch):
    from crm.cli import main

    home, cdir = tmp_path / "home", tmp_path / "campaigns"
    cdir.mkdir()
    (cdir / "push_promo.yaml").write_text(
        "id: push_promo\nname: p\nchannel: push\nschedule: {send_time_utc: '14:00'}\n"
        "frequency: {max_per_week: 2}\nexperiment: {holdout: 0.0}\n")
    monkeypatch.setenv("CRM_HOME", str(home))
    monkeypatch.setenv("CRM_CAMPAIGNS_DIR", str(cdir))
    paths = Paths(home).ensure()
    aud = _audience(3).assign(player_id=["p_busy", "p_free", "p_minor"], age_years=[30, 30, 16])
    con = duckdb.connect(str(paths.warehouse))
    con.register("aud", aud)
    con.execute("CREATE TABLE dim_player AS SELECT * EXCLUDE (churn_score, churn_model_version) FROM aud")
    con.execute("CREATE TABLE player_features AS SELECT player_id, churn_score AS some_feature FROM aud")
    con.close()
    for d in (2, 4, 6):
        _outbox(paths, "push", "earlier_push", AS_OF - dt.timedelta(days=d), [{"player_id": "p_busy"}])
    runner = CliRunner()
    r = runner.invoke(main, ["explain", "--player", "p_busy", "--campaign", "push_promo", "--date", "2025-10-01"])
    assert r.exit_code == 0, r.output
    assert "FAIL  channel_cap_week" in r.output and "3 push messages this week" in r.output and "cap 2" in r.output
    assert "NOT LISTED" in r.output and "first failing rule channel_cap_week" in r.output
    r = runner.invoke(main, ["explain", "--player", "p_free", "--campaign", "push_promo", "--date", "2025-10-01",
                             "--json"])
    e = json.loads(r.output)
    assert e["listed"] and e["variant"] == "A" and all(x["passed"] for x in e["rules"])
    r = runner.invoke(main, ["explain", "--player", "p_minor", "--campaign", "push_promo", "--date", "2025-10-01"])
    assert "FAIL  under_age" in r.output and "age 16, minimum 18 (" in r.output
    r = runner.invoke(main, ["explain", "--player", "nobody", "--campaign", "push_promo", "--date", "2025-10-01"])
    assert r.exit_code != 0 and "not in the profile" in r.output
    r = runner.invoke(main, ["explain", "--player", "p_free", "--campaign", "nope"])
    assert r.exit_code != 0 and "no campaign 'nope'" in r.output and "push_promo" in r.output
    assert runner.invoke(main, ["explain", "--help"]).exit_code == 0
