"""A quality-gate result (expectations.validate.GateResult) as a Dagster asset check result."""

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue

from crm.config import Paths
from expectations.validate import GateResult


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


def gate_check_result(result: GateResult, extra: dict | None = None) -> AssetCheckResult:
    """ERROR severity: a failed gate blocks downstream (blocking checks); warnings pass with WARN metadata."""
    notes = [str(o.observed) for o in result.outcomes if o.description == "note" or "(note)" in o.description]
    meta: dict = {
        "rows": result.rows,
        "expectations": len(result.outcomes),
        "failed_expectations": _table(result.failed),
        "warnings": _table(result.warnings),
        "status": "FAIL" if not result.success else ("WARN" if result.warnings else "PASS"),
    }
    if notes:
        meta["notes"] = MetadataValue.md("\n".join(f"- {n}" for n in notes))
    for i, url in enumerate(result.docs):
        meta["data_docs" if i == 0 else f"data_docs_{i + 1}"] = MetadataValue.url(url)
    return AssetCheckResult(passed=result.success, severity=AssetCheckSeverity.ERROR,
                            description=result.summary()[:2000], metadata={**meta, **(extra or {})})
