"""Small helpers to turn our results into Dagster metadata.

Dagster renders its own types in place: a float, a table (``MetadataValue.table``: shown as a table
on the asset and check pages), a url, a path. Markdown longer than about 1,000 characters (every
embedded image) hides behind *Show Markdown*; Dagster has no image type, so plots stay markdown
images and their numbers are given as a table next to them.
"""

import math

import pandas as pd
from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

SIGNIFICANT = 4  # digits of a float in metadata: 0.4412, 1234, 1.235e+05


def rounded(v):
    """``v`` with floats rounded to :data:`SIGNIFICANT` significant digits (other values as they are)."""
    if isinstance(v, bool) or not isinstance(v, float):
        return v
    return v if not math.isfinite(v) else float(f"{v:.{SIGNIFICANT}g}")


def num(value) -> MetadataValue:
    """A number as Dagster's float, rounded; ``n/a`` for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MetadataValue.text("n/a")
    return MetadataValue.float(rounded(float(value)))


def _cell(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if hasattr(v, "item") and not isinstance(v, str):  # numpy scalars
        v = v.item()
    if isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return rounded(v)
    return str(v)


def _column_type(values: list) -> str:
    kinds = {type(v) for v in values if v is not None}
    if kinds and kinds <= {bool}:
        return "bool"
    if kinds and kinds <= {int}:
        return "int"
    if kinds and kinds <= {int, float}:
        return "float"
    return "string"


def table(rows: dict | pd.DataFrame | list[dict], key: str = "key", value: str = "value",
          limit: int = 30) -> MetadataValue:
    """A dict ({key: value}), a DataFrame or a list of records as Dagster's native table (floats rounded)."""
    if isinstance(rows, dict):
        rows = pd.DataFrame({key: [str(k) for k in rows], value: list(rows.values())})
    elif isinstance(rows, list):
        rows = pd.DataFrame(rows)
    rows = rows.head(limit)
    records = [{str(c): _cell(v) for c, v in zip(rows.columns, r, strict=True)}
               for r in rows.itertuples(index=False, name=None)]
    columns = [TableColumn(name=str(c), type=_column_type([r[str(c)] for r in records])) for c in rows.columns]
    return MetadataValue.table(records=[TableRecord(data=r) for r in records], schema=TableSchema(columns=columns))


md_table = table  # the name the assets used when these tables were markdown


def histogram(counts: dict, key: str = "bin", value: str = "players", width: int = 30) -> MetadataValue:
    """Counts per bin as a native table with a bar column, so the shape shows on the page itself."""
    top = max(counts.values(), default=0) or 1
    return table(pd.DataFrame({key: [str(k) for k in counts], value: [int(v) for v in counts.values()],
                               "bar": ["█" * round(width * int(v) / top) for v in counts.values()]}))


def md_figure(fig, alt: str = "plot") -> MetadataValue:
    """A matplotlib Figure as a markdown image (PNG as a data URI), the way Dagster's docs embed plots."""
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})")
