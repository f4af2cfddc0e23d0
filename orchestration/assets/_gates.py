"""A quality-gate result (expectations.validate.GateResult) as a Dagster asset check result."""

import pandas as pd
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue

from crm.campaigns.overrides import apply_overrides
from crm.config import Paths
from expectations.validate import GateResult
from orchestration.resources import as_of


def docs_dir(paths: Paths):
    """Where the GX Data Docs site of every gate is built: <data home>/gx/data_docs."""
    return paths.home / "gx" / "data_docs"


def _table(outcomes) -> MetadataValue:
    if not outcomes:
        return MetadataValue.md("_(none)_")
    rows = pd.DataFrame([{"expectation": f"{o.expectation}({o.column or ''})", "description": o.description,
                          "observed": repr(o.observed)[:120], "unexpected": o.unexpected_count,
                          "sample_ids": ", ".join(map(str, o.sample[:10]))} for o in outcomes])
    return MetadataValue.md(rows.to_markdown(index=False))


def _override_scope() -> tuple | None:
    """(paths, check name, as-of date) of the running asset check, from Dagster's current context."""
    try:
        context = AssetCheckExecutionContext.get()
        crm = context.resources.crm
        return crm.paths(), context.check_specs[0].name, as_of(context)
    except Exception:  # noqa: BLE001 - outside a check run, or no crm resource: no override applies
        return None


def overrides_table(applied: list[dict]) -> MetadataValue:
    return MetadataValue.md(pd.DataFrame(applied).to_markdown(index=False) if applied else "_(none)_")


def gate_check_result(result: GateResult, extra: dict | None = None, *, scope: tuple | None = None
                      ) -> AssetCheckResult:
    """ERROR severity: a failed gate blocks downstream (blocking checks); warnings pass with WARN metadata.

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
    for i, url in enumerate(result.docs):
        meta["data_docs" if i == 0 else f"data_docs_{i + 1}"] = MetadataValue.url(url)
    return AssetCheckResult(passed=passed, severity=AssetCheckSeverity.ERROR,
                            description=(description or result.summary())[:2000], metadata={**meta, **(extra or {})})
