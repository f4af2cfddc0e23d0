"""Small helpers to turn our results into Dagster metadata."""


import pandas as pd
from dagster import MetadataValue


def md_table(rows: dict | pd.DataFrame, key: str = "key", value: str = "value", limit: int = 30) -> MetadataValue:
    if isinstance(rows, dict):
        rows = pd.DataFrame({key: list(rows), value: list(rows.values())})
    return MetadataValue.md(rows.head(limit).to_markdown(index=False) if len(rows) else "_(none)_")
