"""Run a Great Expectations 1.x suite over a pandas DataFrame and summarise the result.

One fresh ephemeral context per validation (adding a suite with the same name twice
raises, see STACK.md); progress bars and analytics off.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    observed: object
    unexpected_count: int | None
    sample: list  # failing rows, by pseudonymous id where the suite names an id column
    description: str = ""


@dataclass
class GateResult:
    suite: str
    success: bool
    rows: int
    outcomes: list[ExpectationOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def summary(self) -> str:
        if self.success:
            return f"{self.suite}: all {len(self.outcomes)} expectations passed on {self.rows} rows"
        parts = [f"{o.expectation}({o.column or ''}) observed={o.observed!r} "
                 f"unexpected={o.unexpected_count} sample={o.sample[:5]}" for o in self.failed]
        return f"{self.suite}: {len(self.failed)} of {len(self.outcomes)} failed: " + "; ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


def _plain(v: object) -> object:
    """numpy scalars and containers -> plain Python, so metadata serialises."""
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


def validate(df: pd.DataFrame, suite_name: str, expectations: list, id_column: str | None = None,
             descriptions: dict[int, str] | None = None) -> GateResult:
    """Validate ``df`` against ``expectations`` (GX expectation objects)."""
    import great_expectations as gx

    ctx = gx.get_context(mode="ephemeral")
    try:
        ctx.variables.progress_bars = {"globally": False}
    except Exception:  # noqa: BLE001 - older/newer configs differ; progress bars are cosmetic
        pass
    batch_def = (ctx.data_sources.add_pandas("pandas").add_dataframe_asset(suite_name)
                 .add_batch_definition_whole_dataframe("whole"))
    suite = ctx.suites.add(gx.ExpectationSuite(name=suite_name))
    for e in expectations:
        suite.add_expectation(e)
    result_format: dict = {"result_format": "COMPLETE", "partial_unexpected_count": 20}
    if id_column and id_column in df.columns:
        result_format["unexpected_index_column_names"] = [id_column]
    res = batch_def.get_batch(batch_parameters={"dataframe": df}).validate(suite, result_format=result_format)
    outcomes = []
    for i, r in enumerate(res.results):
        cfg = r.expectation_config
        result = r.result or {}
        sample = result.get("unexpected_index_list") or result.get("partial_unexpected_list") or []
        sample = [s.get(id_column, s) if isinstance(s, dict) and id_column else s for s in sample][:20]
        err = (r.exception_info or {}).get("exception_message") if not r.success else None
        outcomes.append(ExpectationOutcome(
            expectation=cfg.type, column=cfg.kwargs.get("column"), success=bool(r.success),
            observed=_plain(result.get("observed_value", err)),
            unexpected_count=_plain(result.get("unexpected_count")), sample=_plain(sample),
            description=(descriptions or {}).get(i, ""),
        ))
    return GateResult(suite_name, bool(res.success), len(df), outcomes)
