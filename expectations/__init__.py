"""Great Expectations suites (one per gated dataset) and the function that runs them.

Never imports Dagster: orchestration/ wraps these in blocking asset checks.
"""

import sys

# Great Expectations imports PySpark whenever it is installed (for Spark datasources we do not use;
# PySpark is here for dbt-spark, which runs in the dbt process). PySpark 4's import calls
# sys.exit(0) in a process started with multiprocessing's "spawn" (pyspark.sql.connect.utils takes
# it for a doctest run), which killed every spawned worker that imported a gate. Hidden from GX
# unless something in this process imported PySpark on purpose first.
sys.modules.setdefault("pyspark", None)  # type: ignore[arg-type]
