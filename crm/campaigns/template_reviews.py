"""Content review of message templates: no send uses a text a reviewer has not approved.

The reviewed unit is one locale of one template at one version (:meth:`Template.version`: its
words and declared parameters). A review is an audit entry (``template_reviewed``: approved or
rejected, by a person, with a reason and the text reviewed), so reviews are hash-chained and kept
in the store's append-only copy like campaign approvals. The rules:

* the reviewer is a person and never the template's ``owner`` (four eyes, as for campaigns);
* a version is approved while its latest review approves it; a later rejection withdraws it;
* any change to the text is a new version: unreviewed until someone reviews it;
* the delivery worker (:mod:`crm.service.worker`) refuses a send whose template locale is not at
  an approved version, whatever sent it (lists, triggers, journeys, the API).

``crm templates status`` lists each template locale's version and review; ``crm templates review``
and the web page's review page (compliance role, with the message rendered for a sample player)
record reviews.
"""

from __future__ import annotations

from dataclasses import dataclass

from crm.campaigns import audit
from crm.campaigns.approvals import ApprovalError, check_person_and_reason, is_reserved, same_person
from crm.channels.templates import Template, TemplateStore
from crm.config import Paths

KIND = "template_reviewed"
DECISIONS = ("approved", "rejected")


@dataclass(frozen=True)
class LocaleReview:
    template_id: str
    locale: str
    version: str
    state: str  # approved | rejected | unreviewed
    by: str | None = None
    reason: str | None = None
    ts: str | None = None


def _latest(entries: list[dict]) -> dict[tuple[str, str, str], dict]:
    """(template, locale, version) -> its latest review entry."""
    out: dict[tuple[str, str, str], dict] = {}
    for e in entries:
        d = e.get("details") or {}
        if e.get("kind") == KIND and isinstance(d, dict):
            out[(str(d.get("template_id")), str(d.get("locale")), str(d.get("version")))] = e
    return out


def approved_versions(paths: Paths) -> set[tuple[str, str, str]]:
    """Every (template, locale, version) whose latest review approves it (from a verified log:
    a log that does not verify approves nothing)."""
    if not audit.verify(paths).ok:
        return set()
    return {k for k, e in _latest(audit.read_entries(paths)).items() if e["details"].get("decision") == "approved"}


class ApprovedTemplates:
    """The approved versions, re-read only when the audit log changes (the worker asks per send)."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self._seen: tuple[int, int] | None = None
        self._approved: set[tuple[str, str, str]] = set()

    def __contains__(self, key: tuple[str, str, str]) -> bool:
        path = audit.log_file(self.paths)
        stamp = (path.stat().st_mtime_ns, path.stat().st_size) if path.exists() else (0, 0)
        if stamp != self._seen:
            self._approved, self._seen = approved_versions(self.paths), stamp
        return key in self._approved


def status(paths: Paths, store: TemplateStore | None = None) -> list[LocaleReview]:
    """Each locale of each template at its current version, with its latest review."""
    store = store or TemplateStore()
    latest = _latest(audit.read_entries(paths))
    out = []
    for t in store.load_all():
        for loc in t.locales:
            v = t.version(loc)
            e = latest.get((t.id, loc, v))
            out.append(LocaleReview(t.id, loc, v, e["details"]["decision"] if e else "unreviewed",
                                    e["by"] if e else None, e["reason"] if e else None, e["ts"] if e else None))
    return out


def review(paths: Paths, template: Template, locale: str, decision: str, by: str, reason: str) -> dict:
    """Record ``by``'s review of ``template``'s ``locale`` at its current version; returns the entry.
    Raises :class:`ApprovalError` for an unknown locale or decision, an empty name or reason, a
    name that is not a person's, or the template's own author."""
    if decision not in DECISIONS:
        raise ApprovalError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    if locale not in template.locales:
        raise ApprovalError(f"template {template.id!r} has no locale {locale!r} (it has {', '.join(template.locales)})")
    by, reason = check_person_and_reason(by, reason)
    if is_reserved(by):
        raise ApprovalError(f"{by!r} is not a person; review with your own name")
    if template.owner and same_person(by, template.owner):
        raise ApprovalError(f"{by!r} wrote template {template.id!r} (owner: {template.owner!r}) and cannot review "
                            "it: four eyes means a second person reviews")
    parts = dict(template.sources[locale])
    return audit.append(paths, KIND, by=by, reason=reason, details={
        "template_id": template.id, "locale": locale, "version": template.version(locale), "decision": decision,
        "owner": template.owner or None, "texts": parts})


def approve_all(paths: Paths, by: str, reason: str, store: TemplateStore | None = None) -> list[dict]:
    """Approve every template locale not approved at its current version (``crm templates review
    --all``); returns the entries written."""
    store = store or TemplateStore()
    return [review(paths, store.get(r.template_id), r.locale, "approved", by, reason)
            for r in status(paths, store) if r.state != "approved"]
