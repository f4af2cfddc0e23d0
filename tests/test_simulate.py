"""The event simulator: determinism, the contract, dirty records and behaviour the models learn."""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
from pathlib import Path

import duckdb
import pytest

from crm.config import Paths
from crm.contract import ENVELOPE_REQUIRED, EVENT_TYPES, JSON_TYPES, JURISDICTIONS, PAYLOADS, SERVICE_EVENT_TYPES
from crm.simulator.casino import SimulationSummary, simulate
from crm.simulator.world import DIRTY_KINDS

START = dt.date(2025, 6, 1)
TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# events that happen at registration and may therefore precede the period
REGISTRATION_TIME = ("player.registered", "consent.granted")


# --------------------------------------------------------------------------- contract checker
def _json_type(v) -> str:
    """DuckDB's json_type() name for a Python JSON value."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "BOOLEAN"
    if isinstance(v, int):
        return "UBIGINT" if v >= 0 else "BIGINT"
    if isinstance(v, float):
        return "DOUBLE"
    if isinstance(v, str):
        return "VARCHAR"
    return "ARRAY" if isinstance(v, list) else "OBJECT"


def _parse_ts(v) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(v, TS_FORMAT)
    except (TypeError, ValueError):
        return None


def problem(rec: dict) -> str | None:
    """Why a record breaks the contract (None if it obeys it). Duplicates are not seen here."""
    et = rec.get("event_type")
    if et not in PAYLOADS:
        return "unknown_event_type"
    if rec.get("occurred_at") is None:
        return "missing_timestamp"
    for name in ENVELOPE_REQUIRED:
        if not isinstance(rec.get(name), str):
            return f"missing_{name}"
    if _parse_ts(rec["occurred_at"]) is None:
        return "bad_timestamp"
    payload = rec.get("payload")
    if isinstance(payload, str):
        payload = json.loads(payload)
    if not isinstance(payload, dict):
        return "payload_not_object"
    for f in PAYLOADS[et]:
        if f.name not in payload:
            if f.required:
                return "missing_field"
            continue
        v = payload[f.name]
        if _json_type(v) not in JSON_TYPES[f.type]:
            return "wrong_type"
        if f.type == "date":
            try:
                dt.date.fromisoformat(v)
            except ValueError:
                return "wrong_type"
        if f.type == "timestamp" and _parse_ts(v) is None:
            return "wrong_type"
    return None


def read_records(files: list[Path]) -> list[dict]:
    out = []
    for f in files:
        if f.suffix == ".jsonl":
            out += [json.loads(line) for line in f.read_text().splitlines()]
        else:
            out += duckdb.sql(f"SELECT * FROM read_parquet('{f}')").df().to_dict("records")
    for r in out:
        for k, v in list(r.items()):
            if v != v:  # pandas NaN -> None
                r[k] = None
    return out


def check(files: list[Path]) -> tuple[list[dict], collections.Counter]:
    """Valid records and the count of problems by reason (an event_id seen before: duplicate)."""
    seen: set[str] = set()
    valid, reasons = [], collections.Counter()
    for rec in read_records(files):
        if rec.get("event_id") in seen:
            reasons["duplicate"] += 1
            continue
        why = problem(rec)
        if why:
            reasons[why] += 1
            continue
        seen.add(rec["event_id"])
        valid.append(rec)
    return valid, reasons


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _all_files(home: Path) -> dict[str, str]:
    return {str(p.relative_to(home)): _digest(p) for p in sorted(home.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Paths, SimulationSummary]:
    """A clean run large enough for behavioural checks (a few seconds)."""
    paths = Paths(tmp_path_factory.mktemp("sim"))
    summary = simulate(paths, players=6000, days=90, seed=11, start_date=START,
                       chunk_players=2500, dirty_rate=0.0, progress=False)
    return paths, summary


@pytest.fixture(scope="module")
def con(world) -> duckdb.DuckDBPyConnection:
    paths, summary = world
    c = duckdb.connect()
    files = ", ".join(f"'{f}'" for f in summary.files)
    c.execute(f"CREATE VIEW ev AS SELECT *, CAST(occurred_at AS TIMESTAMP) AS ts "
              f"FROM read_parquet([{files}])")
    c.execute(f"CREATE VIEW pl AS SELECT * FROM '{paths.truth / 'players.parquet'}'")
    c.execute(f"CREATE VIEW fx AS SELECT * FROM '{paths.truth / 'campaign_effects.parquet'}'")
    c.execute(f"CREATE VIEW asg AS SELECT * FROM '{paths.exports / 'campaign_assignments.parquet'}'")
    return c


# --------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    kw = dict(players=900, days=40, start_date=START, chunk_players=400, dirty_rate=0.01,
              progress=False)
    a = simulate(Paths(tmp_path / "a"), seed=7, **kw)
    b = simulate(Paths(tmp_path / "b"), seed=7, **kw)
    c = simulate(Paths(tmp_path / "c"), seed=8, **kw)
    files_a, files_b = _all_files(tmp_path / "a"), _all_files(tmp_path / "b")
    assert len(a.files) == 3 and files_a == files_b
    assert "landing/incoming/events_s7_c0002.parquet" in files_a
    assert "truth/players.parquet" in files_a and "truth/campaign_effects.parquet" in files_a
    assert "landing/exports/campaign_assignments.parquet" in files_a
    assert (a.events, a.dirty_records) == (b.events, b.dirty_records)
    assert [_digest(f) for f in a.files] != [_digest(f) for f in c.files]


def test_rerun_replaces_the_files_of_the_same_seed(tmp_path):
    paths = Paths(tmp_path)
    simulate(paths, players=300, days=20, seed=3, chunk_players=100, dirty_rate=0, progress=False)
    other = simulate(paths, players=300, days=20, seed=4, chunk_players=300, dirty_rate=0,
                     progress=False)
    again = simulate(paths, players=300, days=20, seed=3, chunk_players=300, dirty_rate=0,
                     fmt="jsonl", progress=False)
    names = sorted(p.name for p in paths.incoming.iterdir())
    assert names == ["events_s3_c0000.jsonl", "events_s4_c0000.parquet"]
    assert again.files == [paths.incoming / "events_s3_c0000.jsonl"] and other.files


def test_summary_to_dict_is_json(world):
    _, summary = world
    d = json.loads(json.dumps(summary.to_dict()))
    assert d["players"] == 6000 and d["days"] == 90 and d["seed"] == 11
    assert d["start_date"] == "2025-06-01" and d["end_date"] == "2025-08-29"
    assert d["dirty_records"] == 0 and d["events"] == sum(d["events_by_type"].values())
    assert all(Path(f).exists() for f in d["files"])


# --------------------------------------------------------------------------- contract
def test_every_clean_record_obeys_the_contract(world):
    paths, summary = world
    valid, reasons = check(summary.files)
    assert not reasons, reasons
    assert len(valid) == summary.events
    assert collections.Counter(r["event_type"] for r in valid) == summary.events_by_type
    # every event type of the contract occurs
    assert set(summary.events_by_type) == set(EVENT_TYPES) - set(SERVICE_EVENT_TYPES)
    start = dt.datetime.combine(START, dt.time())
    end = start + dt.timedelta(days=summary.days)
    for r in valid:
        ts = _parse_ts(r["occurred_at"])
        assert ts < end, r
        if ts < start:
            payload = json.loads(r["payload"])
            assert r["event_type"] in REGISTRATION_TIME, r
            assert r["event_type"] == "player.registered" or payload["source"] == "registration"
        assert r["trace_id"].startswith("tr_") and r["player_id"].startswith("p_")
        assert r["brand_id"] in ("A", "B")


def test_duckdb_sees_the_contract_json_types(world, con):
    """The same check landing runs: json_type() per (event_type, field)."""
    bad = []
    for et, fields in PAYLOADS.items():
        for f in fields:
            types = ", ".join(f"'{t}'" for t in JSON_TYPES[f.type])
            n_bad, n_present = con.execute(
                f"SELECT count(*) FILTER (WHERE json_type(payload, '$.{f.name}') NOT IN ({types})), "
                f"count(*) FILTER (WHERE json_exists(payload, '$.{f.name}')) "
                f"FROM ev WHERE event_type = '{et}'").fetchone()
            n_rows = con.execute(f"SELECT count(*) FROM ev WHERE event_type = '{et}'").fetchone()[0]
            if n_bad or (f.required and n_present != n_rows):
                bad.append((et, f.name, n_bad, n_present, n_rows))
    assert not bad
    assert con.execute("SELECT count(*) FROM ev WHERE ts IS NULL").fetchone()[0] == 0
    assert con.execute("SELECT count(*) - count(DISTINCT event_id) FROM ev").fetchone()[0] == 0


def test_jsonl_has_the_design_envelope_with_a_nested_payload(tmp_path):
    summary = simulate(Paths(tmp_path), players=400, days=30, seed=5, fmt="jsonl", dirty_rate=0,
                       progress=False)
    lines = summary.files[0].read_text().splitlines()
    first = json.loads(lines[0])
    assert list(first) == ["event_id", "event_type", "trace_id", "player_id", "brand_id",
                           "occurred_at", "payload"]
    assert all(isinstance(json.loads(line)["payload"], dict) for line in lines)
    valid, reasons = check(summary.files)
    assert not reasons and len(valid) == summary.events == len(lines)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_dirty_records_are_counted_exactly(tmp_path, fmt):
    summary = simulate(Paths(tmp_path), players=700, days=40, seed=9, fmt=fmt, chunk_players=350,
                       dirty_rate=0.02, progress=False)
    valid, reasons = check(summary.files)
    assert summary.dirty_records > 0.015 * summary.events
    assert sum(reasons.values()) == summary.dirty_records
    assert len(valid) == summary.events
    assert dict(reasons) == summary.dirty_by_kind
    assert set(reasons) == set(DIRTY_KINDS)
    # the clean part is the same world as without dirt
    clean = simulate(Paths(tmp_path / "clean"), players=700, days=40, seed=9, fmt=fmt,
                     chunk_players=350, dirty_rate=0.0, progress=False)
    assert clean.events == summary.events and clean.events_by_type == summary.events_by_type


# --------------------------------------------------------------------------- behaviour
def test_jurisdictions_brands_and_currencies(con):
    rows = con.execute(
        "SELECT payload->>'country' AS c, payload->>'currency', payload->>'timezone', "
        "payload->>'locale', count(DISTINCT brand_id) FROM ev WHERE event_type = 'player.registered' "
        "GROUP BY ALL ORDER BY 1").fetchall()
    assert {r[0] for r in rows} == set(JURISDICTIONS)
    assert ("SE", "SEK", "Europe/Stockholm", "sv-SE", 2) in rows
    assert ("UK", "GBP", "Europe/London", "en-GB", 2) in rows
    # SEK amounts are ~10x EUR amounts
    med = dict(con.execute(
        "SELECT payload->>'currency', median(CAST(payload->>'amount' AS BIGINT)) FROM ev "
        "WHERE event_type = 'payment.captured' GROUP BY 1").fetchall())
    assert 5 < med["SEK"] / med["EUR"] < 20


def test_sessions_peak_in_the_local_evening(con):
    hours = dict(con.execute(
        "SELECT hour(timezone(payload_tz, ts_tz)) AS h, count(*) FROM ("
        "  SELECT e.ts AT TIME ZONE 'UTC' AS ts_tz, r.payload->>'timezone' AS payload_tz FROM ev e "
        "  JOIN ev r ON r.player_id = e.player_id AND r.event_type = 'player.registered' "
        "  WHERE e.event_type = 'session.started') GROUP BY 1").fetchall())
    evening = sum(hours.get(h, 0) for h in range(18, 24))
    morning = sum(hours.get(h, 0) for h in range(6, 12))
    assert evening > 2 * morning


def test_bets_pay_back_about_96_percent(con):
    stake, win, failed, intents = con.execute(
        "SELECT sum(CAST(payload->>'stake' AS BIGINT)) FILTER (WHERE event_type = 'bet.settled'), "
        "sum(CAST(payload->>'win' AS BIGINT)) FILTER (WHERE event_type = 'bet.settled'), "
        "count(*) FILTER (WHERE event_type = 'payment.failed'), "
        "count(*) FILTER (WHERE event_type = 'payment.intent') FROM ev").fetchone()
    assert 0.85 < win / stake < 1.05
    assert 0.05 < failed / intents < 0.12


def test_self_exclusion_share_and_no_play_while_excluded(con):
    n_players = con.execute("SELECT count(*) FROM pl").fetchone()[0]
    n_se = con.execute(
        "SELECT count(DISTINCT player_id) FROM ev WHERE event_type = 'rg.self_exclusion.started' "
        "AND payload->>'scope' IN ('brand', 'operator')").fetchone()[0]
    assert 0.01 <= n_se / n_players <= 0.02
    scopes = dict(con.execute(
        "SELECT payload->>'scope', count(*) FROM ev WHERE event_type = 'rg.self_exclusion.started' "
        "GROUP BY 1").fetchall())
    assert set(scopes) == {"brand", "operator", "cooling_off"}
    indefinite = con.execute(
        "SELECT count(*) FROM ev WHERE event_type = 'rg.self_exclusion.started' "
        "AND NOT json_exists(payload, '$.until')").fetchone()[0]
    assert indefinite > 0
    # no session, bet or payment between the start of an exclusion and its end
    during = con.execute(
        "WITH s AS (SELECT player_id, ts AS t0 FROM ev WHERE event_type = 'rg.self_exclusion.started'), "
        "e AS (SELECT player_id, ts AS t1 FROM ev WHERE event_type = 'rg.self_exclusion.ended') "
        "SELECT count(*) FROM ev JOIN s USING (player_id) LEFT JOIN e USING (player_id) "
        "WHERE (ev.event_type LIKE 'session.%' OR ev.event_type LIKE 'bet.%' "
        "       OR ev.event_type LIKE 'payment.%' OR ev.event_type LIKE 'crm.%') "
        "AND ev.ts >= s.t0 AND ev.ts < coalesce(e.t1, TIMESTAMP '2100-01-01')").fetchone()[0]
    assert during == 0
    # cooling-off lasts 1-42 days; some players come back after an exclusion ends, some do not
    spans = con.execute(
        "SELECT CAST(payload->>'until' AS TIMESTAMP) - ts FROM ev "
        "WHERE event_type = 'rg.self_exclusion.started' AND payload->>'scope' = 'cooling_off'"
    ).fetchall()
    assert spans and all(dt.timedelta(days=1) <= s[0] <= dt.timedelta(days=42) for s in spans)
    back = con.execute(
        "WITH e AS (SELECT player_id, max(ts) AS t1 FROM ev "
        "           WHERE event_type = 'rg.self_exclusion.ended' GROUP BY 1) "
        "SELECT count(DISTINCT e.player_id) FILTER (WHERE ev.player_id IS NOT NULL), count(DISTINCT e.player_id) "
        "FROM e LEFT JOIN ev ON ev.player_id = e.player_id AND ev.event_type = 'session.started' "
        "AND ev.ts > e.t1").fetchone()
    assert 0 < back[0] < back[1]


def test_under_18_and_young_players_exist(con):
    minors, young, unverified_minor_players = con.execute(
        "SELECT count(*) FILTER (WHERE CAST(payload->>'birth_date' AS DATE) > DATE '2025-08-29' - INTERVAL 18 YEAR), "
        "count(*) FILTER (WHERE CAST(payload->>'birth_date' AS DATE) BETWEEN DATE '2025-08-29' - INTERVAL 24 YEAR "
        "                 AND DATE '2025-08-29' - INTERVAL 18 YEAR), "
        "count(*) FILTER (WHERE CAST(payload->>'birth_date' AS DATE) > DATE '2025-08-29' - INTERVAL 18 YEAR "
        "                 AND NOT CAST(payload->>'age_verified' AS BOOLEAN)) "
        "FROM ev WHERE event_type = 'player.registered'").fetchone()
    assert minors >= 5 and minors == unverified_minor_players
    assert 0.015 < young / 6000 < 0.05
    # minors never gamble
    assert con.execute(
        "SELECT count(*) FROM ev JOIN pl USING (player_id) WHERE pl.under_18 "
        "AND ev.event_type IN ('session.started', 'payment.intent')").fetchone()[0] == 0


def test_consents_at_registration_follow_the_shares(con):
    shares = dict(con.execute(
        "SELECT payload->>'channel', count(*) / 6000 FROM ev WHERE event_type = 'consent.granted' "
        "AND payload->>'source' = 'registration' GROUP BY 1").fetchall())
    for ch, p in {"email": 0.7, "push": 0.5, "sms": 0.3, "in_app": 0.85, "profiling": 0.8}.items():
        assert abs(shares[ch] - p) < 0.04, (ch, shares[ch])
    assert con.execute("SELECT count(*) FROM ev WHERE event_type = 'consent.revoked'").fetchone()[0]


def test_churners_slow_down_before_they_stop(con):
    """Sessions per day in a churner's first four weeks vs the last two weeks before churn."""
    first, last, n = con.execute(
        "WITH c AS (SELECT player_id, churned_on FROM pl WHERE NOT dormant_at_start "
        "           AND registered_at < TIMESTAMP '2025-06-01' AND exclusion_scope IS NULL "
        "           AND churned_on BETWEEN DATE '2025-07-20' AND DATE '2025-08-29') "
        "SELECT count(*) FILTER (WHERE ev.ts < TIMESTAMP '2025-06-29') / 28, "
        "count(*) FILTER (WHERE ev.ts >= c.churned_on - INTERVAL 14 DAY) / 14, "
        "count(DISTINCT c.player_id) "
        "FROM c JOIN ev USING (player_id) WHERE ev.event_type = 'session.started'").fetchone()
    assert n > 100
    assert last < 0.7 * first
    # and they stop: no sessions after the churn date, unless a campaign reactivated them
    after, reactivated = con.execute(
        "WITH back AS (SELECT DISTINCT player_id FROM pl JOIN ev USING (player_id) "
        "  WHERE ev.event_type = 'session.started' AND ev.ts > pl.churned_on + INTERVAL 2 DAY) "
        "SELECT count(*) FILTER (WHERE player_id NOT IN (SELECT player_id FROM ev "
        "                                                WHERE event_type = 'crm.delivery')), "
        "count(*) FROM back").fetchone()
    assert after == 0 and reactivated > 0


def test_player_types_differ(con):
    rows = dict((t, (s, d)) for t, s, d in con.execute(
        "SELECT player_type, count(*) FILTER (WHERE event_type = 'session.started') / count(DISTINCT pl.player_id), "
        "median(CAST(payload->>'amount' AS BIGINT)) FILTER (WHERE event_type = 'payment.captured' "
        "       AND payload->>'currency' = 'EUR') "
        "FROM pl LEFT JOIN ev USING (player_id) GROUP BY 1").fetchall())
    assert rows["casual"][0] < rows["regular"][0] < rows["vip"][0]
    assert rows["casual"][1] < rows["regular"][1] < rows["vip"][1]
    shares = dict(con.execute("SELECT player_type, count(*) / 6000 FROM pl GROUP BY 1").fetchall())
    assert abs(shares["casual"] - 0.65) < 0.03 and abs(shares["vip"] - 0.07) < 0.015


def test_campaigns_have_a_holdout_and_true_effects_that_show(con):
    per = con.execute(
        "SELECT campaign_id, avg(CAST(arm = 'control' AS INT)), count(*) FROM asg GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [c for c, _, _ in per] == ["hist_c01", "hist_c02", "hist_c03", "hist_c04"]
    assert all(0.16 < share < 0.24 for _, share, _ in per)
    # deliveries go to the treatment arm only
    leaks = con.execute(
        "SELECT count(*) FROM ev JOIN asg ON ev.player_id = asg.player_id "
        "AND ev.payload->>'campaign_id' = asg.campaign_id "
        "WHERE ev.event_type = 'crm.delivery' AND asg.arm = 'control'").fetchone()[0]
    treated = con.execute("SELECT count(*) FROM asg WHERE arm = 'treatment'").fetchone()[0]
    delivered = con.execute("SELECT count(*) FROM ev WHERE event_type = 'crm.delivery'").fetchone()[0]
    assert leaks == 0 and delivered == treated
    mix = dict(con.execute("SELECT responder_type, count(*) / (SELECT count(*) FROM fx) FROM fx "
                           "GROUP BY 1").fetchall())
    assert 0.3 < mix["positive"] < 0.5 and 0.4 < mix["none"] < 0.6 and 0.05 < mix["negative"] < 0.15
    assert con.execute("SELECT count(*) FROM fx WHERE responder_type = 'none' "
                       "AND true_effect_deposit_prob <> 0").fetchone()[0] == 0
    # observed: positive responders deposit more within 7 days when treated, negative ones less
    rates = {(t, a): (r, n) for t, a, r, n in con.execute(
        "WITH d AS (SELECT asg.campaign_id, asg.player_id, asg.arm, fx.responder_type, "
        "  EXISTS (SELECT 1 FROM ev WHERE ev.player_id = asg.player_id "
        "          AND ev.event_type = 'payment.captured' AND ev.ts >= asg.sent_at "
        "          AND ev.ts < asg.sent_at + INTERVAL 7 DAY) AS dep "
        "  FROM asg JOIN fx USING (campaign_id, player_id)) "
        "SELECT responder_type, arm, avg(CAST(dep AS DOUBLE)), count(*) FROM d GROUP BY 1, 2").fetchall()}
    assert rates["positive", "treatment"][0] > rates["positive", "control"][0] + 0.08
    assert rates["negative", "treatment"][0] < rates["negative", "control"][0]
    assert abs(rates["none", "treatment"][0] - rates["none", "control"][0]) < 0.04


def test_no_delivery_after_unsubscribe_or_without_consent(con):
    after = con.execute(
        "WITH u AS (SELECT player_id, payload->>'channel' AS ch, min(ts) AS t FROM ev "
        "           WHERE event_type IN ('crm.unsubscribe', 'crm.complaint') GROUP BY 1, 2) "
        "SELECT count(*) FROM ev JOIN u ON ev.player_id = u.player_id "
        "AND ev.payload->>'channel' = u.ch WHERE ev.event_type = 'crm.delivery' AND ev.ts > u.t"
    ).fetchone()[0]
    unsubscribed = con.execute(
        "SELECT count(*) FROM ev WHERE event_type = 'crm.unsubscribe'").fetchone()[0]
    assert unsubscribed > 0 and after == 0
    # every delivery had the channel's consent in force (latest consent event before it: granted)
    without = con.execute(
        "WITH d AS (SELECT player_id, payload->>'channel' AS ch, ts FROM ev "
        "           WHERE event_type = 'crm.delivery'), "
        "c AS (SELECT player_id, payload->>'channel' AS ch, ts, event_type FROM ev "
        "      WHERE event_type LIKE 'consent.%') "
        "SELECT count(*) FROM d WHERE coalesce((SELECT arg_max(c.event_type, c.ts) FROM c "
        "  WHERE c.player_id = d.player_id AND c.ch = d.ch AND c.ts < d.ts), 'none') "
        "  <> 'consent.granted'").fetchone()[0]
    assert without == 0


def test_bonus_lifecycle_and_payment_flows(con):
    counts = dict(con.execute(
        "WITH b AS (SELECT payload->>'bonus_id' AS bid, list(event_type ORDER BY ts) AS steps "
        "           FROM ev WHERE event_type LIKE 'bonus.%' GROUP BY 1) "
        "SELECT CAST(steps AS VARCHAR), count(*) FROM b GROUP BY 1").fetchall())
    assert set(counts) <= {"[bonus.issued]", "[bonus.issued, bonus.consumed]",
                           "[bonus.issued, bonus.expired]"}
    flows = dict(con.execute(
        "WITH p AS (SELECT trace_id, list(event_type ORDER BY ts, event_type) AS steps FROM ev "
        "           WHERE event_type IN ('payment.intent', 'payment.authorized', 'payment.captured', "
        "           'payment.failed') GROUP BY 1) "
        "SELECT CAST(steps AS VARCHAR), count(*) FROM p GROUP BY 1").fetchall())
    assert set(flows) == {"[payment.intent, payment.authorized, payment.captured]",
                          "[payment.intent, payment.failed]"}
    # UK bonuses never carry wagering above 10x; SE players only get a welcome bonus
    assert con.execute(
        "SELECT count(*) FROM ev WHERE event_type = 'bonus.issued' AND payload->>'currency' = 'GBP' "
        "AND CAST(payload->>'wagering' AS DOUBLE) > 10").fetchone()[0] == 0
    assert con.execute(
        "SELECT count(*) FROM ev WHERE event_type = 'bonus.issued' AND payload->>'currency' = 'SEK' "
        "AND payload->>'template' <> 'welcome'").fetchone()[0] == 0
