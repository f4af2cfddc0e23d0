"""Ring detection (issue 19): entity resolution over the identifiers' pseudonyms against the
simulator's planted truth, beside two naive baselines.

    python -m bench.abuse [--players 20000] [--days 120] [--seed 42] [--json]
    python -m bench.abuse --players 1000000        # the issue's large size

In a fresh data home: ``crm simulate`` (rings, bonus hunters, re-registrations, families, offices,
carrier NAT: truth/abuse_accounts.parquet), ``crm ingest`` (the split: pseudonyms and derived keys),
``dbt build`` of the identity models (``+fct_identity_links``), then the linking step
(crm.risk.linking.build_clusters, in its own process: its time and peak RSS are its own).

Scored against the truth, per method:

* **pairs**: the same-cluster pairs against the same-ring pairs (precision, recall);
* **accounts**: a ring member is found when it is clustered with another member of its ring
  (recall); every clustered account that is not so found counts against precision (an innocent
  family member, office worker, NAT user, lone bonus hunter, or a ring member clustered only with
  strangers). Re-registrations and the self-excluded players they belong to are true links but not
  rings: they are left out of both and reported on their own (share linked to their original).

Methods: ``clusters`` (player_clusters: two independent types, frequency-weighted), ``any shared
attribute`` (accounts of a brand sharing any identifier pseudonym, however common, are one cluster)
and ``same ip`` (sharing an IP address).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from bench.run import BIN, home_env, run_timed
from crm.config import DBT_PROJECT_DIR, Paths

LINK_STEP = "from crm.config import paths; from crm.risk.linking import build_clusters; build_clusters(paths())"
# the identifiers the naive "any shared attribute" baseline links on: every linking attribute
ANY_ATTRIBUTES = ("device_id", "ip", "ip_net", "payment_instrument", "card_number", "iban", "address",
                  "address_key", "name_key", "name_key_swapped", "email", "phone")


def components(members: pd.DataFrame) -> pd.DataFrame:
    """brand_id, player_id, cluster: the connected components of accounts joined through shared
    ``value`` (one account-value edge each, so a value shared by thousands costs thousands, not
    millions of pairs). Accounts sharing nothing with anyone are left out."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    m = members.drop_duplicates(["brand_id", "player_id", "value"])
    m = m[m.groupby(["brand_id", "value"])["player_id"].transform("size") > 1]
    acc = pd.MultiIndex.from_frame(m[["brand_id", "player_id"]])
    a_codes, a_uniq = pd.factorize(acc)
    v_codes, v_uniq = pd.factorize(m["brand_id"] + "\x1f" + m["value"])
    n = len(a_uniq) + len(v_uniq)
    graph = coo_matrix((np.ones(len(m), np.int8), (a_codes, len(a_uniq) + v_codes)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    return pd.DataFrame({"brand_id": a_uniq.get_level_values(0), "player_id": a_uniq.get_level_values(1),
                         "cluster": label[:len(a_uniq)].astype(str)})


def _pairs(sizes: pd.Series) -> int:
    return int((sizes * (sizes - 1) // 2).sum())


def score(clusters: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Pairwise and per-account precision / recall of ring detection (see the module's text)."""
    rereg = truth[truth["role"] == "re_registration"]
    excluded = set(zip(rereg["brand_id"], rereg["player_id"], strict=True)) | set(
        zip(rereg["brand_id"], rereg["linked_to"], strict=True))
    ring = truth[truth["ring_id"].notna()][["brand_id", "player_id", "ring_id"]].drop_duplicates(
        ["brand_id", "player_id"])
    c = clusters.merge(ring, on=["brand_id", "player_id"], how="left")
    keep = [(b, p) not in excluded for b, p in zip(c["brand_id"], c["player_id"], strict=True)]
    c = c[keep]
    sizes = c.groupby(["brand_id", "cluster"]).size()
    c = c[c.set_index(["brand_id", "cluster"]).index.map(sizes) > 1]
    both = c[c["ring_id"].notna()].groupby(["brand_id", "cluster", "ring_id"]).size()
    true_pairs = _pairs(ring.groupby(["brand_id", "ring_id"]).size())
    pred_pairs = _pairs(c.groupby(["brand_id", "cluster"]).size())
    hit_pairs = _pairs(both)
    found = int(both[both > 1].sum())
    members = len(ring)
    return {"clustered_accounts": len(c), "ring_members": members, "ring_members_found": found,
            "account_precision": round(found / len(c), 4) if len(c) else float("nan"),
            "account_recall": round(found / members, 4) if members else float("nan"),
            "pair_precision": round(hit_pairs / pred_pairs, 4) if pred_pairs else float("nan"),
            "pair_recall": round(hit_pairs / true_pairs, 4) if true_pairs else float("nan"),
            "predicted_pairs": pred_pairs, "ring_pairs": true_pairs,
            "false_accounts_by_role": _false_by_role(c, truth)}


def _false_by_role(c: pd.DataFrame, truth: pd.DataFrame) -> dict:
    ring_in = c[c["ring_id"].notna()].groupby(["brand_id", "cluster", "ring_id"])["player_id"].transform("size")
    found = set(c.loc[ring_in[ring_in > 1].index, "player_id"])
    wrong = c[~c["player_id"].isin(found)].merge(
        truth.drop_duplicates(["brand_id", "player_id"])[["brand_id", "player_id", "role"]],
        on=["brand_id", "player_id"], how="left")
    return {str(k): int(v) for k, v in wrong["role"].fillna("none").value_counts().items()}


def rereg_linked(clusters: pd.DataFrame, truth: pd.DataFrame) -> dict:
    rereg = truth[truth["role"] == "re_registration"]
    cl = dict(zip(zip(clusters["brand_id"], clusters["player_id"], strict=True), clusters["cluster"], strict=True))
    linked = sum(cl.get((b, p)) is not None and cl.get((b, p)) == cl.get((b, o))
                 for b, p, o in zip(rereg["brand_id"], rereg["player_id"], rereg["linked_to"], strict=True))
    return {"re_registrations": len(rereg), "linked_to_original": int(linked),
            "share": round(linked / len(rereg), 4) if len(rereg) else float("nan")}


def bench_abuse(root: Path, players: int, days: int, seed: int, dbt_vars: dict | None = None) -> dict:
    home = root / "home"
    shutil.rmtree(home, ignore_errors=True)
    env = home_env(home)
    out: dict = {"players": players, "days": days, "seed": seed, "seconds": {}, "peak_rss_mib": {}}
    steps = [("simulate", [str(BIN / "crm"), "simulate", "--players", str(players), "--days", str(days),
                           "--seed", str(seed), "--json"]),
             ("land", [str(BIN / "crm"), "ingest", str(Paths(home).incoming), "--json"])]
    for name, cmd in steps:
        print(f"  {name} ...", file=sys.stderr, flush=True)
        secs, rss, _ = run_timed(cmd, env)
        out["seconds"][name], out["peak_rss_mib"][name] = round(secs, 1), round(rss)
    from crm.ingest.landing import default_as_of

    as_of = default_as_of(Paths(home))
    vars_ = {"as_of_date": as_of.isoformat(), **(dbt_vars or {})}
    print("  dbt build +fct_identity_links ...", file=sys.stderr, flush=True)
    secs, rss, _ = run_timed([str(BIN / "dbt"), "build", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
                              "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(home / "dbt" / "target"),
                              "--log-path", str(home / "dbt" / "logs"),
                              "--select", "+fct_identity_links", "--exclude", "test_type:unit",
                              "--vars", json.dumps(vars_)], env)
    out["seconds"]["dbt_identity_models"], out["peak_rss_mib"]["dbt_identity_models"] = round(secs, 1), round(rss)
    print("  link (crm.risk.linking) ...", file=sys.stderr, flush=True)
    secs, rss, _ = run_timed([sys.executable, "-c", LINK_STEP], env)
    out["seconds"]["link"], out["peak_rss_mib"]["link"] = round(secs, 2), round(rss)
    out["dbt_vars"] = dbt_vars or {}
    out.update(evaluate(Paths(home)))
    return out


def evaluate(paths: Paths) -> dict:
    with duckdb.connect() as con:
        truth = con.execute("SELECT * FROM read_parquet(?)", [str(paths.truth / "abuse_accounts.parquet")]).df()
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        clusters = con.execute("SELECT brand_id, player_id, cluster_id AS cluster FROM player_clusters").df()
        ids = con.execute("SELECT brand_id, player_id, attribute, pseudonym FROM int_player_identifiers").df()
        links = con.execute("SELECT linked_by, count(*) FROM fct_identity_links "
                            "GROUP BY ALL ORDER BY 2 DESC").fetchall()
    anyv = ids[ids["attribute"].isin(ANY_ATTRIBUTES)]
    naive_any = components(anyv.assign(value=anyv["attribute"] + ":" + anyv["pseudonym"]))
    ipv = ids[ids["attribute"] == "ip"]
    naive_ip = components(ipv.assign(value=ipv["pseudonym"]))
    roles = truth.drop_duplicates(["brand_id", "player_id", "role"])["role"].value_counts()
    return {"truth_accounts_by_role": {str(k): int(v) for k, v in roles.items()},
            "links_by_types": {t: int(n) for t, n in links[:12]},
            "methods": {"clusters": score(clusters, truth), "any shared attribute": score(naive_any, truth),
                        "same ip": score(naive_ip, truth)},
            "re_registrations": rereg_linked(clusters, truth)}


def format_table(r: dict) -> str:
    lines = [f"ring detection at {r['players']:,} players x {r['days']} days (seed {r['seed']}): "
             f"{r['methods']['clusters']['ring_members']} ring members, {r['methods']['clusters']['ring_pairs']} "
             f"ring pairs; accounts by role {r['truth_accounts_by_role']}",
             f"{'method':<22} {'acct P':>7} {'acct R':>7} {'pair P':>7} {'pair R':>7} {'clustered':>10}"]
    for name, m in r["methods"].items():
        lines.append(f"{name:<22} {m['account_precision']:>7} {m['account_recall']:>7} {m['pair_precision']:>7} "
                     f"{m['pair_recall']:>7} {m['clustered_accounts']:>10,}")
    lines.append(f"clusters: wrongly clustered accounts by role {r['methods']['clusters']['false_accounts_by_role']}")
    rr = r["re_registrations"]
    lines.append(f"re-registrations linked to the excluded original: {rr['linked_to_original']} of "
                 f"{rr['re_registrations']} ({rr['share']})")
    lines.append("seconds: " + ", ".join(f"{k} {v}" for k, v in r["seconds"].items())
                 + "; peak RSS MiB: " + ", ".join(f"{k} {v}" for k, v in r["peak_rss_mib"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.abuse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--players", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--vars", default="{}", help="dbt vars as JSON, e.g. '{\"identity_max_accounts\": 30}'")
    parser.add_argument("--keep", type=Path, default=None, help="build in this folder and keep it (else a temp one)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args(argv)
    if args.keep:
        r = bench_abuse(args.keep, args.players, args.days, args.seed, json.loads(args.vars))
    else:
        with tempfile.TemporaryDirectory(prefix="bench_abuse_") as tmp:
            r = bench_abuse(Path(tmp), args.players, args.days, args.seed, json.loads(args.vars))
    print(json.dumps(r, indent=2) if args.json else format_table(r))


if __name__ == "__main__":
    main()
