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

:func:`publish` writes CSV, Parquet, XLSX, the suppression report and a manifest
atomically under ``lists/<campaign_id>/<as_of>/``; the same inputs give byte-identical
files. Lists carry the pseudonymous player id, never contact details.
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

from crm.campaigns import eligibility, experiments
from crm.campaigns.budget import record_committed, remaining_cents
from crm.campaigns.eligibility import Context
from crm.campaigns.history import not_yet_sent, planned_messages, split_own_sends
from crm.campaigns.offers import offer_cost_cents
from crm.campaigns.spec import CampaignSpec, Rule
from crm.config import Paths
from crm.contract import REGISTERED_NAMES, SCORE_MODELS, UPLIFT_SCORE_MODEL
from ml.policy import select_by_value_per_cost, take_within_budget

# The model scores a list carries (the vocabulary: ml.models.SCORE_MODELS), for players with profiling consent.
SCORES = SCORE_MODELS
UPLIFT_SCORE = f"{UPLIFT_SCORE_MODEL}_score"  # predicted incremental NGR if treated, EUR cents (not a probability)
SCORE_DECIMALS = 6  # scores are rounded so on the list; targeting ranks the rounded values
_MODEL_LABELS = REGISTERED_NAMES
LIST_COLUMNS = ("player_id", "campaign_id", "channel", "variant", "as_of_date", "send_at_utc", "product", "brand_id",
                "country", "locale", "timezone", *[c for m in SCORES for c in (f"{m}_score", f"{m}_model_version")],
                "offer_template", "offer_cost_eur_cents", "offer_wagering", "offer_expiry_days")
LIST_FILES = ("list.csv", "list.parquet", "list.xlsx", "suppression.json")
XLSX_MAX_ROWS = 1_048_575  # an Excel sheet holds 1,048,576 rows with the header; more go to further sheets


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

    Value = ``uplift_ngr_score`` (EUR cents, net of the bonus cost; NULL or without profiling
    consent: never targeted); cost = this campaign's offer cost per player
    (:func:`offer_cost_cents`: the bonus value, or the cashback on the player's last 7-day
    net loss up to the cap). Players above ``min_uplift_eur`` are ranked by value per cent
    of cost and taken in that order while the cost of the *treated* ones fits the budget
    (``budget_cents``, default ``target.budget_eur``; the caller passes the smaller of that
    and what is left of ``budget.total_eur``). Holdout membership is a salted hash of the
    player alone, so it is known before selection: a holdout player is listed (as a
    randomized control of the targeted population) but costs nothing; the walk stops at
    the first treated player who does not fit, so the list is a prefix of the ranking and
    the treated cost never exceeds the budget. ``max_list_size`` caps the number listed
    (holdout included). Players in ``already_sent`` (this campaign's messages already dispatched
    that day, paid for by the budget the caller passes) cost nothing more, like the holdout.
    """
    t, exp = spec.target, spec.experiment
    budget = t.budget_cents if budget_cents is None else budget_cents
    ids = eligible["player_id"].astype(str).to_numpy()
    value = np.where(_profiling(eligible), _score(eligible, UPLIFT_SCORE), np.nan)
    cost = offer_cost_cents(eligible, spec)
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
        "predicted_incremental_ngr_eur_cents": int(round(float(value[treated].sum()))),
        "stopped_by": sel.stopped_by,
    }
    return eligible.iloc[sel.index], summary


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
    ctx, sent = campaign_context(spec, ctx)
    sent_cents = int(sent["cost_cents"].sum())
    already = frozenset(sent.loc[sent["channel"] == spec.channel, "player_id"].astype(str))
    in_scope = audience[scope_mask(audience, spec)]
    in_segment = in_scope[segment_mask(in_scope, spec)]
    verdicts = eligibility.evaluate(in_segment, spec, ctx)
    eligible = in_segment[verdicts["eligible"].to_numpy()].copy()
    eligible, targeting, after = _target(spec, eligible, ctx, sent_cents, already)
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
        "audience": len(audience), "in_scope": len(in_scope), "in_segment": len(in_segment),
        "eligible": int(verdicts["eligible"].sum()), **targeted, "listed": len(rows),
        "holdout": int(counts.get(experiments.HOLDOUT, 0)),
        **{f"variant_{k}": int(counts.get(k, 0)) for k in exp.variants},
    }
    versions = sorted({f"{_MODEL_LABELS.get(m, m)} v{v}" for m in SCORES
                       for v in rows[f"{m}_model_version"].dropna().unique()})
    suppression = eligibility.suppression_counts(verdicts) | {
        "after_eligibility": {k: int(v) for k, v in after.items() if v}}
    return BuiltList(spec, as_of, rows, funnel, suppression,
                     experiments.srm_pvalue(counts, shares) if len(rows) else 1.0, versions, targeting)


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


def write_xlsx(built: BuiltList, path: Path) -> None:
    """The list for marketers as XLSX: byte-identical for the same list.

    XlsxWriter stamps every zip entry with 1980-01-01; the document's created / modified
    dates are set to the as-of date (00:00 UTC) instead of now. Rows beyond one sheet's
    capacity continue on further sheets; a ``summary`` sheet holds the funnel and the
    suppression counts.
    """
    import xlsxwriter

    stamp = dt.datetime.combine(built.as_of, dt.time())
    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_numbers": False,
                                         "strings_to_formulas": False, "strings_to_urls": False,
                                         "nan_inf_to_errors": False})
    wb.set_properties({"title": f"{built.campaign.id} {built.as_of.isoformat()}", "author": "casino-crm",
                       "created": stamp, "comments": f"spec {built.campaign.spec_hash()}"})
    columns = list(built.rows.columns)
    n = len(built.rows)
    # plain values per column, written by one typed method per column (no per-cell type
    # dispatch); missing values stay empty cells. constant_memory: rows in order.
    data = []
    for c in columns:
        values = built.rows[c]
        is_num = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        data.append(([None if pd.isna(v) else (float(v) if is_num else str(v)) for v in values.tolist()], is_num))
    for part, first in enumerate(range(0, max(n, 1), XLSX_MAX_ROWS)):
        ws = wb.add_worksheet("list" if part == 0 else f"list_{part + 1}")
        ws.write_row(0, 0, columns)
        writers = [(values, ws.write_number if is_num else ws.write_string) for values, is_num in data]
        for i in range(first, min(n, first + XLSX_MAX_ROWS)):
            r = i - first + 1
            for j, (values, put) in enumerate(writers):
                if values[i] is not None:
                    put(r, j, values[i])
    ws = wb.add_worksheet("summary")
    r = 0
    for title, values in (("funnel", built.funnel), *((k, v) for k, v in built.suppression.items())):
        ws.write(r, 0, title)
        r += 1
        for k, v in values.items():
            ws.write(r, 1, str(k))
            ws.write(r, 2, v)
            r += 1
    wb.close()


def publish(built: BuiltList, paths: Paths) -> dict:
    """Write list.csv, list.parquet, list.xlsx, suppression.json and manifest.json atomically, and
    record the list's treated offer cost as the date's commitment in the spend ledger
    (:func:`crm.campaigns.budget.record_committed`).

    The files are written in a temporary folder beside the target and renamed into
    place, so readers see the old list or the new one, never half of one. The same
    inputs give byte-identical files.
    """
    target = list_dir(paths, built.campaign.id, built.as_of)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{built.as_of.isoformat()}-", dir=target.parent))
    try:
        built.rows.to_csv(tmp / "list.csv", index=False, lineterminator="\n")
        built.rows.to_parquet(tmp / "list.parquet", index=False)
        write_xlsx(built, tmp / "list.xlsx")
        (tmp / "suppression.json").write_text(json.dumps(
            {"campaign_id": built.campaign.id, "as_of_date": built.as_of.isoformat(),
             "funnel": built.funnel, **built.suppression}, indent=2, sort_keys=True) + "\n")
        spec = built.campaign
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
            "total_offer_cost_eur_cents": int(built.rows.loc[built.rows["variant"] != "holdout",
                                                            "offer_cost_eur_cents"].sum()),
            "targeting": built.targeting,
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
              "list_sha256": _sha256(directory / "list.parquet"), **details}
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
    if record.get("list_sha256") != _sha256(directory / "list.parquet"):
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
        after = {"not_targeted_by_uplift": targeting["eligible"] - targeting["targeted"]}
    else:
        eligible, targeting = _target_all(spec, eligible, remaining, already)
        after = {"campaign_budget": targeting["cut_by_budget"], "max_list_size": targeting["cut_by_max_list_size"]}
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
        "offer_template": spec.offer.template,
        "offer_cost_eur_cents": offer_cost_cents(eligible, spec),
        "offer_wagering": float(spec.offer.wagering),
        "offer_expiry_days": int(spec.offer.expiry_days),
    }, columns=list(LIST_COLUMNS)).reset_index(drop=True)
    return rows
