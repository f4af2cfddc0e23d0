"""A day of campaigns on a data home: the inputs a list depends on, read once, and the builds.

Two ways to build the lists of an as-of date, with the same result:

* :func:`build_all` — every campaign at once (:func:`crm.campaigns.lists.build_day`): priority order,
  each list seeing the lists before it in memory;
* :func:`build_one` — one campaign, as a Dagster asset does: the lists of the
  higher-priority campaigns are read from their *published* files of the same date (their
  assets run first), so the context is the same as in :func:`build_all`. A missing or
  stale (built from another spec version) higher-priority list is an error: building
  without it could break a cap it holds.

Both see what was already dispatched on the date (a re-run after dispatch): every
campaign's messages of the day are facts in the day's history, except that a campaign's list
re-plans its own (:func:`crm.campaigns.lists.campaign_context`), and a higher-priority list's row that
was already sent counts once, as sent (:func:`crm.campaigns.lists.with_list`).

:func:`explain_player` answers "why is this player in or out of this list" with the same
code: the context of :func:`build_one` (or of :func:`build_all` when the day's lists are not
published), :func:`crm.campaigns.eligibility.explain` for the verdicts, :func:`crm.campaigns.lists.build_list`
for the decision.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

import pandas as pd

from crm.campaigns import eligibility
from crm.campaigns.budget import spent_before
from crm.campaigns.eligibility import Context, effective_caps
from crm.campaigns.history import load_history, lookback_days, players_offered_a_bonus, recent_holdouts
from crm.campaigns.lists import (
    BuiltList,
    _rule_mask,
    build_day,
    build_list,
    campaign_context,
    gross_value_cents,
    list_dir,
    offer_value_cents,
    scope_mask,
    with_list,
)
from crm.campaigns.offer_generation import choose_offers
from crm.campaigns.offers import OFFER_NAME
from crm.campaigns.policy import POLICY, Calendar, ContactPolicy, load_calendar
from crm.campaigns.spec import CampaignSpec
from crm.config import Paths, campaigns_dir
from crm.warehouse import read_audience


class HigherPriorityListMissing(RuntimeError):
    """A higher-priority list of the same day is not published (or stale): build it first."""


def higher_priority(spec: CampaignSpec, specs: Iterable[CampaignSpec]) -> list[CampaignSpec]:
    """The campaigns built before ``spec`` on a day (priority, then id), in build order."""
    return sorted((s for s in specs if s.order_key < spec.order_key), key=lambda s: s.order_key)


def day_context(paths: Paths, as_of: dt.date, specs: list[CampaignSpec], *, calendar: Calendar | None = None,
                policy: ContactPolicy = POLICY, history: pd.DataFrame | None = None) -> Context:
    """The context of a day before any of its lists: history (with every message already sent on
    ``as_of``), calendar, budgets spent on earlier dates (the spend ledger, :mod:`crm.campaigns.budget`),
    earlier bonus offers. ``history``: the message history when the caller has it already (the
    service's, from its store, :mod:`crm.campaigns.dry_run`: it never opens the warehouse); default
    :func:`crm.campaigns.history.load_history`."""
    if history is None:
        history = load_history(paths, as_of, specs, days=lookback_days(specs, policy.dedup_days))
    spent = spent_before(paths, [s.id for s in specs if s.budget.total_cents is not None], as_of)  # spend ledger
    held_out = recent_holdouts(paths, specs, as_of, {s.id: int(effective_caps(s, policy)["dedup_days"]) for s in specs})
    return Context(as_of=as_of, history=history,
                   calendar=calendar if calendar is not None else load_calendar(campaigns_dir()),
                   policy=policy, spent_cents=spent, bonus_offered=players_offered_a_bonus(paths, as_of),
                   held_out=held_out)


def published_rows(paths: Paths, spec: CampaignSpec, as_of: dt.date) -> pd.DataFrame:
    """The published list of ``spec`` for ``as_of``; raises unless it exists and was built from this spec."""
    directory = list_dir(paths, spec.id, as_of)
    manifest = directory / "manifest.json"
    if not manifest.exists():
        raise HigherPriorityListMissing(
            f"the list of {spec.id!r} (priority {spec.priority}) for {as_of} is not published; it is built "
            "before lower-priority campaigns of the same day: materialize it first")
    if json.loads(manifest.read_text()).get("spec_hash") != spec.spec_hash():
        raise HigherPriorityListMissing(
            f"the published list of {spec.id!r} for {as_of} was built from another version of its campaign "
            "file: rebuild it first")
    return pd.read_parquet(directory / "list.parquet")


def context_for(paths: Paths, spec: CampaignSpec, specs: list[CampaignSpec], as_of: dt.date,
                base: Context | None = None) -> Context:
    """The context ``spec``'s list is built in: the day's, plus the published higher-priority lists
    (their rows not already sent). :func:`crm.campaigns.lists.build_list` takes ``spec``'s own sends out."""
    ctx = base if base is not None else day_context(paths, as_of, specs)
    for h in higher_priority(spec, specs):
        ctx = with_list(ctx, published_rows(paths, h, as_of), h, as_of)
    return ctx


def context_so_far(paths: Paths, spec: CampaignSpec, specs: list[CampaignSpec], as_of: dt.date,
                   audience: pd.DataFrame, base: Context | None = None) -> tuple[Context, str]:
    """The context ``spec``'s list is built in, and where its higher-priority lists came from: their
    published lists (:func:`context_for`); when one is not published (or stale), all of them rebuilt
    in memory from ``audience``, by the same rules (what :func:`explain_player` and the web page's
    dry run show before the day's lists exist). ``base``: the day's context (default: made here)."""
    try:
        return context_for(paths, spec, specs, as_of, base), "published higher-priority lists"
    except HigherPriorityListMissing:  # the day is not (fully) published: build it in memory, same rules
        ctx = base if base is not None else day_context(paths, as_of, specs)
        for b in build_day(higher_priority(spec, specs), audience, as_of, ctx):
            ctx = with_list(ctx, b.rows, b.campaign, as_of)
        return ctx, "higher-priority lists rebuilt in memory (not all published)"


def build_one(paths: Paths, spec: CampaignSpec, specs: list[CampaignSpec], as_of: dt.date,
              audience: pd.DataFrame | None = None) -> BuiltList:
    """One campaign's list, after the published lists of the higher-priority campaigns of the day."""
    _check_unique(specs, spec)
    audience = read_audience(paths, as_of) if audience is None else audience
    return build_list(spec, audience, as_of, context_for(paths, spec, specs, as_of))


def build_all(paths: Paths, specs: list[CampaignSpec], as_of: dt.date,
              audience: pd.DataFrame | None = None) -> list[BuiltList]:
    """Every campaign's list of the day, in priority order (see :func:`crm.campaigns.lists.build_day`)."""
    audience = read_audience(paths, as_of) if audience is None else audience
    return build_day(specs, audience, as_of, day_context(paths, as_of, specs))


def _check_unique(specs: list[CampaignSpec], spec: CampaignSpec) -> None:
    ids = [s.id for s in specs]
    if len(set(ids)) != len(ids) or spec.id not in ids:
        raise ValueError(f"{spec.id!r} must be one of the day's campaigns, each id once: {sorted(ids)}")


def _segment_lines(row: pd.DataFrame, spec: CampaignSpec) -> list[dict]:
    lines = []
    for rule in spec.segment.all_rules:
        ok = bool(_rule_mask(row, rule).iloc[0]) if rule.field in row else False
        seen = row[rule.field].iloc[0] if rule.field in row else None
        lines.append({"rule": f"{rule.field} {rule.op} {rule.value}", "passed": ok,
                      "observed": "unknown (no value)" if seen is None or pd.isna(seen) else str(seen)})
    for score, bound in spec.segment.all_scores.items():
        v = pd.to_numeric(row[score], errors="coerce").iloc[0] if score in row else float("nan")
        ok = not pd.isna(v) and (bound.min is None or v >= bound.min) and (bound.max is None or v <= bound.max)
        lines.append({"rule": f"{score} in [{bound.min if bound.min is not None else '-'}, "
                              f"{bound.max if bound.max is not None else '-'}]",
                      "passed": bool(ok), "observed": "no score" if pd.isna(v) else f"{v:.4f}"})
    return lines


def explain_player(paths: Paths, player_id: str, spec: CampaignSpec, specs: list[CampaignSpec],
                   as_of: dt.date, audience: pd.DataFrame | None = None, base: Context | None = None) -> dict:
    """Why ``player_id`` is on ``spec``'s list of ``as_of`` or not: scope, segment, every
    eligibility rule with its observed value, targeting / budget, the decision, and what the
    published list of that day says. ``base``: the day's context when the caller has it
    (:func:`day_context`; default: made here)."""
    _check_unique(specs, spec)
    audience = read_audience(paths, as_of) if audience is None else audience
    row = audience[audience["player_id"].astype(str) == player_id]
    if row.empty:
        raise KeyError(f"player {player_id!r} is not in the profile as of {as_of}")
    ctx, source = context_so_far(paths, spec, specs, as_of, audience, base)
    built = build_list(spec, audience, as_of, ctx)
    listed = built.rows[built.rows["player_id"] == player_id]
    in_scope = bool(scope_mask(row, spec).iloc[0])
    segment = _segment_lines(row, spec)
    own_ctx = campaign_context(spec, ctx)[0]
    offers = None  # an offer chosen per player: every choice's verdict, cost and value
    if spec.offer.choices:
        choices = choose_offers(row, spec, own_ctx, gross_value_cents(row), spec.target.min_uplift_cents or 0)
        shown = str(choices.shown[0])
        rules = eligibility.explain(row, spec.with_offer(spec.offer.choices[shown].offer), own_ctx)[0]
        offers = [{"offer": name, "template": c.offer.template, "chosen": name == choices.names[0],
                   "rules_shown": name == shown, "eligible": bool(choices.per_offer[name]["eligible"].iloc[0]),
                   "failed": [f for f in str(choices.per_offer[name]["failed"].iloc[0]).split(",") if f],
                   "cost_eur_cents": int(choices.cost_cents[name][0]),
                   "predicted_value_eur_cents": _cents(choices.net_cents[name][0])}
                  for name, c in spec.offer.choices.items()]
        row = row.assign(**{OFFER_NAME: choices.names})
    else:
        rules = eligibility.explain(row, spec, own_ctx)[0]
    failing = [r["rule"] for r in rules if not r["passed"]]
    reason = None  # why the player is left out, in the plain words of eligibility.REASONS
    if not in_scope:
        why = reason = "out of scope (brand or jurisdiction)"
    elif not all(s["passed"] for s in segment):
        why = "not in the segment: " + ", ".join(s["rule"] for s in segment if not s["passed"])
        reason = "Not in the campaign's segment"
    elif failing:
        reason = eligibility.reason_text(failing[0])
        why = f"ineligible: first failing rule {failing[0]}: {reason}" + (
            f" (also: {', '.join(failing[1:])})" if len(failing) > 1 else "")
    elif listed.empty:
        cut = (eligibility.HELD_OUT_RECENTLY if player_id in ctx.held_out.get(spec.id, ()) else
               eligibility.NOT_TARGETED_BY_UPLIFT if spec.target.by == "uplift" else
               eligibility.MAX_LIST_SIZE if built.targeting.get("stopped_by") == "max_list_size" else
               eligibility.CAMPAIGN_BUDGET)
        reason = eligibility.reason_text(cut)
        why = f"eligible but not selected: {cut}: {reason}" + (
            f" (the list is empty: {built.empty_because})" if built.empty_because else "")
    else:
        why = f"listed as {listed['variant'].iloc[0]}" + (
            " (holdout: not sent)" if listed["variant"].iloc[0] == "holdout" else "")
    value = None  # by uplift: the player's predicted value net of the offer, what the ranking read
    if spec.target.by == "uplift":
        value = _cents(offer_value_cents(row, spec)[1][0])
        why += (" (no predicted value: no uplift score or no profiling consent)" if value is None else
                f" (predicted value net of the offer {value / 100:,.2f} EUR; minimum "
                f"{spec.target.min_uplift_cents / 100:,.2f} EUR)")
    directory = list_dir(paths, spec.id, as_of)
    published = None
    if (directory / "list.parquet").exists():
        pub = pd.read_parquet(directory / "list.parquet", columns=["player_id", "variant"])
        hit = pub[pub["player_id"] == player_id]
        published = f"listed as {hit['variant'].iloc[0]}" if len(hit) else "not listed"
    return {
        "player_id": player_id, "campaign_id": spec.id, "as_of_date": as_of.isoformat(),
        "channel": spec.channel, "priority": spec.priority, "transactional": spec.transactional,
        "context": source, "higher_priority_campaigns": [h.id for h in higher_priority(spec, specs)],
        "scope": {"passed": in_scope, "brands": spec.brands or "all", "jurisdictions": spec.jurisdictions or "all",
                  "observed": f"brand {row['brand_id'].iloc[0]}, country {row['country'].iloc[0]}"},
        "segment": segment, "rules": rules, "targeting": built.targeting,
        "listed": not listed.empty, "variant": None if listed.empty else str(listed["variant"].iloc[0]),
        "decision": why, "reason": reason, "published_list": published, "predicted_value_eur_cents": value,
        "offers": offers,
    }


def _cents(v: float) -> float | None:
    return None if v != v else round(float(v), 2)


def format_explanation(e: dict) -> str:
    """The explanation as text for the terminal."""
    mark = {True: "pass", False: "FAIL"}
    out = [f"player {e['player_id']} · campaign {e['campaign_id']} ({e['channel']}, priority {e['priority']}"
           f"{', transactional' if e['transactional'] else ''}) · as of {e['as_of_date']}",
           f"context: message history + {e['context']}"
           + (f": {', '.join(e['higher_priority_campaigns'])}" if e["higher_priority_campaigns"] else ""),
           "", f"scope        {mark[e['scope']['passed']]}  brands {e['scope']['brands']}, jurisdictions "
               f"{e['scope']['jurisdictions']}: {e['scope']['observed']}", "segment:"]
    out += [f"  {mark[s['passed']]}  {s['rule']}: {s['observed']}" for s in e["segment"]] or ["  (everyone)"]
    out.append("eligibility (in order; the first FAIL is the reason counted):")
    width = max(len(r["rule"]) for r in e["rules"])
    for r in e["rules"]:
        verdict = "skip" if r["verdict"].startswith("bypassed") else mark[r["passed"]]
        note = "  [bypassed: transactional]" if r["verdict"].startswith("bypassed") else ""
        why = f"  ({r['reason']})" if not r["passed"] and r.get("reason") else ""
        out.append(f"  {verdict}  {r['rule']:<{width}}  {r['observed']}{note}{why}")
    if e.get("offers"):
        out.append("offer chosen per player (rules above: the offer marked *; value = predicted value net of "
                   "its cost):")
        for o in e["offers"]:
            value = "no prediction" if o["predicted_value_eur_cents"] is None else \
                f"value {o['predicted_value_eur_cents'] / 100:,.2f} EUR"
            verdict = ("CHOSEN" if o["chosen"] else "allowed" if o["eligible"]
                       else "refused: " + ", ".join(o["failed"]))
            out.append(f"  {'*' if o['rules_shown'] else ' '} {o['offer']:<24} {o['template']:<13} cost "
                       f"{o['cost_eur_cents'] / 100:,.2f} EUR, {value}: {verdict}")
    t = e["targeting"]
    out.append("targeting:    " + ", ".join(f"{k}={v}" for k, v in t.items()))
    out += ["", f"decision: {'LISTED' if e['listed'] else 'NOT LISTED'} — {e['decision']}"]
    if e["published_list"] is not None:
        out.append(f"published list of {e['as_of_date']}: {e['published_list']}")
    else:
        out.append(f"published list of {e['as_of_date']}: none")
    return "\n".join(out)
