"""The result of a quality gate as plain data: what each expectation observed, and the verdict.

Built by the suites in ``expectations/`` (Great Expectations or their own SQL), read by the
Dagster asset checks, the gate ledger and :mod:`crm.campaigns.overrides`, which waives named failures.
Plain dataclasses with no Great Expectations import, so the domain can hold them without
depending on the suites (the layering in pyproject.toml's import-linter contracts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    observed: object
    unexpected_count: int | None
    sample: list  # failing rows, by pseudonymous id where the suite names an id column
    description: str = ""
    severity: str = "error"  # "error": a failure fails the gate; "warning": reported, the gate still passes;
    # "overridden": an error waived by a named person (crm/campaigns/overrides.py), reported, the gate passes

    @property
    def name(self) -> str:
        """How an override names this expectation: ``type(column)``, or ``type`` without a column."""
        return f"{self.expectation}({self.column})" if self.column else self.expectation


def outcome(expectation: str, success: bool, observed: object = None, *, column: str | None = None,
            unexpected_count: int | None = None, sample: list | None = None, description: str = "",
            severity: str = "error") -> ExpectationOutcome:
    """An outcome of a check GX has no expectation for (own SQL / pandas), in the same shape."""
    return ExpectationOutcome(expectation, column, bool(success), plain_value(observed), plain_value(unexpected_count),
                              plain_value(list(sample or []))[:20], description, severity)


@dataclass
class GateResult:
    suite: str
    success: bool
    rows: int
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    docs: list[str] = field(default_factory=list)  # file:// URLs of the Data Docs pages of this validation

    @property
    def failed(self) -> list[ExpectationOutcome]:
        """Failed outcomes that fail the gate (severity error)."""
        return [o for o in self.outcomes if not o.success and o.severity not in ("warning", "overridden")]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        """Failed outcomes of severity warning: reported, the gate still passes."""
        return [o for o in self.outcomes if not o.success and o.severity == "warning"]

    @property
    def overridden(self) -> list[ExpectationOutcome]:
        """Failed error outcomes waived by an override: reported, the gate still passes."""
        return [o for o in self.outcomes if not o.success and o.severity == "overridden"]

    def summary(self) -> str:
        waived = ("; overridden: " + "; ".join(f"{o.name} observed={o.observed!r} ({o.description})"
                                               for o in self.overridden)) if self.overridden else ""
        return self._summary() + waived

    def _summary(self) -> str:
        if self.success and not self.warnings and not self.overridden:
            return f"{self.suite}: all {len(self.outcomes)} expectations passed on {self.rows} rows"
        if self.success:
            warn = ("; warnings: " + "; ".join(f"{o.expectation}({o.column or ''}) observed={o.observed!r}"
                                               for o in self.warnings)) if self.warnings else ""
            passed = len(self.outcomes) - len(self.warnings) - len(self.overridden)
            return f"{self.suite}: {passed} of {len(self.outcomes)} expectations passed on {self.rows} rows" + warn
        parts = [f"{o.expectation}({o.column or ''}) observed={o.observed!r} "
                 f"unexpected={o.unexpected_count} sample={o.sample[:5]}" for o in self.failed]
        return f"{self.suite}: {len(self.failed)} of {len(self.outcomes)} failed: " + "; ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


def plain_value(v: object) -> object:
    """numpy scalars and containers -> plain Python, so metadata and JSON serialise."""
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, (list, tuple)):
        return [plain_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): plain_value(x) for k, x in v.items()}
    return v


def waive(result: GateResult, waivers: dict[str, str]) -> GateResult:
    """A copy of ``result`` where each failed error outcome named in ``waivers`` (by
    :attr:`ExpectationOutcome.name`) becomes severity ``"overridden"`` with the waiver's text
    (who, why) in its description; ``success`` is recomputed from the remaining errors.

    Which names may be waived is the caller's decision (:func:`crm.campaigns.overrides.apply_overrides`
    never passes a compliance expectation); passing outcomes and warnings are left as they are.
    """
    outcomes = [replace(o, severity="overridden", description=f"{o.description}; {waivers[o.name]}".lstrip("; "))
                if not o.success and o.severity == "error" and o.name in waivers else o
                for o in result.outcomes]
    success = all(o.success for o in outcomes if o.severity == "error")
    return replace(result, success=success, outcomes=outcomes, docs=list(result.docs))
