"""Re-running a dispatched date (issue 11, item 3): what was already sent on a date is part of
that date's history for every later build, and the list gate checks the day's limits against
sent plus listed.

* the probe's scenario: a bonus email at 09:00 (high priority) and a push cashback at 17:00
  (lower), built, gated and dispatched; a player drops out of the first list; the day is
  rebuilt and dispatched again: nobody has two bonus offers or two messages within the
  cooldown in the outbox of the day;
* property: random days of campaigns, random drop-outs (and drop-ins) between builds, random
  partial dispatches: across the outbox of the day every limit holds;
* the gate fails a list that would double-offer against the outbox.

Examples per run of the property: ``CRM_RERUN_EXAMPLES`` (default 25).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import tempfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from _compliance import (
    CHANNEL_CAPS,
    CHANNELS,
    CLEAN,
    COOLDOWN_HOURS,
    GLOBAL_CAPS,
    MAX_COST_CENTS,
    campaign_sets,
    profiles,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.campaigns import approvals
from crm.campaigns.day import build_all, build_one, higher_priority
from crm.campaigns.dispatch import DispatchBlocked, dispatch_list, outbox_file, read_outbox
from crm.campaigns.eligibility import effective_caps
from crm.campaigns.lists import build_list, list_dir, publish, record_gate
from crm.campaigns.overrides import record_list_gate
from crm.campaigns.policy import POLICY
from crm.campaigns.spec import CampaignSpec
from crm.config import Paths
from expectations.campaign_list import DayLimits, GateContext, GatedList, day_checks, gate_list, read_sent

AS_OF = dt.date(2025, 8, 30)  # the probe's date: a Saturday, no blackout
EXAMPLES = int(os.environ.get("CRM_RERUN_EXAMPLES", "25"))
BONUS = ("bonus", "cashback", "free_spins")

MAIL = CampaignSpec.model_validate({
    "id": "bonus_mail", "name": "bonus by email", "channel": "email", "priority": 1,
    "schedule": {"send_time_utc": "09:00"}, "offer": {"template": "bonus", "value_eur": 10},
    "experiment": {"holdout": 0.0}})
PUSH = CampaignSpec.model_validate({
    "id": "cashback_push", "name": "cashback by push", "channel": "push", "priority": 5,
    "schedule": {"send_time_utc": "17:00"}, "offer": {"template": "cashback", "percent": 10, "cap_eur": 20},
    "experiment": {"holdout": 0.0}})


@pytest.fixture(autouse=True)
def _dispatch_env(monkeypatch):
    monkeypatch.setenv(approvals.THRESHOLD_ENV, "1000000000")  # these lists need no second person
    # a re-run dispatched days later (a fixed instant: quiet hours at send do not depend on the hour
    # the test runs); sent_at then says nothing about the as-of date's times
    monkeypatch.setenv("CRM_NOW", "2025-09-02T12:00:00Z")


def _players(n: int) -> pd.DataFrame:
    """``n`` players every profile rule admits (DE, adult, every consent, Berlin time)."""
    return pd.DataFrame([{**CLEAN, "player_id": f"p_{i:03d}", "brand_id": "A", "country": "DE", "locale": "de-DE",
                          "timezone": "Europe/Berlin", "age_years": 30, "net_loss_eur_7d": 10_000,
                          "days_since_last_active": 3, "tenure_days": 100,
                          **{f"consent_{ch}": True for ch in ("email", "push", "sms", "in_app")},
                          **{f"consent_{ch}_products": "casino" for ch in ("email", "push", "sms", "in_app")}}
                         for i in range(n)])


def _publish_all(paths: Paths, specs: list[CampaignSpec], audience: pd.DataFrame,
                 as_of: dt.date = AS_OF) -> dict[str, pd.DataFrame]:
    """Build the day, publish every list and record a passing gate (the probe's gate passed)."""
    out = {}
    for b in build_all(paths, specs, as_of, audience=audience):
        publish(b, paths)
        record_gate(list_dir(paths, b.campaign.id, as_of), "campaign_list", True, {"summary": "ok"})
        out[b.campaign.id] = b.rows
    return out


def _dispatch(paths: Paths, specs: list[CampaignSpec], as_of: dt.date = AS_OF) -> None:
    for s in specs:
        assert dispatch_list(paths, s.id, as_of, spec=s).status == "dispatched"


def _day_checks(paths: Paths, spec: CampaignSpec, specs: list[CampaignSpec], rows: pd.DataFrame,
                as_of: dt.date) -> pd.DataFrame:
    """The gate's cross-list checks on ``rows`` with the limits the compliance gate passes them."""
    caps = effective_caps(spec, POLICY)
    marketing = not spec.transactional
    higher = [pd.read_parquet(list_dir(paths, h.id, as_of) / "list.parquet") for h in higher_priority(spec, specs)]
    return day_checks(rows, higher, sent=read_sent(paths.outbox, as_of, lists_dir=paths.lists),
                      max_cost_per_player_cents=int(caps["cost_per_player_day_cents"]),
                      bonus_offers_per_day=int(caps["bonus_offers_per_day"]),
                      channel_day_cap=int(caps["channel_day"]) if marketing else None,
                      global_day_cap=int(caps["global_day"]) if marketing else None,
                      cooldown_hours=float(caps["cooldown_hours"]) if marketing else None)


def _warehouse(paths: Paths, audience: pd.DataFrame) -> None:
    """The audience as dim_player (what the compliance gate reads)."""
    con = duckdb.connect(str(paths.warehouse))
    con.register("aud", audience)
    con.execute("CREATE OR REPLACE TABLE dim_player AS SELECT * FROM aud")
    con.close()


def _instant(m: dict, s: CampaignSpec, day: dt.date) -> pd.Timestamp:
    """When a message of ``day`` went out: sent_at if on that day, else planned_send_at, else the schedule."""
    for field in ("sent_at", "planned_send_at"):
        at = pd.Timestamp(m[field]).tz_localize(None) if m.get(field) else None
        if at is not None and (field == "planned_send_at" or at.date() == day):
            return at
    return pd.Timestamp(dt.datetime.combine(day, s.schedule.send_time))


def outbox_of_day(paths: Paths, specs: list[CampaignSpec], day: dt.date = AS_OF) -> pd.DataFrame:
    """Every message of the day in the outbox, with its send instant (:func:`_instant`), whether it
    is a bonus offer, and its campaign's limits."""
    by_id = {s.id: s for s in specs}
    rows = []
    for s in specs:
        for m in read_outbox(outbox_file(paths, s.channel, s.id, day)):
            rows.append({**m, "at": _instant(m, s, day), "bonus": m["offer_template"] in BONUS})
    df = pd.DataFrame(rows, columns=["player_id", "campaign_id", "channel", "offer_template", "offer_cost_eur_cents",
                                     "idempotency_key", "at", "bonus"])
    df["transactional"] = df["campaign_id"].map(lambda c: by_id[c].transactional).astype(bool)
    df["cooldown_h"] = df["campaign_id"].map(
        lambda c: max(COOLDOWN_HOURS, by_id[c].frequency.cooldown_hours or 0)).astype(float)
    df["dedup_key"] = df["campaign_id"].map(lambda c: by_id[c].dedup_key)
    return df


def assert_day_limits(sent: pd.DataFrame, specs: list[CampaignSpec]) -> None:
    """DESIGN.md's limits across the outbox of the day, written apart from the engine."""
    assert sent["idempotency_key"].is_unique
    for pid, msgs in sent.groupby("player_id"):
        assert msgs["bonus"].sum() <= 1, f"{pid}: two bonus offers on {AS_OF}:\n{msgs}"
        if (msgs["offer_cost_eur_cents"] > 0).any():
            assert msgs["offer_cost_eur_cents"].sum() <= MAX_COST_CENTS, f"{pid}: over the cost cap:\n{msgs}"
        assert msgs["dedup_key"].is_unique, f"{pid}: two messages with one dedup key:\n{msgs}"
        marketing = msgs[~msgs["transactional"]]
        assert len(marketing) <= GLOBAL_CAPS[0], f"{pid}: over the global daily cap:\n{msgs}"
        for ch, n in marketing["channel"].value_counts().items():
            assert n <= CHANNEL_CAPS[ch][0], f"{pid}: over the {ch} daily cap:\n{msgs}"
        for (_, a), (_, b) in itertools.combinations(marketing.iterrows(), 2):
            gap = abs((a["at"] - b["at"]).total_seconds()) / 3600
            assert gap >= min(a["cooldown_h"], b["cooldown_h"]), f"{pid}: two messages {gap:g} h apart:\n{msgs}"
    for s in specs:
        if s.budget.total_cents is not None:
            spent = sent.loc[sent["campaign_id"] == s.id, "offer_cost_eur_cents"].sum()
            assert spent <= s.budget.total_cents, f"{s.id}: {spent} sent, budget {s.budget.total_cents}"


# --------------------------------------------------------------------------- the probe's scenario

def test_rerun_of_a_dispatched_day_never_double_offers(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_CAMPAIGNS_DIR", str(tmp_path / "campaigns"))  # no calendar: no blackout
    paths = Paths(tmp_path / "home").ensure()
    specs = [MAIL, PUSH]
    audience = _players(12).assign(consent_email=[i >= 4 for i in range(12)])  # p_000..p_003: push only
    first = _publish_all(paths, specs, audience)
    mailed = set(first["bonus_mail"]["player_id"])
    assert mailed == {f"p_{i:03d}" for i in range(4, 12)}
    assert set(first["cashback_push"]["player_id"]) == {f"p_{i:03d}" for i in range(4)}  # one bonus a day
    _dispatch(paths, specs)

    # late events: p_004 revokes email, p_005 self-excludes (no longer on any list); p_000 opts in to email
    late = audience.assign(consent_email=audience["consent_email"] | (audience["player_id"] == "p_000"))
    late.loc[late["player_id"] == "p_004", "consent_email"] = False
    late.loc[late["player_id"] == "p_005", "self_excluded_now"] = True
    second = _publish_all(paths, specs, late)
    _dispatch(paths, specs)

    sent = outbox_of_day(paths, specs)
    assert_day_limits(sent, specs)
    assert "p_004" not in set(second["bonus_mail"]["player_id"])
    assert "p_004" not in set(second["cashback_push"]["player_id"])  # sent the 09:00 bonus all the same
    assert "p_000" not in set(second["bonus_mail"]["player_id"])  # had the 17:00 cashback: a fact
    for s in specs:  # one asset per campaign builds the same lists on a re-run
        assert build_one(paths, s, specs, AS_OF, audience=late).rows.equals(second[s.id]), s.id
    assert set(sent.loc[sent["campaign_id"] == "bonus_mail", "player_id"]) == mailed  # nothing new, nothing lost
    assert set(sent.loc[sent["campaign_id"] == "cashback_push", "player_id"]) == {f"p_{i:03d}" for i in range(4)}
    # and the compliance gate, with the outbox, passes the rebuilt lists
    from orchestration.assets.campaigns import gate_published_list

    _warehouse(paths, late)
    for s in specs:
        result = gate_published_list(paths, s, specs, AS_OF)
        assert result.success, result.summary()


def test_rerun_never_spends_past_the_budget_and_keeps_who_was_sent(tmp_path, monkeypatch):
    """A campaign's own sends of the day are paid: a player dropping out frees no budget (the
    offer went out), and those already sent are re-listed at no further cost."""
    monkeypatch.setenv("CRM_CAMPAIGNS_DIR", str(tmp_path / "campaigns"))
    paths = Paths(tmp_path / "home").ensure()
    spec = MAIL.model_copy(update={"budget": MAIL.budget.model_copy(update={"total_eur": 100})})
    audience = _players(20)
    first = _publish_all(paths, [spec], audience)["bonus_mail"]
    assert list(first["player_id"]) == [f"p_{i:03d}" for i in range(10)]  # EUR 100 of EUR 10 bonuses
    _dispatch(paths, [spec])
    late = audience.assign(consent_email=audience["player_id"] != "p_003")
    b = build_all(paths, [spec], AS_OF, audience=late)[0]
    assert list(b.rows["player_id"]) == [f"p_{i:03d}" for i in range(10) if i != 3]  # p_010 would overspend
    assert b.targeting["sent_today_eur_cents"] == 10_000 and b.targeting["spent_eur_cents"] == 0
    publish(b, paths)
    record_gate(list_dir(paths, spec.id, AS_OF), "campaign_list", True, {"summary": "ok"})
    _dispatch(paths, [spec])
    sent = outbox_of_day(paths, [spec])
    assert len(sent) == 10 and sent["offer_cost_eur_cents"].sum() == 10_000
    assert_day_limits(sent, [spec])


def test_gate_fails_a_list_that_double_offers_against_the_outbox(tmp_path, monkeypatch):
    """The probe's lists, as the builder made them before the fix (each list blind to the outbox
    of the day): the gate sees the outbox and blocks them; dispatch refuses them."""
    from orchestration.assets.campaigns import gate_published_list

    monkeypatch.setenv("CRM_CAMPAIGNS_DIR", str(tmp_path / "campaigns"))
    paths = Paths(tmp_path / "home").ensure()
    specs = [MAIL, PUSH]
    audience = _players(12).assign(consent_email=[i >= 4 for i in range(12)])
    _warehouse(paths, audience)
    _publish_all(paths, specs, audience)
    for s in specs:
        assert gate_published_list(paths, s, specs, AS_OF).success
    _dispatch(paths, specs)
    # a re-run blind to the day's outbox: p_004 dropped out of the mail list and is picked by the
    # cashback push; p_000 opted in to email and is picked by the bonus mail
    late = audience.assign(consent_email=audience["consent_email"] | (audience["player_id"] == "p_000"))
    late.loc[late["player_id"] == "p_004", "consent_email"] = False
    _warehouse(paths, late)
    mail = build_list(MAIL, late, AS_OF)
    publish(mail, paths)
    push = build_list(PUSH, late, AS_OF)
    push = push.__class__(**{**push.__dict__, "rows": push.rows[push.rows["player_id"].isin(
        set(late["player_id"]) - set(mail.rows["player_id"]))].reset_index(drop=True)})  # one bonus a day, by the list
    publish(push, paths)
    assert "p_000" in set(mail.rows["player_id"]) and "p_004" in set(push.rows["player_id"])

    failed = {}
    for s in specs:
        v = record_list_gate(paths, s.id, AS_OF, gate_published_list(paths, s, specs, AS_OF))
        failed[s.id] = {o.column: o for o in v.result.failed}
        assert not v.passed
        with pytest.raises(DispatchBlocked, match="gate failed"):
            dispatch_list(paths, s.id, AS_OF, spec=s)
    # the mail list offers p_000 a second bonus, 8 h from the cashback sent at 17:00
    assert {"one_bonus_offer_per_day", "cooldown"} <= set(failed["bonus_mail"])
    assert failed["bonus_mail"]["one_bonus_offer_per_day"].sample == ["p_000"]
    # the push list offers p_004 a second bonus 8 h after the 09:00 bonus it was sent
    assert {"one_bonus_offer_per_day", "cooldown"} <= set(failed["cashback_push"])
    assert failed["cashback_push"]["cooldown"].sample == ["p_004"]
    # the gate alone would pass it: it is the outbox that shows the double offer
    lst = pd.read_parquet(list_dir(paths, PUSH.id, AS_OF) / "list.parquet")
    assert gate_list(GatedList(lst, late, 0.0, ["A"]), GateContext(
        day_lists=[mail.rows], limits=DayLimits(bonus_offers_per_day=1, cooldown_hours=12))).success


def test_gate_reads_the_outbox_and_counts_each_message_once(tmp_path):
    """read_sent's times; day_checks: a listed message already sent is itself, a higher-priority
    row already sent counts once, this campaign's unlisted sends count, caps and cooldown; the
    budget holds for sent + newly sent."""
    def box(channel: str, campaign: str, day: dt.date, rows: list[dict]) -> None:
        f = tmp_path / "outbox" / channel / campaign / f"{day.isoformat()}.jsonl"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("".join(pd.Series({"campaign_id": campaign, "channel": channel, "as_of_date": day.isoformat(),
                                        "offer_template": "none", "offer_cost_eur_cents": 0} | r).to_json() + "\n"
                             for r in rows))

    before = AS_OF - dt.timedelta(days=1)
    box("email", "mail", AS_OF, [
        {"player_id": "a", "offer_template": "bonus", "offer_cost_eur_cents": 1000,
         "planned_send_at": "2025-08-30T09:00:00Z", "sent_at": "2025-08-30T09:20:00Z"},  # a late release that day
        {"player_id": "b", "offer_template": "bonus", "offer_cost_eur_cents": 1000,
         "planned_send_at": "2025-08-30T09:00:00Z", "sent_at": "2026-01-05T10:00:00Z"}])  # a backfill: planned
    box("push", "push", AS_OF, [{"player_id": "c", "offer_template": "cashback", "offer_cost_eur_cents": 700},
                                {"player_id": "z", "offer_template": "cashback", "offer_cost_eur_cents": 900}])
    box("sms", "old", before, [{"player_id": "d"}])  # no time at all, no list: 23:59:59 of its date
    (tmp_path / "lists" / "push" / AS_OF.isoformat()).mkdir(parents=True)
    (tmp_path / "lists" / "push" / AS_OF.isoformat() / "manifest.json").write_text(
        '{"send_at_utc": "2025-08-30T17:00:00Z"}')
    sent = read_sent(tmp_path / "outbox", AS_OF, lists_dir=tmp_path / "lists")
    at = dict(zip(sent["player_id"], sent["sent_at"].astype(str), strict=True))
    assert at == {"a": "2025-08-30 09:20:00", "b": "2025-08-30 09:00:00", "c": "2025-08-30 17:00:00",
                  "z": "2025-08-30 17:00:00", "d": "2025-08-29 23:59:59"}
    assert read_sent(tmp_path / "outbox", AS_OF, days_before=0)["player_id"].tolist() == ["a", "b", "c", "z"]

    def row(pid: str, campaign: str, channel: str, template: str, cost: int, at: str, variant: str = "A") -> dict:
        return {"player_id": pid, "campaign_id": campaign, "channel": channel, "variant": variant,
                "as_of_date": AS_OF.isoformat(), "send_at_utc": f"2025-08-30T{at}:00Z", "offer_template": template,
                "offer_cost_eur_cents": cost}

    # the push campaign's rebuilt list: c again (already sent: itself), a and b (bonus mail sent), e new,
    # d (an sms at 23:59:59 the day before), z no longer listed (sent all the same)
    lst = pd.DataFrame([row(p, "push", "push", "cashback", 700, "17:00") for p in ("c", "a", "b", "e")]
                       + [row("d", "push", "push", "none", 0, "09:00")])
    mail = pd.DataFrame([row("a", "mail", "email", "bonus", 1000, "09:00"),  # already sent: counted once
                         row("e", "mail", "email", "bonus", 1000, "09:00")])  # planned: counts
    ok = day_checks(lst, [mail], sent=sent, bonus_offers_per_day=1, global_day_cap=1, cooldown_hours=12,
                    max_cost_per_player_cents=1500).set_index(lst["player_id"])
    assert ok.loc["c"].all()  # its own message, not another
    assert not ok.loc["a", "one_bonus_offer_per_day"] and not ok.loc["b", "one_bonus_offer_per_day"]
    assert not ok.loc["e", "one_bonus_offer_per_day"] and not ok.loc["e", "cooldown"]
    assert not ok.loc["a", "global_day_cap"]  # one message: the mail once, not twice
    assert not ok.loc["a", "day_cost_within_cap"] and ok.loc["d", "day_cost_within_cap"]
    assert not ok.loc["d", "cooldown"] and ok.loc["d", "global_day_cap"]  # yesterday's counts for the cooldown only
    profile = pd.DataFrame({"player_id": list("abcde"), "country": "MT", "age_years": 30, "self_excluded_now": False,
                            "ever_self_excluded": False, "cooling_off_now": False, "harm_risk_flag": False,
                            "consent_push": True})
    # budget: z's 900 already sent + c's 700 as sent + the rest new
    within = gate_list(GatedList(lst, profile, 0.0, ["A"]), GateContext(budget_cents=900 + 4 * 700, sent=sent))
    assert within.success, within.summary()
    over = gate_list(GatedList(lst, profile, 0.0, ["A"]), GateContext(budget_cents=900 + 4 * 700 - 1, sent=sent))
    assert [o.column for o in over.failed] == ["treated_cost_eur_cents"]


# --------------------------------------------------------------------------- property

KINDS = ("revoke", "grant", "self_exclude", "loss", "activity", "gone", "new")


@st.composite
def late_events(draw, player_ids: list[str]) -> list[tuple[str, str, str, int]]:
    """Changes to the audience between two builds: drop-outs (a revoke, a self-exclusion, a player
    gone from the profile), drop-ins (a grant, a new player), moves (net loss: cashback cost and
    budgets; activity: named segments)."""
    if not player_ids:  # everyone left in an earlier round
        return []
    return draw(st.lists(st.tuples(st.sampled_from(player_ids), st.sampled_from(KINDS), st.sampled_from(CHANNELS),
                                   st.integers(0, 90)), min_size=1, max_size=max(2, len(player_ids) // 2)))


def _apply(audience: pd.DataFrame, events: list[tuple[str, str, str, int]], round_no: int) -> pd.DataFrame:
    aud = audience.copy()
    for i, (pid, kind, ch, n) in enumerate(events):
        at = aud["player_id"] == pid
        if kind == "revoke":
            aud.loc[at, f"consent_{ch}"] = False
        elif kind == "grant":
            aud.loc[at, [f"consent_{ch}", f"consent_{ch}_products"]] = [True, "casino,sports"]
        elif kind == "self_exclude":
            aud.loc[at, "self_excluded_now"] = True
        elif kind == "loss":
            aud.loc[at, "net_loss_eur_7d"] = n * 700
        elif kind == "activity":
            aud.loc[at, ["days_since_last_active", "tenure_days"]] = [n, n]
        elif kind == "gone":
            aud = aud[~at]
        elif at.any():  # new: a player registered late, like an existing one
            aud = pd.concat([aud, aud[at].assign(player_id=f"n_{round_no}_{i}")], ignore_index=True)
    return aud.reset_index(drop=True)


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_rerunning_a_day_holds_every_limit_across_its_outbox(data):
    """Random days of campaigns; between builds, random late events; after each build a random
    part of the day is dispatched (the last build: all of it). Across the outbox of the day: at
    most one bonus offer per player, no two marketing messages within the cooldown, the channel and
    global daily caps, the cost per player per day, one message per dedup key, campaign budgets.
    And the gate's cross-list checks pass every list the builder made (it sees the same facts),
    and one asset per campaign builds the same lists as the whole day."""
    from _compliance import AS_OF as DAY

    audience = data.draw(profiles(max_players=16, clean_share=0.7))
    specs = data.draw(campaign_sets())
    rounds = data.draw(st.integers(2, 3))
    now = data.draw(st.sampled_from(["planned", "2025-10-03T12:00:00Z"]))  # on time, or a re-run days later
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setenv(approvals.THRESHOLD_ENV, "1000000000")
        mp.setenv("CRM_CAMPAIGNS_DIR", tmp)  # no calendar
        mp.setenv("CRM_NOW", now)
        paths = Paths(Path(tmp) / "home").ensure()
        for r in range(rounds):
            if r:
                audience = _apply(audience, data.draw(late_events(list(audience["player_id"]))), r)
            lists = _publish_all(paths, specs, audience, DAY)
            for s in specs:
                ok = _day_checks(paths, s, specs, lists[s.id], DAY)
                assert ok.all().all(), (s.id, lists[s.id][~ok.all(axis=1).to_numpy()], ok[~ok.all(axis=1)])
            if r == rounds - 1:  # one asset per campaign, on a re-run
                for s in specs:
                    assert build_one(paths, s, specs, DAY, audience=audience).rows.equals(lists[s.id]), s.id
            last = r == rounds - 1
            sending = specs if last else data.draw(st.lists(st.sampled_from(specs), unique_by=lambda s: s.id))
            _dispatch(paths, sending, DAY)
        assert_day_limits(outbox_of_day(paths, specs, DAY), specs)
