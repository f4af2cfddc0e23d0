"""The feature spec: every model feature with its window and meaning.

The dbt mart ``player_feature_snapshots`` produces these columns; training and
scoring select them from this spec (never a copy of the list).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    name: str
    window_days: int | None  # None = whole history before the as-of date
    description: str
    kind: str = "numeric"  # "numeric" | "categorical" (a string column; LightGBM treats it as categorical)


FEATURES: tuple[Feature, ...] = (
    Feature("tenure_days", None, "days from registration to the as-of date"),
    Feature("days_since_last_active", None, "days since the last active day (999 if never active)"),
    Feature("active_days_7d", 7, "days with any activity"),
    Feature("active_days_30d", 30, "days with any activity"),
    Feature("active_days_90d", 90, "days with any activity"),
    Feature("sessions_7d", 7, "sessions started"),
    Feature("sessions_30d", 30, "sessions started"),
    Feature("avg_session_minutes_30d", 30, "mean session length in minutes"),
    Feature("stake_eur_7d", 7, "total stake, EUR cents"),
    Feature("stake_eur_30d", 30, "total stake, EUR cents"),
    Feature("stake_eur_90d", 90, "total stake, EUR cents"),
    Feature("ngr_eur_30d", 30, "net gaming revenue (stake - win - bonus cost), EUR cents"),
    Feature("ngr_eur_90d", 90, "net gaming revenue, EUR cents"),
    Feature("net_loss_eur_7d", 7, "player's net loss (stake - win), EUR cents"),
    Feature("deposits_30d", 30, "captured deposits"),
    Feature("deposit_eur_30d", 30, "captured deposit amount, EUR cents"),
    Feature("deposit_eur_90d", 90, "captured deposit amount, EUR cents"),
    Feature("deposit_failures_30d", 30, "failed payment attempts"),
    Feature("withdrawal_eur_30d", 30, "withdrawn amount, EUR cents"),
    Feature("bonus_cost_eur_30d", 30, "cost of bonuses issued, EUR cents"),
    Feature("bonus_stake_share_30d", 30, "share of stake placed with bonus money (0-1)"),
    Feature("rg_limit_hits_30d", 30, "responsible-gambling limit hits"),
    Feature("messages_delivered_30d", 30, "CRM messages delivered"),
    Feature("message_open_rate_90d", 90, "opens / deliveries (0 if none delivered)"),
    Feature("trend_stake_7d_30d", 30, "stake_eur_7d / (stake_eur_30d / 30 * 7), 0 if no stake in 30d"),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
