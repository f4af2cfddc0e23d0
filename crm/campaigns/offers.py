"""What an offer costs per player (EUR cents): one function for lists, eligibility, budgets and
offer generation (the cost models: :data:`crm.campaigns.spec.OFFER_TEMPLATES`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm.campaigns.spec import CampaignSpec, Offer

LOSS_COLUMN = "net_loss_eur_7d"


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


def offer_cost_cents(df: pd.DataFrame, spec: CampaignSpec) -> np.ndarray:
    """Cost of the campaign's offer per player in EUR cents (:func:`cost_cents`)."""
    return cost_cents(df, spec.offer)


def offer_terms(o: Offer) -> str:
    """An offer's terms in plain words (the lists' summary, `crm offers catalogue`)."""
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
