"""Who may do what: one table of roles and actions, scoped by brand and region.

Every page, download and API call of the web page asks :func:`can` (or filters with
:func:`visible`) before it reads or writes anything; the CLI's commands that act for a person use
the same table. A user (:class:`crm.store.users.User`) has one role and a set of brands and of
regions (jurisdictions, :data:`crm.contract.JURISDICTIONS`), or ``*`` for all. An action on a
brand-scoped thing (a campaign, a list, a player) needs the role to allow the action **and** the
thing's brand in the user's brands **and**, when the thing has a region, that region in the
user's regions. A thing whose brand is unknown is refused (fail closed); so is any action not in
the table. Brands compare exactly as the event contract writes them (``A`` is not ``a``).

Why a table of our own rather than a policy library such as Casbin: the whole policy is five
roles by a dozen actions plus two set memberships; as a Python mapping it is read at a glance,
tested exhaustively (tests/test_users.py walks every role, action and scope) and needs no model
file, adapter or dependency. A policy that grows conditions per attribute would be the time to
move to Casbin's ABAC model.

Separation of duties: the admin manages users but approves nothing; compliance approves and
reviews but drafts nothing; the author of a campaign never approves it (four-eyes,
:mod:`crm.campaigns.approvals`, checks the person, whatever the role).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from crm.store.users import ALL, ROLES

# actions on one brand's things (campaign, list, player, template, readout, gate result)
BRAND_ACTIONS = (
    "campaign.view", "campaign.draft", "campaign.submit", "campaign.approve",
    "list.view", "list.download", "player.explain", "readout.view", "gate.view",
    "template.draft", "template.review",
)
# actions on the platform itself
PLATFORM_ACTIONS = ("user.manage", "audit.view")
ACTIONS = BRAND_ACTIONS + PLATFORM_ACTIONS

PERMISSIONS: dict[str, frozenset[str]] = {
    "marketing": frozenset({"campaign.view", "campaign.draft", "campaign.submit", "list.view", "list.download",
                            "player.explain", "readout.view", "gate.view", "template.draft"}),
    "compliance": frozenset({"campaign.view", "campaign.approve", "list.view", "list.download", "player.explain",
                             "readout.view", "gate.view", "template.review", "audit.view"}),
    "analytics": frozenset({"campaign.view", "list.view", "list.download", "player.explain", "readout.view",
                            "gate.view"}),
    "support": frozenset({"campaign.view", "player.explain"}),
    "admin": frozenset({"user.manage", "audit.view", "campaign.view", "gate.view"}),
}
assert set(PERMISSIONS) == set(ROLES) and all(p <= set(ACTIONS) for p in PERMISSIONS.values())


class Subject(Protocol):
    role: str
    brands: tuple[str, ...]
    regions: tuple[str, ...]


def _within(value: object, allowed: tuple[str, ...]) -> bool:
    return isinstance(value, str) and (ALL in allowed or value in allowed)


def can(user: Subject, action: str, brand: str | None = None, region: str | None = None) -> bool:
    """Whether ``user`` may do ``action`` (on a thing of ``brand`` / ``region``). A brand action
    needs a brand (None: refused); a platform action takes none. Unknown role or action: refused."""
    allowed = PERMISSIONS.get(getattr(user, "role", None), frozenset())
    if action not in allowed:
        return False
    if action in PLATFORM_ACTIONS:
        return True
    if not _within(brand, tuple(user.brands)):
        return False
    return region is None or _within(region, tuple(user.regions))


def visible(user: Subject, action: str, items: Iterable, brand_of, region_of=None) -> list:
    """The ``items`` ``user`` may ``action``: ``brand_of(item)`` (and ``region_of(item)``) say each one's
    scope; an item whose brand is unknown is left out."""
    return [x for x in items if can(user, action, brand_of(x), region_of(x) if region_of else None)]
