"""Resources: where the data home is and which as-of date a run describes."""


import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import ConfigurableResource, DailyPartitionsDefinition
from pydantic import Field

from crm.config import Paths, export_env
from crm.contract import EARLIEST_EVENT_TIME
from crm.ingest.landing import default_as_of
from crm.run_lock import run_lock

# One partition per as-of date. end_offset=1: today's partition exists, because the
# as-of date D describes everything strictly before D 00:00 UTC, complete once D starts. They
# start where landing and import accept data (crm.contract.EARLIEST_EVENT_TIME): an operator's
# history of any age has its dates (a constant 2024 start refused a history from 2013).
DAILY = DailyPartitionsDefinition(start_date=EARLIEST_EVENT_TIME.strftime("%Y-%m-%d"), end_offset=1, timezone="UTC")
PARTITION_TAG = "dagster/partition"


class CrmResource(ConfigurableResource):
    """The data home (``CRM_HOME``) and the run's as-of date. A run holds the home's run lock
    (:mod:`crm.run_lock`) from start to end: a second writer stops with a clear message."""

    as_of_date: str | None = Field(
        default=None,
        description="YYYY-MM-DD; default: the day after the latest landed event",
    )

    def paths(self) -> Paths:
        return export_env()

    def as_of(self, context=None) -> dt.date:
        """The run's as-of date: configured, else the run's partition, else the default."""
        if self.as_of_date:
            return dt.date.fromisoformat(self.as_of_date)
        partition = context.run.tags.get(PARTITION_TAG) if context is not None else None
        if partition:
            return dt.date.fromisoformat(partition)
        return default_as_of(self.paths())

    @contextmanager
    def yield_for_execution(self, context) -> Iterator["CrmResource"]:
        with run_lock(self.paths(), f"Dagster run {context.run_id}" if context.run_id else "Dagster run"):
            yield self
