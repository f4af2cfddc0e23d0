"""A quality-gate result (expectations.validate.GateResult) as a Dagster asset check result.

Three verdicts, as the UI shows them: a failed error expectation fails the check with ERROR severity
(blocking: nothing downstream runs); failed warning expectations alone fail it with WARN severity
(yellow in the UI, downstream runs: Dagster blocks on ERROR only) and the description names what
warned and its value; otherwise it passes (OVERRIDDEN when a named person waived a failure).
"""

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue

from crm.campaigns.overrides import apply_overrides
from crm.config import Paths
from expectations.data_docs import data_docs_url, docs_root
from expectations.validate import GateResult
from orchestration.assets._meta import rounded, table
from orchestration.resources import as_of


def docs_dir(paths: Paths):
    """Where the GX Data Docs site of every gate is built: <data home>/gx/data_docs (served by `make ui`)."""
    return docs_root(paths.home)


def _plain(v):
    """An observed value for a reader: floats rounded (also inside dicts and lists)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return rounded(v)


def _table(outcomes) -> MetadataValue:
    if not outcomes:
        return MetadataValue.text("none")
    return table([{"expectation": o.name, "description": o.description,
                   "observed": str(_plain(o.observed))[:200], "unexpected": o.unexpected_count,
                   "sample_ids": ", ".join(map(str, o.sample[:10]))} for o in outcomes])


def warned_only(check: AssetCheckResult) -> bool:
    """A check that failed with WARN severity only: the gate's verdict is a pass (ledgers, dispatch)."""
    return not check.passed and check.severity == AssetCheckSeverity.WARN


def warning_summary(result: GateResult) -> str:
    """``features: WARN psi of days_since_last_active (churn) is 0.44 (warn above 0.1); ...``: each warning
    by its own description (the suites name the column or feature and its value), then what passed."""
    texts = [o.description or f"{o.name} observed={_plain(o.observed)!r}" for o in result.warnings]
    ok = len(result.outcomes) - len(result.warnings) - len(result.overridden)
    return (f"{result.suite}: WARN {'; '.join(texts)} ({ok} of {len(result.outcomes)} expectations passed "
            f"on {result.rows} rows; warnings do not block)")


def _override_scope() -> tuple | None:
    """(paths, check name, as-of date) of the running asset check, from Dagster's current context."""
    try:
        context = AssetCheckExecutionContext.get()
        crm = context.resources.crm
        return crm.paths(), context.check_specs[0].name, as_of(context)
    except Exception:  # noqa: BLE001 - outside a check run, or no crm resource: no override applies
        return None


def overrides_table(applied: list[dict]) -> MetadataValue:
    return table(applied) if applied else MetadataValue.text("none")


def gate_check_result(result: GateResult, extra: dict | None = None, *, scope: tuple | None = None
                      ) -> AssetCheckResult:
    """ERROR severity: a failed gate blocks downstream (blocking checks); warnings alone: WARN severity.

    Failed expectations waived by a gate override (crm/campaigns/overrides.py) for this check and as-of date
    (``scope`` = (paths, check, as_of); default: the running check's) pass as OVERRIDDEN, naming who and why.
    """
    scope = scope or _override_scope()
    applied: list[dict] = []
    if scope is not None:
        result, applied = apply_overrides(scope[0], result, scope[1], scope[2])
    return check_result(result, applied, extra)


def check_result(result: GateResult, applied: list[dict], extra: dict | None = None, *,
                 passed: bool | None = None, description: str | None = None) -> AssetCheckResult:
    """The check of a gate result whose overrides are already applied (``applied``: what was waived):
    status, failed / warned / overridden expectations with sample ids, notes, Data Docs links.
    ``passed`` / ``description``: when the verdict is more than the result (a list's checksums)."""
    passed = result.success if passed is None else passed
    warn = passed and bool(result.warnings)  # yellow, not green: a warning is something to look at
    notes = [str(o.observed) if o.description == "note" else f"{o.expectation}: {o.description}"
             for o in result.outcomes if o.description == "note" or "(note)" in o.description]
    meta: dict = {
        "status": "FAIL" if not passed else "OVERRIDDEN" if applied else "WARN" if result.warnings else "PASS",
        "rows": result.rows,
        "expectations": len(result.outcomes),
        "failed_expectations": _table(result.failed),
        "warnings": _table(result.warnings),
    }
    if applied:
        meta["overrides"] = overrides_table(applied)
        meta["overridden_expectations"] = _table(result.overridden)
    if notes:
        meta["notes"] = MetadataValue.md("\n".join(f"- {n}" for n in notes))
    for i, url in enumerate(result.docs):  # on the Data Docs server of `make ui`: a browser refuses file:// links
        meta["data_docs" if i == 0 else f"data_docs_{i + 1}"] = MetadataValue.url(data_docs_url(url))
    if warn:
        text = warning_summary(result) + (f" | {description}" if description else "")
    else:
        text = description or result.summary()
    return AssetCheckResult(passed=passed and not warn,
                            severity=AssetCheckSeverity.WARN if warn else AssetCheckSeverity.ERROR,
                            description=text[:2000],
                            metadata={**meta, **{k: _meta(v) for k, v in (extra or {}).items()}})


def _meta(v):
    return MetadataValue.float(rounded(v)) if isinstance(v, float) else v
