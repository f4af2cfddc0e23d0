"""Shared hypothesis strategies for the compliance property tests: random player profiles
(with missing values), random campaigns and sets of campaigns of one day, random message
histories and calendars, and the plain-written eligibility oracle.

The oracle restates DESIGN.md's rules player by player, message by message, with its own
copy of the jurisdiction table and the contact policy (it imports neither crm.campaigns.eligibility
nor crm.campaigns.jurisdictions nor crm.campaigns.policy): if the code and the oracle disagree, one of them
misreads the law.

Used by test_eligibility.py, test_targeting.py and test_campaign_day.py.
"""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import pandas as pd
from hypothesis import strategies as st

from crm.campaigns.spec import OFFER_TEMPLATES, CampaignSpec

AS_OF = dt.date(2025, 10, 1)  # a Wednesday
CHANNELS = ["email", "push", "sms", "in_app"]
MAYBE_BOOL = st.one_of(st.none(), st.booleans())
# Gross predicted value of an offer, EUR cents (the list nets it of the offer's cost): negative, zero,
# ties, a value that rounds to zero, values around the offers' costs, extremes.
UPLIFT_CENTS = st.one_of(st.none(), st.sampled_from([-2500.0, -1.0, 0.0, 1e-7, 50.0, 500.0, 1000.0, 1000.000001,
                                                     2500.0, 5000.0, 1e9]),
                         st.floats(-5000, 20000))
NO_OFFER = "none"  # any other template is a bonus


def _mostly(good, *bad):
    """Mostly ``good`` (so that many players are eligible and lists are not trivially empty)."""
    return st.sampled_from([good, good, good, good, good, *bad])


CLEAN = {"age_verified": True, "self_excluded_now": False, "ever_self_excluded": False,
         "linked_self_excluded": None, "risk_flagged": None,
         "returned_after_exclusion": False, "cooling_off_now": False, "harm_risk_flag": False,
         "consent_profiling": True, "bonuses_received": 0}


@st.composite
def profiles(draw, max_players: int = 40, clean_share: float = 0.0) -> pd.DataFrame:
    """Random players; with ``clean_share`` > 0 about that share passes every profile rule
    (adult, verified, no RG flag, all consents, casino products, a European zone), so the
    contact and cross-campaign rules decide."""
    n = draw(st.integers(1, max_players))
    rows = []
    for i in range(n):
        clean = clean_share > 0 and draw(st.integers(0, 99)) < clean_share * 100
        row = {
            "player_id": f"p_{i:03d}",
            "brand_id": draw(st.sampled_from(["A", "B"])),
            "country": draw(st.sampled_from(["UK", "MT", "NL", "SE", "DE", "XX", None])),
            "locale": "en-GB",
            "timezone": draw(st.sampled_from(["Europe/London", "Europe/Berlin", "Asia/Tokyo", "America/New_York",
                                              None, "Not/A_Zone", "Europe", "europe/london", " Europe/London",
                                              "../../../etc/passwd", "Europe/London\x00", ""])),
            "age_years": draw(st.one_of(st.none(), st.integers(10, 80), st.integers(18, 80))),
            "age_verified": draw(_mostly(True, False, None)),
            "self_excluded_now": draw(_mostly(False, True, None)),
            "ever_self_excluded": draw(_mostly(False, True, None)),
            "returned_after_exclusion": draw(MAYBE_BOOL),
            "cooling_off_now": draw(_mostly(False, True, None)),
            # another account of the same person self-excluded (None: no linked account)
            "linked_self_excluded": draw(st.sampled_from([None, None, None, False, True])),
            # flagged for bonus abuse (None: not scored)
            "risk_flagged": draw(st.sampled_from([None, None, None, False, True])),
            "harm_risk_flag": draw(_mostly(False, True, None)),
            "consent_profiling": draw(_mostly(True, False, None)),
            "bonuses_received": draw(st.sampled_from([0, 0, 0, 1, 3, None])),
            "churn_score": draw(st.one_of(st.none(), st.floats(0, 1))),
            "churn_model_version": "1",
            "uplift_value_score": draw(UPLIFT_CENTS),
            "uplift_value_model_version": "2",
            "net_loss_eur_7d": draw(st.integers(-5000, 50000)),
            "days_since_last_active": draw(st.integers(0, 120)),
            "tenure_days": draw(st.integers(0, 400)),
        }
        for ch in CHANNELS:
            row[f"consent_{ch}"] = draw(_mostly(True, False, None))
            row[f"consent_{ch}_products"] = draw(st.sampled_from(["casino", "casino", "casino,sports", "sports",
                                                                  None]))
            row[f"consent_{ch}_products_withdrawn"] = draw(st.sampled_from([None, None, None, "casino", "sports",
                                                                            "casino,sports"]))
        if clean:
            row |= CLEAN | {"country": draw(st.sampled_from(["UK", "MT", "NL", "SE", "DE"])),
                            "timezone": draw(st.sampled_from(["Europe/London", "Europe/Berlin", None])),
                            "age_years": draw(st.integers(24, 80))}
            for ch in CHANNELS:
                row[f"consent_{ch}"] = True
                row[f"consent_{ch}_products"] = "casino,sports"
                row[f"consent_{ch}_products_withdrawn"] = None
        rows.append(row)
    return pd.DataFrame(rows)


def _send_times(daytime: int = 2) -> st.SearchStrategy[str]:
    # 10:00 / 14:00 UTC are daytime in Europe; 06:00 / 08:30 / 20:30 / 23:00 hit quiet hours somewhere
    return st.sampled_from(["10:00", "14:00"] * daytime + ["06:00", "08:30", "20:30", "23:00"])


@st.composite
def campaigns(draw, uplift: bool | None = None) -> CampaignSpec:
    """A random campaign; ``uplift`` True / False forces ``target: by: uplift`` on / off (None: drawn)."""
    template = draw(st.sampled_from(list(OFFER_TEMPLATES)))
    data = {
        "id": "prop_test", "name": "property test", "channel": draw(st.sampled_from(CHANNELS)),
        "offer": {"template": template, "value_eur": 10, "percent": 10, "cap_eur": 50,
                  "wagering": draw(st.sampled_from([0, 5, 10, 10.5, 35]))},
        "experiment": {"holdout": draw(st.sampled_from([0.0, 0.1, 0.5])), "variants": {"A": 1, "B": 2}},
        "product": draw(st.sampled_from(["casino", "casino", "sports"])),
        "schedule": {"send_time_utc": draw(_send_times()),
                     "start": draw(st.sampled_from([None, None, None, "2025-10-02"]))},
    }
    if template == "none" and draw(st.booleans()):
        data["transactional"] = True
    if draw(st.booleans()):
        data["segment"] = {"scores": {"churn_score": {"min": draw(st.sampled_from([0.0, 0.3]))}}}
    if uplift if uplift is not None else draw(st.booleans()):
        target = {"by": "uplift", "min_uplift_eur": draw(st.sampled_from([0, 0.5, 5]))}
        budget = draw(st.sampled_from([None, 0.01, 10, 25, 60, 100, 1000])) if template != "none" else None
        if budget is not None:
            target["budget_eur"] = budget
        data["target"] = target
        if draw(st.booleans()):
            data["max_list_size"] = draw(st.integers(1, 10))
    return CampaignSpec.model_validate(data)


OFFER_NAMES = st.sampled_from(["cashback_10", "match_50", "spins", "mission_x", "entry", "a", "z9_"])


@st.composite
def offer_choices(draw) -> dict:
    """A campaign's ``offer.choices`` (1-4 offers): every bonus template, wagering around the UK cap,
    values around the daily cost cap, relative effects from 0 to 3."""
    out = {}
    for name in draw(st.lists(OFFER_NAMES, min_size=1, max_size=4, unique=True)):
        template = draw(st.sampled_from([t for t in OFFER_TEMPLATES if t != NO_OFFER]))
        out[name] = {"offer": {"template": template, "value_eur": draw(st.sampled_from([1, 5, 10, 40])),
                               "percent": draw(st.sampled_from([10, 50])), "cap_eur": draw(st.sampled_from([5, 25])),
                               "wager_eur": 20, "wagering": draw(st.sampled_from([0, 1, 10, 10.5, 35])),
                               "expiry_days": draw(st.sampled_from([1, 7, 30]))},
                     "relative_effect": draw(st.sampled_from([0.0, 0.3, 1.0, 1.4, 3.0]))}
    return out


@st.composite
def chooser_campaigns(draw, cid: str = "prop_choice") -> CampaignSpec:
    """A random campaign whose offer is chosen per player (``offer.choices``, targeted by uplift),
    with a budget, a minimum, a cost cap per player and a list size drawn too."""
    target: dict = {"by": "uplift", "min_uplift_eur": draw(st.sampled_from([0, 0.5, 5]))}
    budget = draw(st.sampled_from([None, None, 0.01, 10, 60, 1000]))
    if budget is not None:
        target["budget_eur"] = budget
    data = {
        "id": cid, "name": "property test, offer chosen per player", "channel": draw(st.sampled_from(CHANNELS)),
        "offer": {"choices": draw(offer_choices())}, "target": target,
        "experiment": {"salt": cid, "holdout": draw(st.sampled_from([0.0, 0.1, 0.5])), "variants": {"A": 1}},
        "product": draw(st.sampled_from(["casino", "casino", "sports"])),
        "schedule": {"send_time_utc": draw(_send_times())},
    }
    if draw(st.booleans()):
        data["budget"] = {"per_player_per_day_eur": draw(st.sampled_from([40, 60, 100]))}
    if draw(st.booleans()):
        data["max_list_size"] = draw(st.integers(1, 10))
    return CampaignSpec.model_validate(data)


@st.composite
def day_campaigns(draw, cid: str) -> CampaignSpec:
    """A campaign of a day with the engine's limits drawn too: priority (ties), frequency,
    budget, dedup key, named segment, transactional, send time."""
    template = draw(st.sampled_from(list(OFFER_TEMPLATES)))
    channel = draw(st.sampled_from(CHANNELS))
    data: dict = {
        "id": cid, "name": cid, "channel": channel,
        "priority": draw(st.sampled_from([1, 5, 5, 10])),
        "product": draw(st.sampled_from(["casino", "casino", "sports"])),
        "offer": {"template": template, "value_eur": draw(st.sampled_from([5, 10, 40])), "percent": 10,
                  "cap_eur": draw(st.sampled_from([20, 50])), "wagering": draw(st.sampled_from([0, 10, 35]))},
        "experiment": {"salt": cid, "holdout": draw(st.sampled_from([0.0, 0.2])), "variants": {"A": 1}},
        "schedule": {"send_time_utc": draw(_send_times(daytime=6))},
    }
    if template == "none" and draw(st.booleans()):
        data["transactional"] = True
    freq = {}
    if draw(st.booleans()):
        freq["max_per_week"] = draw(st.integers(1, 2))
    if draw(st.booleans()):
        freq["cooldown_hours"] = draw(st.sampled_from([12, 24, 48]))
    if draw(st.booleans()):
        freq["dedup_days"] = draw(st.sampled_from([7, 14]))
    if draw(st.booleans()):
        freq["dedup_key"] = "shared_key"
    if freq:
        data["frequency"] = freq
    if template != "none":
        budget = {}
        if draw(st.booleans()):
            budget["total_eur"] = draw(st.sampled_from([40, 100, 300]))
        if draw(st.booleans()) and template == "cashback":
            budget["per_player_per_day_eur"] = draw(st.sampled_from([15, 60]))
        elif draw(st.booleans()):
            budget["per_player_per_day_eur"] = 50
        if budget:
            data["budget"] = budget
    if draw(st.booleans()):
        data["segment"] = {"named": draw(st.sampled_from(["newcomers", "dormant", "active"]))}
    return CampaignSpec.model_validate(data)


@st.composite
def campaign_sets(draw) -> list[CampaignSpec]:
    n = draw(st.integers(2, 4))
    return [draw(day_campaigns(f"camp_{i}")) for i in range(n)]


@st.composite
def message_histories(draw, player_ids: list[str], campaign_ids: list[str]) -> pd.DataFrame:
    """Messages sent before the day's send (delivered or dispatched), in the engine's history frame."""
    rows = []
    for _ in range(draw(st.integers(0, 3 * len(player_ids)))):
        pid = draw(st.sampled_from(player_ids))
        campaign = draw(st.sampled_from([*campaign_ids, "hist_a", "hist_b"]))
        key = draw(st.sampled_from([campaign, "shared_key"]))
        days_before = draw(st.integers(0, 16))
        sent = dt.datetime.combine(AS_OF - dt.timedelta(days=days_before), dt.time(draw(st.integers(0, 23)), 0))
        if days_before == 0:  # today, before 00:00 + h: a dispatch of a campaign not in the day's set
            campaign = key = "other_today"
        bonus = draw(st.booleans())
        rows.append({
            "player_id": pid, "channel": draw(st.sampled_from(CHANNELS)), "campaign_id": campaign, "dedup_key": key,
            "sent_at": sent, "is_bonus_offer": bonus, "cost_cents": draw(st.sampled_from([0, 500, 2000])) if bonus
            else 0, "offer_ends_at": sent + dt.timedelta(days=draw(st.integers(1, 10))) if bonus else None,
            "source": draw(st.sampled_from(["delivered", "outbox"])),
        })
    from crm.campaigns.history import MESSAGE_COLUMNS, empty_history

    if not rows:
        return empty_history()
    df = pd.DataFrame(rows, columns=list(MESSAGE_COLUMNS))
    return pd.concat([empty_history(), df], ignore_index=True).astype(empty_history().dtypes.to_dict())


@st.composite
def calendars(draw) -> dict:
    """A calendar mapping for crm.campaigns.policy.Calendar: blackouts near the as-of date, some local only."""
    blackouts = []
    for i in range(draw(st.integers(0, 2))):
        start = AS_OF + dt.timedelta(days=draw(st.integers(-2, 2)))
        blackouts.append({"name": f"b{i}", "start": start, "end": start + dt.timedelta(days=draw(st.integers(0, 1))),
                          "jurisdictions": draw(st.sampled_from([[], ["NL"], ["UK", "DE"]])),
                          "channels": draw(st.sampled_from([[], ["push"], ["email", "sms"]]))})
    return {"blackouts": blackouts}


# --------------------------------------------------------------------------- the oracle

# The jurisdiction table as the tests read the law (DESIGN.md; crm/campaigns/jurisdictions.py's docstring).
LAW = {
    "UK": {"verify": True, "bonus_age": 18, "max_wagering": 10, "first_bonus_only": False, "product_consent": True,
           "tz": "Europe/London"},
    "MT": {"verify": False, "bonus_age": 18, "max_wagering": None, "first_bonus_only": False,
           "product_consent": False, "tz": "Europe/Malta"},
    "NL": {"verify": True, "bonus_age": 24, "max_wagering": None, "first_bonus_only": False,
           "product_consent": False, "tz": "Europe/Amsterdam"},
    "SE": {"verify": True, "bonus_age": 18, "max_wagering": None, "first_bonus_only": True,
           "product_consent": False, "tz": "Europe/Stockholm"},
    "DE": {"verify": True, "bonus_age": 18, "max_wagering": None, "first_bonus_only": False,
           "product_consent": True, "tz": "Europe/Berlin"},
}
STRICTEST = {"verify": True, "bonus_age": 24, "max_wagering": 10, "first_bonus_only": True, "product_consent": True,
             "tz": None}
# The house policy as the tests read it (crm/campaigns/policy.py's docstring).
CHANNEL_CAPS = {"email": (1, 3), "push": (1, 3), "sms": (1, 2), "in_app": (2, 7)}
GLOBAL_CAPS = (2, 6)
COOLDOWN_HOURS, DEDUP_DAYS, MAX_COST_CENTS, QUIET = 12, 7, 10_000, (21, 9)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _true(v) -> bool:
    return not _missing(v) and bool(v) is True


def offer_cost(row: dict, c: CampaignSpec) -> int:
    o = c.offer
    if o.template in ("bonus", "free_spins", "mission", "tournament"):
        return round(o.value_eur * 100)
    if o.template == "deposit_match":  # the next deposit is unknown: the cap
        return round(o.cap_eur * 100)
    if o.template == "cashback":
        loss = row.get("net_loss_eur_7d")
        if _missing(loss):  # unknown loss: the cap, the most it can cost
            return round(o.cap_eur * 100)
        return int(min(round(max(loss, 0) * o.percent / 100), round(o.cap_eur * 100)))
    return 0


def _local(row: dict, law: dict, send: dt.datetime) -> dt.datetime | None:
    """The player's own zone; the jurisdiction's only when they have none; an invalid one: unknown."""
    own = row.get("timezone")
    name = own if not _missing(own) and own else law["tz"]
    if not name:
        return None
    try:
        return send.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(name))
    except Exception:  # not found, a folder ("Europe"), a path, a NUL byte: not a zone
        return None


def oracle_reasons(row: dict, c: CampaignSpec, messages: list[dict] = (), calendar: dict | None = None,
                   as_of: dt.date = AS_OF) -> list[str]:
    """Every rule the player fails for campaign ``c`` (empty: may be contacted).

    ``messages``: the player's messages sent before or planned the same day (dicts with
    channel, dedup_key, sent_at, is_bonus_offer, cost_cents, offer_ends_at)."""
    out = []
    country = row.get("country")
    law = LAW.get(country, STRICTEST) if not _missing(country) else STRICTEST
    age = row.get("age_years")
    is_bonus = c.offer.template != NO_OFFER
    s = c.schedule
    if (s.start and as_of < s.start) or (s.end and as_of > s.end) or (
            s.weekdays and ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][as_of.weekday()] not in s.weekdays):
        out.append("schedule")
    if _missing(age) or age < 18:
        out.append("age")
    if law["verify"] and not _true(row.get("age_verified")):
        out.append("age not verified")
    if row.get("self_excluded_now") is not False:
        out.append("self-excluded")
    if not (row.get("ever_self_excluded") is False or _true(row.get("returned_after_exclusion"))):
        out.append("excluded, not returned")
    if _true(row.get("linked_self_excluded")):
        out.append("linked account self-excluded")
    if is_bonus and _true(row.get("risk_flagged")):
        out.append("bonus to a player flagged for abuse")
    if row.get("cooling_off_now") is not False or row.get("harm_risk_flag") is not False:
        out.append("cooling off or harm")
    if not _true(row.get(f"consent_{c.channel}")):
        out.append("channel consent")
    if (c.segment.scores or c.segment.named and "at_risk" in c.segment.named or c.target.by == "uplift") \
            and not _true(row.get("consent_profiling")):
        out.append("profiling consent")
    withdrawn = row.get(f"consent_{c.channel}_products_withdrawn")
    if not _missing(withdrawn) and c.product in str(withdrawn).split(","):
        out.append("product withdrawn")
    if law["product_consent"]:
        products = row.get(f"consent_{c.channel}_products")
        if _missing(products) or c.product not in str(products).split(","):
            out.append("product consent")
    if is_bonus:
        if _missing(age) or age < law["bonus_age"]:
            out.append("bonus age")
        if law["max_wagering"] is not None and c.offer.wagering > law["max_wagering"]:
            out.append("wagering")
        received = row.get("bonuses_received")
        if law["first_bonus_only"] and (_missing(received) or received > 0 or any(m["is_bonus_offer"]
                                                                                 for m in messages)):
            out.append("not the first bonus")
    send = dt.datetime.combine(as_of, s.send_time)
    local = _local(row, law, send)
    for b in (calendar or {}).get("blackouts", []):
        if b.get("channels") and c.channel not in b["channels"]:
            continue
        if b.get("jurisdictions") and country in LAW and country not in b["jurisdictions"]:
            continue
        start, end = b["start"], b["end"]
        if local is None:
            if start <= as_of + dt.timedelta(days=1) and end >= as_of - dt.timedelta(days=1):
                out.append("blackout")
                break
        elif start <= local.date() <= end:
            out.append("blackout")
            break
    if not c.transactional:
        if local is None or local.hour >= QUIET[0] or local.hour < QUIET[1]:
            out.append("quiet hours")
        day_cap, week_cap = CHANNEL_CAPS[c.channel]
        day_cap = min(day_cap, c.frequency.max_per_day or day_cap)
        week_cap = min(week_cap, c.frequency.max_per_week or week_cap)
        today = [m for m in messages if m["sent_at"].date() == as_of]
        week = [m for m in messages if as_of - dt.timedelta(days=6) <= m["sent_at"].date() <= as_of]
        if len([m for m in today if m["channel"] == c.channel]) + 1 > day_cap:
            out.append("channel day cap")
        if len([m for m in week if m["channel"] == c.channel]) + 1 > week_cap:
            out.append("channel week cap")
        if len(today) + 1 > GLOBAL_CAPS[0]:
            out.append("global day cap")
        if len(week) + 1 > GLOBAL_CAPS[1]:
            out.append("global week cap")
        cooldown = max(COOLDOWN_HOURS, c.frequency.cooldown_hours or 0)
        if any(abs((send - m["sent_at"]).total_seconds()) < cooldown * 3600 for m in messages):
            out.append("cooldown")
    dedup = max(DEDUP_DAYS, c.frequency.dedup_days or 0)
    key = c.frequency.dedup_key or c.id
    if any(m["dedup_key"] == key and abs((send - m["sent_at"]).total_seconds()) < dedup * 86400 for m in messages):
        out.append("duplicate")
    if is_bonus:
        if any(m["is_bonus_offer"] and m["sent_at"].date() == as_of for m in messages):
            out.append("second bonus today")
        if any(m["is_bonus_offer"] and m["sent_at"].date() < as_of and m["offer_ends_at"] is not None
               and m["offer_ends_at"] > send for m in messages):
            out.append("bonus still running")
    cost = offer_cost(row, c)
    cap = min(MAX_COST_CENTS, c.budget.per_player_per_day_cents or MAX_COST_CENTS)
    if cost > 0 and sum(m["cost_cents"] for m in messages if m["sent_at"].date() == as_of) + cost > cap:
        out.append("cost per player per day")
    return out


def oracle_eligible(row: dict, c: CampaignSpec, messages: list[dict] = (), calendar: dict | None = None) -> bool:
    """DESIGN.md's rules, one by one; anything unknown fails."""
    return not oracle_reasons(row, c, messages, calendar)


def profile_rows(profile: pd.DataFrame) -> pd.DataFrame:
    """The profile by player id with missing values as None (what the oracle reads)."""
    rows = profile.set_index("player_id")
    return rows.astype(object).where(rows.notna(), None)


def planned(rows: pd.DataFrame, c: CampaignSpec, as_of: dt.date = AS_OF) -> list[dict]:
    """The messages a built list sends (its non-holdout rows), as the oracle reads them."""
    send = dt.datetime.combine(as_of, c.schedule.send_time)

    def offer(r):  # the row's own offer (chosen per player: its choice's), never the list's word for it
        return c.offer.choices[r.offer_name].offer if c.offer.choices else c.offer

    return [{"player_id": r.player_id, "channel": c.channel, "campaign_id": c.id,
             "dedup_key": c.frequency.dedup_key or c.id, "sent_at": send,
             "is_bonus_offer": offer(r).template != NO_OFFER, "cost_cents": int(r.offer_cost_eur_cents),
             "offer_ends_at": send + dt.timedelta(days=offer(r).expiry_days) if offer(r).template != NO_OFFER
             else None}
            for r in rows.itertuples() if r.variant != "holdout"]


def history_messages(history: pd.DataFrame) -> list[dict]:
    """A history frame as plain message dicts (timestamps as datetimes, missing as None)."""
    out = []
    for r in history.to_dict("records"):
        r["sent_at"] = pd.Timestamp(r["sent_at"]).to_pydatetime()
        r["offer_ends_at"] = None if pd.isna(r["offer_ends_at"]) else pd.Timestamp(r["offer_ends_at"]).to_pydatetime()
        out.append(r)
    return out
