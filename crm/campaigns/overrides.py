"""Gate overrides: a named person waives named expectations of one gate for one as-of date.

An override is an audit-log entry (:mod:`crm.campaigns.audit`, kind ``gate_override``); the log is the
single source of truth, as for approvals. Its ``details`` hold the check name, the as-of date,
the expectation names it waives and, for a campaign list's ``compliance_gate``, the sha256 of
the list it was given for (``campaign_id`` / ``spec_hash`` name the campaign version).

* **Never overridable**: compliance. Every expectation in :data:`NON_OVERRIDABLE` (the list
  suite's eligibility recomputation, unique / non-null players, the day's per-player limits
  with the other lists of the day) and any expectation whose name mentions consent,
  eligibility, self-exclusion, cooling-off, harm, age or RG (:func:`overridable`). The same
  rule is applied again when an override is *read*, so a hand-made log entry cannot waive them.
  The manifest checksums of a list are not an expectation and cannot be waived either.
* **Who**: a named person (not empty, not a pipeline name of :data:`crm.campaigns.approvals.RESERVED_NAMES`,
  names compared and recorded as :func:`crm.campaigns.approvals.person_keys` / ``person_name`` say, so an
  invisible character or a look-alike letter changes nothing), with a non-empty reason.
* **Scope**: exactly that check and that as-of date (never a later one); for a list, only
  while the list's bytes are the ones it was given for (a rebuilt, different list needs a new
  override); for ``landing_gate``, only the landed batches that were waiting for the gate
  when it was given (a batch landed later needs its own override). Naming an expectation
  waives only its failure: any other failing expectation keeps the gate red.
* A log that does not :func:`crm.campaigns.audit.verify` means no override applies.

An expectation is named ``type(column)`` as in the check's ``failed_expectations`` metadata
(e.g. ``expect_column_mean_to_be_between(is_holdout)``), or ``type`` alone when it has no
column (e.g. ``expect_table_row_count_to_be_between``, the list size band).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from crm.campaigns import audit
from crm.campaigns.approvals import is_reserved, name_problem, person_name
from crm.config import Paths
from crm.gate_result import GateResult, waive

KIND = "gate_override"
LIST_CHECK = "compliance_gate"  # one per campaign list: needs the campaign id, bound to the list's sha256
LANDING_CHECK = "landing_gate"  # bound to the batches waiting for the gate when the override was given
CHECKS = ("landing_gate", "marts_dim_player_gate", "marts_fct_player_daily_gate", "features_gate", "scores_gate",
          LIST_CHECK)

# Compliance expectations, by name: never overridable (expectations/campaign_list.py).
NON_OVERRIDABLE = frozenset({
    "expect_column_values_to_be_in_set(compliance_violation)",  # eligibility recomputed from the profile
    "expect_column_values_to_be_unique(player_id)",  # one row per player
    "expect_column_values_to_not_be_null(player_id)",
    "expect_column_values_to_be_in_set(day_cost_within_cap)",  # the day's RG limits with the other lists
    "expect_column_values_to_be_in_set(one_bonus_offer_per_day)",
    "expect_column_values_to_be_in_set(channel_day_cap)",
    "expect_column_values_to_be_in_set(global_day_cap)",
    # the profile the eligibility recomputation trusts (expectations/marts.py)
    "expect_column_values_to_be_in_set(version_increases)",  # consent versions only increase
    # what dbt reads: each landed file's columns and types (expectations/landing.py); one name
    # covers every column of every file, so waiving it could hide a broken player_id or event time
    "expect_column_pair_values_to_be_equal",
})
# ... and anything whose name mentions consent / RG / age (any gate).
_COMPLIANCE_WORDS = re.compile(r"(^|[^a-z0-9])(consent|complian|eligib|self_?exclu|exclu|cooling|harm|age|"
                               r"rg|responsible|kyc|underage|minor)")


class OverrideError(ValueError):
    """An override that may not be recorded (compliance expectation, no name or reason, unknown check...)."""


def normalize(name: str) -> str:
    """An expectation name as overrides compare it: trimmed, lower case, no empty ``()``."""
    n = (name or "").strip().lower().replace(" ", "")
    return n[:-2] if n.endswith("()") else n


def overridable(name: str) -> tuple[bool, str]:
    """Whether an expectation (by name) may be waived, and why not."""
    n = normalize(name)
    if n in NON_OVERRIDABLE:
        return False, f"{n} is a compliance expectation (eligibility / unique players / the day's limits)"
    if _COMPLIANCE_WORDS.search(n):
        return False, f"{n} is about consent, eligibility, responsible gambling or age"
    return True, ""


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _list_binding(paths: Paths, campaign_id: str, as_of: dt.date) -> tuple[str, str | None] | None:
    """(sha256 of list.parquet, spec hash of its manifest) of the published list, or None."""
    from crm.campaigns.lists import list_dir, read_manifest

    directory = list_dir(paths, campaign_id, as_of)
    if not (directory / "list.parquet").exists():
        return None
    spec_hash = read_manifest(directory).get("spec_hash") if (directory / "manifest.json").exists() else None
    return _sha256(directory / "list.parquet"), spec_hash


def override(paths: Paths, *, check: str, as_of: dt.date, expectations: list[str] | None, by: str, reason: str,
             campaign_id: str | None = None) -> dict:
    """Record ``by``'s waiver of ``expectations`` of gate ``check`` on ``as_of``; returns the audit entry.

    Raises :class:`OverrideError` for a compliance expectation, no expectation named, an unknown
    check, ``by`` empty or a pipeline name, an empty reason, ``compliance_gate`` without a
    campaign (or without a published list that day), or a campaign given for another check.
    """
    by, reason = person_name(by), (reason or "").strip()
    if not by:
        raise OverrideError("--by NAME is required: who overrides the gate")
    if name_problem(by):
        raise OverrideError(f"--by: {name_problem(by)}")
    if is_reserved(by):
        raise OverrideError(f"{by!r} is not a person; override with your own name")
    if not reason:
        raise OverrideError("--reason TEXT is required: why the gate may be overridden (kept in the audit log)")
    if check not in CHECKS:
        raise OverrideError(f"unknown gate {check!r}; gates: {', '.join(CHECKS)}")
    names = sorted({normalize(e) for e in expectations or [] if normalize(e)})
    if not names:
        raise OverrideError("name the failing expectation(s) to waive (--expectation NAME); a gate is never "
                            "overridden as a whole")
    refused = [why for ok, why in map(overridable, names) if not ok]
    if refused:
        raise OverrideError("compliance gates cannot be overridden: " + "; ".join(refused))
    details: dict = {"check": check, "as_of_date": as_of.isoformat(), "expectations": names, "list_sha256": None}
    spec_hash = None
    if check == LIST_CHECK:
        if not campaign_id:
            raise OverrideError(f"{LIST_CHECK} is a campaign list's gate: name the campaign (--campaign ID)")
        bound = _list_binding(paths, campaign_id, as_of)
        if bound is None:
            raise OverrideError(f"no published list of {campaign_id!r} for {as_of.isoformat()}: nothing to override")
        details["list_sha256"], spec_hash = bound
    elif campaign_id:
        raise OverrideError(f"{check} is not a campaign gate: --campaign applies to {LIST_CHECK} only")
    if check == LANDING_CHECK:
        from crm.ingest.landing import batches_to_gate

        details["batches"] = batches_to_gate(paths)
        if not details["batches"]:
            raise OverrideError("every landed batch has passed the landing gate: nothing to override")
    return audit.append(paths, KIND, by=by, reason=reason, campaign_id=campaign_id, spec_hash=spec_hash,
                        details=details)


def override_entries(paths: Paths, check: str, as_of: dt.date, campaign_id: str | None = None) -> list[dict]:
    """The audit entries of the overrides that apply to ``check`` on ``as_of`` (oldest first).

    Empty when the log does not verify. For ``compliance_gate``, only overrides given for the
    list as it is now (sha256). Entries by a pipeline name or without a reason never count.
    """
    if not audit.verify(paths).ok:
        return []
    sha = None
    pending: list[str] = []
    if check == LANDING_CHECK:
        from crm.ingest.landing import batches_to_gate

        pending = batches_to_gate(paths)
    if check == LIST_CHECK:
        bound = _list_binding(paths, campaign_id, as_of) if campaign_id else None
        if bound is None:
            return []
        sha = bound[0]
    out = []
    for e in audit.read_entries(paths):
        d = e.get("details") or {}
        if (e.get("kind") != KIND or d.get("check") != check or d.get("as_of_date") != as_of.isoformat()
                or e.get("campaign_id") != campaign_id or d.get("list_sha256") != sha):
            continue
        if not str(e.get("reason", "")).strip() or name_problem(e.get("by")) or is_reserved(e.get("by")):
            continue
        if check == LANDING_CHECK and not set(pending) <= set(d.get("batches") or []):
            continue  # a batch the override was not given for is waiting: it needs its own
        out.append(e)
    return out


def active_overrides(paths: Paths, check: str, as_of: dt.date, campaign_id: str | None = None) -> set[str]:
    """Names of the expectations of ``check`` on ``as_of`` waived by an override (never compliance ones)."""
    return {n for e in override_entries(paths, check, as_of, campaign_id)
            for n in map(normalize, e["details"].get("expectations") or []) if overridable(n)[0]}


def apply_overrides(paths: Paths, result: GateResult, check: str, as_of: dt.date,
                    campaign_id: str | None = None) -> tuple[GateResult, list[dict]]:
    """``result`` with the failures waived by the overrides of ``check`` on ``as_of`` marked ``overridden``.

    Returns the new result and what was applied (expectation, by, reason, audit seq, ts) for
    metadata. A compliance expectation is never waived; a result without a matching failure is
    returned unchanged.
    """
    waivers: dict[str, dict] = {}
    for e in override_entries(paths, check, as_of, campaign_id):  # the latest override of a name wins
        for n in map(normalize, e["details"].get("expectations") or []):
            if overridable(n)[0]:
                waivers[n] = e
    failing = {normalize(o.name): o.name for o in result.failed}
    hits = {failing[n]: e for n, e in waivers.items() if n in failing}
    if not hits:
        return result, []
    applied = [{"expectation": name, "by": e["by"], "reason": e["reason"], "audit_seq": e["seq"], "ts": e["ts"]}
               for name, e in sorted(hits.items())]
    texts = {a["expectation"]: f"overridden by {a['by']}: {a['reason']} (audit seq {a['audit_seq']})"
             for a in applied}
    return waive(result, texts), applied


@dataclass
class ListVerdict:
    result: GateResult  # with the waived failures marked overridden
    overrides: list[dict]  # what was waived: expectation, by, reason, audit_seq, ts
    tampered: list[str]  # files changed since publish (never waivable)
    passed: bool
    summary: str


def gate_outcomes(result: GateResult) -> list[dict]:
    """Each expectation's verdict as ``gate.json`` keeps it (what the web page's gate view shows):
    its name, pass or fail, severity, description, failing-row count and observed value (as text,
    at most 200 characters; the failing rows' ids stay in the Data Docs)."""
    return [{"expectation": o.name, "success": bool(o.success), "severity": o.severity,
             "description": str(o.description)[:500], "unexpected_count": o.unexpected_count,
             "observed": str(o.observed)[:200]} for o in result.outcomes]


def record_list_gate(paths: Paths, campaign_id: str, as_of: dt.date, result: GateResult) -> ListVerdict:
    """Apply the overrides of the list's ``compliance_gate`` to ``result``, check the manifest
    checksums and write ``gate.json`` (:func:`crm.campaigns.lists.record_gate`, with the overrides listed
    and each expectation's verdict, :func:`gate_outcomes`).

    Dispatch proceeds only if every non-waived error passed and no file changed since publish.
    """
    from crm.campaigns.lists import list_dir, record_gate, verify_manifest

    directory = list_dir(paths, campaign_id, as_of)
    result, applied = apply_overrides(paths, result, LIST_CHECK, as_of, campaign_id)
    tampered = verify_manifest(directory)
    passed = result.success and not tampered
    summary = result.summary() + (f"; files changed since publish: {tampered}" if tampered else "")
    record_gate(directory, result.suite, passed, {"summary": summary, "as_of_date": as_of.isoformat(),
                                                  "overrides": applied, "outcomes": gate_outcomes(result)})
    return ListVerdict(result, applied, tampered, passed, summary)
