"""Who may be contacted: every compliance rule of DESIGN.md, in one place.

Each rule is a vectorised predicate that says whether a player *passes*, over the player
profile (``dim_player`` + features) and the player's *contact features*
(:func:`contact_features`: messages already sent or planned, local time of the send,
blackouts, offers of the day), computed from a :class:`Context` (the as-of date, the
message history with the day's higher-priority lists, the calendar, the policy).
Missing data fails closed: an unknown age, consent, RG state, time zone or bonus history
never makes a player eligible. A player is eligible only if every rule passes; the first
failing rule (in the order of :data:`RULES`) is the reason counted in the suppression
report, and every failing rule is kept. :func:`explain` gives each rule's verdict with the
observed value for a few players, from the same predicates.

Transactional campaigns (``transactional: true``) bypass the rules marked
``transactional_bypass`` (frequency caps, cooldown, quiet hours), never consent, RG, age,
jurisdiction, blackouts, dedup or offer rules.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from crm.campaigns.history import OFFER_ISSUED, empty_history
from crm.campaigns.jurisdictions import rules_for
from crm.campaigns.offers import offer_cost_cents
from crm.campaigns.policy import POLICY, Calendar, ContactPolicy, blackout_names
from crm.campaigns.spec import CampaignSpec
from crm.contract import consent_column, consent_products_column, consent_withdrawn_column

_HOUR = np.timedelta64(3600, "s")


@dataclass(frozen=True)
class Context:
    """Everything beyond the profile that eligibility depends on, for one as-of date.

    ``history``: messages sent or planned (:data:`crm.campaigns.history.MESSAGE_COLUMNS`), including
    the treated rows of the day's higher-priority lists (:meth:`with_planned`);
    ``spent_cents``: offer cost each campaign already dispatched on earlier dates (its
    total budget's use); ``bonus_offered``: players we ever sent a bonus offer to (outbox);
    ``held_out``: per campaign, the players its dispatched lists held out within its dedup
    window before the as-of date (:func:`crm.campaigns.history.recent_holdouts`).
    """

    as_of: dt.date
    history: pd.DataFrame = field(default_factory=empty_history, repr=False)
    calendar: Calendar = field(default_factory=Calendar)
    policy: ContactPolicy = POLICY
    spent_cents: Mapping[str, int] = field(default_factory=dict)
    bonus_offered: frozenset[str] = frozenset()
    held_out: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # player -> their cluster of linked accounts (the same person: player_clusters), over the whole
    # audience of the day (a cluster's other accounts may be outside a campaign's segment)
    clusters: Mapping[str, str] = field(default_factory=dict, repr=False)

    def with_planned(self, planned: pd.DataFrame) -> Context:
        """This context plus the messages of a list built for the same day."""
        if not len(planned):
            return self
        history = pd.concat([self.history, planned], ignore_index=True) if len(self.history) else planned
        return replace(self, history=history)


# --------------------------------------------------------------------------- helpers

def _flag(df: pd.DataFrame, col: str, missing: bool) -> np.ndarray:
    """A boolean column with NULLs (or an absent column) replaced by ``missing``."""
    if col not in df:
        return np.full(len(df), missing, dtype=bool)
    return df[col].astype("boolean").fillna(missing).to_numpy(dtype=bool)


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def _text_codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(codes, distinct texts) of ``values`` as text (``str`` of each; missing as ""): rules are
    worked out once per distinct value, then spread by code. ``pd.factorize``, not a
    ``pd.Categorical`` (which sorts and validates its categories: most of a send check's fixed
    cost on its few rows); on a few rows through a plain object array, which skips pandas'
    per-call overhead (0.04 against 0.6 ms), on many through pandas' own string path, which is
    the faster there (a million rows: 44 against 125 ms)."""
    if len(values) <= 4096:
        raw = values.to_numpy(dtype=object)
        # str() per value, not numpy's ``astype(str)``: its fixed-width text drops trailing NULs, and
        # "Europe/Berlin\x00" must stay the invalid zone it is (fail closed), not become Berlin
        missing = pd.isna(raw)
        text = _objects(["" if m else (v if isinstance(v, str) else str(v)) for v, m in zip(raw, missing, strict=True)])
        codes, uniques = pd.factorize(text)
    else:
        codes, uniques = pd.factorize(values.where(values.notna(), "").astype(str))
    return np.asarray(codes), np.asarray(uniques, dtype=object)


def _jurisdiction(df: pd.DataFrame, attr: str) -> np.ndarray:
    """A jurisdiction rule per row (:func:`crm.campaigns.jurisdictions.rules_for` of the row's country)."""
    if not len(df):
        return np.empty(0, dtype=object)
    countries = df["country"] if "country" in df else pd.Series(None, index=df.index, dtype=object)
    codes, names = _text_codes(countries)
    return _objects([getattr(rules_for(c or None), attr) for c in names])[codes]


def _age(df: pd.DataFrame) -> np.ndarray:
    if "age_years" not in df:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df["age_years"], errors="coerce").astype(float).to_numpy()


def _at_least(values: np.ndarray, minimum: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(values, nan=-np.inf) >= minimum.astype(float)


def _all(df: pd.DataFrame, value: bool = True) -> np.ndarray:
    return np.full(len(df), value, dtype=bool)


def effective_caps(c: CampaignSpec, policy: ContactPolicy) -> dict[str, float]:
    """The limits that hold for this campaign: the policy, tightened by the campaign."""
    day, week = policy.channel_cap(c.channel)
    f, b = c.frequency, c.budget
    per_player = [policy.max_cost_per_player_per_day_cents, b.per_player_per_day_cents]
    return {
        "channel_day": min(day, f.max_per_day or day), "channel_week": min(week, f.max_per_week or week),
        "global_day": policy.global_cap[0], "global_week": policy.global_cap[1],
        "cooldown_hours": max(policy.cooldown_hours, f.cooldown_hours or 0),
        "dedup_days": max(policy.dedup_days, f.dedup_days or 0),
        "cost_per_player_day_cents": min(x for x in per_player if x is not None),
        "bonus_offers_per_day": policy.max_bonus_offers_per_day,
    }


def _local(aware: dt.datetime, name: str) -> dt.datetime | None:
    """``aware`` in the IANA zone ``name``, or None for anything that is not a valid zone name.

    The name is data (a player.updated payload): zoneinfo turns it into a file path under the
    tz database, so "Europe" (a folder), "../../etc/passwd" or a NUL byte raise other errors
    than ZoneInfoNotFoundError. Only the names zoneinfo lists are looked up; any other fails
    closed for that player alone (no local time: quiet hours and blackouts fail).
    """
    if not name or name not in _zone_names():
        return None
    try:
        return aware.astimezone(ZoneInfo(name))
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _zone_times(names: pd.Series, aware: dt.datetime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For IANA zone names per row: (valid, local minute of the day, local date) of the instant."""
    if not len(names):
        return np.zeros(0, bool), np.zeros(0), np.zeros(0, dtype="datetime64[D]")
    codes, distinct = _text_codes(names)
    minute = np.full(len(distinct), np.nan)
    date = np.full(len(distinct), np.datetime64("NaT"), dtype="datetime64[D]")
    for i, name in enumerate(distinct):
        t = _local(aware, name)
        if t is not None:
            minute[i], date[i] = t.hour * 60 + t.minute, np.datetime64(t.date(), "D")
    return ~np.isnan(minute[codes]), minute[codes], date[codes]


def _local_times(df: pd.DataFrame, send_at: dt.datetime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per player: the time zone used, the local minute of the day and the local date of the send.

    The player's own IANA zone; when they have none, their jurisdiction's. A zone that is given
    but is not a valid IANA name ("Europe", a path, a typo) is unknown, as is a jurisdiction
    without a zone: None / NaN / NaT, which the rules read as failing (that player alone).
    """
    aware = send_at.replace(tzinfo=dt.UTC)
    own = df["timezone"].astype(object) if "timezone" in df else pd.Series(None, index=df.index, dtype=object)
    given = own.notna().to_numpy() & (own.astype(str).str.len() > 0).to_numpy()
    fallback = pd.Series(_jurisdiction(df, "timezone"), index=df.index, dtype=object)
    ok_own, min_own, date_own = _zone_times(own, aware)
    ok_fb, min_fb, date_fb = _zone_times(fallback, aware)
    ok_fb &= ~given
    used = np.where(ok_own, own.to_numpy(dtype=object), np.where(ok_fb, fallback.to_numpy(dtype=object), None))
    return (used.astype(object), np.where(ok_own, min_own, np.where(ok_fb, min_fb, np.nan)),
            np.where(ok_own, date_own, np.where(ok_fb, date_fb, np.datetime64("NaT"))).astype("datetime64[D]"))


def quiet_hours_at(df: pd.DataFrame, at: dt.datetime) -> tuple[np.ndarray, np.ndarray]:
    """Per row (columns ``country``, ``timezone``): whether the instant ``at`` (naive UTC) falls in
    the jurisdiction's quiet hours in the player's local time (unknown local time: True), and
    that local time as text. The ``quiet_hours`` rule's own code, for a send that happens later
    than planned (:func:`crm.campaigns.dispatch.dispatch_list`)."""
    tz, minute, _ = _local_times(df, at)
    inside = _in_quiet_hours(df, pd.DataFrame({"local_minute": minute}, index=df.index))
    local = [f"{int(m) // 60:02d}:{int(m) % 60:02d} {z}" if not np.isnan(m) else "unknown (no valid time zone)"
             for m, z in zip(minute.tolist(), tz.tolist(), strict=True)]
    return inside, np.asarray(local, dtype=object)


def quiet_hours_end(profile: dict, at: dt.datetime, step_minutes: int = 15) -> dt.datetime | None:
    """The first quarter hour after ``at`` (naive UTC) outside the player's quiet hours, by the
    ``quiet_hours`` rule's own code (:func:`quiet_hours_at`); None when there is none within a day
    (no valid local time: quiet hours never end for that player, so a held message is dropped)."""
    df = pd.DataFrame([profile])
    t = at.replace(second=0, microsecond=0)
    t += dt.timedelta(minutes=step_minutes - t.minute % step_minutes)
    for _ in range(24 * 60 // step_minutes + 1):
        inside, _ = quiet_hours_at(df, t)
        if not bool(inside[0]):
            return t
        t += dt.timedelta(minutes=step_minutes)
    return None


def contact_features(df: pd.DataFrame, c: CampaignSpec, ctx: Context) -> pd.DataFrame:
    """Per player (aligned with ``df``): what the contact and offer rules look at.

    Counts are of messages sent or planned *before this one*: ``channel_day`` /
    ``channel_week`` on the campaign's channel, ``all_day`` / ``all_week`` on any channel
    (day: the send's UTC date; week: that date and the six before); ``nearest_hours`` to
    the nearest other message; ``duplicates`` with the same dedup key within the window;
    ``bonus_offers_today``, ``cost_today_cents``, ``running_offer_until`` (our bonus offer
    sent on an earlier day whose expiry is after this send), ``bonus_before`` (any bonus
    offer of ours ever); the local ``timezone_used`` / ``local_minute`` / ``local_date`` of
    the send, the ``blackout`` covering it, and this campaign's ``offer_cost_cents``.
    """
    if c.offer.chosen_per_player:  # its rules depend on the offer: each choice is checked as a fixed offer
        raise ValueError(f"campaign {c.id} chooses its offer per player: check each choice "
                         "(crm.campaigns.offer_generation.choose_offers), not the campaign")
    n = len(df)
    pids = df["player_id"].astype(str).to_numpy()
    send_at = c.schedule.send_at(ctx.as_of)
    caps = effective_caps(c, ctx.policy)
    tz, minute, date = _local_times(df, send_at)
    # the columns are gathered and framed once: a column set at a time on a frame cost a send
    # check more than all its rules
    out = {"timezone_used": tz, "local_minute": minute, "local_date": date}
    countries = df["country"].astype(object).to_numpy() if "country" in df else np.full(n, None, dtype=object)
    out["blackout"] = blackout_names(ctx.calendar, date, countries, c.channel, c.product, ctx.as_of)
    out["offer_cost_cents"] = offer_cost_cents(df, c)

    h = ctx.history
    h = h[h["player_id"].isin(pids)] if len(h) else h
    offered_before = np.isin(pids, list(ctx.bonus_offered)) if ctx.bonus_offered else np.zeros(n, bool)
    out["cluster_offer_taken_by"] = _cluster_offer_taken(pids, c, ctx)
    if not len(h):
        zeros = np.zeros(n, dtype=np.int64)
        for col in ("channel_day", "channel_week", "all_day", "all_week", "duplicates", "bonus_offers_today",
                    "cost_today_cents"):
            out[col] = zeros
        out["nearest_hours"] = np.full(n, np.nan)
        out["last_duplicate_at"] = np.full(n, np.datetime64("NaT", "ns"))
        out["running_offer_until"] = np.full(n, np.datetime64("NaT", "ns"))
        out["bonus_before"] = offered_before
        return pd.DataFrame(out, index=df.index)
    send = np.datetime64(send_at, "us")
    today = np.datetime64(ctx.as_of, "D")
    sent = h["sent_at"].to_numpy(dtype="datetime64[us]")
    sent = np.where(np.isnat(sent), send, sent)  # a message of unknown time: as if sent now (fail closed)
    day = sent.astype("datetime64[D]")
    # an issued offer (POST /v1/offers/generate) is a bonus in the ledger, not a message: it counts
    # for the bonus and cost rules and dedup, never for a cap or the cooldown
    message = (h["source"] != OFFER_ISSUED).to_numpy(dtype=bool)
    is_today = day == today
    in_week = (day >= today - 6) & (day <= today) & message
    on_channel = (h["channel"] == c.channel).to_numpy() & message
    gap_hours = np.abs(sent - send) / _HOUR
    dup = (h["dedup_key"] == c.dedup_key).to_numpy() & (gap_hours < caps["dedup_days"] * 24)
    bonus = h["is_bonus_offer"].to_numpy(dtype=bool)
    ends = h["offer_ends_at"].to_numpy(dtype="datetime64[us]")
    running = bonus & (day < today) & ~np.isnat(ends) & (ends > send)
    agg = pd.DataFrame({
        "channel_day": is_today & on_channel, "channel_week": in_week & on_channel,
        "all_day": is_today & message, "all_week": in_week, "duplicates": dup, "bonus_offers_today": bonus & is_today,
        "cost_today_cents": np.where(is_today, h["cost_cents"].to_numpy(dtype=np.int64), 0),
        "nearest_hours": np.where(message, gap_hours, np.nan),
        "last_duplicate_at": np.where(dup, sent, np.datetime64("NaT", "us")),
        "running_offer_until": np.where(running, ends, np.datetime64("NaT", "us")),
        "bonus_ever": bonus,
    }).groupby(h["player_id"].to_numpy()).agg({
        "channel_day": "sum", "channel_week": "sum", "all_day": "sum", "all_week": "sum", "duplicates": "sum",
        "bonus_offers_today": "sum", "cost_today_cents": "sum", "nearest_hours": "min",
        "last_duplicate_at": "max", "running_offer_until": "max", "bonus_ever": "any",
    }).reindex(pids)
    for col in ("channel_day", "channel_week", "all_day", "all_week", "duplicates", "bonus_offers_today",
                "cost_today_cents"):
        out[col] = agg[col].fillna(0).astype(np.int64).to_numpy()
    out["nearest_hours"] = agg["nearest_hours"].astype(float).to_numpy()
    out["last_duplicate_at"] = agg["last_duplicate_at"].to_numpy(dtype="datetime64[us]")
    out["running_offer_until"] = agg["running_offer_until"].to_numpy(dtype="datetime64[us]")
    ever = agg["bonus_ever"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    out["bonus_before"] = ever | offered_before
    return pd.DataFrame(out, index=df.index)


def _cluster_offer_taken(pids: np.ndarray, c: CampaignSpec, ctx: Context) -> np.ndarray:
    """Per player of a bonus campaign: another account of their cluster that already got this
    campaign's bonus offer (a bonus message or issued offer of the history with its dedup key), or,
    failing that, the cluster's first account (by id) among this list's players, which is the one
    that gets it; None when the offer is theirs to take (no cluster, or they are that first one)."""
    out = np.full(len(pids), None, dtype=object)
    if not c.offer.is_bonus or not ctx.clusters:
        return out
    clusters = ctx.clusters
    mine = [(i, p, clusters.get(p)) for i, p in enumerate(pids) if clusters.get(p) is not None]
    if not mine:
        return out
    takers: dict[str, set[str]] = {}
    h = ctx.history
    if len(h):
        took = h[h["is_bonus_offer"].astype("boolean").fillna(True).to_numpy(dtype=bool)
                 & (h["dedup_key"] == c.dedup_key).to_numpy(dtype=bool)]
        for p in took["player_id"].astype(str).unique():
            if clusters.get(p) is not None:
                takers.setdefault(clusters[p], set()).add(p)
    first: dict[str, str] = {}
    for _, p, k in sorted(mine, key=lambda t: t[1]):
        first.setdefault(k, p)
    for i, p, k in mine:
        others = takers.get(k, set()) - {p}
        out[i] = min(others) if others else (first[k] if first[k] != p else None)
    return out


# --------------------------------------------------------------------------- rules

Frame = pd.DataFrame
Predicate = Callable[[Frame, Frame, CampaignSpec, Context], np.ndarray]
Observed = Callable[[Frame, Frame, CampaignSpec, Context], list[str]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    passes: Predicate
    observed: Observed
    transactional_bypass: bool = False
    reason: str = ""  # why a player failing it is left out, in plain words (lists' summaries, crm explain)


def _col(df: Frame, name: str) -> list:
    """A column's values for display: missing (absent, NULL, NaN) as 'unknown'."""
    if name not in df:
        return ["unknown"] * len(df)
    return ["unknown" if v is None or (not isinstance(v, str) and pd.isna(v)) else v for v in df[name].tolist()]


def _in_quiet_hours(df: Frame, f: Frame) -> np.ndarray:
    quiet = _jurisdiction(df, "quiet_hours")
    start = np.asarray([q[0] * 60 for q in quiet], dtype=float)
    end = np.asarray([q[1] * 60 for q in quiet], dtype=float)
    m = f["local_minute"].to_numpy(dtype=float)
    wraps = start > end
    with np.errstate(invalid="ignore"):
        inside = np.where(wraps, (m >= start) | (m < end), (m >= start) & (m < end))
    return inside | np.isnan(m)  # unknown local time: treated as quiet (fail closed)


def _bonus_only(passes: Predicate) -> Predicate:
    return lambda df, f, c, ctx: passes(df, f, c, ctx) if c.offer.is_bonus else _all(df)


def _no_bonus_note(c: CampaignSpec) -> str:
    return f"not applicable: the offer ({c.offer.template}) is not a bonus"


def _names_product(df: Frame, col: str, product: str, missing: bool) -> np.ndarray:
    """Per row: the comma-separated product list ``col`` names ``product`` (absent column: ``missing``)."""
    if col not in df:
        return np.full(len(df), missing, dtype=bool)
    if not len(df):
        return np.zeros(0, dtype=bool)
    codes, lists = _text_codes(df[col])
    return np.asarray([product in v.split(",") for v in lists], dtype=bool)[codes]


def _product_consent(df: Frame, c: CampaignSpec) -> np.ndarray:
    """A product the player withdrew on the channel is never promoted there, in any jurisdiction;
    where the jurisdiction asks for consent per product, the product must also be consented.
    Without the withdrawn column (an older profile) nothing is known withdrawn only where the
    jurisdiction does not ask for product consent anyway."""
    required = _jurisdiction(df, "product_consent_required").astype(bool)
    granted = _names_product(df, consent_products_column(c.channel), c.product, missing=False)
    withdrawn = _names_product(df, consent_withdrawn_column(c.channel), c.product, missing=False)
    return ~withdrawn & (~required | granted)


def _bonus_first_occasion(df: Frame, f: Frame) -> np.ndarray:
    only_first = _jurisdiction(df, "bonus_first_occasion_only").astype(bool)
    received = (pd.to_numeric(df["bonuses_received"], errors="coerce").to_numpy(dtype=float)
                if "bonuses_received" in df else np.full(len(df), np.nan))
    never = (np.nan_to_num(received, nan=1) == 0) & ~f["bonus_before"].to_numpy(dtype=bool)
    return ~only_first | never


def _cap(f: Frame, col: str, cap: float) -> np.ndarray:
    return f[col].to_numpy() < cap


def _consent_observed(df: Frame, c: CampaignSpec) -> list[str]:
    ch = consent_column(c.channel)
    return [f"{ch}={v} (version {ver}, last change {src} at {at})" for v, ver, src, at in zip(
        _col(df, ch), _col(df, f"{ch}_version"), _col(df, f"{ch}_source"), _col(df, f"{ch}_changed_at"), strict=True)]


def _hours(x: float) -> str:
    return "none" if x is None or np.isnan(x) else f"{x:.1f} h from this send"


def _ts(x) -> str:
    return "-" if pd.isna(x) else pd.Timestamp(x).strftime("%Y-%m-%d %H:%M UTC")


def _count_obs(col: str, what: str, cap_key: str, period: str) -> Observed:
    def obs(df: Frame, f: Frame, c: CampaignSpec, ctx: Context) -> list[str]:
        cap = effective_caps(c, ctx.policy)[cap_key]
        return [f"{n} {what(c)}message{'s' if n != 1 else ''} {period} before this one (sent or planned); "
                f"cap {cap:g}" for n in f[col].tolist()]
    return obs


RULES: tuple[Rule, ...] = (
    Rule("outside_schedule", "the as-of date is within the campaign's schedule (dates, weekdays)",
         lambda df, f, c, ctx: _all(df, c.schedule.active_on(ctx.as_of)),
         lambda df, f, c, ctx: [f"as-of {ctx.as_of} ({ctx.as_of:%a}); schedule {c.schedule.start or 'open'} .. "
                                f"{c.schedule.end or 'open'}, weekdays {c.schedule.weekdays or 'all'}"] * len(df),
         reason="The campaign does not run on this date (outside its schedule)"),
    Rule("under_age", "player is at least the jurisdiction's minimum age",
         lambda df, f, c, ctx: _at_least(_age(df), _jurisdiction(df, "min_age")),
         lambda df, f, c, ctx: [f"age {a}, minimum {m} ({j})" for a, m, j in
                                zip(_col(df, "age_years"), _jurisdiction(df, "min_age"), _col(df, "country"),
                                    strict=True)],
         reason="Under the minimum age in their country"),
    Rule("age_not_verified", "age verified where the jurisdiction requires it",
         lambda df, f, c, ctx: _flag(df, "age_verified", False) | ~_jurisdiction(
             df, "age_verification_required").astype(bool),
         lambda df, f, c, ctx: [f"age_verified={v}; required in {j}: {r}" for v, r, j in
                                zip(_col(df, "age_verified"), _jurisdiction(df, "age_verification_required"),
                                    _col(df, "country"), strict=True)],
         reason="Age not verified, and their country requires it"),
    Rule("self_excluded", "not self-excluded now",
         lambda df, f, c, ctx: ~_flag(df, "self_excluded_now", True),
         lambda df, f, c, ctx: [f"self_excluded_now={v}" for v in _col(df, "self_excluded_now")],
         reason="Self-excluded from gambling"),
    Rule("excluded_not_returned", "an ended self-exclusion stays suppressed until the player returns",
         lambda df, f, c, ctx: ~_flag(df, "ever_self_excluded", True) | _flag(df, "returned_after_exclusion", False),
         lambda df, f, c, ctx: [f"ever_self_excluded={e}, returned_after_exclusion={r}" for e, r in
                                zip(_col(df, "ever_self_excluded"), _col(df, "returned_after_exclusion"),
                                    strict=True)],
         reason="Was self-excluded and has not played again since the exclusion ended"),
    Rule("linked_self_excluded", "no account linked to the player (the same person by shared identifiers) is "
         "self-excluded or cooling off, or was excluded and has not played since",
         lambda df, f, c, ctx: ~_flag(df, "linked_self_excluded", False),
         lambda df, f, c, ctx: [f"linked_self_excluded={v} (linked account {p})" if v not in ("unknown", False)
                                else f"linked_self_excluded={v}" for v, p in
                                zip(_col(df, "linked_self_excluded"), _col(df, "linked_excluded_player"),
                                    strict=True)],
         reason="Another account of the same person is self-excluded"),
    Rule("cooling_off", "not in a cooling-off period",
         lambda df, f, c, ctx: ~_flag(df, "cooling_off_now", True),
         lambda df, f, c, ctx: [f"cooling_off_now={v}" for v in _col(df, "cooling_off_now")],
         reason="Taking a cooling-off break"),
    Rule("harm_risk", "no strong harm indicators",
         lambda df, f, c, ctx: ~_flag(df, "harm_risk_flag", True),
         lambda df, f, c, ctx: [f"harm_risk_flag={v}" for v in _col(df, "harm_risk_flag")],
         reason="Shows signs of gambling harm (responsible-gambling flag)"),
    Rule("no_channel_consent", "valid opt-in for the campaign's channel, not revoked, unsubscribed or complained",
         lambda df, f, c, ctx: _flag(df, consent_column(c.channel), False),
         lambda df, f, c, ctx: _consent_observed(df, c),
         reason="Has not agreed to messages on this channel (or unsubscribed or complained)"),
    Rule("no_profiling_consent", "ML targeting only with profiling consent",
         lambda df, f, c, ctx: _flag(df, "consent_profiling", False) if c.uses_ml else _all(df),
         lambda df, f, c, ctx: [f"ML targeting: {c.uses_ml}; consent_profiling={v}"
                                for v in _col(df, "consent_profiling")],
         reason="Has not agreed to profiling, which this campaign's model-based targeting needs"),
    Rule("bonus_under_jurisdiction_age", "no targeted bonus below the jurisdiction's bonus age (NL: 24)",
         _bonus_only(lambda df, f, c, ctx: _at_least(_age(df), _jurisdiction(df, "min_age_targeted_bonus"))),
         lambda df, f, c, ctx: [f"age {a}, bonus age {m} ({j})" if c.offer.is_bonus else _no_bonus_note(c)
                                for a, m, j in zip(_col(df, "age_years"), _jurisdiction(df, "min_age_targeted_bonus"),
                                                   _col(df, "country"), strict=True)],
         reason="Too young for bonus offers in their country (Netherlands: under 24)"),
    Rule("wagering_over_cap", "offer wagering within the jurisdiction's cap (UK: 10x)",
         _bonus_only(lambda df, f, c, ctx: np.asarray(
             [cap is None or c.offer.wagering <= cap for cap in _jurisdiction(df, "max_wagering")], dtype=bool)),
         lambda df, f, c, ctx: [f"wagering {c.offer.wagering:g}x, cap {'none' if m is None else f'{m:g}x'} ({j})"
                                if c.offer.is_bonus else _no_bonus_note(c)
                                for m, j in zip(_jurisdiction(df, "max_wagering"), _col(df, "country"), strict=True)],
         reason="The offer's wagering is above their country's limit (UK: 10x)"),
    Rule("no_product_consent", "the campaign's product not withdrawn on its channel, and consented where the "
                               "jurisdiction asks for consent per product (UK, DE)",
         lambda df, f, c, ctx: _product_consent(df, c),
         lambda df, f, c, ctx: [f"{j} asks consent per product: {r}; {c.channel} consent for products "
                                f"{p or 'none'}, withdrawn for {w or 'none'}; campaign product {c.product}"
                                for j, r, p, w in zip(_col(df, "country"),
                                                      _jurisdiction(df, "product_consent_required"),
                                                      _col(df, consent_products_column(c.channel)),
                                                      _col(df, consent_withdrawn_column(c.channel)),
                                                      strict=True)],
         reason="Has not agreed to messages about this product on this channel (or withdrew it)"),
    Rule("bonus_not_first_occasion", "a bonus only on the first occasion where the jurisdiction asks (SE)",
         _bonus_only(lambda df, f, c, ctx: _bonus_first_occasion(df, f)),
         lambda df, f, c, ctx: [f"{j}: first occasion only: {r}; bonuses received {n} (first {first}); "
                                f"bonus offer of ours before: {b}" if c.offer.is_bonus else _no_bonus_note(c)
                                for j, r, n, first, b in zip(_col(df, "country"),
                                                             _jurisdiction(df, "bonus_first_occasion_only"),
                                                             _col(df, "bonuses_received"), _col(df, "first_bonus_at"),
                                                             f["bonus_before"].tolist(), strict=True)],
         reason="Already had a bonus, and their country allows a bonus only once (Sweden)"),
    Rule("bonus_risk_flagged", "bonus offers only to players not flagged for bonus abuse (a risk score above the "
         "threshold waiting for review, or abuse confirmed by a reviewer)",
         _bonus_only(lambda df, f, c, ctx: ~_flag(df, "risk_flagged", False)),
         lambda df, f, c, ctx: [f"risk_flagged={v}, review {r}" if c.offer.is_bonus else _no_bonus_note(c)
                                for v, r in zip(_col(df, "risk_flagged"), _col(df, "risk_review"), strict=True)],
         reason="Flagged for bonus abuse (waiting for review, or confirmed)"),
    Rule("cluster_took_offer", "bonus offers: no other account of the player's cluster (the same person) already "
         "got this campaign's bonus offer, or gets it in this list (the cluster's first account by id does)",
         _bonus_only(lambda df, f, c, ctx: pd.isna(f["cluster_offer_taken_by"]).to_numpy(dtype=bool)),
         lambda df, f, c, ctx: [(f"taken by linked account {t}" if isinstance(t, str) else
                                 "no linked account took it") if c.offer.is_bonus else _no_bonus_note(c)
                                for t in f["cluster_offer_taken_by"].tolist()],
         reason="Another account of the same person already got this bonus offer"),
    Rule("blackout", "the player's local send date is outside the calendar's blackout windows",
         lambda df, f, c, ctx: (f["blackout"].isna()).to_numpy(dtype=bool),
         lambda df, f, c, ctx: [f"local send date {'unknown' if pd.isna(d) else pd.Timestamp(d).date()}: "
                                f"{'blackout ' + repr(b) if b else 'no blackout'}"
                                for d, b in zip(f["local_date"].tolist(), f["blackout"].tolist(), strict=True)],
         reason="A blackout day for their country, channel or product (campaign calendar)"),
    Rule("quiet_hours", "the send is outside the jurisdiction's quiet hours in the player's local time",
         lambda df, f, c, ctx: ~_in_quiet_hours(df, f),
         lambda df, f, c, ctx: [
             (f"send {c.schedule.send_time_utc} UTC = {int(m) // 60:02d}:{int(m) % 60:02d} local ({tz}); "
              if not np.isnan(m) else "local time unknown (no valid time zone); ")
             + f"quiet hours {q[0]:02d}:00-{q[1]:02d}:00"
             for m, tz, q in zip(f["local_minute"].tolist(), f["timezone_used"].tolist(),
                                 _jurisdiction(df, "quiet_hours"), strict=True)],
         transactional_bypass=True,
         reason="The send time is in their quiet hours (night, local time)"),
    Rule("channel_cap_day", "messages on this channel today within the daily cap",
         lambda df, f, c, ctx: _cap(f, "channel_day", effective_caps(c, ctx.policy)["channel_day"]),
         _count_obs("channel_day", lambda c: f"{c.channel} ", "channel_day", "today"), transactional_bypass=True,
         reason="Already has the most messages allowed on this channel today"),
    Rule("channel_cap_week", "messages on this channel in 7 days within the weekly cap",
         lambda df, f, c, ctx: _cap(f, "channel_week", effective_caps(c, ctx.policy)["channel_week"]),
         _count_obs("channel_week", lambda c: f"{c.channel} ", "channel_week", "this week"), transactional_bypass=True,
         reason="Already has the most messages allowed on this channel this week"),
    Rule("global_cap_day", "messages on all channels today within the global daily cap",
         lambda df, f, c, ctx: _cap(f, "all_day", effective_caps(c, ctx.policy)["global_day"]),
         _count_obs("all_day", lambda c: "", "global_day", "today (all channels)"), transactional_bypass=True,
         reason="Already has the most messages allowed today (all channels)"),
    Rule("global_cap_week", "messages on all channels in 7 days within the global weekly cap",
         lambda df, f, c, ctx: _cap(f, "all_week", effective_caps(c, ctx.policy)["global_week"]),
         _count_obs("all_week", lambda c: "", "global_week", "this week (all channels)"), transactional_bypass=True,
         reason="Already has the most messages allowed this week (all channels)"),
    Rule("cooldown", "no other message closer to this send than the cooldown",
         lambda df, f, c, ctx: ~(f["nearest_hours"].to_numpy(dtype=float)
                                 < effective_caps(c, ctx.policy)["cooldown_hours"]),
         lambda df, f, c, ctx: [f"nearest other message: {_hours(x)}; cooldown "
                                f"{effective_caps(c, ctx.policy)['cooldown_hours']:g} h"
                                for x in f["nearest_hours"].tolist()], transactional_bypass=True,
         reason="Gets another message too close to this one (cooldown)"),
    Rule("duplicate", "no message with the same dedup key (campaign or event) within the dedup window",
         lambda df, f, c, ctx: f["duplicates"].to_numpy() == 0,
         lambda df, f, c, ctx: [f"{n} message(s) with dedup key {c.dedup_key!r} within "
                                f"{effective_caps(c, ctx.policy)['dedup_days']:g} days (last {_ts(t)})"
                                for n, t in zip(f["duplicates"].tolist(), f["last_duplicate_at"].tolist(),
                                                strict=True)],
         reason="Already got this message, or one with the same purpose, recently"),
    Rule("bonus_already_today", "at most one bonus offer per player per day across campaigns (priority decides)",
         _bonus_only(lambda df, f, c, ctx: f["bonus_offers_today"].to_numpy()
                     < effective_caps(c, ctx.policy)["bonus_offers_per_day"]),
         lambda df, f, c, ctx: [f"{n} bonus offer(s) already sent or planned today; at most "
                                f"{effective_caps(c, ctx.policy)['bonus_offers_per_day']} per day"
                                if c.offer.is_bonus else _no_bonus_note(c) for n in f["bonus_offers_today"].tolist()],
         reason="Already gets another bonus offer today (a higher-priority campaign)"),
    Rule("active_bonus", "no bonus offer of ours still running (sent earlier, not expired)",
         _bonus_only(lambda df, f, c, ctx: np.isnat(f["running_offer_until"].to_numpy(dtype="datetime64[us]"))),
         lambda df, f, c, ctx: [(f"our bonus offer runs until {_ts(t)}" if not pd.isna(t) else "no running offer")
                                if c.offer.is_bonus else _no_bonus_note(c)
                                for t in f["running_offer_until"].tolist()],
         reason="Still has one of our bonus offers running"),
    Rule("cost_per_player_day", "the player's offers today, this one included, within the max cost per player per day",
         lambda df, f, c, ctx: (f["offer_cost_cents"].to_numpy() == 0) | (
             f["cost_today_cents"].to_numpy() + f["offer_cost_cents"].to_numpy()
             <= effective_caps(c, ctx.policy)["cost_per_player_day_cents"]),
         lambda df, f, c, ctx: [f"offers today {t:,} + this {o:,} EUR cents; cap "
                                f"{effective_caps(c, ctx.policy)['cost_per_player_day_cents']:,} EUR cents"
                                for t, o in zip(f["cost_today_cents"].tolist(), f["offer_cost_cents"].tolist(),
                                                strict=True)],
         reason="Their offers today would exceed the most we offer one player per day"),
)

RULE_NAMES: tuple[str, ...] = tuple(r.name for r in RULES)
_BY_NAME = {r.name: r for r in RULES}

# Players cut after eligibility (``after_eligibility`` in the suppression report), by name.
NOT_TARGETED_BY_UPLIFT, CAMPAIGN_BUDGET, MAX_LIST_SIZE = "not_targeted_by_uplift", "campaign_budget", "max_list_size"
HELD_OUT_RECENTLY = "held_out_recently"
CUTS: dict[str, str] = {
    HELD_OUT_RECENTLY: "Eligible, but held out of this campaign within its dedup window (a holdout player is "
                       "assigned once per window, as a contacted one is; listing them again would inflate the "
                       "holdout)",
    NOT_TARGETED_BY_UPLIFT: "Eligible, but not picked by uplift targeting (predicted gain too low or none, "
                            "or the budget was spent on players with a higher predicted gain)",
    CAMPAIGN_BUDGET: "Eligible, but the campaign's budget ran out before reaching them",
    MAX_LIST_SIZE: "Eligible, but the list was full (the campaign's max_list_size)",
}
# The one table of plain-language reasons a player is left out: every rule's, then the cuts after
# eligibility. The suppression report, the marketer's list.xlsx and `crm explain` all read it.
REASONS: dict[str, str] = {r.name: r.reason for r in RULES} | CUTS


def reason_text(name: str) -> str:
    """The plain-language reason for a rule or cut name (:data:`REASONS`); the name itself if unknown."""
    return REASONS.get(name, name)


def default_context() -> Context:
    """No history, no calendar, the policy; dated today (callers that build lists pass their own)."""
    return Context(as_of=dt.date.today())


def _passes(profile: pd.DataFrame, campaign: CampaignSpec, ctx: Context, f: pd.DataFrame) -> np.ndarray:
    cols = []
    for rule in RULES:
        if campaign.transactional and rule.transactional_bypass:
            cols.append(_all(profile))
        else:
            cols.append(np.asarray(rule.passes(profile, f, campaign, ctx), dtype=bool).reshape(len(profile)))
    return np.column_stack(cols) if cols and len(profile) else np.ones((len(profile), len(RULES)), dtype=bool)


def _failed_names(passes: np.ndarray) -> np.ndarray:
    """Comma-joined failing rule names per row (vectorised through a bitmask of failures)."""
    if not len(passes):
        return np.empty(0, dtype=object)
    weights = (1 << np.arange(passes.shape[1], dtype=np.int64))
    code = (~passes).astype(np.int64) @ weights
    uniq, inverse = np.unique(code, return_inverse=True)
    names = np.asarray(RULE_NAMES, dtype=object)
    text = _objects([",".join(names[(u & weights) != 0]) for u in uniq])
    return text[inverse]


def evaluate(profile: pd.DataFrame, campaign: CampaignSpec, context: Context | None = None) -> pd.DataFrame:
    """One row per profile row: ``pass__<rule>`` columns, ``eligible``, ``reason`` and ``failed``.

    ``reason`` is the first failing rule (None when eligible); ``failed`` lists them all.
    ``context``: the as-of date, history, calendar and policy (default: :func:`default_context`).
    """
    ctx = context if context is not None else default_context()
    f = contact_features(profile, campaign, ctx)
    passes = _passes(profile, campaign, ctx, f)
    out = pd.DataFrame(passes, index=profile.index, columns=[f"pass__{n}" for n in RULE_NAMES])
    out["eligible"] = passes.all(axis=1)
    first_fail = np.argmin(passes, axis=1) if len(passes) else np.empty(0, dtype=np.int64)
    names = np.asarray(RULE_NAMES, dtype=object)
    out["reason"] = np.where(out["eligible"].to_numpy(), None, names[first_fail])
    out["failed"] = _failed_names(passes)
    return out


def explain(profile: pd.DataFrame, campaign: CampaignSpec, context: Context) -> list[list[dict]]:
    """Per profile row: each rule's verdict (pass / FAIL / bypassed) with the observed value.

    The verdicts come from the same predicates and contact features as :func:`evaluate`.
    """
    f = contact_features(profile, campaign, context)
    passes = _passes(profile, campaign, context, f)
    observed = {r.name: r.observed(profile, f, campaign, context) for r in RULES}
    out = []
    for i in range(len(profile)):
        rows = []
        for j, rule in enumerate(RULES):
            bypassed = campaign.transactional and rule.transactional_bypass
            rows.append({"rule": rule.name, "description": rule.description, "reason": rule.reason,
                         "verdict": "bypassed (transactional)" if bypassed else ("pass" if passes[i, j] else "FAIL"),
                         "passed": bool(passes[i, j]), "observed": observed[rule.name][i]})
        out.append(rows)
    return out


def suppression_counts(verdicts: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Counts by first failing rule and by every failing rule."""
    first = verdicts["reason"].dropna().value_counts()
    every = {n: int((~verdicts[f"pass__{n}"]).sum()) for n in RULE_NAMES}
    return {"first_failing_rule": {k: int(v) for k, v in sorted(first.items(), key=lambda kv: (-kv[1], kv[0]))},
            "every_failing_rule": {k: v for k, v in every.items() if v}}


RULE_TABLE = "eligibility rules (code)"  # its name among the config_changed entries of the audit log


def rule_table_version() -> tuple[str, str]:
    """(sha256, text) of the rule table in force: each rule's name, what it checks and in which
    order, each jurisdiction's parameters, and the policy's defaults as text; the hash also covers
    the source of this module and :mod:`crm.campaigns.jurisdictions`, so a change of a rule's code
    that leaves its words alone is a new version too. The rules are code (reviewed in git); this
    puts each version in force in the audit log, beside the offer catalogue's and calendar's
    (:func:`crm.campaigns.approvals.record_config_changes`)."""
    import hashlib
    import inspect
    import sys

    from crm.campaigns import jurisdictions

    lines = ["Rules, in order (a player must pass every one):"]
    lines += [f"{i}. {r.name}: {r.description}" + (" [bypassed by transactional messages]"
                                                   if r.transactional_bypass else "")
              for i, r in enumerate(RULES, 1)]
    lines += ["", "Jurisdictions:"]
    lines += [repr(j) for j in (*jurisdictions.RULES.values(), jurisdictions.STRICTEST)]
    lines += ["", f"House policy defaults: {POLICY!r}"]
    text = "\n".join(lines) + "\n"
    digest = hashlib.sha256(text.encode())
    for module in (sys.modules[__name__], jurisdictions):
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest(), text
