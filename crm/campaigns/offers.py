"""What an offer costs per player (EUR cents): one function for lists, eligibility and budgets."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm.campaigns.spec import CampaignSpec


def offer_cost_cents(df: pd.DataFrame, spec: CampaignSpec) -> np.ndarray:
    """Cost of the offer per player in EUR cents (cashback depends on the 7-day net loss)."""
    o = spec.offer
    if o.template in ("bonus", "free_spins"):
        return np.full(len(df), round(o.value_eur * 100), dtype=np.int64)
    if o.template == "cashback":
        loss = (pd.to_numeric(df["net_loss_eur_7d"], errors="coerce") if "net_loss_eur_7d" in df
                else pd.Series(0.0, index=df.index)).fillna(0).clip(lower=0)
        return np.minimum(np.round(loss * o.percent / 100), round(o.cap_eur * 100)).astype(np.int64).to_numpy()
    return np.zeros(len(df), dtype=np.int64)
