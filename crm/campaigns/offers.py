"""What an offer costs per player (EUR cents): one function for lists, eligibility, budgets and
offer generation (the cost models: :data:`crm.campaigns.spec.OFFER_TEMPLATES`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm.campaigns.spec import CampaignSpec, Offer

LOSS_COLUMN = "net_loss_eur_7d"
OFFER_NAME = "offer_name"  # a list row's offer of an offer chosen per player (its name in the choices)


def cost_cents(df: pd.DataFrame, o: Offer) -> np.ndarray:
    """Cost of offer ``o`` per player in EUR cents. Cashback is ``percent`` of the 7-day net loss
    (``net_loss_eur_7d``, EUR cents), at most the cap; a player whose loss is unknown (no column, or a value
    that is missing or not a number) costs the cap, the most it can (fail closed for every cap and
    budget that reads it). Every other template costs :attr:`Offer.fixed_cost_cents`."""
    fixed = o.fixed_cost_cents
    if fixed is not None:
        return np.full(len(df), fixed, dtype=np.int64)
    cap = round(o.cap_eur * 100)
    if LOSS_COLUMN not in df:
        return np.full(len(df), cap, dtype=np.int64)
    loss = pd.to_numeric(df[LOSS_COLUMN], errors="coerce").astype(float).to_numpy()
    with np.errstate(invalid="ignore", over="ignore"):
        cents = np.round(np.clip(loss, 0, None) * o.percent / 100)  # the loss is in EUR cents
    return np.where(np.isfinite(cents), np.minimum(cents, cap), cap).astype(np.int64)


def chosen_offers(df: pd.DataFrame, spec: CampaignSpec) -> np.ndarray:
    """Each row's choice of a campaign whose offer is chosen per player (column :data:`OFFER_NAME`;
    absent or not one of the choices: None)."""
    if OFFER_NAME not in df:
        return np.full(len(df), None, dtype=object)
    names = df[OFFER_NAME].to_numpy(dtype=object)
    return np.where(pd.Series(names).isin(list(spec.offer.choices)).to_numpy(), names, None)


def offer_cost_cents(df: pd.DataFrame, spec: CampaignSpec) -> np.ndarray:
    """Cost of the campaign's offer per player in EUR cents (:func:`cost_cents`); an offer chosen
    per player: the row's choice's (:func:`chosen_offers`; none: the most any choice costs, fail closed)."""
    if not spec.offer.choices:
        return cost_cents(df, spec.offer)
    names = chosen_offers(df, spec)
    out = np.full(len(df), spec.offer.max_cost_cents, dtype=np.int64)
    for name, choice in spec.offer.choices.items():
        here = names == name
        if here.any():
            out[here] = cost_cents(df[here], choice.offer)
    return out


def offer_effects(df: pd.DataFrame, spec: CampaignSpec) -> np.ndarray:
    """Each row's offer effect relative to the bonuses the uplift model learned from: 1 for a fixed
    offer; the row's choice's ``relative_effect`` (no choice: NaN, so no predicted value)."""
    if not spec.offer.choices:
        return np.ones(len(df))
    names = chosen_offers(df, spec)
    out = np.full(len(df), np.nan)
    for name, choice in spec.offer.choices.items():
        out[names == name] = choice.relative_effect
    return out


def offer_fields(df: pd.DataFrame, spec: CampaignSpec) -> dict[str, np.ndarray]:
    """The list's offer columns per row (template, wagering, expiry days): the campaign's offer, or
    the row's choice (none: a bonus with the strictest terms of the choices, fail closed)."""
    n = len(df)
    if not spec.offer.choices:
        o = spec.offer
        return {"offer_template": np.full(n, o.template, dtype=object), "offer_wagering": np.full(n, float(o.wagering)),
                "offer_expiry_days": np.full(n, int(o.expiry_days), dtype=np.int64)}
    options = spec.offer.options
    template = np.full(n, "bonus", dtype=object)
    wagering = np.full(n, max(float(o.wagering) for o in options))
    expiry = np.full(n, spec.offer.max_expiry_days, dtype=np.int64)
    names = chosen_offers(df, spec)
    for name, choice in spec.offer.choices.items():
        here = names == name
        template[here], wagering[here], expiry[here] = choice.offer.template, choice.offer.wagering, \
            choice.offer.expiry_days
    return {"offer_template": template, "offer_wagering": wagering, "offer_expiry_days": expiry}


def offer_terms(o: Offer) -> str:
    """An offer's terms in plain words (the lists' summary, `crm offers catalogue`); an offer chosen
    per player: its choices'."""
    choices = getattr(o, "choices", None)
    if choices:
        intent = getattr(o, "intent", None)
        return (f"Chosen per player{f' (intent {intent})' if intent else ''}, the best for them of: "
                + "; ".join(f"{name}: {offer_terms(c.offer)}" for name, c in choices.items()))
    terms = (f", wagering {o.wagering:g}x" if o.wagering else "") + f", expires after {o.expiry_days} days"
    if o.template == "bonus":
        return f"Bonus of EUR {o.value_eur:,.2f}{terms}"
    if o.template == "free_spins":
        return f"Free spins worth EUR {o.value_eur:,.2f}{terms}"
    if o.template == "cashback":
        return f"Cashback of {o.percent:g}% of the last 7 days' net loss, up to EUR {o.cap_eur:,.2f}{terms}"
    if o.template == "deposit_match":
        return f"Deposit match of {o.percent:g}% of the next deposit, up to EUR {o.cap_eur:,.2f}{terms}"
    if o.template == "mission":
        return f"Mission: wager EUR {o.wager_eur:,.2f} on a provider new to you, reward EUR {o.value_eur:,.2f}{terms}"
    if o.template == "tournament":
        return f"Tournament entry worth EUR {o.value_eur:,.2f}{terms}"
    return "No offer"
