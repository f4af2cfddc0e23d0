"""The files a list is published as (issue 13, "Marketers' files").

``list.xlsx`` is what a marketer uploads to a sender: it holds only the players to contact (one
sheet per variant, never a holdout row), plain column names, euros, a styled, frozen and
filtered header, and a summary sheet (campaign, offer, total cost, approval state, counts per
variant and holdout, why players were left out in the words of the one reasons table,
``crm.campaigns.eligibility.REASONS``). ``list.parquet`` (canonical: the gate and dispatch read
it) and ``list_with_holdout.csv`` (analysts) hold both arms. A list with nobody to contact never
asks for approval, and says why it is empty.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook
from test_campaigns import _audience

from crm.campaigns import approvals, eligibility
from crm.campaigns.day import format_explanation
from crm.campaigns.dispatch import dispatch_list, outbox_file
from crm.campaigns.lists import (
    ANALYST_CSV,
    MARKETER_COLUMNS,
    build_list,
    list_dir,
    offer_text,
    publish,
    record_gate,
)
from crm.campaigns.spec import CampaignSpec, load_campaign
from crm.config import CAMPAIGNS_DIR, Paths

AS_OF = dt.date(2025, 10, 1)


def _spec(**over) -> CampaignSpec:
    data = {"id": "two_subjects", "name": "Weekend bonus, two subject lines", "owner": "alice", "channel": "email",
            "offer": {"template": "bonus", "value_eur": 12.5, "wagering": 5, "expiry_days": 3},
            "experiment": {"holdout": 0.2, "variants": {"subject_a": 1.0, "subject_b": 1.0}}}
    return CampaignSpec.model_validate(data | over)


def _mixed_audience(n: int = 300) -> pd.DataFrame:
    """Most players eligible; some with a harm flag, some SE players who already had a bonus."""
    aud = _audience(n).copy()
    aud.loc[aud.index[:20], "harm_risk_flag"] = True
    se = aud.index[20:35]
    aud.loc[se, "country"], aud.loc[se, "timezone"] = "SE", "Europe/Stockholm"
    aud["bonuses_received"] = 0
    aud.loc[se, "bonuses_received"] = 1
    aud.loc[aud.index[::7], "consent_profiling"] = False  # no scores on the list for them
    return aud


def _summary(wb) -> dict[str, object]:
    """The summary sheet's label -> value lines (column A -> column B)."""
    return {r[0]: r[1] for r in wb["summary"].iter_rows(values_only=True) if r and r[0]}


def _left_out(wb) -> list[tuple]:
    rows = list(wb["summary"].iter_rows(values_only=True))
    start = next(i for i, r in enumerate(rows) if r[0] == "Why players were left out")
    return [r for r in rows[start + 1:] if r and r[0]]


def test_marketers_xlsx_holds_only_the_players_to_contact_in_euros_with_plain_headers(tmp_path):
    spec = _spec()
    built = build_list(spec, _mixed_audience(), AS_OF)
    holdout = built.rows[built.rows["variant"] == "holdout"]
    assert len(holdout) > 10 and built.to_contact == len(built.rows) - len(holdout)
    publish(built, Paths(tmp_path).ensure())
    d = list_dir(Paths(tmp_path), spec.id, AS_OF)
    wb = load_workbook(d / "list.xlsx")  # not read-only: panes and filters are readable
    assert wb.sheetnames == ["summary", "send subject_a", "send subject_b"]
    for variant in ("subject_a", "subject_b"):
        ws = wb[f"send {variant}"]
        values = list(ws.iter_rows(values_only=True))
        header, body = values[0], values[1:]
        assert list(header) == list(MARKETER_COLUMNS.values())
        assert not any("score" in h.lower() or "_" in h for h in header)  # plain words, no raw names
        expected = built.rows[built.rows["variant"] == variant]
        assert [r[0] for r in body] == expected["player_id"].tolist()
        assert {r[header.index("Variant")] for r in body} == {variant}  # never a holdout row
        assert not set(holdout["player_id"]) & {r[0] for r in body}
        # euros, not cents
        assert [r[header.index("Offer value (EUR)")] for r in body] == pytest.approx(
            (expected["offer_cost_eur_cents"] / 100).tolist()) and body[0][header.index("Offer value (EUR)")] == 12.5
        assert ws.cell(2, header.index("Offer value (EUR)") + 1).number_format == "#,##0.00"
        last = chr(ord("A") + len(MARKETER_COLUMNS) - 1)  # the filter spans every column
        assert ws.freeze_panes == "A2" and ws.auto_filter.ref == f"A1:{last}{len(body) + 1}"
        assert ws["A1"].font.b and ws["A1"].fill.fgColor.rgb.endswith("DDEBF7")
        assert ws.column_dimensions["A"].width > 8
    # analysts keep both arms: the canonical Parquet and the CSV beside it
    parquet = pd.read_parquet(d / "list.parquet")
    csv = pd.read_csv(d / ANALYST_CSV)
    assert (parquet["variant"] == "holdout").sum() == len(holdout) == (csv["variant"] == "holdout").sum()
    assert csv["player_id"].tolist() == parquet["player_id"].tolist()
    assert "offer_cost_eur_cents" in csv.columns and "churn_score" in csv.columns
    assert not (d / "list.csv").exists()


def test_summary_sheet_names_the_campaign_offer_cost_approval_and_counts(tmp_path, monkeypatch):
    monkeypatch.setenv(approvals.THRESHOLD_ENV, "100")  # the list costs more: it waits for approval
    spec = _spec()
    built = build_list(spec, _mixed_audience(), AS_OF)
    manifest = publish(built, Paths(tmp_path).ensure())
    wb = load_workbook(list_dir(Paths(tmp_path), spec.id, AS_OF) / "list.xlsx")
    s = _summary(wb)
    assert s["Campaign"] == "Weekend bonus, two subject lines (two_subjects)"
    assert s["List date (as of)"] == "2025-10-01"
    assert s["Offer"] == offer_text(spec) == "Bonus of EUR 12.50, wagering 5x, expires after 3 days"
    assert s["Total offer cost (EUR)"] == pytest.approx(manifest["total_offer_cost_eur_cents"] / 100)
    assert s["Total offer cost (EUR)"] == pytest.approx(12.5 * built.to_contact)
    assert s["Approval when the list was built"] == "pending" == manifest["approval_at_publish"]["state"]
    assert s["Players to contact"] == built.to_contact
    assert s["  variant subject_a (sheet 'send subject_a')"] == built.funnel["variant_subject_a"]
    assert s["Holdout: never contact them (not in this file)"] == built.funnel["holdout"]
    assert "profiling consent" in s["Model scores"] and "Nothing to send because" not in s


def test_plain_reasons_come_from_the_one_table(tmp_path):
    spec = _spec()
    built = build_list(spec, _mixed_audience(), AS_OF)
    first = built.suppression["first_failing_rule"]
    assert first["harm_risk"] == 20 and first["bonus_not_first_occasion"] == 15
    publish(built, Paths(tmp_path).ensure())
    d = list_dir(Paths(tmp_path), spec.id, AS_OF)
    left_out = _left_out(load_workbook(d / "list.xlsx"))
    assert {r[1] for r in left_out} == set(first) | set(built.suppression["every_failing_rule"])
    for text, rule, n_first, _ in left_out:
        assert text == eligibility.REASONS[rule] == eligibility.reason_text(rule) and n_first == first.get(rule, 0)
    assert ("Shows signs of gambling harm (responsible-gambling flag)", "harm_risk", 20, 20) in left_out
    report = json.loads((d / "suppression.json").read_text())
    assert report["reasons"] == {r: eligibility.REASONS[r] for r in first} and report["empty_because"] is None
    # crm explain prints the same words for a failing rule
    player = _mixed_audience().iloc[[0]]
    rows = eligibility.explain(player, spec, eligibility.Context(AS_OF))[0]
    harm = next(r for r in rows if r["rule"] == "harm_risk")
    assert not harm["passed"] and harm["reason"] == eligibility.REASONS["harm_risk"]


def test_every_rule_and_cut_has_a_plain_reason():
    assert all(r.reason and "_" not in r.reason for r in eligibility.RULES)
    assert set(eligibility.REASONS) == set(eligibility.RULE_NAMES) | {
        "held_out_recently", "not_targeted_by_uplift", "campaign_budget", "max_list_size"}
    assert eligibility.reason_text("not_targeted_by_uplift").startswith("Eligible, but not picked by uplift")


def test_explanation_text_carries_the_plain_reason():
    e = {"player_id": "p", "campaign_id": "c", "channel": "email", "priority": 1, "transactional": False,
         "context": "x", "higher_priority_campaigns": [], "segment": [], "targeting": {"by": "all"},
         "scope": {"passed": True, "brands": "all", "jurisdictions": "all", "observed": "brand A, country DE"},
         "rules": [{"rule": "harm_risk", "verdict": "FAIL", "passed": False, "observed": "harm_risk_flag=True",
                    "reason": eligibility.REASONS["harm_risk"]}],
         "listed": False, "decision": "ineligible", "as_of_date": "2025-10-01", "published_list": None}
    assert eligibility.REASONS["harm_risk"] in format_explanation(e)


def _uplift_spec(**over) -> CampaignSpec:
    return load_campaign(CAMPAIGNS_DIR / "winback_uplift_bonus.yaml").model_copy(update=over)


def _winback_audience(n: int = 200, uplift: np.ndarray | None = None) -> pd.DataFrame:
    aud = _audience(n).assign(days_since_last_active=10)
    if uplift is not None:
        aud = aud.assign(uplift_value_score=uplift, uplift_value_model_version="2")
    return aud


@pytest.mark.parametrize("uplift, because", [
    (None, "no uplift model is champion yet"),
    (np.full(200, -500.0), "at or below the campaign's minimum"),
])
def test_an_empty_uplift_list_asks_no_approval_and_says_why(tmp_path, monkeypatch, uplift, because):
    monkeypatch.setenv("CRM_CAMPAIGNS_DIR", str(CAMPAIGNS_DIR))
    paths = Paths(tmp_path).ensure()
    spec = _uplift_spec()
    assert approvals.approval_required(spec)[0]  # its EUR 30,000 budget asks for approval ...
    built = build_list(spec, _winback_audience(uplift=uplift), AS_OF)
    assert built.rows.empty and built.funnel["eligible"] == 200 and because in built.empty_because
    manifest = publish(built, paths)
    # ... but an empty list never does, and says why
    assert manifest["to_contact"] == 0 and because in manifest["empty_because"]
    assert manifest["approval_at_publish"]["state"] == "not_required"
    assert manifest["approval_at_publish"]["why"] == f"nothing to send: {manifest['empty_because']}"
    d = list_dir(paths, spec.id, AS_OF)
    report = json.loads((d / "suppression.json").read_text())
    assert report["empty_because"] == manifest["empty_because"]
    assert report["reasons"]["not_targeted_by_uplift"] == eligibility.REASONS["not_targeted_by_uplift"]
    s = _summary(load_workbook(d / "list.xlsx"))
    assert s["Nothing to send because"] == manifest["empty_because"] and s["Players to contact"] == 0
    assert s["Approval when the list was built"] == "not required"
    st = approvals.status(paths, spec, approvals.latest_manifest(paths, spec.id))
    assert st.state == "not_required" and st.summary().startswith("approval not required: nothing to send")
    # dispatch sends nothing and does not wait for an approval nobody needs to give
    record_gate(d, "campaign_list", True, {"summary": "ok"})
    r = dispatch_list(paths, spec.id, AS_OF, spec=spec)
    assert r.status == "dispatched" and r.new_messages == 0 and "nothing to send" in r.approval
    assert not outbox_file(paths, spec.channel, spec.id, AS_OF).exists()


def test_a_required_approval_is_moot_for_an_empty_list_but_a_rejection_still_stands(tmp_path):
    paths = Paths(tmp_path).ensure()
    spec = _uplift_spec(approval=_uplift_spec().approval.model_copy(update={"required": True}))
    manifest = publish(build_list(spec, _winback_audience(), AS_OF), paths)
    assert approvals.approval_required(spec, manifest)[0] is False
    assert approvals.approval_required(spec, manifest | {"to_contact": 3})[0] is True
    approvals.reject(paths, spec, "carol", "not this quarter")
    assert approvals.status(paths, spec, manifest).state == "rejected"


def test_dispatch_counts_the_players_to_contact_from_the_gated_rows_not_the_manifest(tmp_path, monkeypatch):
    """A manifest edited to claim an empty list does not skip the approval of a list that sends."""
    monkeypatch.setenv(approvals.THRESHOLD_ENV, "1")
    paths = Paths(tmp_path).ensure()
    spec = _spec()
    publish(build_list(spec, _mixed_audience(), AS_OF), paths)
    d = list_dir(paths, spec.id, AS_OF)
    record_gate(d, "campaign_list", True, {"summary": "ok"})
    m = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text(json.dumps(m | {"to_contact": 0, "empty_because": "forged"}))
    r = dispatch_list(paths, spec.id, AS_OF, spec=spec)
    assert r.status == "awaiting_approval" and r.new_messages == 0


def test_explain_an_uplift_campaign_shows_the_players_predicted_value(tmp_path):
    from crm.campaigns.day import explain_player

    spec = _uplift_spec()  # a EUR 10 bonus: 1000 cents
    gross = np.full(200, 400.0)  # net of the bonus: -600 cents, below the minimum (0)
    gross[7] = 4000.0  # net 3000 cents: picked
    aud = _winback_audience(uplift=gross)
    paths = Paths(tmp_path).ensure()
    picked, left_out = aud["player_id"].iloc[7], aud["player_id"].iloc[8]
    e = explain_player(paths, picked, spec, [spec], AS_OF, audience=aud)
    assert e["listed"] and e["predicted_value_eur_cents"] == 3000.0
    e = explain_player(paths, left_out, spec, [spec], AS_OF, audience=aud)
    assert not e["listed"] and e["predicted_value_eur_cents"] == -600.0
    assert "predicted value net of the offer -6.00 EUR; minimum 0.00 EUR" in format_explanation(e)
    unscored = aud.assign(uplift_value_score=np.nan)
    e = explain_player(paths, left_out, spec, [spec], AS_OF, audience=unscored)
    assert e["predicted_value_eur_cents"] is None and "no predicted value" in e["decision"]
