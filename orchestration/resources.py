"""Resources: where the data home is and which as-of date a run describes."""


import datetime as dt

from dagster import ConfigurableResource
from pydantic import Field

from crm.config import Paths, export_env
from crm.landing import default_as_of


class CrmResource(ConfigurableResource):
    """The data home (``CRM_HOME``) and the run's as-of date."""

    as_of_date: str | None = Field(
        default=None,
        description="YYYY-MM-DD; default: the day after the latest landed event",
    )

    def paths(self) -> Paths:
        return export_env()

    def as_of(self) -> dt.date:
        if self.as_of_date:
            return dt.date.fromisoformat(self.as_of_date)
        return default_as_of(self.paths())
