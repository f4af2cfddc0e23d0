"""What became of the offers ``POST /v1/offers/generate`` issued (``crm offers report``): per intent
and catalogue offer, from ``fct_offers`` (each offer joined to the casino's bonus.* events that
carry its id)."""

from __future__ import annotations

import pandas as pd

from crm.config import Paths
from crm.warehouse import connect, fetch_df, table_exists

REPORT_SQL = """
SELECT intent, offer_name AS offer, template,
       count(*) AS issued,
       count(credited_at) AS credited,
       count(consumed_at) AS consumed,
       count(expired_at) AS expired,
       count(consumed_at) / count(*) AS consumed_share,
       sum(cost_eur_cents) / 100.0 AS cost_issued_eur,
       coalesce(sum(cost_eur_cents) FILTER (WHERE consumed_at IS NOT NULL), 0) / 100.0 AS cost_consumed_eur,
       min(issued_at) AS first_issued_at, max(issued_at) AS last_issued_at
FROM fct_offers
WHERE issued_at >= coalesce(CAST(? AS TIMESTAMP), TIMESTAMP '1990-01-01')
GROUP BY ALL
ORDER BY intent, offer
"""


def offer_report(paths: Paths, since: str | None = None) -> pd.DataFrame:
    """One row per (intent, offer, template): issued, credited, consumed, expired, the share
    consumed, and the cost (EUR) of those issued and of those consumed (the template's cost model
    at issue). ``since``: an ISO date or time (default: every offer in the warehouse)."""
    with connect(paths) as con:
        if not table_exists(con, "fct_offers"):
            raise FileNotFoundError("no fct_offers in the warehouse yet: run `crm run` after offers were issued")
        return fetch_df(con, REPORT_SQL, [since])
