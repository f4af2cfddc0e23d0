"""A day of campaigns: lists built in priority order, each seeing what the lists before it took.

Property-based: hypothesis draws random players, message histories, calendars and SETS of
campaigns of one day (ties in priority, shared dedup keys, budgets, transactional ones),
builds the day with :func:`crm.campaigns.lists.build_day` and checks

* every listed player passes every rule, by the oracle of tests/_compliance.py, given the
  history and the messages of the lists built before;
* the builder lists everyone the oracle admits (in the segment, within the budget walk);
* across the day: at most one bonus offer per player, cost per player per day, channel and
  global daily caps, campaign budgets;
* determinism: the same inputs in any campaign order (and any row order) give the same lists.

Examples per run: ``CRM_DAY_EXAMPLES`` (default 40; raise it for a deeper search).
"""

from __future__ import annotations

import datetime as dt
import os
from collections import defaultdict

import pandas as pd
import pytest
from _compliance import (
    AS_OF,
    CHANNEL_CAPS,
    GLOBAL_CAPS,
    MAX_COST_CENTS,
    calendars,
    campaign_sets,
    history_messages,
    message_histories,
    offer_cost,
    oracle_reasons,
    planned,
    profile_rows,
    profiles,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.campaigns import experiments
from crm.campaigns.eligibility import Context
from crm.campaigns.lists import build_day
from crm.campaigns.policy import Calendar
from crm.campaigns.spec import CampaignSpec
from expectations.campaign_list import day_checks, recompute_violations

EXAMPLES = int(os.environ.get("CRM_DAY_EXAMPLES", "40"))
NAMED = {"newcomers": lambda r: r["tenure_days"] <= 30, "dormant": lambda r: r["days_since_last_active"] >= 30,
         "active": lambda r: r["days_since_last_active"] <= 7}


@st.composite
def days(draw):
    profile = draw(profiles(max_players=25, clean_share=0.7))
    specs = draw(campaign_sets())
    history = draw(message_histories(list(profile["player_id"]), [s.id for s in specs]))
    calendar = draw(calendars())
    spent = {s.id: draw(st.sampled_from([0, 0, 2_000, 10_000, 40_000])) for s in specs
             if s.budget.total_cents is not None}
    offered = frozenset(draw(st.sets(st.sampled_from(list(profile["player_id"])), max_size=3)))
    return profile, specs, history, calendar, spent, offered


def _in_segment(row: dict, c: CampaignSpec) -> bool:
    return all(NAMED[n](row) for n in c.segment.named)


def _budget_walk(candidates: list[str], c: CampaignSpec, costs: dict[str, int], remaining: int | None) -> list[str]:
    """``by: all`` with a total budget, restated: player id order, holdout free, stop at the first treated misfit."""
    if remaining is None:
        return candidates
    if remaining <= 0:
        return []
    e = c.experiment
    arm = dict(zip(candidates, experiments.assign(c.id, e.salt, candidates, e.holdout, e.variants), strict=True))
    out, spent = [], 0
    for pid in sorted(candidates):
        paid = 0 if arm[pid] == "holdout" else costs[pid]
        if spent + paid > remaining:
            break
        out.append(pid)
        spent += paid
    return out


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(day=days(), rnd=st.randoms(use_true_random=False))
def test_a_day_of_campaigns_holds_every_rule_across_lists(day, rnd):
    profile, specs, history, calendar, spent, offered = day
    ctx = Context(AS_OF, history=history, calendar=Calendar.model_validate(calendar), spent_cents=spent,
                  bonus_offered=offered)
    built = build_day(specs, profile, AS_OF, ctx)
    order = sorted(specs, key=lambda s: (s.priority, s.id))
    assert [b.campaign.id for b in built] == [s.id for s in order]

    rows = {pid: r.to_dict() for pid, r in profile_rows(profile).iterrows()}
    msgs: dict[str, list[dict]] = defaultdict(list)
    for m in history_messages(history):
        msgs[m["player_id"]].append(m)
    for pid in offered:  # a bonus offer of ours long ago: only the first-occasion rule can see it
        msgs[pid].append({"channel": "-", "dedup_key": "-", "sent_at": dt.datetime(2024, 1, 1), "is_bonus_offer": True,
                          "cost_cents": 0, "offer_ends_at": None})
    history_today = {pid: [m for m in ms if m["sent_at"].date() == AS_OF] for pid, ms in msgs.items()}
    day_msgs: dict[str, list[tuple[dict, bool]]] = defaultdict(list)  # planned today, with 'transactional'
    for b in built:
        c = b.campaign
        listed = list(b.rows["player_id"])
        assert len(set(listed)) == len(listed)
        for pid in listed:
            reasons = oracle_reasons(rows[pid], c, msgs[pid], calendar)
            assert not reasons, f"{pid} on {c.id} but fails {reasons}: {rows[pid]}"
        admitted = [pid for pid, r in rows.items()
                    if _in_segment(r, c) and not oracle_reasons(r, c, msgs[pid], calendar)]
        costs = dict(zip(b.rows["player_id"], b.rows["offer_cost_eur_cents"], strict=True))
        costs |= {pid: offer_cost(rows[pid], c) for pid in admitted if pid not in costs}
        remaining = None if c.budget.total_cents is None else c.budget.total_cents - spent.get(c.id, 0)
        assert sorted(listed) == sorted(_budget_walk(admitted, c, costs, remaining)), c.id
        treated = b.rows[b.rows["variant"] != "holdout"]
        if remaining is not None:
            assert int(treated["offer_cost_eur_cents"].sum()) <= max(remaining, 0)
        assert recompute_violations(b.rows, profile).isna().all()
        for m in planned(b.rows, c):
            msgs[m["player_id"]].append(m)
            day_msgs[m["player_id"]].append((m, c.transactional))
        # the gate's cross-list check agrees, from the published lists alone
        others = [x.rows for x in built[:built.index(b)]]
        ok = day_checks(b.rows, others, max_cost_per_player_cents=MAX_COST_CENTS, bonus_offers_per_day=1,
                        channel_day_cap=None if c.transactional else CHANNEL_CAPS[c.channel][0],
                        global_day_cap=None if c.transactional else GLOBAL_CAPS[0])
        assert ok.all().all(), ok[~ok.all(axis=1)]

    # across the day, whatever the campaigns: the limits hold for every player
    for pid, planned_today in day_msgs.items():
        before = history_today.get(pid, [])
        bonuses = [m for m, _ in planned_today if m["is_bonus_offer"]] + [m for m in before if m["is_bonus_offer"]]
        if any(m["is_bonus_offer"] for m, _ in planned_today):
            assert len(bonuses) == 1, (pid, bonuses)
        if any(m["cost_cents"] for m, _ in planned_today):
            assert sum(m["cost_cents"] for m, _ in planned_today) + sum(m["cost_cents"] for m in before) \
                <= MAX_COST_CENTS
        # caps: up to the last non-transactional message, the day's count stays within the policy cap
        marketing = [i for i, (_, tx) in enumerate(planned_today) if not tx]
        if marketing:
            upto = planned_today[:marketing[-1] + 1]
            assert len(before) + len(upto) <= GLOBAL_CAPS[0]
        for ch, (cap, _) in CHANNEL_CAPS.items():
            on_ch = [(m, tx) for m, tx in planned_today if m["channel"] == ch]
            last = [i for i, (_, tx) in enumerate(on_ch) if not tx]
            if last:
                assert len([m for m in before if m["channel"] == ch]) + last[-1] + 1 <= cap

    # the same inputs in any campaign order and any row order: the same lists
    shuffled = list(specs)
    rnd.shuffle(shuffled)
    again = build_day(shuffled, profile.sample(frac=1, random_state=rnd.randint(0, 99)), AS_OF, ctx)
    for a, b2 in zip(built, again, strict=True):
        assert a.campaign.id == b2.campaign.id and a.rows.equals(b2.rows) and a.suppression == b2.suppression


def test_priority_decides_the_one_bonus_offer_of_the_day():
    base = {"brand_id": "A", "country": "DE", "locale": "de-DE", "timezone": "Europe/Berlin", "age_years": 30,
            "age_verified": True, "self_excluded_now": False, "ever_self_excluded": False,
            "returned_after_exclusion": False, "cooling_off_now": False, "harm_risk_flag": False,
            "consent_email": True, "consent_push": True, "consent_sms": True, "consent_in_app": True,
            "consent_profiling": True, "bonuses_received": 0, "net_loss_eur_7d": 5000,
            **{f"consent_{ch}_products": "casino" for ch in ("email", "push", "sms", "in_app")}}  # DE: per product
    profile = pd.DataFrame([{**base, "player_id": f"p_{i}"} for i in range(50)])

    def spec(cid: str, priority: int, channel: str) -> CampaignSpec:
        return CampaignSpec.model_validate({"id": cid, "name": cid, "channel": channel, "priority": priority,
                                            "offer": {"template": "bonus", "value_eur": 10},
                                            "experiment": {"holdout": 0.0}})

    low, high = spec("aaa_low", 50, "email"), spec("zzz_high", 1, "push")
    lists = {b.campaign.id: b for b in build_day([low, high], profile, AS_OF)}
    assert len(lists["zzz_high"].rows) == 50 and lists["aaa_low"].rows.empty  # priority, not the id, decides
    assert lists["aaa_low"].suppression["every_failing_rule"]["bonus_already_today"] == 50
    # equal priority: the id breaks the tie
    tie = {b.campaign.id: b for b in build_day([spec("bbb", 5, "email"), spec("aaa", 5, "push")], profile, AS_OF)}
    assert len(tie["aaa"].rows) == 50 and tie["bbb"].rows.empty


def test_duplicate_campaign_ids_in_a_day_are_refused():
    s = CampaignSpec.model_validate({"id": "same", "name": "s", "channel": "email"})
    with pytest.raises(ValueError, match="unique"):
        build_day([s, s], pd.DataFrame({"player_id": []}), AS_OF)
