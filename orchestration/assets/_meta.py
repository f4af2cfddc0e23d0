"""Small helpers to turn our results into Dagster metadata."""


import pandas as pd
from dagster import MetadataValue


def md_table(rows: dict | pd.DataFrame, key: str = "key", value: str = "value", limit: int = 30) -> MetadataValue:
    if isinstance(rows, dict):
        rows = pd.DataFrame({key: list(rows), value: list(rows.values())})
    return MetadataValue.md(rows.head(limit).to_markdown(index=False) if len(rows) else "_(none)_")


def md_figure(fig, alt: str = "plot") -> MetadataValue:
    """A matplotlib Figure as a markdown image (PNG as a data URI), the way Dagster's docs embed plots."""
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})")
