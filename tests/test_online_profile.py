"""The online profile end to end: land events, build dim_player with dbt, copy it into the store
(``sync_profiles``), send over the API, withdraw over the API (refused at once), hand the events
off, land and build again, sync: the stop is retired because the warehouse now shows it, and the
send is still refused, now by the warehouse's own state."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pandas as pd
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.campaigns.online import sync_online_profiles as sync_profiles
from crm.config import CAMPAIGNS_DIR, Paths
from crm.ingest.landing import ingest_file, ingest_pending
from crm.store.db import make_engine, upgrade_to_head
from crm.store.events import hand_off
from crm.store.keys import create_key
from crm.store.profile import effective_profile
from crm.store.schema import contacts, profile_stops, reported_messages, synced_files
from crm.store.vault import CHANNEL_FIELDS, Vault
from crm.warehouse import connect, write_scores
from tests._dbt import dbt_build
from tests._service import call, running_server

AS_OF = dt.date(2025, 10, 1)
NOW = dt.datetime(2025, 10, 1, 12, 0)
BUILD = ("--select", "+dim_player", "+stg_casino__crm_messages", "+player_features", "--exclude", "test_type:unit",
         "--indirect-selection", "cautious")


def _events() -> list[dict]:
    out = []
    for pid, email in (("p1", "one@example.com"), ("p2", "two@example.com"), ("p3", None)):
        payload = {"country": "MT", "locale": "en", "timezone": "Europe/Malta", "birth_date": "1980-01-01",
                   "currency": "EUR", "age_verified": True} | ({"email": email} if email else {})
        out.append({"event_id": f"reg-{pid}", "event_type": "player.registered", "player_id": pid, "brand_id": "A",
                    "occurred_at": "2025-09-01T10:00:00Z", "payload": payload})
        for ch in ("email", "sms"):
            out.append({"event_id": f"c-{pid}-{ch}", "event_type": "consent.granted", "player_id": pid,
                        "brand_id": "A", "occurred_at": "2025-09-01T10:01:00Z",
                        "payload": {"channel": ch, "product": "casino", "source": "signup"}})
    # p1 plays: a feature row (what the dry run's snapshot carries)
    out.append({"event_id": "dep-p1", "event_type": "payment.captured", "player_id": "p1", "brand_id": "A",
                "occurred_at": "2025-09-29T20:00:00Z", "payload": {"amount": 25_000, "currency": "EUR"}})
    # a message the casino sent itself and reported: the send check counts it like the lists do
    out.append({"event_id": "own-send-p1", "event_type": "crm.delivery", "player_id": "p1", "brand_id": "A",
                "occurred_at": "2025-09-30T09:00:00Z",
                "payload": {"delivery_id": "casino-123", "campaign_id": "casino_newsletter", "channel": "email"}})
    # one with a campaign id longer than the store's column: kept (cut to size), and the sync goes through
    out.append({"event_id": "own-send-p2", "event_type": "crm.delivery", "player_id": "p2", "brand_id": "A",
                "occurred_at": "2025-09-30T10:00:00Z",
                "payload": {"delivery_id": "casino-124", "campaign_id": "x" * 500, "channel": "EMAIL "}})
    return out


def _contacts(conn, paths) -> dict:
    """(player, channel) -> the address the vault holds, checking the store's pseudonym is its own
    and that no landed file holds the address in clear."""
    vault, out = Vault(paths), {}
    for r in conn.execute(sa.select(contacts)):
        address = vault.contact(r.brand_id, r.player_id, r.channel)
        assert r.address_pseudonym == vault.pseudonym(CHANNEL_FIELDS[r.channel], address)
        assert not duckdb.connect().execute("SELECT count(*) FROM read_parquet(?) WHERE contains(payload, ?)",
                                  [str(paths.events / "*.parquet"), address]).fetchone()[0]
        out[(r.player_id, r.channel)] = address
    return out


def test_sync_send_withdraw_rebuild_retire(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_CAMPAIGNS_DIR", str(CAMPAIGNS_DIR))
    monkeypatch.setenv("CRM_HOME", str(tmp_path))
    paths = Paths(tmp_path).ensure()
    src = tmp_path / "events.jsonl"
    src.write_text("\n".join(json.dumps(e) for e in _events()) + "\n")
    assert ingest_file(src, paths).loaded == 12
    dbt_build(tmp_path, AS_OF, *BUILD)
    # the models' latest scores travel with the profile (journeys enter on churn_score)
    for day, score in ((AS_OF - dt.timedelta(days=1), 0.2), (AS_OF, 0.8)):
        write_scores(paths, pd.DataFrame({"player_id": ["p1"], "score": [score], "model_name": ["churn"],
                                          "model_version": ["1"]}), day, "churn")
    # and the predicted value of a bonus (EUR cents), which offer generation reads
    write_scores(paths, pd.DataFrame({"player_id": ["p2"], "score": [1234.5], "model_name": ["uplift_value"],
                                      "model_version": ["3"]}), AS_OF, "uplift_value")
    engine = make_engine(paths)
    upgrade_to_head(engine)
    out = sync_profiles(paths, engine)
    with engine.connect() as conn:
        assert effective_profile(conn, "A", "p1")[0]["churn_score"] == 0.8
        assert effective_profile(conn, "A", "p2")[0]["churn_score"] is None
        assert effective_profile(conn, "A", "p2")[0]["uplift_value_score"] == 1234.5
        assert effective_profile(conn, "A", "p1")[0]["uplift_value_score"] is None
        # and what a cashback is costed on (player_features; no feature row: absent, so the cap)
        losses = {pid: effective_profile(conn, "A", pid)[0].get("net_loss_eur_7d") for pid in ("p1", "p2")}
    with connect(paths) as con:
        expected = dict(con.execute("SELECT player_id, net_loss_eur_7d FROM player_features").fetchall())
    assert losses == {pid: expected.get(pid) for pid in ("p1", "p2")}
    # the model features dim_player lacks go to the snapshot the web page's dry run reads
    snap = pd.read_parquet(paths.feature_copy)
    with connect(paths) as con:
        features = con.execute("SELECT * FROM player_features ORDER BY player_id").df()
    assert len(snap) == len(features) > 0 and set(snap["as_of_date"].astype(str)) == {AS_OF.isoformat()}
    assert {"deposit_eur_90d", "sessions_30d", "net_loss_eur_7d"} <= set(snap.columns)
    assert "consent_email" not in snap and "tenure_days" not in snap  # dim_player's own columns stay its own
    pd.testing.assert_series_equal(snap["deposit_eur_90d"], features["deposit_eur_90d"], check_dtype=False)
    assert out["profiles"] == 3 and out["as_of_date"] == AS_OF.isoformat() and out["stops_live"] == 0
    assert out["reported_messages"] == 2
    with engine.connect() as conn:
        reported = conn.execute(sa.select(reported_messages).order_by(reported_messages.c.player_id)).all()
    assert [(r.brand_id, r.player_id, r.channel, r.campaign_id, r.sent_at) for r in reported] == [
        ("A", "p1", "email", "casino_newsletter", dt.datetime(2025, 9, 30, 9, 0)),
        ("A", "p2", "email", "x" * 128, dt.datetime(2025, 9, 30, 10, 0))]
    with engine.connect() as conn:
        got = _contacts(conn, paths)
        assert got == {("p1", "email"): "one@example.com", ("p2", "email"): "two@example.com"}
        profile, _ = effective_profile(conn, "A", "p1")
    assert profile["consent_email"] is True and profile["consent_email_source"] == "consent.granted"
    assert out["contacts_updated"] == 2

    # Contacts come from the files landed since the last sync only: a file already read is not read
    # again (its addresses were taken), a new file's newer address replaces the stored one, and a
    # late event (an older address landed later) does not.
    assert sync_profiles(paths, engine)["contacts_updated"] == 0
    later = tmp_path / "later.jsonl"
    later.write_text("\n".join(json.dumps(e) for e in (
        {"event_id": "upd-p1", "event_type": "player.updated", "player_id": "p1", "brand_id": "A",
         "occurred_at": "2025-09-20T10:00:00Z", "payload": {"email": " new-one@example.com "}},
        {"event_id": "late-p2", "event_type": "player.updated", "player_id": "p2", "brand_id": "A",
         "occurred_at": "2025-08-01T10:00:00Z", "payload": {"email": "old-two@example.com"}},
        {"event_id": "upd-p3", "event_type": "player.updated", "player_id": "p3", "brand_id": "A",
         "occurred_at": "2025-09-20T10:00:00Z", "payload": {"phone": "+35699000000"}})) + "\n")
    assert ingest_file(later, paths).loaded == 3
    assert sync_profiles(paths, engine)["contacts_updated"] == 2
    with engine.connect() as conn:
        got = _contacts(conn, paths)
    assert got == {("p1", "email"): "new-one@example.com", ("p2", "email"): "two@example.com",
                   ("p3", "sms"): "+35699000000"}
    # the files read are recorded; an address removed from the store is not read back from them
    with engine.begin() as conn:
        assert set(conn.execute(sa.select(synced_files.c.file_name)).scalars()) == {
            f.name for f in paths.events.glob("*.parquet")}
        conn.execute(contacts.delete().where(contacts.c.player_id == "p2"))
    assert sync_profiles(paths, engine)["contacts_updated"] == 0
    with engine.connect() as conn:
        assert conn.execute(sa.select(contacts.c.channel).where(contacts.c.player_id == "p2")).first() is None

    key = create_key(engine, "all", "A", ["messaging:send", "events:write"])[1]
    body = {"channel": "email", "template_id": "payment_failure_help", "frequency_policy_id": "transactional",
            "personalization": {"brand_name": "L", "payment_method": "Visa", "failures": 1, "help_url": "https://x"}}
    with running_server(paths, engine=engine, clock=lambda: NOW) as url:
        assert call(f"{url}/v1/messaging/send", "POST", body | {"player_id": "p1"}, key=key,
                    headers={"X-Idempotency-Key": "a1"})[0] == 202
        evs = [{"event_id": "rv-p2", "event_type": "consent.revoked", "player_id": "p2", "brand_id": "A",
                "occurred_at": "2025-10-01T11:00:00Z", "payload": {"channel": "email"}},
               {"event_id": "se-p3", "event_type": "rg.self_exclusion.started", "player_id": "p3", "brand_id": "A",
                "occurred_at": "2025-10-01T11:00:00Z", "payload": {"scope": "operator"}}]
        assert call(f"{url}/v1/events", "POST", evs, key=key)[0] == 202
        for pid, rule in (("p2", "no_channel_consent"), ("p3", "self_excluded")):
            status, refused = call(f"{url}/v1/messaging/send", "POST", body | {"player_id": pid}, key=key,
                                   headers={"X-Idempotency-Key": f"b-{pid}"})
            assert status == 422 and refused["rule"] == rule, refused

        # a sync before the warehouse has seen the stops keeps them
        assert sync_profiles(paths, engine)["stops_live"] == 2
        # the events reach the warehouse: hand-off, landing, dbt
        assert hand_off(paths, engine).events == 2
        ingest_pending(paths)
        dbt_build(tmp_path, AS_OF + dt.timedelta(days=1), *BUILD)
        out = sync_profiles(paths, engine)
        assert (out["stops_retired"], out["stops_live"]) == (2, 0)
        with engine.connect() as conn:
            assert all(r.retired_at is not None for r in conn.execute(sa.select(profile_stops)))
            p2, stops = effective_profile(conn, "A", "p2")
            p3, _ = effective_profile(conn, "A", "p3")
        assert not stops and p2["consent_email"] is False and p3["self_excluded_now"] is True  # the warehouse's word
        for pid, rule in (("p2", "no_channel_consent"), ("p3", "self_excluded")):
            status, refused = call(f"{url}/v1/messaging/send", "POST", body | {"player_id": pid}, key=key,
                                   headers={"X-Idempotency-Key": f"c-{pid}"})
            assert status == 422 and refused["rule"] == rule, refused


def test_profile_json_is_the_value_by_value_conversion_column_at_a_time():
    """The sync writes each profile as JSON column at a time (by orjson); read back, it must equal the
    value-by-value conversion (``_json_value`` of every cell, ``json.dumps``) for every column type
    dim_player can hand over, and for values orjson writes otherwise or refuses."""
    import datetime as dt
    import json

    import numpy as np
    import pandas as pd

    from crm.store.profile import _json_value, load_profile, profile_json

    df = pd.DataFrame({
        "brand_id": ["A", "B", "A"], "player_id": ["p1", "p2", "p\u00e9 3"],
        "i": np.array([1, -2, 2**40], dtype="int64"), "u8": np.array([0, 1, 255], dtype="uint8"),
        "b": [True, False, True], "f": [0.1, np.nan, -1e300], "f32": np.array([1.5, np.nan, 0], dtype="float32"),
        "ts": pd.to_datetime(["2025-09-28 10:00:01.5", None, "1970-01-01 00:00:00.0"]),
        "tz": pd.to_datetime(["2025-03-30 01:30", None, "2025-10-26 02:30"]).tz_localize("Europe/Amsterdam",
                                                                                         ambiguous=True),
        "d": [dt.date(2024, 2, 29), None, dt.date(1900, 1, 1)], "s": ["x", None, "\u200b ok "],
        "nullable_int": pd.array([1, None, 3], dtype="Int64"), "nullable_bool": pd.array([True, None, False]),
        "obj_nan": [np.nan, "a", None], "mixed": [1, "two", 3.0],
        # what the warehouse read hands over (crm.warehouse.fetch_df): Arrow strings, nullable
        # int32, datetime64[us] with and without a fraction, at the ends of the calendar too
        "s_arrow": pd.Series(["x", None, " Ü "], dtype="str"), "i32": pd.array([None, -7, 2**31 - 1], dtype="Int32"),
        "ts_us": pd.Series(pd.to_datetime(["2025-09-28 10:00:00", "0001-01-01 00:00:00.000001", None],
                                          format="mixed")).astype("datetime64[us]"),
        "ts_end": pd.Series(pd.to_datetime(["9999-12-31 23:59:59.999999", None, "2000-02-29 00:00:00.5"],
                                           format="mixed")).astype("datetime64[us]"),
        "all_null_text": pd.Series([None, None, None], dtype=object),
        # what orjson writes otherwise than json (null for an infinity) or refuses (big integers, lone
        # surrogates): those rows are written by json
        "f_inf": [np.inf, 1.0, -np.inf], "obj_inf": [1, -np.inf, "x"], "big": [2**70, 1, None],
        "lone": pd.Series(["\ud800x", "ok", None], dtype=object),
    })
    expected = [json.dumps({c: _json_value(v) for c, v in zip(df.columns, r, strict=True)}, default=str)
                for r in df.itertuples(index=False, name=None)]
    written = profile_json(df)
    assert [load_profile(t) for t in written] == [json.loads(t) for t in expected]
    assert [list(load_profile(t)) for t in written] == [list(df.columns)] * len(df)  # column order kept
    assert profile_json(df.drop(columns=["f_inf", "obj_inf", "big", "lone"]).iloc[[0]])[0].startswith('{"brand_id":"A"')
    assert json.loads(profile_json(df)[1])["f"] is None and json.loads(profile_json(df)[1])["ts"] is None


_STAMPS = st.one_of(st.none(), st.datetimes(min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9999, 12, 31)),
                   st.sampled_from([dt.datetime(2025, 9, 28, 10, 0, 0, 1), dt.datetime(1970, 1, 1),
                                    dt.datetime(2262, 4, 11, 23, 47, 16, 854775)]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(
    st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    st.one_of(st.none(), st.floats(width=32, allow_nan=True, allow_infinity=False)),
    st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)), st.one_of(st.none(), st.booleans()),
    st.one_of(st.none(), st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=6)),
    _STAMPS, st.one_of(st.none(), st.dates(min_value=dt.date(1000, 1, 1), max_value=dt.date(9999, 12, 31)))),
    min_size=1, max_size=8))
def test_profiles_written_by_duckdb_read_back_as_the_frame_conversion(rows):
    """The million-player sync has DuckDB write each profile's JSON; read back, every profile equals
    what the frame conversion (fetch_df, then profile_json) writes, for each column type dim_player
    holds, with NaN, infinities, float32 rounding, 64-bit extremes, control and non-ASCII text,
    microseconds and the ends of the calendar; key order kept. A type it does not write (DECIMAL)
    or a date outside the years 1000-9999 leaves the frame conversion to the caller."""
    import duckdb

    from crm.store.profile import _profiles_in_sql, load_profile, profile_json
    from crm.warehouse import fetch_df

    con = duckdb.connect()
    con.execute("CREATE TABLE t (player_id VARCHAR, brand_id VARCHAR, f DOUBLE, f32 FLOAT, i BIGINT, b BOOLEAN, "
                "s VARCHAR, ts TIMESTAMP, d DATE)")
    con.executemany("INSERT INTO t VALUES (?, 'A', ?, ?, ?, ?, ?, ?, ?)",
                    [(f"p{k}", *r) for k, r in enumerate(rows)])
    query = "SELECT * FROM t ORDER BY brand_id, player_id"
    got = _profiles_in_sql(con, query, [])
    frame = fetch_df(con, query)
    assert [(b, p) for b, p, _ in got] == list(zip(frame["brand_id"], frame["player_id"], strict=True))
    assert [load_profile(j) for _, _, j in got] == [load_profile(j) for j in profile_json(frame)]
    assert all(list(load_profile(j)) == list(frame.columns) for _, _, j in got)
    assert _profiles_in_sql(con, "SELECT *, 1.5::DECIMAL(4, 1) AS x FROM t", []) is None
    con.execute("INSERT INTO t VALUES ('old', 'A', 1, 1, 1, true, '', TIMESTAMP '0999-12-31 00:00:00', NULL)")
    assert _profiles_in_sql(con, query, []) is None


def test_load_profile_reads_what_json_reads():
    """Stored profiles are parsed with orjson, and with json where orjson refuses what json.dumps
    may write (Infinity, NaN, integers past 64 bits, lone surrogates): the same values either way."""
    import json
    import math

    from crm.store.profile import load_profile

    values = [{"a": 1, "b": None, "c": "é \u200b", "d": [1, 2.5], "e": {"f": True}}, {"big": 2**70, "neg": -2**64},
              {"inf": math.inf, "minus_inf": -math.inf}, {"lone": "\ud800x"}, {"x": 0.1, "y": 1e-320, "z": -0.0}]
    for v in values:
        text = json.dumps(v, default=str)
        assert load_profile(text) == json.loads(text)
    nan = load_profile(json.dumps({"n": math.nan}))
    assert math.isnan(nan["n"])
