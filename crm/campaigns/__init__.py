"""From a campaign spec to a dispatched list.

:mod:`~crm.campaigns.spec` (the YAML, validated) → :mod:`~crm.campaigns.segments` and
:mod:`~crm.campaigns.eligibility` (with :mod:`~crm.campaigns.policy`,
:mod:`~crm.campaigns.jurisdictions`, :mod:`~crm.campaigns.history`,
:mod:`~crm.campaigns.offers`) → selection, variants and holdouts
(:mod:`~crm.campaigns.lists`, :mod:`~crm.campaigns.experiments`) over a day
(:mod:`~crm.campaigns.day`) → publish → approvals and gate overrides
(:mod:`~crm.campaigns.approvals`, :mod:`~crm.campaigns.overrides`, both written to
:mod:`~crm.campaigns.audit`) → :mod:`~crm.campaigns.dispatch`.
"""
