"""Four-eyes approval of campaigns, with the audit log (:mod:`crm.campaigns.audit`) as the single source of truth.

* A campaign needs approval when its YAML says ``approval: {required: true}``, or when its cost
  exceeds ``CRM_APPROVAL_THRESHOLD_EUR`` (default 1000 EUR). Cost = the larger of the list's
  treated offer cost (``total_offer_cost_eur_cents`` of the list's manifest) and the budget the
  spec allows (``target.budget_eur`` per list, ``budget.total_eur`` over the campaign's life):
  :func:`crm.campaigns.budget.approval_cost_cents`, the one budget module.
* A list with nobody to contact (empty, or a holdout only: ``to_contact`` 0 in its manifest) never
  needs approval: state ``not_required``, why "nothing to send: <why the list is empty>".
  Dispatch sends nothing for it either way.
* An approval (or rejection) is bound to a spec hash: a changed YAML is a new version and needs
  a new approval. The latest decision for a version wins, so a rejection after an approval
  withdraws it (and a later approval reinstates it).
* The author (``owner`` in the YAML) cannot approve their own campaign; neither can the
  pipeline's own names (:data:`RESERVED_NAMES`). Anyone, the author included, may reject.
* Names are compared as people read them, not as bytes (:func:`person_keys`): a zero-width
  space, a look-alike letter from another alphabet, case, accents, spacing or punctuation do
  not make another person. A name mixing alphabets (Latin ``alice`` with a Cyrillic ``а``) is
  refused (:func:`name_problem`), and names are recorded in the audit log as
  :func:`person_name` writes them.
* A rejected version is never dispatched, required or not; a required version without an
  approval waits (:mod:`crm.campaigns.dispatch` builds its list but does not send it).

Nothing here is cached: :func:`status` reads the log each time and trusts it only if the whole
chain verifies (state ``audit_broken`` otherwise).
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from crm.campaigns import audit
from crm.campaigns.budget import approval_cost_cents
from crm.campaigns.spec import CampaignSpec
from crm.config import Paths

THRESHOLD_ENV = "CRM_APPROVAL_THRESHOLD_EUR"
DEFAULT_THRESHOLD_EUR = 1000.0
RESERVED_NAMES = frozenset({"pipeline", "unknown", "system", "dagster"})
MAX_NAME_CHARS = 200
STATES = ("not_required", "pending", "approved", "rejected", "audit_broken")


class ApprovalError(ValueError):
    """An approval or rejection that may not be recorded (author approving, missing reason, ...)."""


def threshold_cents() -> int:
    """The cost above which a campaign needs approval, from ``$CRM_APPROVAL_THRESHOLD_EUR``."""
    raw = os.environ.get(THRESHOLD_ENV, "").strip()
    if not raw:
        return round(DEFAULT_THRESHOLD_EUR * 100)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also catches NaN
        raise ApprovalError(f"{THRESHOLD_ENV} must be a number of EUR >= 0, got {raw!r}")
    return round(value * 100)


def approval_required(spec: CampaignSpec, manifest: dict | None = None) -> tuple[bool, str]:
    """Whether ``spec`` needs a second person's approval, and why (or why not).

    ``manifest`` is a published list's manifest (its treated offer cost); without one only the
    spec's budget and ``approval.required`` count.
    """
    if nothing_to_send(manifest):  # an empty list (or a holdout only) sends nothing: nothing to approve
        return False, "nothing to send: " + (manifest.get("empty_because") or "the list has nobody to contact")
    cost, basis = approval_cost_cents(spec, manifest)
    limit = threshold_cents()
    if spec.approval.required:
        return True, "the campaign's YAML asks for approval (approval.required: true)"
    if cost is None:
        return False, "cost unknown (no published list, no budget): not above the threshold so far"
    if cost > limit:
        return True, f"cost {_eur(cost)} ({basis}) exceeds the approval threshold {_eur(limit)} ({THRESHOLD_ENV})"
    return False, f"cost {_eur(cost)} ({basis}) is within the approval threshold {_eur(limit)}"


def nothing_to_send(manifest: dict | None) -> bool:
    """Whether a list's manifest says it has nobody to contact (``to_contact`` 0: empty, or holdout
    only). Dispatch passes the count of the gated list's own rows, not the manifest's word."""
    return manifest is not None and manifest.get("to_contact") == 0


def _eur(cents: int) -> str:
    return f"{cents / 100:,.2f} EUR"


# ------------------------------------------------------------------------------------- people's names
# Invisible although not of category Cf (Unicode's Default_Ignorable_Code_Point letters and marks:
# the combining grapheme joiner, Hangul fillers, Khmer and Mongolian invisibles, variation
# selectors) and the blank Braille pattern.
_INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u180f\u2800\u3164\uffa0"
                       + "".join(map(chr, range(0xFE00, 0xFE10))) + "".join(map(chr, range(0xE0100, 0xE01F0))))
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Co", "Cs", "Cn"})  # format, control, private, surrogate, unassigned
_SPACES = frozenset("\t\n\v\f\r\x85")  # controls that are whitespace; the others (e.g. \x1f) are removed
# Cyrillic and Greek letters that look like Latin ones (a subset of Unicode's confusables,
# UTS #39), and characters that look like each other (I l 1 |, O 0): read as the same letter.
_LOOK_ALIKES = str.maketrans(
    "АВЕЅІЈКМНОРСТХУԚԜаеѕіјорсхуԁһԛԝӏ" "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧαοιρυνκχ" "I1|0",
    "ABESIJKMHOPCTXYQWaesijopcxydhqwl" "ABEZHIKMNOPTYXaoipuvkx" "lllo")
# Scripts a name may combine: Japanese (kanji and kana), Korean (hanja and hangul).
_SCRIPT_MIXES = (frozenset({"HAN", "HIRAGANA", "KATAKANA"}), frozenset({"HAN", "HANGUL"}))


def _visible(text: str) -> str:
    return "".join(c for c in text if c in _SPACES or (
        c not in _INVISIBLE and unicodedata.category(c) not in _INVISIBLE_CATEGORIES))


def person_name(name: object) -> str:
    """A person's name as recorded: Unicode NFKC, invisible characters removed, whitespace collapsed."""
    text = "" if name is None else str(name)
    for _ in range(4):  # NFKC can produce what the other steps remove, and the reverse: to a fixed point
        cleaned = " ".join(unicodedata.normalize("NFKC", _visible(text)).split())
        if cleaned == text:
            break
        text = cleaned
    return text


def _letters(text: str) -> str:
    """Letters and digits of ``text``, accents dropped."""
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c)[0] in "LN")


def person_keys(name: object) -> frozenset[str]:
    """How a name reads, for comparing people: :func:`person_name` without case, accents, spaces
    or punctuation, look-alike letters folded (Cyrillic ``а`` is ``a``), once ignoring case
    first (``ALICE`` is ``alice``) and once folding first (``aIice``, capital i, is ``alice``).
    Two names sharing a key are the same person (:func:`same_person`)."""
    text = person_name(name)
    return frozenset({_letters(text.casefold().translate(_LOOK_ALIKES)),
                      _letters(text.translate(_LOOK_ALIKES).casefold().translate(_LOOK_ALIKES))}) - {""}


def _script(ch: str) -> str:
    """The alphabet of a letter, from its Unicode name (``LATIN SMALL LETTER A``: ``LATIN``)."""
    word = unicodedata.name(ch, "UNKNOWN").split()[0]
    if word in ("CJK", "IDEOGRAPHIC"):
        return "HAN"
    if word == "KATAKANA-HIRAGANA":
        return "KATAKANA"
    return "COMMON" if word == "MODIFIER" else word  # modifier letters (ʻ ʼ) go with any alphabet


def name_problem(name: object) -> str:
    """Why ``name`` cannot name a person ("" if it can): empty once invisible characters are
    removed, no letter, longer than :data:`MAX_NAME_CHARS`, or letters from two alphabets
    (look-alikes: Latin ``alice`` with a Cyrillic ``а``)."""
    text = person_name(name)
    if not text:
        return "a name is required (nothing is left once invisible characters are removed)"
    if len(text) > MAX_NAME_CHARS:
        return f"a name of at most {MAX_NAME_CHARS} characters is expected"
    scripts = {_script(c) for c in text if unicodedata.category(c).startswith("L")} - {"COMMON"}
    if not scripts:
        return f"{text!r} has no letters: a person's name is expected"
    if len(scripts) > 1 and not any(scripts <= mix for mix in _SCRIPT_MIXES):
        return (f"{text!r} mixes alphabets ({', '.join(sorted(s.title() for s in scripts))}): look-alike letters "
                "are not accepted; write the name in one alphabet")
    return ""


_RESERVED_KEYS = frozenset().union(*map(person_keys, RESERVED_NAMES))


def is_reserved(name: object) -> bool:
    """Whether ``name`` reads as one of the pipeline's own names (:data:`RESERVED_NAMES`)."""
    return bool(person_keys(name) & _RESERVED_KEYS)


def same_person(a: object, b: object) -> bool:
    """Whether two names read as the same person (:func:`person_keys`)."""
    return bool(person_keys(a) & person_keys(b))


def _may_approve(spec: CampaignSpec, by: str) -> bool:
    return not name_problem(by) and not same_person(by, spec.owner) and not is_reserved(by)


@dataclass
class ApprovalStatus:
    campaign_id: str
    spec_hash: str  # the version this status is about
    owner: str
    required: bool
    why: str
    state: str  # one of STATES
    decided_by: str = ""  # the latest approval / rejection of this version
    decided_at: str = ""
    decision_reason: str = ""
    decision_seq: int | None = None
    approvals: list[dict] = field(default_factory=list)  # every approval of this version (by, ts, seq)
    other_versions_approved: list[str] = field(default_factory=list)  # spec hashes approved before
    audit_problem: str = ""

    @property
    def dispatchable(self) -> bool:
        return self.state in ("not_required", "approved")

    @property
    def dispatch_status(self) -> str:
        """What dispatch does: dispatched | awaiting_approval | rejected | audit_broken."""
        return {"not_required": "dispatched", "approved": "dispatched", "pending": "awaiting_approval"}.get(
            self.state, self.state)

    def summary(self) -> str:
        version = f"spec {self.spec_hash[:12]}"
        if self.state == "audit_broken":
            return f"the audit log does not verify ({self.audit_problem}); approvals cannot be trusted"
        if self.state == "rejected":
            return f"rejected by {self.decided_by} at {self.decided_at} ({version}): {self.decision_reason}"
        if self.state == "approved":
            return f"approved by {self.decided_by} at {self.decided_at} ({version}); {self.why}"
        if self.state == "pending":
            stale = " (an earlier version was approved; this one was changed since)" \
                if self.other_versions_approved else ""
            return (f"awaiting approval{stale}: {self.why}; a second person runs "
                    f"`crm campaign approve {self.campaign_id} --by NAME --reason TEXT`")
        return f"approval not required: {self.why}"

    def to_dict(self) -> dict:
        return asdict(self) | {"dispatchable": self.dispatchable, "summary": self.summary()}


def status(paths: Paths, spec: CampaignSpec, manifest: dict | None = None, *,
           spec_hash: str | None = None) -> ApprovalStatus:
    """The approval state of one version of a campaign, read from the audit log.

    The version is ``spec_hash`` when given (dispatch passes the hash the list was built from,
    from its manifest), else the current spec's. ``manifest`` gives the list's cost.
    """
    h = spec_hash or spec.spec_hash()
    required, why = approval_required(spec, manifest)
    st = ApprovalStatus(spec.id, h, spec.owner, required, why, "not_required")
    checked = audit.verify(paths)
    if not checked.ok:
        st.state, st.audit_problem = "audit_broken", checked.problem
        return st
    entries = [e for e in audit.read_entries(paths) if e.get("campaign_id") == spec.id
               and e.get("kind") in ("approved", "rejected")]
    # an approval by the author or a pipeline name never counts, however it got into the log
    entries = [e for e in entries if e["kind"] == "rejected" or _may_approve(spec, e.get("by", ""))]
    mine = [e for e in entries if e.get("spec_hash") == h]
    st.approvals = [{"by": e["by"], "ts": e["ts"], "seq": e["seq"], "reason": e["reason"]}
                    for e in mine if e["kind"] == "approved"]
    st.other_versions_approved = sorted({e["spec_hash"] for e in entries
                                         if e["kind"] == "approved" and e.get("spec_hash") != h})
    if mine:
        last = mine[-1]
        st.decided_by, st.decided_at, st.decision_reason, st.decision_seq = (
            last["by"], last["ts"], last["reason"], last["seq"])
        st.state = "approved" if last["kind"] == "approved" else "rejected"
    elif required:
        st.state = "pending"
    return st


def check_person_and_reason(by: str, reason: str) -> tuple[str, str]:
    """``by`` as recorded (:func:`person_name`) and the reason; an :class:`ApprovalError` if either is unusable."""
    reason = (reason or "").strip()
    if not person_name(by):
        raise ApprovalError("--by NAME is required: who decides")
    problem = name_problem(by)
    if problem:
        raise ApprovalError(f"--by: {problem}")
    if not reason:
        raise ApprovalError("--reason TEXT is required: why (it is kept in the audit log)")
    return person_name(by), reason


def _decision_details(spec: CampaignSpec, manifest: dict | None) -> dict:
    required, why = approval_required(spec, manifest)
    cost, basis = approval_cost_cents(spec, manifest)
    return {"campaign_name": spec.name, "owner": spec.owner, "required": required, "why": why,
            "cost_eur_cents": cost, "cost_basis": basis, "threshold_eur_cents": threshold_cents(),
            "list_as_of_date": (manifest or {}).get("as_of_date")}


def approve(paths: Paths, spec: CampaignSpec, by: str, reason: str, manifest: dict | None = None) -> dict:
    """Record ``by``'s approval of the current version of ``spec``; returns the audit entry.

    Raises :class:`ApprovalError` when ``by`` is the campaign's owner (or a pipeline name), or
    when ``by`` or ``reason`` is empty. The version is logged as a change first if it is new.
    """
    by, reason = check_person_and_reason(by, reason)
    if same_person(by, spec.owner):
        raise ApprovalError(f"{by!r} is the author (owner) of campaign {spec.id!r} (owner: {spec.owner!r}) and "
                            "cannot approve it: four eyes means a second person approves")
    if not _may_approve(spec, by):
        raise ApprovalError(f"{by!r} is not a person; approve with your own name")
    with audit.transaction(paths) as tx:
        _record_changes(tx, [spec], by=by)
        return tx.append("approved", by=by, reason=reason, campaign_id=spec.id, spec_hash=spec.spec_hash(),
                         details=_decision_details(spec, manifest))


def reject(paths: Paths, spec: CampaignSpec, by: str, reason: str, manifest: dict | None = None) -> dict:
    """Record a rejection of the current version of ``spec`` (withdraws an approval of it)."""
    by, reason = check_person_and_reason(by, reason)
    with audit.transaction(paths) as tx:
        _record_changes(tx, [spec], by=by)
        return tx.append("rejected", by=by, reason=reason, campaign_id=spec.id, spec_hash=spec.spec_hash(),
                         details=_decision_details(spec, manifest))


def _record_changes(tx: audit.Transaction, specs: Iterable[CampaignSpec], by: str) -> list[dict]:
    last: dict[str, str] = {}
    for e in tx.entries:
        if e.get("kind") == "campaign_changed":
            last[e["campaign_id"]] = e["spec_hash"]
    out = []
    for spec in specs:
        h = spec.spec_hash()
        if last.get(spec.id) == h:
            continue
        previous = last.get(spec.id)
        out.append(tx.append(
            "campaign_changed", by=by, campaign_id=spec.id, spec_hash=h,
            reason="first seen" if previous is None else "spec changed",
            details={"previous_spec_hash": previous, "spec": spec.model_dump(mode="json")}))
        last[spec.id] = h
    return out


def record_changes(tx: audit.Transaction, specs: Iterable[CampaignSpec], by: str) -> list[dict]:
    """:func:`record_spec_changes` inside an audit transaction the caller holds (the web page records
    the version a campaign file had before it writes a new one, under the same lock)."""
    return _record_changes(tx, specs, by=by)


def record_spec_changes(paths: Paths, specs: Iterable[CampaignSpec], by: str = "pipeline") -> list[dict]:
    """Log ``campaign_changed`` for every spec whose hash differs from the last one logged for it.

    The first sight of a campaign counts as a change. Idempotent (and race-free: the check and
    the append happen under the log's lock). ``by`` is who noticed the change (the YAML is edited
    outside this tool); the entry's details hold the whole spec, so versions can be compared.
    """
    specs = list(specs)
    with audit.transaction(paths) as tx:
        return _record_changes(tx, specs, by=by)


def latest_manifest(paths: Paths, campaign_id: str) -> dict | None:
    """The manifest of the campaign's most recent published list (by as-of date), if any."""
    from crm.campaigns.lists import read_manifest

    found = sorted((p for p in Path(paths.lists / campaign_id).glob("*/manifest.json")
                    if not p.parent.name.startswith(".")), key=lambda p: p.parent.name)  # not temp folders
    return read_manifest(found[-1].parent) if found else None


MAX_CONFIG_BYTES = 1024 * 1024


def record_config_changes(paths: Paths, directory: str | Path, by: str = "pipeline") -> list[dict]:
    """Log each new version of the campaign folder's shared files (``_offers.yaml``: the offer
    catalogue the API and chooser campaigns read; ``_calendar.yaml``: the blackout calendar) and of
    the eligibility rule table (code: :func:`crm.campaigns.eligibility.rule_table_version`) as a
    ``config_changed`` entry with its content (first 1 MiB) and sha256, and a removed one as such.
    Called by each campaign list of a run and by the service when it reads the catalogue again.
    Returns the entries written."""
    import hashlib

    from crm.campaigns.eligibility import RULE_TABLE, rule_table_version

    folder = Path(directory)
    current = {RULE_TABLE: rule_table_version()}
    for f in sorted(folder.glob("_*.yaml")):
        if f.is_file() and not f.is_symlink():
            data = f.read_bytes()
            current[f.name] = (hashlib.sha256(data).hexdigest(), data[:MAX_CONFIG_BYTES].decode("utf-8", "replace"))
    with audit.transaction(paths) as tx:
        last: dict[str, str | None] = {}
        for e in tx.entries:
            d = e.get("details") or {}
            if e.get("kind") == "config_changed" and isinstance(d, dict) and isinstance(d.get("file"), str):
                last[d["file"]] = d.get("sha256")
        out = []
        for name in sorted(set(current) | {n for n, h in last.items() if h is not None}):
            sha, text = current.get(name, (None, None))
            if last.get(name) == sha:
                continue
            out.append(tx.append("config_changed", by=by, reason="first seen" if name not in last else
                                 ("removed" if sha is None else "changed"),
                                 details={"file": name, "sha256": sha, "previous_sha256": last.get(name),
                                          "content": text}))
        return out
