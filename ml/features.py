"""The feature spec: every model feature with its window and meaning.

The dbt mart ``player_feature_snapshots`` (and ``player_features``, the snapshot at the
run's as-of date) has the columns ``player_id, as_of_date, brand_id, country`` followed by
``FEATURE_NAMES`` in this order; ``tests/test_features.py`` fails when the marts, their dbt
contracts (``dbt_project/models/marts/player_feature_snapshots.yml`` and
``player_features.yml``, each beside its model) and this spec drift apart. Training and
scoring select the features from this spec (never a copy of the list).

Conventions (all computed point in time, from days strictly before the snapshot date D):

* an N-day window is the UTC days ``[D - N, D - 1]``; ``window_days=None`` = the whole
  history before D;
* money is EUR cents; counts are integers; rates, shares, means and trends are floats;
* no NULLs: counts and sums are 0, ratios 0 when the denominator is 0, "days since" 999
  when nothing happened in the window, categorical features ``'none'``;
* numeric features are SQL numeric types (INTEGER, BIGINT, DOUBLE); categorical features
  (``kind="categorical"``) are VARCHAR (LightGBM treats them as categories);
* imported daily aggregates (``landing/imported_daily``) count like events of that day;
  they carry no session hours, payment methods, providers, bonus counts, RG or message
  data, so those features only reflect events.
"""

from __future__ import annotations

from dataclasses import dataclass

NUMERIC = "numeric"
CATEGORICAL = "categorical"
NONE_CATEGORY = "none"  # value of a categorical feature when nothing qualifies in the window


@dataclass(frozen=True)
class Feature:
    name: str
    window_days: int | None  # None = whole history before the as-of date
    description: str
    kind: str = NUMERIC  # "numeric" | "categorical" (a string column; LightGBM treats it as categorical)


def _cat(name: str, window_days: int | None, description: str) -> Feature:
    return Feature(name, window_days, description, kind=CATEGORICAL)


FEATURES: tuple[Feature, ...] = (
    # --- lifecycle and recency
    Feature("tenure_days", None, "days from registration (or the first imported day) to the as-of date"),
    Feature("days_since_last_active", None, "days since the last active day (999 if never active)"),
    Feature("days_since_last_deposit", 90, "days since the last day with a captured deposit (999 if none in 90 days)"),
    # --- frequency
    Feature("active_days_7d", 7, "days with any activity (session, settled bet or captured deposit)"),
    Feature("active_days_30d", 30, "days with any activity"),
    Feature("active_days_90d", 90, "days with any activity"),
    Feature("sessions_7d", 7, "sessions started"),
    Feature("sessions_30d", 30, "sessions started"),
    Feature("sessions_90d", 90, "sessions started"),
    Feature("avg_session_minutes_30d", 30, "mean session length in minutes (session seconds / sessions started)"),
    Feature("evening_session_share_90d", 90,
            "share of sessions started 18:00-24:00 in the player's local time zone (0-1; 0 if none)"),
    Feature("night_session_share_90d", 90,
            "share of sessions started 00:00-06:00 in the player's local time zone (0-1; 0 if none)"),
    Feature("bets_30d", 30, "settled bets (one per game played in a session)"),
    # --- monetary: gaming
    Feature("stake_eur_7d", 7, "total stake, EUR cents"),
    Feature("stake_eur_30d", 30, "total stake, EUR cents"),
    Feature("stake_eur_90d", 90, "total stake, EUR cents"),
    Feature("stake_per_active_day_eur_30d", 30, "stake_eur_30d / active_days_30d, EUR cents (0 if not active)"),
    Feature("win_eur_30d", 30, "total win paid to the player, EUR cents"),
    Feature("win_eur_90d", 90, "total win paid to the player, EUR cents"),
    Feature("net_loss_eur_7d", 7, "player's net loss (stake - win), EUR cents"),
    Feature("net_loss_eur_30d", 30, "player's net loss (stake - win), EUR cents"),
    Feature("ngr_eur_7d", 7, "net gaming revenue (stake - win - bonus cost), EUR cents"),
    Feature("ngr_eur_30d", 30, "net gaming revenue (stake - win - bonus cost), EUR cents"),
    Feature("ngr_eur_90d", 90, "net gaming revenue, EUR cents"),
    # --- monetary: payments
    Feature("deposits_7d", 7, "captured deposits"),
    Feature("deposits_30d", 30, "captured deposits"),
    Feature("deposits_90d", 90, "captured deposits"),
    Feature("deposit_eur_7d", 7, "captured deposit amount, EUR cents"),
    Feature("deposit_eur_30d", 30, "captured deposit amount, EUR cents"),
    Feature("deposit_eur_90d", 90, "captured deposit amount, EUR cents"),
    Feature("avg_deposit_eur_90d", 90, "deposit_eur_90d / deposits_90d, EUR cents (0 if none)"),
    Feature("deposit_failures_30d", 30, "failed payment attempts"),
    Feature("deposit_failures_90d", 90, "failed payment attempts"),
    Feature("payment_methods_30d", 30, "distinct payment methods of captured or failed deposits"),
    Feature("payment_methods_90d", 90, "distinct payment methods of captured or failed deposits"),
    Feature("psps_30d", 30, "distinct payment service providers of captured or failed deposits"),
    Feature("psps_90d", 90, "distinct payment service providers of captured or failed deposits"),
    Feature("withdrawal_eur_30d", 30, "withdrawn amount, EUR cents"),
    Feature("withdrawal_eur_90d", 90, "withdrawn amount, EUR cents"),
    # --- bonuses
    Feature("bonuses_issued_30d", 30, "bonuses issued"),
    Feature("bonuses_issued_90d", 90, "bonuses issued"),
    Feature("bonuses_consumed_90d", 90, "bonuses consumed (wagering completed)"),
    Feature("bonus_cost_eur_30d", 30, "cost of bonuses issued, EUR cents"),
    Feature("bonus_stake_share_30d", 30, "share of stake placed with bonus money (0-1)"),
    # --- game preferences
    _cat("favourite_provider_90d", 90,
         "game provider with the highest stake (ties: more bets, then name); 'none' if no settled bet with a provider"),
    _cat("favourite_game_category_90d", 90,
         "game category (slots, live, table, ...) with the highest stake (same ties); 'none' if no settled bet"),
    Feature("providers_90d", 90, "distinct game providers played"),
    # --- trends (last week against the 30-day weekly average; 1 = steady, < 1 = declining)
    Feature("trend_stake_7d_30d", 30, "stake_eur_7d / (stake_eur_30d / 30 * 7), 0 if no stake in 30d"),
    Feature("trend_sessions_7d_30d", 30, "sessions_7d / (sessions_30d / 30 * 7), 0 if no session in 30d"),
    Feature("trend_deposits_7d_30d", 30, "deposits_7d / (deposits_30d / 30 * 7), 0 if no deposit in 30d"),
    # --- responsible gambling markers
    Feature("rg_limits_set", None, "distinct responsible-gambling limit kinds ever set (rg.limit.set)"),
    Feature("rg_limit_hits_30d", 30, "responsible-gambling limit hits"),
    Feature("reality_checks_30d", 30, "reality checks shown"),
    # --- CRM message engagement
    Feature("messages_delivered_30d", 30, "CRM messages delivered"),
    Feature("messages_delivered_90d", 90, "CRM messages delivered"),
    Feature("message_open_rate_90d", 90, "opens / deliveries, capped at 1 (0 if none delivered)"),
    Feature("message_click_rate_90d", 90, "clicks / deliveries, capped at 1 (0 if none delivered)"),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
NUMERIC_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.kind == NUMERIC)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.kind == CATEGORICAL)
FEATURES_BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
KEY_COLUMNS: tuple[str, ...] = ("player_id", "as_of_date", "brand_id", "country")
"""Columns of the feature marts before the features, in order."""

assert len(FEATURES_BY_NAME) == len(FEATURES), "duplicate feature name"
assert all(f.kind in (NUMERIC, CATEGORICAL) for f in FEATURES), "unknown feature kind"
