"""Reusable named segments (the CRM stack's newcomers, active, VIP, high value, dormant, at risk).

Defined once, here, over the profile (``dim_player``) and the current features
(``player_features``, see :mod:`ml.features`; money in EUR cents). A campaign uses one by
name and may narrow it with its own rules::

    segment:
      named: dormant                 # or a list: [dormant, vip] (a player must be in every one)
      rules:
        - {field: deposit_eur_90d, op: ">=", value: 10000}

The rules here are plain data in the shape of a campaign's ``segment`` block, validated by
:class:`crm.campaigns.spec.Segment` like any campaign's rules (a typo is an error on load).
A segment with ``scores`` is ML targeting: it lists only players with profiling consent.
Players without a feature row (inactive for 90 days) have NULL features, which match no
rule: they are in no named segment that tests a feature.
"""

from __future__ import annotations

NAMED_SEGMENTS: dict[str, dict] = {
    "newcomers": {
        "description": "registered in the last 30 days",
        "rules": [{"field": "tenure_days", "op": "<=", "value": 30}],
    },
    "active": {
        "description": "active (session, settled bet or captured deposit) in the last 7 days",
        "rules": [{"field": "days_since_last_active", "op": "<=", "value": 7}],
    },
    "vip": {
        "description": "deposited at least EUR 5,000 in the last 90 days",
        "rules": [{"field": "deposit_eur_90d", "op": ">=", "value": 500_000}],
    },
    "high_value": {
        "description": "net gaming revenue of at least EUR 500 in the last 90 days",
        "rules": [{"field": "ngr_eur_90d", "op": ">=", "value": 50_000}],
    },
    "dormant": {
        "description": "no activity for 30 days or more (but within the 90-day feature window)",
        "rules": [{"field": "days_since_last_active", "op": ">=", "value": 30}],
    },
    "at_risk": {
        "description": "active in the last 30 days with a churn score of at least 0.5 (ML: profiling consent)",
        "rules": [{"field": "days_since_last_active", "op": "<=", "value": 30}],
        "scores": {"churn_score": {"min": 0.5}},
    },
}

SEGMENT_NAMES: tuple[str, ...] = tuple(NAMED_SEGMENTS)
