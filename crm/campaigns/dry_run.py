"""A campaign's list and a player's explanation over the service's profile copy, without the warehouse:
the web page's dry run ("how many would this draft reach, and who is left out by which rule?") and its
"why is this player out?" (issue 18).

The service never opens the DuckDB warehouse: Dagster is its one writer, and DuckDB refuses a
second process beside a writer. What the service has is its store: the copy of ``dim_player``
(``profiles``, replaced after each refresh by :func:`crm.campaigns.online.sync_online_profiles`,
with each model's latest score and ``net_loss_eur_7d``), the players' stops received since the copy
(:mod:`crm.store.profile`: a withdrawal or self-exclusion applies at once), the messages the casino
reported (copied with the profiles), the API's deliveries and issued offers. So the dry run is
the pipeline's own list builder, :func:`crm.campaigns.lists.build_list` (segment, the one rule
table of :mod:`crm.campaigns.eligibility`, targeting, budget, holdout), over that copy, in the
day's context of :func:`crm.campaigns.day.day_context` (our outbox, the spend ledger, earlier
bonus offers and holdouts, the calendar) with the message history taken from the store instead of
the warehouse; the lists of the higher-priority campaigns of the copy's date come first, as in the
pipeline: their published lists, or, when one is not published, all of them rebuilt in memory on
the copy (:func:`crm.campaigns.day.context_so_far`, what ``crm explain`` does). The explanation
is :func:`crm.campaigns.day.explain_player` on the same audience and context.

**The model features.** The copy holds ``dim_player``'s columns; the other model features
(``deposit_eur_90d``, ``sessions_30d``, ...) come from the snapshot of the warehouse's
``player_features`` written with the copy (:attr:`crm.config.Paths.feature_copy`, Parquet, only
the columns the day's segments name are read), joined on brand and player as the pipeline's
:func:`crm.warehouse.read_audience` joins them (``dim_player`` wins on overlap; a player without
a feature row has NULLs: no rule on them matches). A snapshot of another date than the copy's is
not used. Should a rule name a field neither holds (no snapshot yet: a copy taken before this
existed, or a warehouse without features), it is **not applied**, and the result names it
(:attr:`DryRun.not_applied`): the audience is then an upper bound of what the pipeline's list
will find. Players of the copy are those of its as-of date; the pipeline builds a new
campaign's first list on a later date, from a newer warehouse.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm.campaigns.day import context_so_far, day_context, explain_player, higher_priority
from crm.campaigns.eligibility import Context, reason_text
from crm.campaigns.history import (
    concat_history,
    lookback_days,
    offer_messages,
    outbox_messages,
    reported_rows,
    store_messages,
)
from crm.campaigns.lists import SCORES, build_list
from crm.campaigns.policy import POLICY, load_calendar
from crm.campaigns.spec import RULE_FIELDS, CampaignSpec, Segment
from crm.config import Paths
from crm.store.deliveries import api_messages
from crm.store.offers import all_ledger_rows
from crm.store.profile import apply_stops, load_profile
from crm.store.schema import profile_stops, profiles, reported_messages

# One dry run or explanation at a time per process: each reads the whole copy of the campaign's
# brands (20,000 players: about half a second; a million: a minute and a few GB), so a page
# reloaded many times must not run many at once. A second one waits up to this long, then is refused.
WAIT_S = 30.0
_ONE_AT_A_TIME = threading.Lock()
DERIVED = "days_since_last_active"  # derived from last_active_at at the copy's as-of date


class Busy(RuntimeError):
    """Another dry run or explanation is running in this process (try again in a moment)."""


@dataclass
class Audience:
    """The copy's players of some brands, as the list builder reads its audience."""

    frame: pd.DataFrame
    as_of: dt.date | None  # the warehouse's as-of date the copy was taken at (None: no copy)
    synced_at: dt.datetime | None
    held: frozenset[str]  # the fields the copy holds (for at least one player), derived ones included


def online_audience(engine: sa.Engine, brands: Sequence[str] | None, features: Path | None = None,
                    fields: Iterable[str] = ()) -> Audience:
    """The store's profile copy of ``brands`` (None: every brand), each player's live stops applied,
    ``days_since_last_active`` derived, the ``fields`` the copy lacks read from the feature snapshot
    ``features`` (:func:`_with_features`), and every column a list reads present (NULL where
    the copy has no value: a rule on it matches nobody, fail closed)."""
    c, s = profiles.c, profile_stops.c
    query = sa.select(c.brand_id, c.player_id, c.profile, c.as_of_date, c.synced_at).order_by(c.brand_id, c.player_id)
    stops_query = sa.select(profile_stops).where(s.retired_at.is_(None)).order_by(
        s.brand_id, s.player_id, s.occurred_at, s.id)
    if brands is not None:
        query = query.where(c.brand_id.in_(list(brands)))
        stops_query = stops_query.where(s.brand_id.in_(list(brands)))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        stops: dict[tuple[str, str], list[dict]] = {}
        for r in conn.execute(stops_query):
            stops.setdefault((r.brand_id, r.player_id), []).append(dict(r._mapping))
    records = []
    for r in rows:
        p = load_profile(r.profile)
        if not isinstance(p, dict):
            continue
        mine = stops.get((r.brand_id, r.player_id))
        p = apply_stops(p, mine) if mine else p
        records.append(p | {"brand_id": r.brand_id, "player_id": r.player_id})
    as_of = max((r.as_of_date for r in rows), default=None)
    synced = max((r.synced_at for r in rows), default=None)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame({"brand_id": [], "player_id": []})
    if features is not None and as_of is not None:
        frame = _with_features(frame, features, as_of, [f for f in dict.fromkeys(fields) if f not in frame])
    held = {col for col in frame.columns if frame[col].notna().any()}
    if DERIVED not in frame and "last_active_at" in frame and as_of is not None:
        last = pd.to_datetime(frame["last_active_at"], errors="coerce", utc=True, format="ISO8601")
        days = (pd.Timestamp(as_of) - last.dt.tz_localize(None).dt.normalize()).dt.days
        frame[DERIVED] = days.astype("Float64").astype(float)
        if frame[DERIVED].notna().any():
            held.add(DERIVED)
    for col in (*RULE_FIELDS, *(f"{m}_score" for m in SCORES)):
        if col not in frame:
            frame[col] = np.nan
    for col in (*(f"{m}_model_version" for m in SCORES), "recommended_game", "country", "locale", "timezone"):
        if col not in frame:
            frame[col] = pd.Series([None] * len(frame), dtype=object)
    return Audience(frame, as_of, synced, frozenset(held))


def _with_features(frame: pd.DataFrame, snapshot: Path, as_of: dt.date, wanted: list[str]) -> pd.DataFrame:
    """``frame`` with the ``wanted`` columns of the feature snapshot that holds them, joined on
    (brand, player); unchanged when there is no snapshot, it is of another date than ``as_of``
    or it holds none of them."""
    import pyarrow.parquet as pq

    wanted = [f for f in wanted if f != DERIVED]  # derived from the copy's own last_active_at
    if not wanted or not snapshot.exists() or not len(frame):
        return frame
    try:
        pf = pq.ParquetFile(snapshot)
    except (OSError, ValueError):  # being replaced, or damaged: the fields stay "not checked here"
        return frame
    cols = [c for c in wanted if c in pf.schema_arrow.names]
    if not cols:
        return frame
    brands = sorted(set(frame["brand_id"].astype(str)))
    table = pq.read_table(snapshot, columns=["brand_id", "player_id", "as_of_date", *cols],
                          filters=[("brand_id", "in", brands)])
    dates = {d for d in table.column("as_of_date").to_pylist() if d is not None}
    if dates != {as_of}:
        return frame
    snap = table.drop(["as_of_date"]).to_pandas()
    snap["brand_id"], snap["player_id"] = snap["brand_id"].astype(str), snap["player_id"].astype(str)
    out = frame.assign(brand_id=frame["brand_id"].astype(str), player_id=frame["player_id"].astype(str))
    return out.merge(snap.drop_duplicates(["brand_id", "player_id"]), on=["brand_id", "player_id"], how="left")


def segment_fields(specs: Iterable[CampaignSpec]) -> list[str]:
    """The fields the segments of ``specs`` name (named segments spelled out)."""
    return list(dict.fromkeys(r.field for s in specs for r in s.segment.all_rules))


def online_history(paths: Paths, engine: sa.Engine, as_of: dt.date, specs: Sequence[CampaignSpec]) -> pd.DataFrame:
    """The message history :func:`crm.campaigns.history.load_history` gives a list of ``as_of``, from
    what the service may read: our outbox (files), the messages the casino reported (the store's
    copy of them, taken from the warehouse at the profile sync, our own reported back already left
    out), the API's sends and issued offers (the store)."""
    first = as_of - dt.timedelta(days=lookback_days(specs, POLICY.dedup_days))
    since, midnight = dt.datetime.combine(first, dt.time()), dt.datetime.combine(as_of, dt.time())
    r = reported_messages.c
    with engine.connect() as conn:
        reported = [dict(x._mapping) for x in conn.execute(
            sa.select(r.player_id, r.channel, r.campaign_id, r.dedup_key, r.sent_at)
            .where(r.sent_at >= since, r.sent_at < midnight))]
    until = midnight + dt.timedelta(days=1)
    return concat_history(reported_rows(reported), outbox_messages(paths, first, as_of, {s.id: s for s in specs}),
                          store_messages(api_messages(engine, since, until)),
                          offer_messages(all_ledger_rows(engine, since, until)))


def online_context(paths: Paths, engine: sa.Engine, as_of: dt.date, specs: list[CampaignSpec],
                   campaigns: Path) -> Context:
    """The day's context (:func:`crm.campaigns.day.day_context`) with :func:`online_history`."""
    return day_context(paths, as_of, specs, calendar=load_calendar(campaigns),
                       history=online_history(paths, engine, as_of, specs))


def applicable(spec: CampaignSpec, held: frozenset[str]) -> tuple[CampaignSpec, list[str]]:
    """``spec`` with the segment rules on fields the copy does not hold left out (named segments
    spelled out as their rules), and those rules as text ("deposit_eur_90d >= 500000")."""
    rules = spec.segment.all_rules
    missing = [r for r in rules if r.field not in held]
    if not missing:
        return spec, []
    kept = Segment(rules=[r for r in rules if r.field in held], scores=spec.segment.all_scores)
    return spec.model_copy(update={"segment": kept}), [f"{r.field} {r.op} {r.value}" for r in missing]


@dataclass
class DryRun:
    """What :func:`dry_run` found; ``available`` False (and ``note``) when there is no copy to read."""

    available: bool
    note: str = ""
    as_of: str | None = None
    synced_at: str | None = None
    funnel: dict[str, int] = field(default_factory=dict)
    to_contact: int = 0
    holdout: int = 0
    offer_cost_eur: float = 0.0
    first_failing_rule: list[dict] = field(default_factory=list)  # rule, players, reason (in plain words)
    every_failing_rule: list[dict] = field(default_factory=list)
    after_eligibility: list[dict] = field(default_factory=list)
    not_applied: list[str] = field(default_factory=list)
    higher_priority: list[str] = field(default_factory=list)  # the campaigns whose lists of the day come first
    context: str = ""  # where those lists came from: published, or rebuilt in memory
    empty_because: str | None = None


def _rows(counts: dict[str, int]) -> list[dict]:
    return [{"rule": k, "players": int(v), "reason": reason_text(k)} for k, v in counts.items()]


@contextmanager
def _locked() -> Iterator[None]:
    if not _ONE_AT_A_TIME.acquire(timeout=WAIT_S):
        raise Busy("another dry run or explanation is running: try again in a moment")
    try:
        yield
    finally:
        _ONE_AT_A_TIME.release()


def dry_run(paths: Paths, engine: sa.Engine, spec: CampaignSpec, specs: list[CampaignSpec],
            campaigns: Path) -> DryRun:
    """``spec``'s list as the pipeline would build it on the copy's as-of date, without publishing
    anything: funnel, players to contact and held out, offer cost, who is left out by which rule.
    ``specs``: the campaign folder's campaigns (``spec`` replaces one of the same id)."""
    with _locked():
        day_specs = [s for s in specs if s.id != spec.id] + [spec]
        aud = online_audience(engine, spec.brands or None, paths.feature_copy, segment_fields(day_specs))
        if aud.as_of is None:
            return DryRun(False, note="the service holds no profile copy yet: it is taken after each refresh "
                                      "(`crm run`, or `crm profiles sync`)")
        shown, not_applied = applicable(spec, aud.held)
        day_specs = [s for s in specs if s.id != spec.id] + [shown]
        base = online_context(paths, engine, aud.as_of, day_specs, campaigns)
        ctx, source = context_so_far(paths, shown, day_specs, aud.as_of, aud.frame, base)
        built = build_list(shown, aud.frame, aud.as_of, ctx)
    treated = built.rows[built.rows["variant"] != "holdout"]
    sup = built.suppression
    return DryRun(True, as_of=aud.as_of.isoformat(), synced_at=aud.synced_at.isoformat(timespec="seconds")
                  if aud.synced_at else None, funnel=built.funnel, to_contact=built.to_contact,
                  holdout=int(built.funnel.get("holdout", 0)),
                  offer_cost_eur=round(float(treated["offer_cost_eur_cents"].sum()) / 100, 2),
                  first_failing_rule=_rows(sup.get("first_failing_rule", {})),
                  every_failing_rule=_rows(sup.get("every_failing_rule", {})),
                  after_eligibility=_rows(sup.get("after_eligibility", {})), not_applied=not_applied,
                  higher_priority=[h.id for h in higher_priority(shown, day_specs)], context=source,
                  empty_because=built.empty_because)


def explain_online(paths: Paths, engine: sa.Engine, player_id: str, spec: CampaignSpec, specs: list[CampaignSpec],
                   brands: Sequence[str] | None, campaigns: Path,
                   allowed: Callable[[str, str | None], bool]) -> dict | None:
    """:func:`crm.campaigns.day.explain_player` over the copy of ``brands`` (None: every brand) at the
    copy's as-of date; None when the copy holds no such player there, or ``allowed(brand, country)``
    refuses the player (unknown, another brand's or another region's: the same answer). Adds
    ``not_applied`` (segment rules the copy cannot check) and the copy's dates."""
    with _locked():
        aud = online_audience(engine, brands, paths.feature_copy,
                              segment_fields([s for s in specs if s.id != spec.id] + [spec]))
        found = aud.frame[aud.frame["player_id"].astype(str) == player_id]
        if aud.as_of is None or len(found) != 1:  # none, or one id in two brands: which one is meant is unknown
            return None
        country = found["country"].iloc[0]
        if not allowed(str(found["brand_id"].iloc[0]), None if pd.isna(country) else str(country)):
            return None
        shown, not_applied = applicable(spec, aud.held)
        day_specs = [s for s in specs if s.id != spec.id] + [shown]
        ctx = online_context(paths, engine, aud.as_of, day_specs, campaigns)
        out = explain_player(paths, player_id, shown, day_specs, aud.as_of, audience=aud.frame, base=ctx)
    return out | {"not_applied": not_applied, "synced_at": aud.synced_at.isoformat(timespec="seconds")
                  if aud.synced_at else None}
