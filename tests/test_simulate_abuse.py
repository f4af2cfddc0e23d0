"""The simulator's planted abuse and innocent sharing, against its ground truth (truth/abuse_accounts).

Rings, bonus hunters and re-registrations as issue 19 describes them; the truth agrees with the
registration and payment events as they are written (before landing); innocents are most of the
accounts that share any one identifier; abuse leaves every other player's life as it was."""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from crm.config import Paths
from crm.simulator.abuse import ATTRIBUTES, ROLES
from crm.simulator.casino import simulate
from crm.simulator.world import NO_ABUSE, Abuse

START = dt.date(2025, 6, 1)
ABUSERS = ("ring_member", "bonus_hunter", "re_registration")
MIN_DEPOSIT = {"GBP": 1000, "EUR": 1000, "SEK": 10000}  # two rounding steps, minor units
_STREET = {"st": "street", "rd": "road", "ln": "lane", "ave": "avenue", "dr": "drive", "cl": "close"}


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """Default rates, two chunks (a few seconds)."""
    paths = Paths(tmp_path_factory.mktemp("abuse"))
    simulate(paths, players=8000, days=90, seed=19, start_date=START, chunk_players=4000, dirty_rate=0.0,
             progress=False)
    return paths.home


@pytest.fixture(scope="module")
def con(home) -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute(f"CREATE VIEW ev AS SELECT *, CAST(occurred_at AS TIMESTAMP) AS ts "
              f"FROM read_parquet('{home / 'landing' / 'incoming'}/*.parquet')")
    c.execute(f"CREATE TABLE t AS SELECT * FROM '{home / 'truth' / 'abuse_accounts.parquet'}'")
    c.execute("""
        CREATE TABLE reg AS SELECT player_id, brand_id, ts, payload->>'country' AS country,
            payload->>'device_id' AS device_id, payload->>'ip' AS ip,
            regexp_replace(payload->>'ip', '\\.[0-9]+$', '') AS ip_net, payload->>'email' AS email,
            payload->>'first_name' AS first_name, payload->>'last_name' AS last_name,
            payload->>'address' AS address, payload->>'postcode' AS postcode, payload->>'birth_date' AS birth_date
        FROM ev WHERE event_type = 'player.registered'""")
    c.execute("CREATE TABLE inst AS SELECT DISTINCT player_id, payload->>'payment_instrument' AS instrument "
              "FROM ev WHERE payload->>'payment_instrument' IS NOT NULL")
    return c


def _rows(con, sql: str, *args) -> list[dict]:
    cur = con.execute(sql, list(args))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _registrations(con) -> dict[str, dict]:
    return {r["player_id"]: r for r in _rows(con, "SELECT * FROM reg")}


def _instruments(con) -> dict[str, set[str]]:
    out: dict[str, set[str]] = collections.defaultdict(set)
    for p, i in con.execute("SELECT player_id, instrument FROM inst").fetchall():
        out[p].add(i)
    return out


def _address(r: dict) -> tuple:
    words = r["address"].lower().split()
    return tuple(_STREET.get(w, w) for w in words), r["postcode"]


def _same(kind: str, a: dict, b: dict, inst: dict[str, set[str]]) -> bool:
    """Whether two accounts' events show the same identifier of this type (variants allowed)."""
    if kind == "ip_net":
        return a["ip_net"] == b["ip_net"]
    if kind == "payment_instrument":
        return bool(inst[a["player_id"]] & inst[b["player_id"]])
    if kind == "address":
        return _address(a) == _address(b)
    if kind == "last_name":
        return a["last_name"].lower() == b["last_name"].lower()
    if kind == "name":  # "John Smith" ~ "Jon Smith", "J. Smith", "john smith", "Smith John"
        fa = {a["first_name"].lower(), a["last_name"].lower()}
        fb = {b["first_name"].lower(), b["last_name"].lower()}
        return bool(fa & fb) and {w[0] for w in fa} == {w[0] for w in fb}
    return a[kind] == b[kind]  # device_id, ip, birth_date


def _types(shared: str | None) -> set[str]:
    return {t for t in (shared or "").split(",") if t}


# --------------------------------------------------------------------------- the truth file
def test_truth_rows_and_only_under_truth(home, con):
    schema = pq.read_schema(home / "truth" / "abuse_accounts.parquet")
    assert [(f.name, str(f.type)) for f in schema] == [
        (c, "string") for c in ("player_id", "brand_id", "ring_id", "role", "linked_to", "shared_attributes")]
    roles = dict(con.execute("SELECT role, count(*) FROM t GROUP BY 1").fetchall())
    assert set(roles) == set(ROLES), roles
    assert con.execute("SELECT count(*) - count(DISTINCT (player_id, role)) FROM t").fetchone()[0] == 0
    # ring ids on ring accounts only, linked players on re-registrations only
    assert con.execute("SELECT count(*) FROM t WHERE (ring_id IS NOT NULL) <> (role = 'ring_member' OR "
                       "(role = 'bonus_hunter' AND player_id IN (SELECT player_id FROM t WHERE role = "
                       "'ring_member')))").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM t WHERE (linked_to IS NOT NULL) <> (role = 're_registration')"
                       ).fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM t JOIN reg USING (player_id) WHERE t.brand_id <> reg.brand_id"
                       ).fetchone()[0] == 0
    used = {a for (s,) in con.execute("SELECT shared_attributes FROM t").fetchall() for a in _types(s)}
    assert used <= set(ATTRIBUTES) and {"device_id", "ip", "ip_net", "payment_instrument", "address",
                                        "name"} <= used
    # the truth never reaches the files the pipeline reads
    files = [p for p in home.rglob("*") if p.is_file()]
    assert [p.relative_to(home).as_posix() for p in files if "abuse" in p.name] == ["truth/abuse_accounts.parquet"]
    assert con.execute("SELECT count(*) FROM ev WHERE contains(payload, 'ring_19_') OR contains(payload, "
                       "'ring_member') OR contains(payload, 'bonus_hunter')").fetchone()[0] == 0
    hunters = {p for (p,) in con.execute("SELECT player_id FROM t WHERE role = 'bonus_hunter'").fetchall()}
    exported = {p for (p,) in duckdb.sql(f"SELECT DISTINCT player_id FROM "
                                          f"'{Paths(home).exports / 'campaign_assignments.parquet'}'").fetchall()}
    assert hunters and not hunters & exported  # a hunter's main-stream life is gone, campaigns included


def test_identifiers_in_the_events(con):
    regs = _registrations(con)
    assert all(r["first_name"] and r["last_name"] and r["address"] and r["postcode"] for r in regs.values())
    named = dict(con.execute("SELECT event_type, bool_and(payload->>'payment_instrument' IS NOT NULL) "
                             "FROM ev WHERE event_type LIKE 'payment.%' GROUP BY 1").fetchall())
    assert named == {"payment.intent": True, "payment.withdraw": True, "payment.refund": True,
                     "payment.authorized": False, "payment.captured": False, "payment.failed": False}
    # a player mostly pays with one or two instruments; strangers' names collide, their devices don't
    per_player = [n for (n,) in con.execute("SELECT count(*) FROM inst GROUP BY player_id").fetchall()]
    assert sum(n <= 2 for n in per_player) / len(per_player) > 0.9
    names = collections.Counter((r["first_name"].lower(), r["last_name"].lower()) for r in regs.values())
    assert max(names.values()) > 5
    uk = next(r for r in regs.values() if r["country"] == "UK")
    assert uk["address"].split()[0].isdigit() and len(uk["postcode"].split()) == 2


# --------------------------------------------------------------------------- rings
def test_rings_are_small_bursts_of_one_brand_sharing_two_types(con):
    rings = _rows(con, """
        SELECT ring_id, count(*) AS n, count(DISTINCT reg.brand_id) AS brands, count(DISTINCT country) AS countries,
               max(reg.ts) - min(reg.ts) AS span, list(shared_attributes) AS shared
        FROM t JOIN reg USING (player_id) WHERE role = 'ring_member' GROUP BY 1""")
    assert len(rings) >= 15
    assert all(2 <= r["n"] <= 15 and r["brands"] == 1 and r["countries"] == 1 for r in rings)
    assert all(r["span"] <= dt.timedelta(days=4) for r in rings)
    assert sum(r["span"] <= dt.timedelta(days=1) for r in rings) > len(rings) / 3
    sizes = collections.Counter(r["n"] for r in rings)
    assert sizes[2] + sizes[3] > len(rings) / 2  # skewed to small rings
    members = [_types(s) - {"ip"} | ({"ip_net"} if "ip" in _types(s) else set()) for r in rings for s in r["shared"]]
    assert sum(len(m) >= 2 for m in members) / len(members) > 0.7
    # most ring accounts hunt bonuses
    hunting = con.execute("SELECT count(*) FROM t WHERE role = 'bonus_hunter' AND ring_id IS NOT NULL").fetchone()[0]
    assert hunting > 0.5 * len(members)


def test_the_truth_matches_the_events(con):
    """Every shared type the truth names is in the events: the same value (or a variant) on another
    account of the group (a ring; the excluded player for a re-registration; for families, offices
    and the carrier NAT another account of that role)."""
    regs, inst = _registrations(con), _instruments(con)
    rows = _rows(con, "SELECT * FROM t WHERE role <> 'bonus_hunter'")
    ring = collections.defaultdict(list)
    by_role = collections.defaultdict(list)
    for r in rows:
        if r["ring_id"]:
            ring[r["ring_id"]].append(r["player_id"])
        by_role[r["role"]].append(r["player_id"])
    checked = collections.Counter()
    for r in rows:
        me = regs[r["player_id"]]
        if r["role"] == "ring_member":
            others = ring[r["ring_id"]]
        elif r["role"] == "re_registration":
            others = [r["linked_to"]]
        else:
            others = by_role[r["role"]]
        others = [regs[p] for p in others if p != r["player_id"]]
        for kind in _types(r["shared_attributes"]):
            assert any(_same(kind, me, o, inst) for o in others), (r, kind)
            checked[r["role"], kind] += 1
    assert checked["ring_member", "device_id"] and checked["ring_member", "payment_instrument"]
    assert checked["re_registration", "name"] and checked["family", "address"] and checked["carrier_nat", "ip"]
    assert checked["office", "ip_net"] or checked["office", "ip"]


# --------------------------------------------------------------------------- re-registrations
def test_reregistrations_open_while_their_player_is_self_excluded(con):
    rows = _rows(con, """
        SELECT t.player_id, t.linked_to, t.shared_attributes, n.brand_id AS brand, o.brand_id AS old_brand,
               n.ts AS registered, n.email, o.email AS old_email, x.ts AS excluded_at, x.payload->>'scope' AS scope,
               (SELECT min(e.ts) FROM ev e WHERE e.player_id = t.linked_to
                AND e.event_type = 'rg.self_exclusion.ended') AS ended_at
        FROM t JOIN reg n ON n.player_id = t.player_id JOIN reg o ON o.player_id = t.linked_to
        JOIN ev x ON x.player_id = t.linked_to AND x.event_type = 'rg.self_exclusion.started'
        WHERE t.role = 're_registration'""")
    assert len(rows) >= 10
    for r in rows:
        assert r["scope"] in ("brand", "operator") and r["brand"] == r["old_brand"]
        assert r["excluded_at"] < r["registered"] and (r["ended_at"] is None or r["registered"] < r["ended_at"])
        assert r["email"] != r["old_email"]
    reused = [_types(r["shared_attributes"]) for r in rows]
    assert all(ts <= {"device_id", "payment_instrument", "name", "birth_date", "address"} for ts in reused)
    assert sum(len(ts - {"birth_date"}) >= 2 for ts in reused) / len(reused) > 0.6


# --------------------------------------------------------------------------- bonus hunters
def test_bonus_hunters_deposit_the_minimum_wager_the_requirement_and_withdraw(con):
    rows = _rows(con, """
        WITH h AS (SELECT DISTINCT player_id FROM t WHERE role = 'bonus_hunter')
        SELECT player_id,
            list(CAST(payload->>'amount' AS BIGINT)) FILTER (WHERE event_type = 'payment.captured') AS deposits,
            any_value(payload->>'currency') FILTER (WHERE event_type = 'payment.captured') AS currency,
            list(payload->>'template') FILTER (WHERE event_type = 'bonus.issued') AS bonuses,
            any_value(CAST(payload->>'cost' AS BIGINT) * CAST(payload->>'wagering' AS DOUBLE))
                FILTER (WHERE event_type = 'bonus.issued') AS required,
            min(ts) FILTER (WHERE event_type = 'bonus.issued') AS issued,
            count(*) FILTER (WHERE event_type = 'bonus.consumed') AS consumed,
            sum(CAST(payload->>'stake' AS BIGINT)) FILTER (WHERE event_type = 'bet.settled') AS staked,
            bool_and(CAST(payload->>'in_bonus' AS BOOLEAN)) FILTER (WHERE event_type = 'bet.settled') AS in_bonus,
            list(DISTINCT payload->>'game_category') FILTER (WHERE event_type = 'bet.settled') AS categories,
            max(ts) FILTER (WHERE event_type = 'bet.settled') AS last_bet,
            min(ts) FILTER (WHERE event_type = 'payment.withdraw') AS withdrawn,
            max(ts) FILTER (WHERE event_type NOT LIKE 'consent.%') - min(ts) AS active
        FROM ev JOIN h USING (player_id) GROUP BY 1""")
    assert len(rows) >= 60
    for r in rows:
        assert r["deposits"] == [MIN_DEPOSIT[r["currency"]]], r
        assert r["bonuses"] == ["welcome"] and r["consumed"] == 1, r
        assert r["required"] - 10 <= r["staked"] <= 1.1 * r["required"], r
        assert r["in_bonus"] and set(r["categories"]) <= {"table", "live"}, r
        assert r["active"] <= dt.timedelta(days=4), r
        if r["withdrawn"] is not None:
            assert r["issued"] < r["last_bet"] < r["withdrawn"] <= r["last_bet"] + dt.timedelta(hours=2), r
    assert sum(r["withdrawn"] is not None for r in rows) / len(rows) > 0.6


# --------------------------------------------------------------------------- innocent sharing
@pytest.mark.parametrize("kind", ["ip", "ip_net", "device_id", "address", "name", "payment_instrument"])
def test_innocents_outnumber_abusers_among_accounts_sharing_an_identifier(con, kind):
    """Naive linking on any one shared identifier finds mostly innocent accounts (families, offices,
    a carrier's NAT, namesakes); the abusers are ring accounts, hunters, re-registrations and the
    self-excluded players they belong to."""
    values = {"name": "SELECT player_id, lower(first_name) || ' ' || lower(last_name) AS v FROM reg",
              "address": "SELECT player_id, address || postcode AS v FROM reg",
              "payment_instrument": "SELECT player_id, instrument AS v FROM inst"}.get(
                  kind, f"SELECT player_id, {kind} AS v FROM reg")
    sharing, abusive = con.execute(f"""
        WITH v AS ({values}),
        s AS (SELECT v FROM v GROUP BY 1 HAVING count(DISTINCT player_id) >= 2),
        bad AS (SELECT player_id FROM t WHERE role IN {ABUSERS} UNION SELECT linked_to FROM t)
        SELECT count(DISTINCT player_id),
               count(DISTINCT player_id) FILTER (WHERE player_id IN (SELECT player_id FROM bad))
        FROM v WHERE v IN (SELECT v FROM s)""").fetchone()
    assert abusive > 0 and sharing - abusive > abusive, (kind, sharing, abusive)


def test_carrier_nat_and_offices_put_many_accounts_on_one_network(con):
    nat = con.execute("SELECT max(n) FROM (SELECT count(*) AS n FROM t JOIN reg USING (player_id) "
                      "WHERE role = 'carrier_nat' GROUP BY ip)").fetchone()[0]
    office = con.execute("SELECT max(n) FROM (SELECT count(*) AS n FROM t JOIN reg USING (player_id) "
                         "WHERE role = 'office' GROUP BY ip_net)").fetchone()[0]
    assert nat >= 15 and office >= 6
    # families: one address, different first names
    fam = _rows(con, "SELECT address, postcode, count(*) AS n, count(DISTINCT first_name) AS names "
                     "FROM t JOIN reg USING (player_id) WHERE role = 'family' GROUP BY 1, 2")
    assert fam and sum(f["names"] > 1 for f in fam) / len(fam) > 0.8


# --------------------------------------------------------------------------- determinism, other players
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_truth_and_abuse_leaves_other_players_alone(tmp_path):
    kw = dict(players=2500, days=45, start_date=START, chunk_players=1500, dirty_rate=0.0, progress=False)
    busy = Abuse(rings=0.05, hunters=0.03, reregistrations=0.01)
    homes = {k: Paths(tmp_path / k) for k in ("a", "b", "c", "off")}
    simulate(homes["a"], seed=5, abuse=busy, **kw)
    simulate(homes["b"], seed=5, abuse=busy, **kw)
    simulate(homes["c"], seed=6, abuse=busy, **kw)
    simulate(homes["off"], seed=5, abuse=NO_ABUSE, **kw)
    truth = {k: h.truth / "abuse_accounts.parquet" for k, h in homes.items()}
    assert _digest(truth["a"]) == _digest(truth["b"]) != _digest(truth["c"])
    assert pq.read_metadata(truth["off"]).num_rows == 0
    c = duckdb.connect()
    # a player with no role has the same events with and without the planted abuse (event ids
    # are ranks in time order, and so are the trace ids of profile changes: left out)
    planted = f"(SELECT player_id FROM '{truth['a']}' UNION SELECT linked_to FROM '{truth['a']}')"
    same = ("SELECT event_type, player_id, occurred_at, CASE WHEN trace_id LIKE '%\\_e%' ESCAPE '\\' THEN '' "
            "ELSE trace_id END, CAST(json_merge_patch(payload, '{{\"first_name\": null, \"last_name\": null, "
            "\"address\": null, \"postcode\": null, \"payment_instrument\": null}}') AS VARCHAR) "
            "FROM read_parquet('{}/*.parquet') WHERE player_id NOT IN " + planted)
    left = c.execute(f"SELECT count(*) FROM ({same.format(homes['off'].incoming)} "
                     f"EXCEPT ALL {same.format(homes['a'].incoming)})").fetchone()[0]
    right = c.execute(f"SELECT count(*) FROM ({same.format(homes['a'].incoming)} "
                      f"EXCEPT ALL {same.format(homes['off'].incoming)})").fetchone()[0]
    assert left == right == 0
    n = c.execute(f"SELECT count(*) FROM {planted}").fetchone()[0]
    assert n > 100
