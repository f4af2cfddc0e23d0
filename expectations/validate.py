"""Run a Great Expectations 1.x suite over a pandas DataFrame and summarise the result.

One fresh ephemeral context per validation (adding a suite with the same name twice
raises, see STACK.md); progress bars and analytics off.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pandas as pd

# The result types are plain data in crm.gate_result (crm.campaigns.overrides waives outcomes without
# importing this package); they are re-exported here, where the suites build them.
from crm.gate_result import ExpectationOutcome, GateResult, outcome, plain_value, waive
from expectations.data_docs import localize_site

__all__ = ["ExpectationOutcome", "GateResult", "combine", "merge_chunks", "outcome", "plain_value", "validate",
           "waive", "warning"]

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


_EXACT_IN_FLOAT = 2**53


def _between_columns_as_64_bit(df: pd.DataFrame, expectations: list) -> pd.DataFrame:
    """``df`` with the numeric columns of range expectations as int64 or float64, the same values.

    GX's pandas range check (``expect_column_values_to_be_between``) compares in numpy only when
    the column's dtype is exactly int64 or float64; any other (int32, float32, pandas' nullable
    Int64 / Float64 that a column with NULLs becomes) goes value by value through Python: 11 s of
    the features gate at 1,000,000 players. Integers without a missing value become int64,
    others float64 with NaN for missing (GX leaves missing values out of the check either way),
    unless an integer is too large for a float to hold exactly (or, without missing values, for
    int64): that column is left as it is.
    """
    from great_expectations.expectations import ExpectColumnValuesToBeBetween

    columns = {e.column for e in expectations if isinstance(e, ExpectColumnValuesToBeBetween)}
    changed: dict[str, pd.Series] = {}
    for c in columns:
        if c not in df.columns:
            continue
        col = df[c]
        dtype = col.dtype
        if dtype in ("int64", "float64") or pd.api.types.is_bool_dtype(dtype) \
                or not pd.api.types.is_numeric_dtype(dtype):
            continue
        if pd.api.types.is_integer_dtype(dtype):
            top = 0 if col.isna().all() else max(abs(int(col.min())), abs(int(col.max())))
            if not col.hasnans and top < 2**63:  # an unsigned value past int64 is left as it is
                changed[c] = col.astype("int64")
            elif top <= _EXACT_IN_FLOAT:
                changed[c] = col.astype("float64")
        else:
            changed[c] = col.astype("float64")
    return df.assign(**changed) if changed else df


def validate(df: pd.DataFrame, suite_name: str, expectations: list, id_column: str | None = None,
             descriptions: dict[int, str] | None = None, docs_dir: str | Path | None = None) -> GateResult:
    """Validate ``df`` against ``expectations`` (GX expectation objects); the outcomes come in
    the order of ``expectations`` and ``descriptions`` are keyed by that order.

    An expectation made with ``severity=FailureSeverity.WARNING`` is reported but does not
    fail the result. With ``docs_dir``, the validation runs through a GX Checkpoint whose
    UpdateDataDocsAction writes a Data Docs HTML site to ``docs_dir/<suite_name>``
    (``GateResult.docs`` links the page of this validation; the site keeps the latest
    validation of the suite: GX cleans pages its ephemeral stores do not know). The pages load
    nothing from the network (:func:`expectations.data_docs.localize_site`);
    :func:`expectations.data_docs.data_docs_url` gives a page's http URL on the docs server of ``make ui``.
    """
    import great_expectations as gx

    ctx = gx.get_context(mode="ephemeral")
    try:
        ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
    except Exception:  # noqa: BLE001 - older/newer configs differ; progress bars are cosmetic
        pass
    batch_def = (ctx.data_sources.add_pandas("pandas").add_dataframe_asset(suite_name)
                 .add_batch_definition_whole_dataframe("whole"))
    # the suite is made with its expectations: added one at a time, each addition re-serialises the
    # whole suite into the context's store (5 s for the features suite's 111 expectations)
    suite = ctx.suites.add(gx.ExpectationSuite(name=suite_name, expectations=list(expectations)))
    df = _between_columns_as_64_bit(df, expectations)
    # GX reports results grouped by domain, not in the order they were added (a table-level
    # expectation added last can come back second): descriptions follow the expectation's id
    position = {e.id: i for i, e in enumerate(expectations)}
    result_format: dict = {"result_format": "COMPLETE", "partial_unexpected_count": 20}
    if id_column and id_column in df.columns:
        result_format["unexpected_index_column_names"] = [id_column]
    docs: list[str] = []
    if docs_dir is None:
        res = batch_def.get_batch(batch_parameters={"dataframe": df}).validate(suite, result_format=result_format)
    else:
        # one site per suite: GX's index builder removes pages its (in-memory) stores do not know
        site = Path(docs_dir) / suite_name
        site.mkdir(parents=True, exist_ok=True)
        ctx.add_data_docs_site("crm", {
            "class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site)}})
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=suite_name, data=batch_def, suite=suite))
        cp = ctx.checkpoints.add(gx.Checkpoint(
            name=suite_name, validation_definitions=[vd], result_format=result_format,
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["crm"])]))
        run = cp.run(batch_parameters={"dataframe": df})
        key, res = next(iter(run.run_results.items()))
        docs = [u["site_url"] for u in ctx.get_docs_sites_urls(resource_identifier=key, site_name="crm")
                if u.get("site_url")]
        # GX's pages load Bootstrap, jQuery, Font Awesome from CDNs: point them at vendored copies (offline)
        localize_site(site)
    outcomes = []
    for r in sorted(res.results, key=lambda r: position.get(r.expectation_config.id, len(position))):
        cfg = r.expectation_config
        i = position.get(cfg.id)
        result = r.result or {}
        sample = result.get("unexpected_index_list") or result.get("partial_unexpected_list") or []
        sample = [s.get(id_column, s) if isinstance(s, dict) and id_column else s for s in sample][:20]
        err = (r.exception_info or {}).get("exception_message") if not r.success else None
        outcomes.append(ExpectationOutcome(
            expectation=cfg.type, column=cfg.kwargs.get("column"), success=bool(r.success),
            observed=plain_value(result["observed_value"] if "observed_value" in result
                            else {"unexpected_values": (result.get("partial_unexpected_list") or [])[:10]}
                            if result.get("unexpected_count") else err),
            unexpected_count=plain_value(result.get("unexpected_count")), sample=plain_value(sample),
            description=(descriptions or {}).get(i, "") if i is not None else "",
            severity="warning" if str(getattr(cfg, "severity", "critical")).lower().endswith("warning") else "error",
        ))
    success = all(o.success for o in outcomes if o.severity != "warning")
    return GateResult(suite_name, success, len(df), outcomes, docs)


def combine(suite: str, parts: list[GateResult], extra: list[ExpectationOutcome] | None = None) -> GateResult:
    """One result of a suite made of several validations (one per frame) and own checks."""
    outcomes = [o for p in parts for o in p.outcomes] + list(extra or [])
    success = all(o.success for o in outcomes if o.severity not in ("warning", "overridden"))
    return GateResult(suite, success, parts[0].rows if parts else 0, outcomes, [d for p in parts for d in p.docs])


def merge_chunks(results: list[GateResult]) -> GateResult:
    """One result of the same suite validated on disjoint chunks of a table (same expectations, in
    the same order): an expectation passes if it passed on every chunk; unexpected counts add up;
    samples and unexpected values are concatenated (first 20); rows add up. Only expectations whose
    verdict is per row compose like this (not null, in set, between; unique when rows with the same
    value always fall in the same chunk): the caller chunks accordingly. Data Docs: the chunks'.
    """
    if len(results) == 1:
        return results[0]
    first = results[0]
    outcomes = []
    for i, o in enumerate(first.outcomes):
        parts = [r.outcomes[i] for r in results]
        assert all(p.expectation == o.expectation and p.column == o.column for p in parts), "chunks differ"
        failing = [p for p in parts if not p.success]
        counts = [p.unexpected_count for p in parts if p.unexpected_count is not None]
        values = [v for p in failing if isinstance(p.observed, dict)
                  for v in p.observed.get("unexpected_values", [])][:10]
        observed = ({"unexpected_values": values} if values else failing[0].observed) if failing else o.observed
        outcomes.append(replace(o, success=not failing, observed=observed,
                                unexpected_count=sum(counts) if counts else None,
                                sample=[s for p in failing for s in p.sample][:20]))
    success = all(o.success for o in outcomes if o.severity not in ("warning", "overridden"))
    return GateResult(first.suite, success, sum(r.rows for r in results), outcomes,
                      [d for r in results for d in r.docs])


def warning(expectation):
    """``expectation`` with GX's warning severity (reported; does not fail the gate)."""
    from great_expectations.expectations.metadata_types import FailureSeverity

    expectation.severity = FailureSeverity.WARNING
    return expectation
