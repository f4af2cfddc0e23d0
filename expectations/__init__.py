"""Great Expectations suites (one per gated dataset) and the function that runs them.

Never imports Dagster: orchestration/ wraps these in blocking asset checks.
"""
