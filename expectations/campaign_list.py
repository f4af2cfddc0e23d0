"""The gate on every campaign list before dispatch.

The eligibility check here is recomputed from the player profile with its own SQL, on
purpose *not* with :mod:`crm.campaigns.eligibility`: a gate that trusted the list builder's code would
pass the builder's bugs. It checks the core compliance rules (channel consent,
self-exclusion now or ended without return, cooling-off, harm flag, minimum age, profiling
consent for any row that carries a model score), the jurisdiction rules that the profile can
prove (NL: no bonus under 24; UK: wagering at most 10x; UK and DE: consent naming the list's
product; everywhere: the product not withdrawn on the channel; SE: no bonus to a player who
already had one; an unknown jurisdiction gets all of them) and that the player exists in the
profile. For a campaign targeted by uplift it also checks, from the list alone, that the
offer cost of the treated (non-holdout) rows is within the budget and that every listed
player's predicted uplift is above the campaign's minimum.

Across the day, it checks for each treated player of this list, against what was already
sent on the as-of date (``sent``: the outbox of the day, every campaign's, read on its own by
:func:`read_sent`) plus what the published lists of the higher-priority campaigns of the same
date will send (``day_lists``; a listed row already in the outbox is that message, counted
once), that the day's offers stay within the cost per player per day, that nobody gets a
second bonus offer that day, that the per-channel and global daily message caps hold, and
that no other message is within the cooldown of this one (the last three skipped for a
transactional campaign, which may bypass them). This campaign's own messages already sent
that day are the same messages as its listed rows (dispatch's idempotency key: campaign,
as-of date, player, channel) and are not counted against them; those no longer listed were
sent all the same and count, for its players and for its budget. So a re-run of a dispatched
date that would double-offer fails here. Messages of earlier days count only for the cooldown
(the outbox of the day before); the builder counts the rest.

List size: within a band around the median size of the campaign's recent runs
(:func:`recent_list_sizes` reads the earlier manifests under ``lists/<campaign>/``;
:func:`list_size_band`); without history the expectation is skipped with a note.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import duckdb
import great_expectations as gx
import pandas as pd

from crm.sql import ident
from expectations.thresholds import threshold
from expectations.validate import GateResult, outcome, validate

REQUIRED_COLUMNS = ("player_id", "campaign_id", "channel", "variant", "as_of_date", "offer_cost_eur_cents")
SUITE = "campaign_list"
NO_OFFER = "none"  # every other offer_template (or a missing one) is a bonus for the rules: fail closed
# the columns day_checks writes, one per DayLimits field, in the same order
_DAY_CHECK_COLUMNS = ("day_cost_within_cap", "one_bonus_offer_per_day", "channel_day_cap", "global_day_cap",
                      "cooldown")
SENT_COLUMNS = ("player_id", "campaign_id", "channel", "as_of_date", "offer_template", "offer_cost_eur_cents",
                "sent_at")

# The gate's own copies of the vocabulary (crm.contract, ml.models), on purpose: a gate that read
# the builder's names would pass the builder's mistakes. tests/test_vocabulary.py keeps them equal.
CHANNELS = ("email", "push", "sms", "in_app")
JURISDICTIONS = ("UK", "MT", "NL", "SE", "DE")
OFFER_NAME = "offer_name"  # a row's offer of a campaign that chooses it per player (GateContext.offer_choices)
UPLIFT_SCORE_COLUMN = "uplift_value_score"  # the gross predicted value of the offer (EUR cents)
VALUE_COLUMN = "predicted_value_eur_cents"  # that value net of the row's offer cost: what `target: by: uplift` ranks by

_KNOWN = "(" + ", ".join(f"'{j}'" for j in JURISDICTIONS) + ")"
_BONUS = "l.offer_template IS DISTINCT FROM 'none'"
# the rules of a jurisdiction apply to it and to any unknown one (the strictest set)
_IN = "(p.country = '{code}' OR p.country IS NULL OR p.country NOT IN " + _KNOWN + ")"

_RECOMPUTE_SQL = """
SELECT l.player_id,
       coalesce(
         CASE WHEN p.player_id IS NULL THEN 'not in profile' END,
         CASE WHEN coalesce(p.age_years, 0) < 18 THEN 'under 18' END,
         CASE WHEN coalesce(p.self_excluded_now, true) THEN 'self-excluded' END,
         CASE WHEN coalesce(p.ever_self_excluded, true)
                   AND NOT coalesce(p.returned_after_exclusion, false) THEN 'excluded, not returned' END,
         CASE WHEN coalesce(p.linked_self_excluded, false) THEN 'a linked account is self-excluded' END,
         CASE WHEN coalesce(p.cooling_off_now, true) THEN 'cooling off' END,
         CASE WHEN coalesce(p.harm_risk_flag, true) THEN 'harm risk' END,
         CASE WHEN NOT coalesce(
                CASE l.channel WHEN 'email' THEN p.consent_email WHEN 'push' THEN p.consent_push
                               WHEN 'sms' THEN p.consent_sms WHEN 'in_app' THEN p.consent_in_app END,
                false) THEN 'no consent for ' || l.channel END,
         CASE WHEN ({scored}) AND NOT coalesce(p.consent_profiling, false)
              THEN 'scored without profiling consent' END,
         CASE WHEN {bonus} AND {nl} AND coalesce(p.age_years, 0) < 24 THEN 'bonus under 24 (NL)' END,
         CASE WHEN {bonus} AND coalesce(p.risk_flagged, false) THEN 'bonus to a player flagged for abuse' END,
         CASE WHEN {bonus} AND {uk} AND coalesce(l.offer_wagering, 1e9) > 10 THEN 'wagering over 10x (UK)' END,
         CASE WHEN {bonus} AND {se} AND coalesce(p.bonuses_received, 1) > 0
              THEN 'bonus after a first bonus (SE)' END,
         CASE WHEN coalesce(list_contains(string_split(
                CASE l.channel WHEN 'email' THEN p.consent_email_products_withdrawn
                               WHEN 'push' THEN p.consent_push_products_withdrawn
                               WHEN 'sms' THEN p.consent_sms_products_withdrawn
                               WHEN 'in_app' THEN p.consent_in_app_products_withdrawn
                END, ','), l.product), false)
              THEN 'product ' || l.product || ' withdrawn on ' || l.channel END,
         CASE WHEN ({uk} OR {de}) AND NOT coalesce(list_contains(string_split(
                CASE l.channel WHEN 'email' THEN p.consent_email_products WHEN 'push' THEN p.consent_push_products
                               WHEN 'sms' THEN p.consent_sms_products WHEN 'in_app' THEN p.consent_in_app_products
                END, ','), l.product), false)
              THEN 'no consent for product ' || coalesce(l.product, '?') || ' (' || coalesce(p.country, '?') || ')' END
       ) AS violation
FROM lst l LEFT JOIN profile p USING (player_id)
"""


# Columns the checks read; absent ones are NULL, which every check but the linked one treats as failing.
_PROFILE_COLUMNS = {
    "player_id": "VARCHAR", "country": "VARCHAR", "age_years": "DOUBLE", "self_excluded_now": "BOOLEAN",
    "ever_self_excluded": "BOOLEAN", "returned_after_exclusion": "BOOLEAN", "cooling_off_now": "BOOLEAN",
    "harm_risk_flag": "BOOLEAN", "consent_profiling": "BOOLEAN", "bonuses_received": "DOUBLE",
    "linked_self_excluded": "BOOLEAN",  # NULL: no linked account (or linking never ran), not a failure
    "risk_flagged": "BOOLEAN",  # NULL: not scored (or scoring never ran), not a failure
    **{f"consent_{ch}": "BOOLEAN" for ch in CHANNELS},
    **{f"consent_{ch}_products": "VARCHAR" for ch in CHANNELS},
    **{f"consent_{ch}_products_withdrawn": "VARCHAR" for ch in CHANNELS},
}
_LIST_COLUMNS = {"player_id": "VARCHAR", "channel": "VARCHAR", "product": "VARCHAR", "offer_template": "VARCHAR",
                 "offer_wagering": "DOUBLE"}


def _typed(name: str, df: pd.DataFrame, columns: dict[str, str]) -> str:
    """A SELECT over registered frame ``name`` with every column of ``columns`` (NULL when absent)."""
    return ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' if c in df.columns else f'CAST(NULL AS {t}) AS "{c}"'
                     for c, t in columns.items())


def recompute_violations(lst: pd.DataFrame, profile: pd.DataFrame) -> pd.Series:
    """Per list row, the first compliance violation found from the profile, or None."""
    if lst.empty:
        return pd.Series([], dtype=object)
    con = duckdb.connect()
    try:
        frame = lst.reset_index(drop=True).assign(_row=lambda d: range(len(d)))
        con.register("lst_raw", frame)
        con.register("profile_raw", profile)
        scores = [c for c in lst.columns if str(c).endswith("_score")]
        con.execute(f"CREATE TEMP VIEW lst AS SELECT _row, {_typed('lst_raw', frame, _LIST_COLUMNS)}"
                    + "".join(f", {ident(c)}" for c in scores) + " FROM lst_raw")
        con.execute(f"CREATE TEMP VIEW profile AS SELECT {_typed('profile_raw', profile, _PROFILE_COLUMNS)} "
                    "FROM profile_raw")
        # Any model score on a row (churn, deposit intent, uplift, ...) is profiling.
        scored = " OR ".join(f"l.{ident(c)} IS NOT NULL" for c in scores) or "false"
        sql = _RECOMPUTE_SQL.format(scored=scored, bonus=_BONUS, nl=_IN.format(code="NL"), uk=_IN.format(code="UK"),
                                    de=_IN.format(code="DE"), se=_IN.format(code="SE")).replace(
            "SELECT l.player_id,", "SELECT l._row, l.player_id,")
        out = con.execute(sql + " ORDER BY l._row").df()
    finally:
        con.close()
    return out["violation"]


def holdout_tolerance(share: float, n: int) -> float:
    """Allowed deviation of the observed holdout share: 4 standard errors, at least 2 points."""
    if n == 0:
        return 1.0
    return max(0.02, 4 * (share * (1 - share) / n) ** 0.5)


def _treated_cost(df: pd.DataFrame) -> pd.Series:
    """Offer cost per row of the treated; the holdout is never sent the offer (0). A treated
    row without a cost fails closed (infinite)."""
    cost = (pd.to_numeric(df["offer_cost_eur_cents"], errors="coerce").astype(float)
            if "offer_cost_eur_cents" in df else pd.Series(float("nan"), index=df.index))
    return cost.fillna(float("inf")).where(df["variant"] != "holdout", 0.0)


def _instants(values) -> pd.Series:
    """ISO-8601 instants as naive UTC (missing or unreadable: NaT)."""
    return pd.to_datetime(pd.Series(values, dtype=object), utc=True, errors="coerce",
                          format="ISO8601").dt.tz_localize(None)


def _list_send_times(lists_dir: Path | None, keys: pd.DataFrame) -> pd.Series:
    """Per (campaign_id, as_of_date) row: send_at_utc of that published list's manifest (or NaT)."""
    found = {}
    for c, d in keys.drop_duplicates().itertuples(index=False):
        mf = Path(lists_dir) / str(c) / str(d) / "manifest.json" if lists_dir is not None else None
        found[(c, d)] = json.loads(mf.read_text()).get("send_at_utc") if mf is not None and mf.exists() else None
    return _instants([found[(c, d)] for c, d in keys.itertuples(index=False)])


def read_sent(outbox_dir: str | Path, as_of: dt.date, *, lists_dir: str | Path | None = None,
              days_before: int = 1) -> pd.DataFrame:
    """Messages already dispatched for the as-of dates ``as_of`` - ``days_before`` .. ``as_of``:
    ``outbox/<channel>/<campaign>/<as_of>.jsonl``, columns :data:`SENT_COLUMNS`.

    ``sent_at`` (naive UTC): the message's ``sent_at`` if it falls on a day from its as-of date to
    ``as_of``, else its ``planned_send_at``, else the ``send_at_utc`` of its campaign's published
    list of that date (``lists_dir``), else 23:59:59 of its as-of date (the latest possible).
    """
    files = []
    for f in sorted(Path(outbox_dir).glob("*/*/*.jsonl")):
        try:
            day = dt.date.fromisoformat(f.stem)
        except ValueError:
            continue
        if as_of - dt.timedelta(days=days_before) <= day <= as_of:
            files.append(str(f))
    if not files:
        return pd.DataFrame({c: pd.Series(dtype="datetime64[us]" if c == "sent_at" else object)
                             for c in SENT_COLUMNS})
    con = duckdb.connect()
    try:
        df = con.execute("""
            SELECT player_id, campaign_id, channel, as_of_date, offer_template, offer_cost_eur_cents,
                   sent_at AS released, planned_send_at
            FROM read_json(?, format = 'newline_delimited', union_by_name = true,
                columns = {'player_id': 'VARCHAR', 'campaign_id': 'VARCHAR', 'channel': 'VARCHAR',
                           'as_of_date': 'VARCHAR', 'offer_template': 'VARCHAR', 'offer_cost_eur_cents': 'BIGINT',
                           'sent_at': 'VARCHAR', 'planned_send_at': 'VARCHAR'})
        """, [files]).df()
    finally:
        con.close()
    day = pd.to_datetime(df["as_of_date"], errors="coerce")
    released = _instants(df["released"])
    on_time = (released.dt.normalize() >= day) & (released.dt.normalize() <= pd.Timestamp(as_of))
    at = released.where(on_time).fillna(_instants(df["planned_send_at"]))
    if at.isna().any():
        at = at.fillna(_list_send_times(lists_dir, df[["campaign_id", "as_of_date"]]))
    df["sent_at"] = at.fillna(day + pd.Timedelta(hours=23, minutes=59, seconds=59)).astype("datetime64[us]")
    return df[list(SENT_COLUMNS)]


def _message_key(df: pd.DataFrame) -> pd.Series:
    """A message's identity within a day: campaign, player, channel (the as-of date is the day's)."""
    return df["campaign_id"].astype(str) + "|" + df["player_id"].astype(str) + "|" + df["channel"].astype(str)


def _day_messages(lst: pd.DataFrame, day_lists: list[pd.DataFrame], sent: pd.DataFrame | None
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the day's messages other than this list's treated rows, those plus earlier days' sent ones):
    player_id, channel, bonus, cost, at. A message in the outbox of the day is counted once, as sent."""
    day = str(lst["as_of_date"].iloc[0]) if "as_of_date" in lst and len(lst) else None
    treated = lst[lst["variant"].astype(str) != "holdout"]
    listed = set(_message_key(treated)) if {"campaign_id", "channel"} <= set(treated.columns) else set()
    sent = sent if sent is not None and len(sent) else pd.DataFrame(columns=list(SENT_COLUMNS))
    of_day = sent["as_of_date"].astype(str) == day
    sent_keys = set(_message_key(sent[of_day])) if of_day.any() else set()
    parts = []
    for d in day_lists:
        rows = d[d["variant"].astype(str) != "holdout"]
        if len(rows) and sent_keys and {"campaign_id", "channel"} <= set(rows.columns):
            rows = rows[~_message_key(rows).isin(sent_keys)]
        if len(rows):
            parts.append(rows.assign(
                at=_instants(rows["send_at_utc"]).to_numpy() if "send_at_utc" in rows else pd.NaT))
    if of_day.any():
        today = sent[of_day]
        parts.append(today[~_message_key(today).isin(listed)].rename(columns={"sent_at": "at"}))
    columns = ["player_id", "channel", "offer_template", "offer_cost_eur_cents", "at"]
    other = (pd.concat([p[columns] for p in parts], ignore_index=True) if parts
             else pd.DataFrame({c: pd.Series(dtype=object) for c in columns}))
    other = pd.DataFrame({
        "player_id": other["player_id"].astype(str), "channel": other["channel"].astype(str),
        "bonus": other["offer_template"].astype(object).ne(NO_OFFER).to_numpy(dtype=bool),
        # a missing cost fails closed; a negative one (a broken list) never makes room under the cap
        "cost": pd.to_numeric(other["offer_cost_eur_cents"], errors="coerce").fillna(float("inf")).clip(lower=0),
        "at": pd.to_datetime(other["at"]).astype("datetime64[us]")})
    earlier = sent[~of_day]
    near = pd.concat([other[["player_id", "at"]], pd.DataFrame({
        "player_id": earlier["player_id"].astype(str), "at": earlier["sent_at"].astype("datetime64[us]")})],
        ignore_index=True)
    return other, near


def day_checks(lst: pd.DataFrame, day_lists: list[pd.DataFrame], *, sent: pd.DataFrame | None = None,
               max_cost_per_player_cents: int | None = None, bonus_offers_per_day: int | None = None,
               channel_day_cap: int | None = None, global_day_cap: int | None = None,
               cooldown_hours: float | None = None) -> pd.DataFrame:
    """Per row of ``lst``: whether the day's limits hold with what else the day sends.

    What else the day sends: the treated rows of ``day_lists`` (the higher-priority lists) and
    the messages of ``sent`` of the list's as-of date (:func:`read_sent`), a message in both
    counted once, as sent; this list's own rows already sent are these rows, not others. Only
    treated rows send anything (a holdout row always passes). For a treated row: its offer cost
    plus the player's other offer costs within ``max_cost_per_player_cents`` (a free offer adds
    nothing); for a bonus row, no other bonus offer to the player beyond ``bonus_offers_per_day``
    - 1; one more message on the row's channel (all channels) within ``channel_day_cap``
    (``global_day_cap``); no other message to the player (also of the earlier as-of dates in
    ``sent``) less than ``cooldown_hours`` from this row's ``send_at_utc`` (an unknown time
    fails). A limit that is None is not checked (column all True).
    """
    treated = lst["variant"].astype(str).to_numpy() != "holdout"
    other, near = _day_messages(lst, day_lists, sent)
    pid = lst["player_id"].astype(str)
    per_player = other.groupby("player_id")
    cost_before = pid.map(per_player["cost"].sum()).fillna(0).to_numpy(dtype=float)
    bonus_before = pid.map(per_player["bonus"].sum()).fillna(0).to_numpy(dtype=float)
    msgs_before = pid.map(per_player.size()).fillna(0).to_numpy(dtype=float)
    ch_counts = (other["player_id"] + "|" + other["channel"]).value_counts()
    ch_before = (pid + "|" + lst["channel"].astype(str)).map(ch_counts).fillna(0).to_numpy(dtype=float)
    cost = (pd.to_numeric(lst["offer_cost_eur_cents"], errors="coerce").fillna(float("inf")).clip(lower=0)
            .to_numpy(dtype=float))
    is_bonus = lst["offer_template"].astype(object).ne(NO_OFFER).to_numpy(dtype=bool)
    ok = pd.DataFrame(index=lst.index)
    ok["day_cost_within_cap"] = ~treated | (cost == 0) | (
        True if max_cost_per_player_cents is None else cost_before + cost <= max_cost_per_player_cents)
    ok["one_bonus_offer_per_day"] = ~treated | ~is_bonus | (
        True if bonus_offers_per_day is None else bonus_before + 1 <= bonus_offers_per_day)
    ok["channel_day_cap"] = ~treated | (True if channel_day_cap is None else ch_before + 1 <= channel_day_cap)
    ok["global_day_cap"] = ~treated | (True if global_day_cap is None else msgs_before + 1 <= global_day_cap)
    ok["cooldown"] = True
    if cooldown_hours is not None and len(near):
        at = _instants(lst["send_at_utc"]) if "send_at_utc" in lst else pd.Series(pd.NaT, index=lst.index)
        rows = pd.DataFrame({"row": range(len(lst)), "player_id": pid.to_numpy(),
                             "mine": at.to_numpy(dtype="datetime64[us]")})
        pairs = rows.merge(near, on="player_id")
        gap = ((pairs["mine"] - pairs["at"]).abs() / pd.Timedelta(hours=1)).fillna(0.0)  # unknown time: a clash
        nearest = gap.groupby(pairs["row"]).min().reindex(range(len(lst))).to_numpy(dtype=float)
        ok["cooldown"] = ~treated | ~(nearest < cooldown_hours)
    return ok.astype(bool)


def _offer_matches_a_choice(df: pd.DataFrame, choices: Mapping[str, Mapping]) -> pd.Series:
    """Per row: its ``offer_name`` is one of ``choices`` and its template, wagering, expiry equal that
    choice's and its cost is within the choice's most (anything missing: False)."""
    if OFFER_NAME not in df or not len(df):
        return pd.Series(False, index=df.index, dtype=bool)
    name = df[OFFER_NAME].astype(object)

    def term(key: str) -> pd.Series:
        return name.map({k: v[key] for k, v in choices.items()})

    def numbers(column: str) -> pd.Series:
        return (pd.to_numeric(df[column], errors="coerce") if column in df
                else pd.Series(float("nan"), index=df.index)).astype(float)

    template = df["offer_template"].astype(object) if "offer_template" in df else pd.Series(None, index=df.index)
    ok = (name.isin(list(choices)) & template.eq(term("template"))
          & numbers("offer_wagering").eq(term("wagering").astype(float))
          & numbers("offer_expiry_days").eq(term("expiry_days").astype(float))
          & (numbers("offer_cost_eur_cents") <= term("max_cost_cents").astype(float)))
    return ok.fillna(False).astype(bool)


def own_sends_not_listed(lst: pd.DataFrame, sent: pd.DataFrame | None) -> tuple[float, dict[str, float]]:
    """(offer cost this list's campaign already sent on its as-of date to messages not on the list
    as treated rows, cost already sent per message key of the list): what its budget already paid."""
    if sent is None or not len(sent) or not len(lst) or not {"campaign_id", "channel", "as_of_date"} <= set(lst):
        return 0.0, {}
    mine = sent[(sent["campaign_id"].astype(str).isin(set(lst["campaign_id"].astype(str))))
                & (sent["as_of_date"].astype(str) == str(lst["as_of_date"].iloc[0]))]
    cost = pd.to_numeric(mine["offer_cost_eur_cents"], errors="coerce").fillna(float("inf")).clip(lower=0)
    by_key = dict(zip(_message_key(mine), cost, strict=True))
    listed = set(_message_key(lst[lst["variant"].astype(str) != "holdout"]))
    return float(sum(c for k, c in by_key.items() if k not in listed)), by_key


def recent_list_sizes(campaign_dir: Path, as_of: dt.date, runs: int | None = None) -> list[int]:
    """Listed counts of the ``runs`` latest published lists of a campaign before ``as_of``
    (from ``<campaign_dir>/<date>/manifest.json``; oldest first)."""
    n = int(threshold("list_size_history_runs") if runs is None else runs)
    found = []
    for mf in sorted(Path(campaign_dir).glob("*/manifest.json")):
        try:
            day = dt.date.fromisoformat(mf.parent.name)
        except ValueError:  # temporary / old folders of an atomic publish
            continue
        if day < as_of:
            counts = json.loads(mf.read_text()).get("counts", {})
            if "listed" in counts:
                found.append(int(counts["listed"]))
    return found[-n:] if n > 0 else []


def list_size_band(history: list[int], band: float | None = None, slack: float | None = None
                   ) -> tuple[float, float, float] | None:
    """(low, high, median) allowed list size: median * (1 ± band), widened by ``slack`` rows;
    None with fewer than ``list_size_min_history_runs`` earlier runs."""
    if not history or len(history) < threshold("list_size_min_history_runs"):
        return None
    b = threshold("list_size_band") if band is None else band
    k = threshold("list_size_slack_rows") if slack is None else slack
    med = float(pd.Series(history).median())
    return max(0.0, med * (1 - b) - k), med * (1 + b) + k, med


@dataclass(frozen=True)
class DayLimits:
    """The day's limits :func:`day_checks` holds a list to (None: not checked); each given one
    adds an expectation to :func:`gate_list`."""

    max_cost_per_player_cents: int | None = None
    bonus_offers_per_day: int | None = None
    channel_day_cap: int | None = None
    global_day_cap: int | None = None
    cooldown_hours: float | None = None

    @classmethod
    def from_caps(cls, caps: Mapping[str, float], *, marketing: bool = True) -> DayLimits:
        """From a campaign's effective caps (:func:`crm.campaigns.eligibility.effective_caps`); a
        transactional message (``marketing`` False) bypasses the message caps and the cooldown."""
        return cls(max_cost_per_player_cents=int(caps["cost_per_player_day_cents"]),
                   bonus_offers_per_day=int(caps["bonus_offers_per_day"]),
                   channel_day_cap=int(caps["channel_day"]) if marketing else None,
                   global_day_cap=int(caps["global_day"]) if marketing else None,
                   cooldown_hours=float(caps["cooldown_hours"]) if marketing else None)

    def as_dict(self) -> dict[str, float | None]:
        """Limit name (the column :func:`day_checks` writes) -> value, in check order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class GatedList:
    """A published list and what it is checked against on its own: the player profile, the
    designed holdout share and the experiment's variants."""

    rows: pd.DataFrame
    profile: pd.DataFrame
    holdout_share: float
    variants: list[str]


@dataclass(frozen=True)
class GateContext:
    """What a list is checked against beyond itself (every field optional).

    ``budget_cents``: the campaign's offer budget left for this list (the treated rows'
    ``offer_cost_eur_cents`` must sum to at most this; :func:`crm.campaigns.budget.gate_limit`
    gives it, earlier dates' spend deducted); ``min_uplift_cents``: for a campaign targeted by
    uplift, every row's ``predicted_value_eur_cents`` must be above it and equal to its
    ``uplift_value_score`` less its ``offer_cost_eur_cents`` (recomputed here, not trusted).
    ``day_lists`` (the published higher-priority lists of the same day), ``sent`` (the outbox of
    the day, :func:`read_sent`) and ``limits``: see :func:`day_checks`. ``size_history``: listed counts of recent runs
    (:func:`recent_list_sizes`; empty or None: passes with a note). ``docs_dir``: build GX Data
    Docs there. ``offer_choices``: for a campaign whose offer is chosen per player, its choices'
    terms (:func:`offer_choice_terms`): each row's ``offer_name`` must be one of them with its
    terms, and the predicted value is the score x that choice's relative effect less the cost."""

    budget_cents: int | None = None
    min_uplift_cents: float | None = None
    day_lists: list[pd.DataFrame] = field(default_factory=list)
    sent: pd.DataFrame | None = None
    limits: DayLimits = field(default_factory=DayLimits)
    size_history: list[int] | None = None
    docs_dir: str | Path | None = None
    offer_choices: Mapping[str, Mapping[str, float | str]] | None = None


def offer_choice_terms(choices: Mapping) -> dict[str, dict[str, float | str]]:
    """A campaign's ``offer.choices`` as the plain terms :class:`GateContext` checks rows against
    (template, wagering, expiry days, the most it may cost, relative effect)."""
    return {name: {"template": c.offer.template, "wagering": float(c.offer.wagering),
                   "expiry_days": int(c.offer.expiry_days), "max_cost_cents": int(c.offer.max_cost_cents),
                   "relative_effect": float(c.relative_effect)} for name, c in choices.items()}


def gate_list(gated: GatedList, ctx: GateContext | None = None) -> GateResult:
    """Run the campaign-list suite on ``gated`` in ``ctx`` (:class:`GateContext`, default: the list
    alone); ``success`` False means the list must not be dispatched.

    Each limit of ``ctx.limits`` that is given adds an expectation (``max_cost_per_player_cents``
    is also checked on this list alone). With ``ctx.sent``, the budget holds for what this
    campaign already sent that day plus what its list newly sends (a listed row already sent
    costs what was sent).
    """
    ctx = ctx if ctx is not None else GateContext()
    lst, profile, holdout_share, variants = gated.rows, gated.profile, gated.holdout_share, list(gated.variants)
    budget_cents, min_uplift_cents, sent = ctx.budget_cents, ctx.min_uplift_cents, ctx.sent
    day_lists, size_history, docs_dir = list(ctx.day_lists or []), ctx.size_history, ctx.docs_dir
    choices = dict(ctx.offer_choices or {})
    df = lst.copy()
    df["compliance_violation"] = recompute_violations(df, profile).to_numpy() if len(df) else []
    df["compliance_violation"] = df["compliance_violation"].fillna("none")
    df["is_holdout"] = (df["variant"] == "holdout").astype(float) if len(df) else []
    df["treated_cost_eur_cents"] = _treated_cost(df) if len(df) else []
    paid_before, paid = own_sends_not_listed(df, sent)
    if paid:  # a listed message already sent cost what was sent
        again = _message_key(df).map(paid)
        df["treated_cost_eur_cents"] = again.where(again.notna() & (df["variant"] != "holdout"),
                                                   df["treated_cost_eur_cents"]).astype(float)
    tol = holdout_tolerance(holdout_share, len(df))
    exps = [
        gx.expectations.ExpectTableColumnsToMatchSet(column_set=list(REQUIRED_COLUMNS), exact_match=False),
        gx.expectations.ExpectColumnValuesToBeInSet(column="compliance_violation", value_set=["none"]),
        gx.expectations.ExpectColumnValuesToNotBeNull(column="player_id"),
        gx.expectations.ExpectColumnValuesToBeUnique(column="player_id"),
        gx.expectations.ExpectColumnValuesToBeInSet(column="variant", value_set=[*variants, "holdout"]),
        gx.expectations.ExpectColumnValuesToBeBetween(column="offer_cost_eur_cents", min_value=0),
    ]
    descriptions = {1: "no ineligible player (recomputed from the profile)", 3: "unique player per campaign"}
    if len(df):
        exps.append(gx.expectations.ExpectColumnMeanToBeBetween(
            column="is_holdout", min_value=max(0.0, holdout_share - tol), max_value=min(1.0, holdout_share + tol)))
        descriptions[len(exps) - 1] = f"holdout share {holdout_share:.2f} ± {tol:.3f}"
    if budget_cents is not None and len(df):
        exps.append(gx.expectations.ExpectColumnSumToBeBetween(
            column="treated_cost_eur_cents", min_value=0, max_value=float(budget_cents) - paid_before))
        descriptions[len(exps) - 1] = f"offer cost of the treated within the budget ({budget_cents} EUR cents" + (
            f", less {paid_before:g} already sent today to players no longer listed)" if paid_before else ")")
    if min_uplift_cents is not None:
        def numbers(column: str) -> pd.Series:
            return (pd.to_numeric(df[column], errors="coerce") if column in df
                    else pd.Series(float("nan"), index=df.index)).astype(float)

        value = numbers(VALUE_COLUMN)
        effect = (df[OFFER_NAME].map({k: float(v["relative_effect"]) for k, v in choices.items()}).astype(float)
                  if choices and OFFER_NAME in df else pd.Series(float("nan") if choices else 1.0, index=df.index))
        recomputed = numbers(UPLIFT_SCORE_COLUMN) * effect - numbers("offer_cost_eur_cents")
        # NULL: not above; a listed value that is not the score less the cost: a builder's mistake
        df["uplift_above_min"] = ((value > min_uplift_cents) & ((value - recomputed).abs() <= 1e-6)).astype(bool)
        exps.append(gx.expectations.ExpectColumnValuesToBeInSet(column="uplift_above_min", value_set=[True]))
        descriptions[len(exps) - 1] = (f"every listed player's predicted value net of the offer cost above "
                                       f"{min_uplift_cents} EUR cents (and equal to {UPLIFT_SCORE_COLUMN} less "
                                       "offer_cost_eur_cents)")
    if choices:
        df["offer_is_a_choice"] = _offer_matches_a_choice(df, choices)
        exps.append(gx.expectations.ExpectColumnValuesToBeInSet(column="offer_is_a_choice", value_set=[True]))
        descriptions[len(exps) - 1] = (f"every row's offer is one of the campaign's {len(choices)} choices, on its "
                                       "terms (template, wagering, expiry) and within its cost")
    given = ctx.limits.as_dict()
    limits = dict(zip(_DAY_CHECK_COLUMNS, given.values(), strict=True))
    if any(v is not None for v in limits.values()) and len(df):
        ok = day_checks(df, day_lists, sent=sent, **given)
        n_sent = 0 if sent is None else len(sent)
        for col, limit in limits.items():
            if limit is None:
                continue
            df[col] = ok[col].to_numpy()
            exps.append(gx.expectations.ExpectColumnValuesToBeInSet(column=col, value_set=[True]))
            descriptions[len(exps) - 1] = (f"{col.replace('_', ' ')} ({limit}{' h' if col == 'cooldown' else ''}) "
                                           f"with the {len(day_lists or [])} higher-priority lists of the day"
                                           + (f" and the {n_sent} messages already sent" if n_sent else ""))
    band = list_size_band(list(size_history or []))
    if band is not None:
        low, high, med = band
        exps.append(gx.expectations.ExpectTableRowCountToBeBetween(min_value=int(low // 1),
                                                                   max_value=int(-(-high // 1))))
        descriptions[len(exps) - 1] = (f"list size within [{low:.0f}, {high:.0f}] around the median {med:g} "
                                       f"of the {len(size_history or [])} recent runs")
    result = validate(df, SUITE, exps, id_column="player_id", descriptions=descriptions, docs_dir=docs_dir)
    if band is None:
        n_runs = len(size_history or [])
        result.outcomes.append(outcome("list_size_within_recent_band", True, len(df), description=(
            f"{n_runs} earlier run(s) of this campaign, fewer than "
            f"{threshold('list_size_min_history_runs'):g}: size not checked (note)")))
    return result
