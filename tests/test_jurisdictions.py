"""Unit tests for each jurisdiction rule and each contact rule, on hand-picked players.

One player per case; the expected verdict is written out from the law (DESIGN.md and
crm/campaigns/jurisdictions.py) and checked against :func:`crm.campaigns.eligibility.evaluate`.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from crm.campaigns.eligibility import Context, evaluate, explain
from crm.campaigns.history import MESSAGE_COLUMNS, empty_history
from crm.campaigns.jurisdictions import RULES, STRICTEST, rules_for
from crm.campaigns.policy import Calendar
from crm.campaigns.spec import CampaignSpec

AS_OF = dt.date(2025, 10, 1)  # a Wednesday; CEST (UTC+2), BST (UTC+1)
PLAYER = {"player_id": "p", "brand_id": "A", "country": "DE", "timezone": "Europe/Berlin", "age_years": 30,
          "age_verified": True, "self_excluded_now": False, "ever_self_excluded": False,
          "returned_after_exclusion": False, "cooling_off_now": False, "harm_risk_flag": False,
          "consent_email": True, "consent_push": True, "consent_sms": True, "consent_in_app": True,
          "consent_profiling": True, "consent_email_products": "casino", "consent_push_products": "casino",
          "consent_sms_products": "casino", "consent_in_app_products": "casino", "bonuses_received": 0,
          "net_loss_eur_7d": 0}


def campaign(**over) -> CampaignSpec:
    data = {"id": "rule_test", "name": "r", "channel": "email", "offer": {"template": "bonus", "value_eur": 10,
                                                                          "wagering": 10}}
    return CampaignSpec.model_validate(data | over)


def verdict(player: dict, spec: CampaignSpec, ctx: Context | None = None) -> tuple[str | None, list[str]]:
    """(first failing rule, every failing rule) for one player."""
    v = evaluate(pd.DataFrame([PLAYER | player]), spec, ctx or Context(AS_OF)).iloc[0]
    return v["reason"], [x for x in v["failed"].split(",") if x]


def messages(*rows: dict) -> pd.DataFrame:
    base = {"player_id": "p", "channel": "email", "campaign_id": "other", "dedup_key": "other",
            "is_bonus_offer": False, "cost_cents": 0, "offer_ends_at": None, "source": "outbox"}
    df = pd.DataFrame([base | r for r in rows], columns=list(MESSAGE_COLUMNS))
    return pd.concat([empty_history(), df], ignore_index=True).astype(empty_history().dtypes.to_dict())


def at(day_offset: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(AS_OF + dt.timedelta(days=day_offset), dt.time(hour, minute))


def test_the_table_names_every_jurisdiction_and_unknown_is_strictest():
    assert set(RULES) == {"UK", "MT", "NL", "SE", "DE"}
    assert rules_for(None) is STRICTEST and rules_for("XX") is STRICTEST
    for r in RULES.values():  # no field of a known jurisdiction is stricter than the unknown one
        assert r.min_age_targeted_bonus <= STRICTEST.min_age_targeted_bonus
        assert STRICTEST.max_wagering is not None and (r.max_wagering is None or r.max_wagering >= 10)
        assert STRICTEST.bonus_first_occasion_only >= r.bonus_first_occasion_only
        assert STRICTEST.product_consent_required >= r.product_consent_required


def test_a_clean_player_passes_everywhere():
    for country in RULES:
        assert verdict({"country": country, "timezone": None}, campaign()) == (None, []), country


# --------------------------------------------------------------------------- jurisdictions

@pytest.mark.parametrize("wagering, ok", [(10, True), (10.5, False), (35, False)])
def test_uk_wagering_at_most_10x(wagering, ok):
    spec = campaign(offer={"template": "free_spins", "value_eur": 5, "wagering": wagering})
    assert verdict({"country": "UK"}, spec)[0] == (None if ok else "wagering_over_cap")
    assert verdict({"country": "DE"}, spec)[0] is None  # DE has no wagering cap


@pytest.mark.parametrize("products, product, ok", [
    ("casino", "casino", True), ("casino,sports", "sports", True), ("sports", "casino", False),
    (None, "casino", False), ("", "casino", False)])
def test_uk_needs_consent_for_the_product(products, product, ok):
    spec = campaign(product=product, offer={"template": "none"})
    assert verdict({"country": "UK", "consent_email_products": products}, spec)[0] == (
        None if ok else "no_product_consent")
    # MT, NL, SE, DE: the channel consent is enough
    assert verdict({"country": "MT", "consent_email_products": products}, spec)[0] is None


@pytest.mark.parametrize("age, ok", [(23, False), (24, True)])
def test_nl_no_targeted_bonus_under_24(age, ok):
    assert verdict({"country": "NL", "age_years": age}, campaign())[0] == (None if ok else
                                                                           "bonus_under_jurisdiction_age")
    assert verdict({"country": "NL", "age_years": age}, campaign(offer={"template": "none"}))[0] is None
    assert verdict({"country": "DE", "age_years": age}, campaign())[0] is None


@pytest.mark.parametrize("received, ok", [(0, True), (1, False), (None, False)])
def test_se_bonus_only_on_the_first_occasion(received, ok):
    assert verdict({"country": "SE", "bonuses_received": received}, campaign())[0] == (
        None if ok else "bonus_not_first_occasion")
    assert verdict({"country": "SE", "bonuses_received": received}, campaign(offer={"template": "none"}))[0] is None
    assert verdict({"country": "DE", "bonuses_received": received}, campaign())[0] is None


def test_se_a_bonus_offer_of_ours_counts_as_an_occasion():
    spec = campaign()
    # dispatched long ago (outbox), or planned today by a higher-priority list
    assert verdict({"country": "SE"}, spec, Context(AS_OF, bonus_offered=frozenset({"p"})))[0] == \
        "bonus_not_first_occasion"
    today = messages({"channel": "push", "sent_at": at(0, 8), "is_bonus_offer": True, "cost_cents": 100,
                      "offer_ends_at": at(3, 8), "source": "planned"})
    assert "bonus_not_first_occasion" in verdict({"country": "SE"}, spec, Context(AS_OF, history=today))[1]


def test_mt_does_not_require_a_verified_age_before_contact():
    assert verdict({"country": "MT", "age_verified": False}, campaign())[0] is None
    assert verdict({"country": "DE", "age_verified": False}, campaign())[0] == "age_not_verified"
    assert verdict({"country": "MT", "age_years": 17}, campaign())[0] == "under_age"


def test_unknown_jurisdiction_gets_every_restriction():
    reason, failed = verdict({"country": "XX", "age_years": 23, "bonuses_received": 1, "timezone": None,
                              "consent_email_products": None}, campaign(offer={"template": "bonus",
                                                                               "value_eur": 10, "wagering": 20}))
    assert {"bonus_under_jurisdiction_age", "wagering_over_cap", "no_product_consent", "bonus_not_first_occasion",
            "quiet_hours"} <= set(failed)  # no zone of its own either: local time unknown


# --------------------------------------------------------------------------- time and calendar

@pytest.mark.parametrize("send, tz, quiet", [
    ("06:59", "Europe/Berlin", True),    # 08:59 CEST
    ("07:00", "Europe/Berlin", False),   # 09:00 CEST
    ("18:59", "Europe/Berlin", False),   # 20:59
    ("19:00", "Europe/Berlin", True),    # 21:00
    ("19:00", "Europe/London", False),   # 20:00 BST
    ("13:00", "Asia/Tokyo", True),       # 22:00 JST: the player's own zone, not the jurisdiction's
])
def test_quiet_hours_in_the_players_local_time(send, tz, quiet):
    spec = campaign(schedule={"send_time_utc": send})
    assert verdict({"timezone": tz}, spec)[0] == ("quiet_hours" if quiet else None)
    # a transactional message may be sent in quiet hours
    tx = campaign(schedule={"send_time_utc": send}, transactional=True, offer={"template": "none"})
    assert verdict({"timezone": tz}, tx)[0] is None


def test_a_missing_time_zone_falls_back_to_the_jurisdiction_an_invalid_one_fails():
    spec = campaign(schedule={"send_time_utc": "07:30"})  # 09:30 Berlin, 08:30 London
    assert verdict({"country": "DE", "timezone": None}, spec)[0] is None
    # given but not a zone (a typo, a folder of the tz database, a path): the player's local time
    # is unknown, so quiet hours fail for that player alone (never a crash, never Berlin's guess)
    for bad in ("Not/A_Zone", "Europe", "../../../../etc/passwd", "Europe/Berlin\x00", "europe/berlin"):
        assert verdict({"country": "DE", "timezone": bad}, spec)[0] == "quiet_hours", bad
    assert verdict({"country": "UK", "timezone": None}, spec)[0] == "quiet_hours"
    assert verdict({"country": None, "timezone": None}, spec)[1].count("quiet_hours") == 1


def test_a_hostile_zone_or_country_fails_alike_in_one_row_and_in_a_large_list():
    """Zones and countries are factorised one way on a send check's few rows and another on a
    list's thousands (crm.campaigns.eligibility._text_codes): both keep a NUL byte, odd case and
    spaces as the invalid values they are."""
    spec = campaign(schedule={"send_time_utc": "07:30"})  # 09:30 Berlin: inside the allowed hours
    odd = [{"timezone": "Europe/Berlin\x00"}, {"timezone": " Europe/Berlin"}, {"timezone": "EUROPE/BERLIN"},
           {"country": "DE\x00", "timezone": None}, {"country": " de", "timezone": None}]
    alone = [verdict(o, spec)[1] for o in odd]
    assert all("quiet_hours" in failed for failed in alone), alone
    many = pd.DataFrame([PLAYER | o | {"player_id": f"odd{i}"} for i, o in enumerate(odd)]
                        + [PLAYER | {"player_id": f"ok{i}"} for i in range(5000)])
    v = evaluate(many, spec, Context(AS_OF))
    assert [f.split(",") for f in v["failed"].iloc[:len(odd)]] == [[x for x in f if x] for f in alone]
    assert v["eligible"].iloc[len(odd):].all()


def test_blackouts_by_local_date_jurisdiction_and_channel():
    cal = Calendar.model_validate({"blackouts": [
        {"name": "national day", "start": AS_OF, "end": AS_OF, "jurisdictions": ["DE"], "channels": ["email"]}]})
    ctx = Context(AS_OF, calendar=cal)
    assert verdict({}, campaign(), ctx)[0] == "blackout"
    assert verdict({"country": "NL", "timezone": "Europe/Amsterdam"}, campaign(), ctx)[0] is None
    assert verdict({}, campaign(channel="push"), ctx)[0] is None
    # 23:30 UTC on Sep 30 is already Oct 1 in Berlin: the local date counts
    late = campaign(schedule={"send_time_utc": "23:30"}, transactional=True, offer={"template": "none"})
    prev = Context(AS_OF - dt.timedelta(days=1), calendar=cal)
    assert verdict({}, late, prev)[0] == "blackout"  # transactional does not bypass a blackout


def test_schedule_dates_and_weekdays():
    assert verdict({}, campaign(schedule={"start": "2025-10-02"}))[0] == "outside_schedule"
    assert verdict({}, campaign(schedule={"end": "2025-09-30"}))[0] == "outside_schedule"
    assert verdict({}, campaign(schedule={"start": "2025-10-01", "end": "2025-10-01"}))[0] is None
    assert verdict({}, campaign(schedule={"weekdays": ["mon", "tue"]}))[0] == "outside_schedule"
    assert verdict({}, campaign(schedule={"weekdays": ["wed"]}))[0] is None


# --------------------------------------------------------------------------- frequency and offers

def test_channel_caps_per_day_and_week():
    spec = campaign(offer={"template": "none"}, schedule={"send_time_utc": "14:00"})
    one_today = messages({"sent_at": at(0, 0, 30)})
    assert verdict({}, spec, Context(AS_OF, history=one_today))[0] == "channel_cap_day"  # email: 1 a day
    three_this_week = messages(*({"sent_at": at(-d, 1)} for d in (1, 3, 6)))
    assert verdict({}, spec, Context(AS_OF, history=three_this_week))[0] == "channel_cap_week"  # 3 a week
    older = messages(*({"sent_at": at(-d, 1)} for d in (1, 3, 7)))  # 7 days ago: outside the week
    assert verdict({}, spec, Context(AS_OF, history=older))[0] is None
    tighter = campaign(offer={"template": "none"}, frequency={"max_per_week": 1})
    assert verdict({}, tighter, Context(AS_OF, history=messages({"sent_at": at(-3, 1)})))[0] == "channel_cap_week"
    # another channel does not count for the channel cap, but for the global one
    two_push_today = messages({"channel": "push", "sent_at": at(0, 0)}, {"channel": "sms", "sent_at": at(0, 1)})
    assert verdict({}, spec, Context(AS_OF, history=two_push_today))[0] == "global_cap_day"
    # transactional: caps bypassed
    tx = campaign(offer={"template": "none"}, transactional=True)
    assert verdict({}, tx, Context(AS_OF, history=one_today))[0] is None


def test_global_weekly_cap():
    spec = campaign(offer={"template": "none"}, channel="in_app")
    six = messages(*({"channel": ch, "sent_at": at(-d, 1)} for d, ch in
                     zip((1, 2, 3, 4, 5, 6), ("email", "push", "sms", "email", "push", "sms"), strict=True)))
    assert verdict({}, spec, Context(AS_OF, history=six))[0] == "global_cap_week"


def test_cooldown_since_the_nearest_message():
    spec = campaign(offer={"template": "none"}, channel="push", schedule={"send_time_utc": "10:00"})
    assert verdict({}, spec, Context(AS_OF, history=messages({"sent_at": at(-1, 22, 1)})))[0] == "cooldown"
    assert verdict({}, spec, Context(AS_OF, history=messages({"sent_at": at(-1, 22, 0)})))[0] is None  # 12 h
    later_today = messages({"channel": "sms", "sent_at": at(0, 15), "source": "planned"})
    assert verdict({}, spec, Context(AS_OF, history=later_today))[0] == "cooldown"  # planned later, same day
    longer = campaign(offer={"template": "none"}, channel="push", frequency={"cooldown_hours": 48})
    assert verdict({}, longer, Context(AS_OF, history=messages({"sent_at": at(-1, 9)})))[0] == "cooldown"


def test_dedup_window_per_campaign_or_key():
    spec = campaign(offer={"template": "none"})
    same = messages({"campaign_id": "rule_test", "dedup_key": "rule_test", "sent_at": at(-6, 10)})
    assert verdict({}, spec, Context(AS_OF, history=same))[0] == "duplicate"
    old = messages({"campaign_id": "rule_test", "dedup_key": "rule_test", "sent_at": at(-7, 10)})
    assert verdict({}, spec, Context(AS_OF, history=old))[0] is None  # 7 days: outside the window
    keyed = campaign(offer={"template": "none"}, frequency={"dedup_key": "payment_failed", "dedup_days": 14})
    other = messages({"campaign_id": "other_campaign", "dedup_key": "payment_failed", "sent_at": at(-10, 10)})
    assert verdict({}, keyed, Context(AS_OF, history=other))[0] == "duplicate"
    tx_same = campaign(id="rule_test", offer={"template": "none"}, transactional=True)
    assert verdict({}, tx_same, Context(AS_OF, history=same))[0] == "duplicate"  # never bypassed


def test_one_bonus_offer_a_day_and_no_running_offer():
    spec = campaign()
    today = messages({"channel": "push", "sent_at": at(0, 0), "is_bonus_offer": True, "cost_cents": 500,
                      "offer_ends_at": at(3, 0)})
    assert "bonus_already_today" in verdict({}, spec, Context(AS_OF, history=today))[1]
    running = messages({"channel": "push", "sent_at": at(-2, 10), "is_bonus_offer": True, "cost_cents": 500,
                        "offer_ends_at": at(1, 10)})
    assert verdict({}, spec, Context(AS_OF, history=running))[0] == "active_bonus"
    expired = messages({"channel": "push", "sent_at": at(-8, 10), "is_bonus_offer": True, "cost_cents": 500,
                        "offer_ends_at": at(-1, 10)})
    assert verdict({}, spec, Context(AS_OF, history=expired))[0] is None
    # an offer-free message is not held back by bonuses
    assert verdict({}, campaign(offer={"template": "none"}, channel="sms"),
                   Context(AS_OF, history=running))[0] is None


def test_cost_per_player_per_day():
    spec = campaign(offer={"template": "cashback", "percent": 10, "cap_eur": 100},
                    budget={"per_player_per_day_eur": 30}, channel="sms", schedule={"send_time_utc": "14:00"})
    # a non-bonus message today with a cost of 2,000 (the one-bonus rule is not what this tests)
    spent_today = messages({"channel": "in_app", "sent_at": at(0, 0), "cost_cents": 2_000, "source": "planned"})
    ctx = Context(AS_OF, history=spent_today)
    assert verdict({"net_loss_eur_7d": 10_000}, spec, ctx)[0] is None  # 2,000 + 1,000 <= 3,000
    assert verdict({"net_loss_eur_7d": 10_010}, spec, ctx)[0] == "cost_per_player_day"  # 2,000 + 1,001
    assert verdict({"net_loss_eur_7d": 0}, spec, ctx)[0] is None  # a free offer adds nothing
    # the policy's own cap (EUR 100) holds whatever the campaign says
    big = messages({"channel": "in_app", "sent_at": at(0, 0), "cost_cents": 9_500, "source": "planned"})
    loose = campaign(offer={"template": "cashback", "percent": 10, "cap_eur": 100}, channel="sms",
                     schedule={"send_time_utc": "14:00"})
    assert verdict({"net_loss_eur_7d": 10_000}, loose, Context(AS_OF, history=big))[0] == "cost_per_player_day"


def test_explain_shows_the_observed_values():
    spec = campaign(offer={"template": "none"}, channel="push", frequency={"max_per_week": 2},
                    schedule={"send_time_utc": "14:00"})
    week = messages(*({"channel": "push", "sent_at": at(-d, 1)} for d in (2, 4, 6)))
    rows = {r["rule"]: r for r in explain(pd.DataFrame([PLAYER]), spec, Context(AS_OF, history=week))[0]}
    assert rows["channel_cap_week"]["verdict"] == "FAIL"
    assert rows["channel_cap_week"]["observed"].startswith("3 push messages this week") and "cap 2" in \
        rows["channel_cap_week"]["observed"]
    assert rows["quiet_hours"]["verdict"] == "pass" and "16:00 local (Europe/Berlin)" in rows["quiet_hours"]["observed"]
    tx = campaign(offer={"template": "none"}, channel="push", transactional=True)
    rows = {r["rule"]: r for r in explain(pd.DataFrame([PLAYER]), tx, Context(AS_OF, history=week))[0]}
    assert rows["channel_cap_week"]["verdict"] == "bypassed (transactional)"
    assert rows["no_channel_consent"]["verdict"] == "pass"
