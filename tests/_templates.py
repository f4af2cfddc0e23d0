"""Content review for tests that send: every locale of every template approved by a reviewer, as a
compliance officer does with ``crm templates review --all`` (the worker refuses unreviewed texts)."""

from __future__ import annotations

from crm.campaigns.template_reviews import approve_all
from crm.channels.templates import TemplateStore
from crm.config import Paths


def approve_templates(paths: Paths, store: TemplateStore | None = None) -> int:
    """Approve each template locale not approved yet at its current version; returns how many."""
    return len(approve_all(paths, "Rita Reviewer", "reviewed for the test", store))
