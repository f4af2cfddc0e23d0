"""Clusters of linked accounts: the connected components of the identity links.

dbt builds the links (``fct_identity_links``: pairs of accounts of one brand sharing identifier
pseudonyms of at least two independent types, frequency-weighted; docs/abuse.md). Here they become
clusters, written to the warehouse as ``player_clusters``: one row per linked account (brand,
player, cluster id, cluster size, its strongest link's score and types, the types linking anyone
of its cluster). An account without a link has no row.

Why Python for the components: label propagation in SQL needs one self-join per round and as many
rounds as the longest chain of links (unknown; a fixed count silently splits a long chain), while
``scipy.sparse.csgraph.connected_components`` is exact, runs in milliseconds on millions of links
and reads the same DuckDB table whichever engine built it (a Spark build is handed over to DuckDB,
crm.warehouse_spark). The pairs themselves stay in SQL, where the data is.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crm.config import Paths
from crm.sql import ident
from crm.warehouse import connect, fetch_df, table_exists

LINKS_TABLE = "fct_identity_links"
CLUSTERS_TABLE = "player_clusters"
CLUSTER_COLUMNS = ("brand_id", "player_id", "cluster_id", "cluster_size", "link_score", "link_types",
                   "cluster_types", "links", "built_at")
CLUSTER_SELECT = ", ".join(CLUSTER_COLUMNS)  # constant names (SQL: no quoting needed)


@dataclass(frozen=True)
class ClusterSummary:
    links: int
    clusters: int
    accounts: int
    largest: int

    def to_dict(self) -> dict:
        return {"links": self.links, "clusters": self.clusters, "accounts_linked": self.accounts,
                "largest_cluster": self.largest}


def clusters_of(links: pd.DataFrame) -> pd.DataFrame:
    """The clusters of ``links`` (brand_id, player_a, player_b, score, linked_by): one row per
    linked account. ``cluster_id`` is the brand and the smallest player id of the cluster (stable
    while the cluster keeps that member); ``link_score`` / ``link_types`` are the account's
    strongest link; ``cluster_types`` every type linking the cluster; ``links`` the account's."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    cols = [c for c in CLUSTER_COLUMNS if c != "built_at"]
    if links.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("cluster_size", "links") else
                                          "float64" if c == "link_score" else "object") for c in cols})
    # nodes are (brand, player): a player id of one brand is another account than the same id in another
    a = links["brand_id"].astype(str) + "\x1f" + links["player_a"].astype(str)
    b = links["brand_id"].astype(str) + "\x1f" + links["player_b"].astype(str)
    nodes, idx = np.unique(np.concatenate([a.to_numpy(), b.to_numpy()]), return_inverse=True)
    ia, ib = idx[:len(links)], idx[len(links):]
    graph = coo_matrix((np.ones(len(links), dtype=np.int8), (ia, ib)), shape=(len(nodes), len(nodes)))
    _, label = connected_components(graph, directed=False)
    brand, player = zip(*(n.split("\x1f", 1) for n in nodes), strict=True)
    acc = pd.DataFrame({"brand_id": brand, "player_id": player, "label": label})
    # nodes are sorted by brand then player: the first of each label is its smallest member
    first = acc.groupby("label", sort=False)["player_id"].transform("first")
    acc["cluster_id"] = acc["brand_id"] + ":" + first
    acc["cluster_size"] = acc.groupby("label")["player_id"].transform("size").astype("int64")
    ends = pd.concat([
        pd.DataFrame({"node": ia, "score": links["score"].to_numpy(), "types": links["linked_by"].to_numpy()}),
        pd.DataFrame({"node": ib, "score": links["score"].to_numpy(), "types": links["linked_by"].to_numpy()})])
    ends = ends.sort_values(["node", "score", "types"], ascending=[True, False, True])
    strongest = ends.drop_duplicates("node").set_index("node")
    acc["link_score"] = strongest["score"].reindex(range(len(nodes))).to_numpy()
    acc["link_types"] = strongest["types"].reindex(range(len(nodes))).to_numpy()
    acc["links"] = ends.groupby("node").size().reindex(range(len(nodes))).to_numpy().astype("int64")
    per_label = pd.DataFrame({"label": label[ia], "types": links["linked_by"].to_numpy()})
    types = per_label.groupby("label")["types"].agg(lambda s: ",".join(sorted({t for v in s for t in v.split(",")})))
    acc["cluster_types"] = acc["label"].map(types)
    return acc[cols].sort_values(["brand_id", "cluster_id", "player_id"], ignore_index=True)


def build_clusters(paths: Paths) -> ClusterSummary:
    """Read the identity links of the warehouse, draw the clusters and replace ``player_clusters``."""
    with connect(paths) as con:
        if not table_exists(con, LINKS_TABLE):
            raise FileNotFoundError(f"no {LINKS_TABLE} in the warehouse: build the dbt project first")
        links = fetch_df(con, f"SELECT brand_id, player_a, player_b, score, linked_by FROM {ident(LINKS_TABLE)}")
    clusters = clusters_of(links).assign(built_at=dt.datetime.now(dt.UTC).replace(tzinfo=None))
    with connect(paths, read_only=False) as con:
        con.register("_clusters", clusters)
        con.execute(f"CREATE OR REPLACE TABLE {ident(CLUSTERS_TABLE)} AS "
                    f"SELECT {CLUSTER_SELECT} FROM _clusters")
        con.unregister("_clusters")
    return ClusterSummary(links=len(links), clusters=int(clusters["cluster_id"].nunique()), accounts=len(clusters),
                          largest=int(clusters["cluster_size"].max()) if len(clusters) else 0)
