"""Campaign lists: audience ∩ segment ∩ eligibility -> targeting -> offer -> variants + holdout -> publish.

:func:`build_list` is a pure function over the audience frame (profile + features +
scores) and an eligibility :class:`~crm.campaigns.eligibility.Context` (as-of date, message history
with the day's higher-priority lists, calendar, policy, budget already spent). Targeting
only chooses among eligible players: ``target: by: uplift`` ranks them by predicted
incremental NGR per cent of offer cost within the budget (the rule of
:func:`ml.policy.select_by_value_per_cost`); ``by: all`` takes them in a fixed order
(highest segment score first, else player id) while the campaign's remaining total budget
lasts. :func:`build_day` builds the lists of one day in priority order (ties by id), each
seeing what the higher-priority lists took, so caps, the one-bonus-per-day rule and the
cost per player per day hold across campaigns; the order of the input does not matter. On a
re-run of a dispatched date, what was already sent that day is a fact every list sees
(:func:`campaign_context`): a list re-plans only its own campaign's messages, and the
players its campaign already sent to cost its budget nothing more.

:func:`publish` writes the list atomically under ``lists/<campaign_id>/<as_of>/``:
``list.parquet`` (the canonical list, every listed player with their variant, holdout
included: the gate and dispatch read it), ``list_with_holdout.csv`` (the same rows, for
analysts), ``list.xlsx`` (for marketers: only the players to contact, one sheet per variant,
plain column names, euros, and a summary sheet), the suppression report and a manifest; the
same inputs give byte-identical files. Lists carry the pseudonymous player id, never contact
details.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from crm.campaigns import approvals, eligibility, experiments
from crm.campaigns.budget import record_committed, remaining_cents
from crm.campaigns.eligibility import (
    CAMPAIGN_BUDGET,
    HELD_OUT_RECENTLY,
    MAX_LIST_SIZE,
    NOT_TARGETED_BY_UPLIFT,
    Context,
    reason_text,
)
from crm.campaigns.history import not_yet_sent, planned_messages, split_own_sends
from crm.campaigns.offer_generation import choose_offers
from crm.campaigns.offers import OFFER_NAME, offer_cost_cents, offer_effects, offer_fields, offer_terms
from crm.campaigns.spec import CampaignSpec, Rule
from crm.config import Paths
from crm.contract import REGISTERED_NAMES, SCORE_MODELS, UPLIFT_SCORE_MODEL
from ml.policy import net_value_cents, select_by_value_per_cost, take_within_budget

# The model scores a list carries (the vocabulary: ml.models.SCORE_MODELS), for players with profiling consent.
SCORES = SCORE_MODELS
UPLIFT_SCORE = f"{UPLIFT_SCORE_MODEL}_score"  # gross predicted value of an offer, EUR cents (not a probability)
VALUE_COLUMN = "predicted_value_eur_cents"  # that value net of the list's offer cost: what `target: uplift` ranks by
SCORE_DECIMALS = 6  # scores are rounded so on the list; targeting ranks the rounded values
_MODEL_LABELS = REGISTERED_NAMES
LIST_COLUMNS = ("player_id", "campaign_id", "channel", "variant", "as_of_date", "send_at_utc", "product", "brand_id",
                "country", "locale", "timezone", *[c for m in SCORES for c in (f"{m}_score", f"{m}_model_version")],
                "offer_template", "offer_cost_eur_cents", "offer_wagering", "offer_expiry_days", OFFER_NAME,
                "recommended_game", VALUE_COLUMN)
LIST_FILE = "list.parquet"  # the canonical list, holdout included: the gate and dispatch read it
ANALYST_CSV = "list_with_holdout.csv"  # the same rows as CSV, for analysts: never upload it to a sender
MARKETER_XLSX = "list.xlsx"  # for marketers: only the players to contact, one sheet per variant
SUPPRESSION_FILE = "suppression.json"
LIST_FILES = (ANALYST_CSV, LIST_FILE, MARKETER_XLSX, SUPPRESSION_FILE)
XLSX_MAX_ROWS = 1_048_575  # an Excel sheet holds 1,048,576 rows with the header; more go to further sheets
# The marketer's columns (list.xlsx): list column -> plain header. Money in EUR (the list holds
# cents). No model scores: they are profiling data, held for consenting players only (analysts'
# files have them).
MARKETER_COLUMNS: dict[str, str] = {
    "player_id": "Player ID", "variant": "Variant", "channel": "Channel", "send_at_utc": "Send at (UTC)",
    "brand_id": "Brand", "country": "Country", "locale": "Language", "timezone": "Time zone", "product": "Product",
    "offer_template": "Offer", "offer_cost_eur_cents": "Offer value (EUR)", "offer_wagering": "Wagering (times)",
    "offer_expiry_days": "Offer expires after (days)", OFFER_NAME: "Offer name", "recommended_game": "Recommended game",
}
EUR_COLUMNS = frozenset({"offer_cost_eur_cents"})  # cents in the list, euros in the marketer's file
# The funnel's stages in plain words (the summary sheet); variant_<name> stages are worded apart.
FUNNEL_LABELS: dict[str, str] = {
    "audience": "Players in the profile", "in_scope": "In the campaign's brands and countries",
    "in_segment": "In the segment", "eligible": "Eligible (may be contacted)",
    "uplift_scored": "Eligible with a predicted uplift", "above_min_uplift": "Predicted uplift above the minimum",
    "targeted": "Picked by uplift targeting", "listed": "Listed (to contact and holdout)",
    "holdout": "Holdout (never contacted; not in this file)",
}


@dataclass
class BuiltList:
    campaign: CampaignSpec
    as_of: dt.date
    rows: pd.DataFrame
    funnel: dict[str, int]
    suppression: dict[str, dict[str, int]]
    srm_pvalue: float
    model_versions: list[str] = field(default_factory=list)
    targeting: dict = field(default_factory=lambda: {"by": "all"})
    empty_because: str | None = None  # why nobody is to be contacted (None: someone is)

    @property
    def to_contact(self) -> int:
        """Listed players to send to (every variant; the holdout is never contacted)."""
        return int((self.rows["variant"] != experiments.HOLDOUT).sum())

    def offers_chosen(self) -> dict[str, dict[str, int]]:
        """For an offer chosen per player: per offer, the players to contact and their offer cost
        (EUR cents), in the order of the campaign's choices; empty for a fixed offer."""
        if not self.campaign.offer.choices:
            return {}
        sent = self.rows[self.rows["variant"] != experiments.HOLDOUT]
        by = sent.groupby(OFFER_NAME)["offer_cost_eur_cents"]
        players, cost = by.size(), by.sum()
        return {name: {"players": int(players.get(name, 0)), "cost_eur_cents": int(cost.get(name, 0))}
                for name in self.campaign.offer.choices}


def _rule_mask(df: pd.DataFrame, rule: Rule) -> pd.Series:
    col = df[rule.field]
    v = rule.value
    ops = {
        ">=": lambda: col >= v, ">": lambda: col > v, "<=": lambda: col <= v, "<": lambda: col < v,
        "==": lambda: col == v, "!=": lambda: col != v,
        "between": lambda: col.between(v[0], v[1]), "in": lambda: col.isin(v),
    }
    # NULL (no features, no score) never matches a rule.
    return ops[rule.op]().fillna(False).astype(bool) & col.notna()


def segment_mask(df: pd.DataFrame, spec: CampaignSpec) -> pd.Series:
    mask = pd.Series(True, index=df.index)
    for rule in spec.segment.all_rules:
        mask &= _rule_mask(df, rule)
    for score, bound in spec.segment.all_scores.items():
        col = pd.to_numeric(df[score], errors="coerce")
        if bound.min is not None:
            mask &= (col >= bound.min).fillna(False).astype(bool)
        if bound.max is not None:
            mask &= (col <= bound.max).fillna(False).astype(bool)
    return mask


def scope_mask(df: pd.DataFrame, spec: CampaignSpec) -> pd.Series:
    mask = pd.Series(True, index=df.index)
    if spec.brands:
        mask &= df["brand_id"].isin(spec.brands)
    if spec.jurisdictions:
        mask &= df["country"].isin(spec.jurisdictions)
    return mask


def _profiling(df: pd.DataFrame) -> np.ndarray:
    """Profiling consent per row (missing: no)."""
    return (df["consent_profiling"].astype("boolean").fillna(False).to_numpy(dtype=bool)
            if "consent_profiling" in df else np.zeros(len(df), dtype=bool))


def _score(df: pd.DataFrame, column: str) -> np.ndarray:
    """A score column as floats rounded as on the list (absent or missing: NaN)."""
    if column not in df:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[column], errors="coerce").astype(float).round(SCORE_DECIMALS).to_numpy()


def campaign_context(spec: CampaignSpec, context: Context) -> tuple[Context, pd.DataFrame]:
    """The context ``spec``'s list is built in, and the messages ``spec`` already sent that day.

    The day's context holds every message already dispatched on the as-of date; ``spec``'s own
    on its channel are the messages its list re-plans, so they leave its history
    (:func:`crm.campaigns.history.split_own_sends`). Without an outbox of the day: ``context`` unchanged.
    """
    history, sent = split_own_sends(context.history, spec.id, spec.channel)
    return (context if history is context.history else replace(context, history=history)), sent


def with_list(context: Context, rows: pd.DataFrame, spec: CampaignSpec, as_of: dt.date) -> Context:
    """``context`` plus the messages a list of the day will send that are not already sent."""
    return context.with_planned(not_yet_sent(planned_messages(rows, spec, as_of), context.history))


def remaining_budget_cents(spec: CampaignSpec, context: Context, sent_today_cents: int = 0) -> int | None:
    """What is left of the campaign's total budget after the offers it already dispatched, on earlier
    dates (``context.spent_cents``, from the spend ledger) and (``sent_today_cents``) on the day being
    rebuilt (None: no budget): :func:`crm.campaigns.budget.remaining_cents`."""
    return remaining_cents(spec, int(context.spent_cents.get(spec.id, 0)), sent_today_cents)


def _min_budget(*budgets: int | None) -> int | None:
    given = [b for b in budgets if b is not None]
    return min(given) if given else None


def target_by_uplift(spec: CampaignSpec, eligible: pd.DataFrame, budget_cents: int | None = None, *,
                     already_sent: frozenset[str] = frozenset()) -> tuple[pd.DataFrame, dict]:
    """The eligible players a ``target: by: uplift`` campaign lists, and the targeting summary.

    Value = :func:`predicted_value_cents`: ``uplift_value_score`` (the predicted deposit uplift x
    the player's expected theoretical win, :func:`ml.policy.deposit_value_cents`) net of this
    campaign's offer cost per player (:func:`offer_cost_cents`: the bonus value, or the cashback on
    the player's last 7-day net loss up to the cap); NULL or without profiling consent: never
    targeted. Players above ``min_uplift_eur`` are ranked by value per cent
    of cost and taken in that order while the cost of the *treated* ones fits the budget
    (``budget_cents``, default ``target.budget_eur``; the caller passes the smaller of that
    and what is left of ``budget.total_eur``). Holdout membership is a salted hash of the
    player alone, so it is known before selection: a holdout player is listed (as a
    randomized control of the targeted population) but costs nothing; a treated player whose
    offer no longer fits what is left is passed over (a cheaper offer further down may fit), so
    the treated cost never exceeds the budget and the list is empty only when no candidate's
    offer fits it. ``max_list_size`` caps the number listed
    (holdout included). Players in ``already_sent`` (this campaign's messages already dispatched
    that day, paid for by the budget the caller passes) cost nothing more, like the holdout.
    """
    t, exp = spec.target, spec.experiment
    budget = t.budget_cents if budget_cents is None else budget_cents
    ids = eligible["player_id"].astype(str).to_numpy()
    cost, value = offer_value_cents(eligible, spec)
    holdout = experiments.assign(spec.id, exp.salt, ids, exp.holdout, exp.variants) == experiments.HOLDOUT
    free = holdout | np.isin(ids, list(already_sent)) if already_sent else holdout
    sel = select_by_value_per_cost(value, cost, ids, max(budget, 0) if budget is not None else None,
                                   min_value=t.min_uplift_cents, free=free, max_count=spec.max_list_size)
    if budget is not None and budget <= 0 and not already_sent:  # nothing left to spend: nobody, not even a holdout
        sel = type(sel)(sel.index[:0], 0.0, sel.candidates, "budget")
    treated = sel.index[~holdout[sel.index]]
    summary = {
        "by": "uplift", "budget_eur_cents": budget, "min_uplift_eur_cents": t.min_uplift_cents,
        "eligible": len(eligible), "scored": int(np.isfinite(value).sum()), "above_min_uplift": sel.candidates,
        "targeted": len(sel.index), "treated": len(treated), "spent_eur_cents": int(round(sel.spent)),
        "predicted_value_eur_cents": int(round(float(value[treated].sum()))),
        "stopped_by": sel.stopped_by,
    }
    return eligible.iloc[sel.index], summary


def gross_value_cents(df: pd.DataFrame) -> np.ndarray:
    """Each row's predicted value of a bonus before its cost, EUR cents: the rounded
    ``uplift_value_score`` as listed; NaN without profiling consent or without a score."""
    return np.where(_profiling(df), _score(df, UPLIFT_SCORE), np.nan)


def predicted_value_cents(df: pd.DataFrame, cost_cents: np.ndarray, effect: np.ndarray | float = 1.0) -> np.ndarray:
    """Each row's predicted value of the offer net of its cost (``cost_cents``), EUR cents: the gross
    value (:func:`gross_value_cents`) x the offer's relative ``effect``, less the cost; NaN without
    profiling consent or without a score."""
    return net_value_cents(gross_value_cents(df) * effect, cost_cents)


def offer_value_cents(df: pd.DataFrame, spec: CampaignSpec) -> tuple[np.ndarray, np.ndarray]:
    """(each row's offer cost, its predicted value net of that cost), EUR cents: the campaign's offer,
    or the row's choice (:data:`~crm.campaigns.offers.OFFER_NAME`) with its relative effect."""
    cost = offer_cost_cents(df, spec)
    return cost, predicted_value_cents(df, cost, offer_effects(df, spec))


def _target_all(spec: CampaignSpec, eligible: pd.DataFrame, budget_cents: int | None,
                already_sent: frozenset[str] = frozenset()) -> tuple[pd.DataFrame, dict]:
    """``by: all``: everyone eligible, in a fixed order (the first segment score, highest first, else
    the player id), cut at ``max_list_size`` and where the treated cost leaves the remaining budget
    (the holdout and players in ``already_sent`` cost nothing more)."""
    ranked = bool(spec.segment.all_scores)
    key = next(iter(spec.segment.all_scores)) if ranked else "player_id"
    ordered = eligible.sort_values([key, "player_id"], ascending=[not ranked, True], kind="stable")
    ids = ordered["player_id"].astype(str).to_numpy()
    exp = spec.experiment
    holdout = experiments.assign(spec.id, exp.salt, ids, exp.holdout, exp.variants) == experiments.HOLDOUT
    free = holdout | np.isin(ids, list(already_sent)) if already_sent else holdout
    cost = offer_cost_cents(ordered, spec)
    order = np.arange(len(ordered))
    if budget_cents is not None and budget_cents <= 0 and not already_sent:
        within = take_within_budget(order[:0], cost, 0)
        stopped = "budget"
    else:  # a budget used up by today's sends still re-lists the prefix of those already sent
        within = take_within_budget(order, cost, None if budget_cents is None else max(budget_cents, 0), free=free)
        stopped = within.stopped_by
    n = len(within.index)
    cut_budget = len(ordered) - n
    if spec.max_list_size is not None and spec.max_list_size < n:
        n, stopped = spec.max_list_size, "max_list_size"
    taken = ordered.iloc[:n]
    spent = int(cost[:n][~free[:n]].sum())
    summary = {"by": "all", "eligible": len(eligible), "targeted": n, "budget_eur_cents": budget_cents,
               "cut_by_budget": cut_budget, "cut_by_max_list_size": len(ordered) - cut_budget - n,
               "spent_eur_cents": spent, "stopped_by": stopped}
    return taken, summary


def build_list(spec: CampaignSpec, audience: pd.DataFrame, as_of: dt.date, context: Context | None = None
               ) -> BuiltList:
    """Select, check eligibility, target, price the offer and assign variants. Pure.

    ``context``: the day's history (with the higher-priority lists and what was already sent
    that day), calendar, policy and spent budgets; default: none of them
    (:class:`~crm.campaigns.eligibility.Context` of ``as_of``). The campaign's own messages already sent
    that day (:func:`campaign_context`) are re-planned, not counted against it, and paid for:
    its budgets (``target.budget_eur`` per list, ``budget.total_eur``) hold for what was sent
    plus what its list newly sends.
    """
    ctx = context if context is not None else Context(as_of)
    if ctx.as_of != as_of:
        raise ValueError(f"context is for {ctx.as_of}, the list for {as_of}")
    if not ctx.clusters and "cluster_id" in audience:  # the linked accounts of the whole audience
        linked = audience[audience["cluster_id"].notna()]
        ctx = replace(ctx, clusters=dict(zip(linked["player_id"].astype(str), linked["cluster_id"].astype(str),
                                             strict=True)))
    ctx, sent = campaign_context(spec, ctx)
    sent_cents = int(sent["cost_cents"].sum())
    already = frozenset(sent.loc[sent["channel"] == spec.channel, "player_id"].astype(str))
    # both masks are row by row: taken together over the audience, its rows (every column) are copied
    # once, not twice (a third of a list's time at 1 M players went to such copies)
    scoped = scope_mask(audience, spec).to_numpy(dtype=bool)
    in_segment = audience[scoped & segment_mask(audience, spec).to_numpy(dtype=bool)]
    if spec.offer.choices:  # each player's offer: the best of the choices every rule allows them
        choices = choose_offers(in_segment, spec, ctx, gross_value_cents(in_segment),
                                spec.target.min_uplift_cents or 0)
        verdicts = choices.verdicts
        eligible = in_segment[choices.eligible].copy()
        eligible[OFFER_NAME] = choices.names[choices.eligible]
    else:
        verdicts = eligibility.evaluate(in_segment, spec, ctx)
        eligible = in_segment[verdicts["eligible"].to_numpy()].copy()
    # the dedup window holds for the holdout too: a player this campaign held out recently is not
    # listed again (the hash would hold them out again, while the treated are deduplicated)
    held_out = eligible["player_id"].astype(str).isin(ctx.held_out.get(spec.id, frozenset())).to_numpy()
    eligible = eligible[~held_out]
    eligible, targeting, after = _target(spec, eligible, ctx, sent_cents, already)
    after = {HELD_OUT_RECENTLY: int(held_out.sum())} | after  # zero counts leave the report below
    if len(sent):
        targeting |= {"already_sent_today": len(already), "sent_today_eur_cents": sent_cents}
    eligible = eligible.sort_values("player_id", kind="stable")

    exp = spec.experiment
    variant = experiments.assign(spec.id, exp.salt, eligible["player_id"], exp.holdout, exp.variants)
    rows = _list_rows(spec, eligible, variant, as_of)

    counts = rows["variant"].value_counts().to_dict()
    shares = {experiments.HOLDOUT: exp.holdout} | {
        k: (1 - exp.holdout) * w / sum(exp.variants.values()) for k, w in exp.variants.items()}
    targeted = ({"uplift_scored": targeting["scored"], "above_min_uplift": targeting["above_min_uplift"],
                 "targeted": targeting["targeted"]} if spec.target.by == "uplift" else {})
    funnel = {
        "audience": len(audience), "in_scope": int(scoped.sum()), "in_segment": len(in_segment),
        "eligible": int(verdicts["eligible"].sum()), **targeted, "listed": len(rows),
        "holdout": int(counts.get(experiments.HOLDOUT, 0)),
        **{f"variant_{k}": int(counts.get(k, 0)) for k in exp.variants},
    }
    versions = sorted({f"{_MODEL_LABELS.get(m, m)} v{v}" for m in SCORES
                       for v in rows[f"{m}_model_version"].dropna().unique()})
    suppression = eligibility.suppression_counts(verdicts) | {
        "after_eligibility": {k: int(v) for k, v in after.items() if v}}
    built = BuiltList(spec, as_of, rows, funnel, suppression,
                      experiments.srm_pvalue(counts, shares) if len(rows) else 1.0, versions, targeting)
    if not built.to_contact:
        built.empty_because = why_nothing_to_send(spec, funnel, suppression, targeting,
                                                  uplift_scores=_any_score(audience, UPLIFT_SCORE))
    return built


def _any_score(df: pd.DataFrame, column: str) -> bool:
    return column in df and bool(pd.to_numeric(df[column], errors="coerce").notna().any())


def _eur(cents: float | None) -> str:
    return "none" if cents is None else f"EUR {cents / 100:,.2f}"


def why_nothing_to_send(spec: CampaignSpec, funnel: dict[str, int], suppression: dict, targeting: dict, *,
                        uplift_scores: bool = True) -> str:
    """Why a list has nobody to contact, in plain words (the manifest, the suppression report and
    the marketer's summary say it). ``uplift_scores``: whether anyone in the audience has a
    predicted uplift (none: no uplift model is champion yet)."""
    if not funnel.get("audience"):
        return "the player profile is empty for this date"
    if not funnel.get("in_scope"):
        return "no player is in the campaign's brands and countries"
    if not funnel.get("in_segment"):
        return "no player is in the campaign's segment"
    if not funnel.get("eligible"):
        first = suppression.get("first_failing_rule", {})
        top = ", ".join(f"{reason_text(k)} ({v:,})" for k, v in list(first.items())[:3])
        return f"nobody in the segment may be contacted; the most frequent reasons: {top}"
    budget = targeting.get("budget_eur_cents")
    if budget is not None and budget <= 0:
        spent = targeting.get("spent_before_eur_cents")
        total = targeting.get("budget_total_eur_cents")
        return ("the campaign's budget is used up" + (f": {_eur(spent)} of its {_eur(total)} total already sent"
                                                       if total is not None else ""))
    if spec.target.by == "uplift":
        if not targeting.get("scored"):
            if not uplift_scores:
                return ("no uplift model is champion yet, so no player has a predicted uplift (a champion needs "
                        "finished past campaigns and a Qini above random targeting)")
            return f"none of the {funnel['eligible']:,} eligible players has a predicted uplift"
        if not targeting.get("above_min_uplift"):
            return (f"every eligible player's predicted uplift is at or below the campaign's minimum "
                    f"({_eur(targeting.get('min_uplift_eur_cents') or 0)}, target.min_uplift_eur)")
        if targeting.get("stopped_by") == "budget" and not targeting.get("treated"):
            return f"the budget left ({_eur(budget)}) does not cover the offer of the best-ranked player"
    elif targeting.get("stopped_by") == "budget" and funnel.get("listed") == funnel.get("holdout"):
        return f"the campaign's budget left ({_eur(budget)}) does not cover one more offer"
    if funnel.get("listed"):
        return "every listed player is in the holdout, which is never contacted"
    return "nobody was selected"


def build_day(specs: list[CampaignSpec], audience: pd.DataFrame, as_of: dt.date,
              context: Context | None = None) -> list[BuiltList]:
    """The lists of one day, built in priority order (1 first, ties by id), each seeing the
    messages the higher-priority lists will send (:func:`with_list`: those not already sent) and
    everything already sent that day (in ``context``; its own re-planned, see :func:`build_list`).

    Deterministic whatever the order of ``specs``: the build order is a total order of
    (priority, id), and each list is a pure function of the audience and the context the
    lists before it leave. Returns the lists in build order.
    """
    ids = [s.id for s in specs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"campaign ids must be unique in a day, got {sorted(ids)}")
    ctx = context if context is not None else Context(as_of)
    built = []
    for spec in sorted(specs, key=lambda s: s.order_key):
        b = build_list(spec, audience, as_of, ctx)
        built.append(b)
        ctx = with_list(ctx, b.rows, spec, as_of)
    return built


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def list_dir(paths: Paths, campaign_id: str, as_of: dt.date) -> Path:
    return paths.lists / campaign_id / as_of.isoformat()


def offer_text(spec: CampaignSpec) -> str:
    """The campaign's offer in plain words."""
    return offer_terms(spec.offer)


def _sheet_names(variants: list[str]) -> dict[str, str]:
    """One sheet name per variant: ``send <variant>``, within Excel's rules (31 characters, no []:*?/\\),
    unique ignoring case."""
    out: dict[str, str] = {}
    taken = {"summary"}
    for v in variants:
        base = "send " + "".join("_" if ch in "[]:*?/\\'" else ch for ch in v)
        name, k = base[:31], 2
        while name.casefold() in taken:
            name, k = f"{base[:27]} ({k})", k + 1
        taken.add(name.casefold())
        out[v] = name
    return out


def _column_values(rows: pd.DataFrame, column: str) -> tuple[list, bool]:
    """A list column as plain values for the marketer's sheet (cents as euros), and whether numeric."""
    values = rows[column]
    is_num = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    scale = 100.0 if column in EUR_COLUMNS else 1.0
    return [None if pd.isna(v) else (float(v) / scale if is_num else str(v)) for v in values.tolist()], is_num


def write_xlsx(built: BuiltList, path: Path, approval: dict | None = None) -> None:
    """The list for marketers as XLSX: only the players to contact, byte-identical for the same list.

    A ``summary`` sheet first (campaign, offer, total cost in EUR, the approval state when the
    list was built, players to contact per variant, the holdout left out, why players were left
    out in plain words, from :data:`crm.campaigns.eligibility.REASONS`), then one sheet per
    variant (``send <variant>``) with the players to contact: :data:`MARKETER_COLUMNS`, money in
    euros, a styled and frozen header row, column widths and a filter. Each sheet can be uploaded
    to a sender as one audience; the holdout is never in this file. Rows beyond one sheet's
    capacity continue on further sheets.

    XlsxWriter stamps every zip entry with 1980-01-01; the document's created / modified dates
    are set to the as-of date (00:00 UTC) instead of now.
    """
    import xlsxwriter

    spec, rows = built.campaign, built.rows
    stamp = dt.datetime.combine(built.as_of, dt.time())
    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_numbers": False,
                                         "strings_to_formulas": False, "strings_to_urls": False,
                                         "nan_inf_to_errors": False})
    wb.set_properties({"title": f"{spec.name} ({spec.id}) {built.as_of.isoformat()}: players to contact",
                       "author": "casino-crm", "created": stamp, "comments": f"spec {spec.spec_hash()}"})
    header = wb.add_format({"bold": True, "bg_color": "#DDEBF7", "bottom": 1, "text_wrap": True,
                            "valign": "top"})
    title = wb.add_format({"bold": True, "font_size": 13})
    bold = wb.add_format({"bold": True})
    money = wb.add_format({"num_format": "#,##0.00"})
    wrap = wb.add_format({"text_wrap": True, "valign": "top"})
    contact = rows[rows["variant"] != experiments.HOLDOUT]
    variants = list(spec.experiment.variants)
    sheets = _sheet_names(variants)
    per_variant = {v: contact[contact["variant"] == v] for v in variants}
    holdout = int((rows["variant"] == experiments.HOLDOUT).sum())

    # ---- summary
    ws = wb.add_worksheet("summary")
    ws.set_column(0, 0, 48)
    ws.set_column(1, 1, 70)
    ws.set_column(2, 3, 16)
    r = 0

    def line(label: str, value, fmt=None) -> None:
        nonlocal r
        ws.write_string(r, 0, label, bold)
        if isinstance(value, int | float) and not isinstance(value, bool):
            ws.write_number(r, 1, value, fmt)
        else:
            ws.write_string(r, 1, str(value), fmt or wrap)
        r += 1

    ws.write_string(r, 0, f"{spec.name}: players to contact", title)
    r += 2
    line("Campaign", f"{spec.name} ({spec.id})")
    line("List date (as of)", built.as_of.isoformat())
    line("Send at (UTC)", spec.schedule.send_at(built.as_of).strftime("%Y-%m-%d %H:%M"))
    line("Channel", spec.channel)
    line("Product", spec.product)
    line("Offer", offer_text(spec))
    for name, n in built.offers_chosen().items():
        line(f"  {name}: players to contact, cost (EUR)", f"{n['players']:,}, {n['cost_eur_cents'] / 100:,.2f}")
    line("Total offer cost (EUR)", float(contact["offer_cost_eur_cents"].sum()) / 100, money)
    if approval is not None:
        line("Approval when the list was built", approval["state"].replace("_", " "))
        line("", approval["summary"])
    line("Players to contact", len(contact))
    for v in variants:
        line(f"  variant {v} (sheet '{sheets[v]}')", len(per_variant[v]))
    line("Holdout: never contact them (not in this file)", holdout)
    if built.empty_because:
        line("Nothing to send because", built.empty_because)
    line("This file", "Only the players to contact, one sheet per variant: upload each sheet to the sender as "
                      "its own audience. The holdout is left out on purpose: contacting it would destroy the "
                      "experiment that measures the campaign. Analysts: list.parquet and list_with_holdout.csv "
                      "hold every listed player, holdout included, with the model scores.")
    line("Model scores", "Not in this file. Scores are profiling: a player has them only with profiling "
                         "consent, so they are blank for the others by design.")
    line("Campaign version (spec hash)", spec.spec_hash()[:12])
    line("Models used", ", ".join(built.model_versions) or "none")
    r += 1
    ws.write_string(r, 0, "How the list was made", header)
    ws.write_string(r, 1, "", header)
    ws.write_string(r, 2, "Players", header)
    r += 1
    for k, v in built.funnel.items():
        label = f"Variant {k[len('variant_'):]} (to contact)" if k.startswith("variant_") else FUNNEL_LABELS.get(k, k)
        ws.write_string(r, 0, label)
        ws.write_number(r, 2, v)
        r += 1
    r += 1
    for j, h in enumerate(("Why players were left out", "Rule", "Players (first reason)", "Players (any reason)")):
        ws.write_string(r, j, h, header)
    r += 1
    first = built.suppression.get("first_failing_rule", {})
    every = built.suppression.get("every_failing_rule", {})
    for name in sorted(set(first) | set(every), key=lambda n: (-first.get(n, 0), -every.get(n, 0), n)):
        ws.write_string(r, 0, reason_text(name), wrap)
        ws.write_string(r, 1, name)
        ws.write_number(r, 2, first.get(name, 0))
        ws.write_number(r, 3, every.get(name, 0))
        r += 1
    for name, n in built.suppression.get("after_eligibility", {}).items():
        ws.write_string(r, 0, reason_text(name), wrap)
        ws.write_string(r, 1, name)
        ws.write_number(r, 2, n)
        r += 1

    # ---- one sheet per variant: the players to contact
    columns = list(MARKETER_COLUMNS)
    for v in variants:
        part_rows = per_variant[v]
        n = len(part_rows)
        data = [_column_values(part_rows, c) for c in columns]
        widths = [min(max([len(MARKETER_COLUMNS[c]) * 0.8 + 2, *(len(str(x)) + 2 for x in values[:1000]
                                                                 if x is not None)]), 50)
                  for c, (values, _) in zip(columns, data, strict=True)]
        for part, start in enumerate(range(0, max(n, 1), XLSX_MAX_ROWS)):
            name = sheets[v] if part == 0 else f"{sheets[v][:26]} ({part + 1})"
            ws = wb.add_worksheet(name)
            for j, (c, w) in enumerate(zip(columns, widths, strict=True)):
                ws.set_column(j, j, w, money if c in EUR_COLUMNS else None)
            ws.set_row(0, 30)
            ws.write_row(0, 0, [MARKETER_COLUMNS[c] for c in columns], header)
            ws.freeze_panes(1, 0)
            end = min(n, start + XLSX_MAX_ROWS)
            ws.autofilter(0, 0, max(end - start, 0), len(columns) - 1)
            writers = [(values, ws.write_number if is_num else ws.write_string) for values, is_num in data]
            for i in range(start, end):
                rr = i - start + 1
                for j, (values, put) in enumerate(writers):
                    if values[i] is not None:
                        put(rr, j, values[i])
    wb.close()


def publish(built: BuiltList, paths: Paths) -> dict:
    """Write the list's files (:data:`LIST_FILES`) and manifest.json atomically, and record the
    list's treated offer cost as the date's commitment in the spend ledger
    (:func:`crm.campaigns.budget.record_committed`).

    ``list.parquet`` is the canonical list (holdout included: the gate and dispatch read it),
    ``list_with_holdout.csv`` the same rows for analysts, ``list.xlsx`` the marketer's file
    (players to contact only, :func:`write_xlsx`). The manifest records the approval state when
    the list was built (:func:`crm.campaigns.approvals.status`; a list with nobody to contact
    needs none) and, for such a list, why (``empty_because``). The files are written in a
    temporary folder beside the target and renamed into place, so readers see the old list or
    the new one, never half of one. The same inputs give byte-identical files.
    """
    spec = built.campaign
    target = list_dir(paths, spec.id, built.as_of)
    target.parent.mkdir(parents=True, exist_ok=True)
    core = {"to_contact": built.to_contact, "empty_because": built.empty_because,
            "as_of_date": built.as_of.isoformat(),
            "total_offer_cost_eur_cents": int(built.rows.loc[built.rows["variant"] != experiments.HOLDOUT,
                                                             "offer_cost_eur_cents"].sum())}
    st = approvals.status(paths, spec, core)
    approval = {"state": st.state, "required": st.required, "why": st.why, "summary": st.summary()}
    tmp = Path(tempfile.mkdtemp(prefix=f".{built.as_of.isoformat()}-", dir=target.parent))
    try:
        built.rows.to_csv(tmp / ANALYST_CSV, index=False, lineterminator="\n")
        built.rows.to_parquet(tmp / LIST_FILE, index=False)
        write_xlsx(built, tmp / MARKETER_XLSX, approval)
        reported = [*built.suppression["first_failing_rule"], *built.suppression["every_failing_rule"],
                    *built.suppression.get("after_eligibility", {})]
        (tmp / SUPPRESSION_FILE).write_text(json.dumps(
            {"campaign_id": spec.id, "as_of_date": built.as_of.isoformat(),
             "funnel": built.funnel, **built.suppression, "empty_because": built.empty_because,
             "reasons": {name: reason_text(name) for name in reported}}, indent=2, sort_keys=True) + "\n")
        manifest = {
            "campaign_id": spec.id, "campaign_name": spec.name,
            "channel": spec.channel, "as_of_date": built.as_of.isoformat(),
            "priority": spec.priority, "product": spec.product, "transactional": spec.transactional,
            "send_at_utc": spec.schedule.send_at(built.as_of).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "spec_hash": spec.spec_hash(), "model_versions": built.model_versions,
            "counts": built.funnel, "srm_pvalue": round(built.srm_pvalue, 6),
            "suppression": built.suppression["first_failing_rule"],
            "suppression_every_rule": built.suppression["every_failing_rule"],
            "suppression_after_eligibility": built.suppression.get("after_eligibility", {}),
            **core,
            "approval_at_publish": approval,
            "targeting": built.targeting,
            **({"offers_chosen": built.offers_chosen()} if spec.offer.choices else {}),
            "files": {name: {"sha256": _sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
                      for name in LIST_FILES},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if target.exists():
            old = target.with_name(f".old-{target.name}-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # the spend ledger: what this date's list commits (a re-publish of the date replaces it)
    record_committed(paths, spec.id, built.as_of, manifest["total_offer_cost_eur_cents"], manifest["spec_hash"])
    return manifest | {"path": str(target)}


def read_manifest(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text()) | {"path": str(directory)}


def published_lists(paths: Paths) -> list[dict]:
    """Every published list (latest first per campaign) with its manifest and paths."""
    out = []
    for mf in sorted(paths.lists.glob("*/*/manifest.json")):
        out.append(read_manifest(mf.parent))
    return sorted(out, key=lambda m: (m["campaign_id"], m["as_of_date"]), reverse=False)


def verify_manifest(directory: Path) -> list[str]:
    """Files whose sha256 no longer matches the manifest (empty = intact)."""
    manifest = json.loads((directory / "manifest.json").read_text())
    return [name for name, info in manifest["files"].items()
            if not (directory / name).exists() or _sha256(directory / name) != info["sha256"]]


GATE_FILE = "gate.json"


def record_gate(directory: Path, suite: str, success: bool, details: dict) -> None:
    """Write the gate verdict beside the list it judged, bound to that list's checksum."""
    record = {"suite": suite, "success": bool(success),
              "list_sha256": _sha256(directory / LIST_FILE), **details}
    tmp = directory / f".{GATE_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, directory / GATE_FILE)


def gate_verdict(directory: Path) -> tuple[bool, str]:
    """Whether the list in ``directory`` passed its gate *as it is now*, and why not."""
    gate = directory / GATE_FILE
    if not gate.exists():
        return False, "no gate result for this list: the quality gate has not run on it"
    record = json.loads(gate.read_text())
    if not record.get("success"):
        return False, f"the quality gate failed: {record.get('summary', '')}"
    if record.get("list_sha256") != _sha256(directory / LIST_FILE):
        return False, "the list changed after its gate ran"
    return True, "gate passed"


def _target(spec: CampaignSpec, eligible: pd.DataFrame, ctx: Context, sent_cents: int, already: frozenset[str]
            ) -> tuple[pd.DataFrame, dict, dict[str, int]]:
    """(the targeted players, what targeting decided, players cut after eligibility by reason):
    by uplift within the budget, or everyone eligible within the budget and the list size."""
    remaining = remaining_budget_cents(spec, ctx, sent_cents)
    if spec.target.by == "uplift":
        per_list = None if spec.target.budget_cents is None else spec.target.budget_cents - sent_cents
        eligible, targeting = target_by_uplift(spec, eligible, _min_budget(per_list, remaining),
                                               already_sent=already)
        after = {NOT_TARGETED_BY_UPLIFT: targeting["eligible"] - targeting["targeted"]}
    else:
        eligible, targeting = _target_all(spec, eligible, remaining, already)
        after = {CAMPAIGN_BUDGET: targeting["cut_by_budget"], MAX_LIST_SIZE: targeting["cut_by_max_list_size"]}
    if spec.budget.total_cents is not None:
        targeting |= {"budget_total_eur_cents": spec.budget.total_cents,
                      "spent_before_eur_cents": int(ctx.spent_cents.get(spec.id, 0))}
    return eligible, targeting, after


def _list_rows(spec: CampaignSpec, eligible: pd.DataFrame, variant: np.ndarray, as_of: dt.date) -> pd.DataFrame:
    """The list's rows (:data:`LIST_COLUMNS`), one per targeted player, with the offer."""
    def col(name: str) -> np.ndarray:
        return eligible[name].to_numpy() if name in eligible else np.full(len(eligible), None, dtype=object)

    # Model scores are profiling: a list carries them only for players who consented to it.
    profiling = _profiling(eligible)
    cost, value = offer_value_cents(eligible, spec)
    score_cols = {}
    for m in SCORES:
        score = _score(eligible, f"{m}_score")
        score_cols[f"{m}_score"] = np.where(profiling, score, np.nan)
        score_cols[f"{m}_model_version"] = np.where(profiling, col(f"{m}_model_version"), None)
    rows = pd.DataFrame({
        "player_id": eligible["player_id"].astype(str).to_numpy(),
        "campaign_id": spec.id,
        "channel": spec.channel,
        "variant": variant.astype(str),
        "as_of_date": as_of.isoformat(),
        "send_at_utc": spec.schedule.send_at(as_of).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "product": spec.product,
        "brand_id": eligible["brand_id"].to_numpy(),
        "country": eligible["country"].to_numpy(),
        "locale": col("locale"),
        "timezone": col("timezone"),
        **score_cols,
        **offer_fields(eligible, spec),
        "offer_cost_eur_cents": cost,
        OFFER_NAME: col(OFFER_NAME),
        "recommended_game": col("recommended_game"),
        VALUE_COLUMN: value,
    }, columns=list(LIST_COLUMNS)).reset_index(drop=True)
    return rows
