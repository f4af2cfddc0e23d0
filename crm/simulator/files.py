"""Writing a chunk: event files in time order (with deliberately broken records), the
simulator's ground truth (``truth/``) and the operator's export of past campaign assignments.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crm.config import Paths
from crm.contract import CHANNELS, EVENT_TYPES, PAYLOADS, SELF_EXCLUSION_SCOPES, STOP_EVENTS
from crm.simulator.abuse import ROLES, SHARED_TEXT
from crm.simulator.chunk import Chunk
from crm.simulator.world import (
    BAD_TIMESTAMPS,
    BONUS_OFFERS,
    BONUS_TEMPLATES,
    BRANDS,
    COUNTRIES,
    CURRENCIES,
    DIRTY_KINDS,
    FAMILIES,
    LIMIT_KINDS,
    NEEDS_CURRENCY,
    PLAYER_TYPES,
    RESPONDER_TYPES,
    TS_FMT,
    UNKNOWN_TYPES,
    take,
    ts_array,
)


def family_tables(chunk: Chunk):
    """Yield (family, Arrow table) with the rank ``r`` of each event in time order."""
    fams = [f for f in FAMILIES if f in chunk.parts]
    merged = {}
    for f in fams:
        parts = chunk.parts.pop(f)
        merged[f] = (
            np.concatenate([x[0] for x in parts]), np.concatenate([x[1] for x in parts]),
            np.concatenate([x[2] for x in parts]),
            {k: np.concatenate([x[3][k] for x in parts]) for k in parts[0][3]},
        )
    all_ts = np.concatenate([merged[f][1] for f in fams]) if fams else np.zeros(0, np.int64)
    chunk.counts = np.bincount(np.concatenate([merged[f][0] for f in fams]) if fams else
                              np.zeros(0, np.int64), minlength=len(EVENT_TYPES))
    rank = np.empty(len(all_ts), np.int64)
    rank[np.argsort(all_ts, kind="stable")] = np.arange(len(all_ts))
    del all_ts
    camp_ids = tuple(c.campaign_id for c in chunk.w.campaigns)
    offers = BONUS_OFFERS + tuple(
        f"{c.campaign_id}_{BONUS_TEMPLATES[c.template]}" for c in chunk.w.campaigns)
    off = 0
    for f in fams:
        et, ts, p, cols = merged.pop(f)
        cats = FAMILIES[f][0]
        data: dict[str, pa.Array | np.ndarray] = {
            "r": rank[off:off + len(ts)], "event_type": take(EVENT_TYPES, et),
            "pg": chunk.pg[p], "brand_id": take(BRANDS, chunk.brand[p]),
            "ts": pa.array(ts.astype("datetime64[s]")),
        }
        off += len(ts)
        if f in NEEDS_CURRENCY:
            data["cur"] = take(CURRENCIES, chunk.cc[p])
        for k, v in cols.items():
            if k in cats:
                data[k] = take(cats[k], v)
            elif k == "until":
                data[k] = ts_array(v)
            elif k == "birth":
                data[k] = pa.array((np.datetime64(chunk.w.start_date, "D") + v)
                                   .astype("datetime64[D]"))
            elif k == "campaign":
                data[k] = take(camp_ids, v)
            elif k == "offer":
                data[k] = take(offers, v)
            else:
                data[k] = v
        yield f, pa.table(data)

def write_chunk(chunk: Chunk, con: duckdb.DuckDBPyConnection, out: Path, fmt: str,
          dirty_rate: float) -> tuple[int, np.ndarray, dict[str, int]]:
    """Write this chunk's events (+ dirty records) to ``out`` in time order; return counts.

    DuckDB serialises each family's records; rows are put in time order with Arrow
    ``take`` one slice at a time and appended to the file (bounded memory, no SQL sort).
    """
    w = chunk.w
    pre = f"{w.seed}_{chunk.index:04d}_"
    pieces = []
    for f, tab in family_tables(chunk):
        con.register("_sim_fam", tab)
        _, trace, payload = FAMILIES[f]
        payload = payload.replace("{sp}", f"s_{pre}").replace("{bp}", f"bn_{pre}")
        pieces.append(con.sql(
            f"SELECT r, 'ev_{pre}' || r AS event_id, event_type, 'tr_{pre}' || {trace} AS trace_id, "
            f"'p_' || lpad(CAST(pg AS VARCHAR), {w.pid_width}, '0') AS player_id, brand_id, "
            f"strftime(ts, '{TS_FMT}') AS occurred_at, CAST({payload} AS VARCHAR) AS payload "
            "FROM _sim_fam").to_arrow_table().cast(_RAW_SCHEMA))
        con.unregister("_sim_fam")
        del tab
    ev = pa.concat_tables(pieces) if pieces else _RAW_SCHEMA.empty_table()
    del pieces
    n_events = ev.num_rows
    r = ev.column("r").to_numpy()
    pos = np.empty(n_events, np.int64)
    pos[r] = np.arange(n_events)  # row of each rank
    dirty, dirty_keys, kinds = _dirty(chunk, ev, pos, dirty_rate)
    del pos
    keys = np.concatenate([r.astype(np.float64), dirty_keys])
    order = np.argsort(keys, kind="stable")
    del r, keys
    both = pa.concat_tables([ev, dirty]).drop_columns(["r"])
    del ev
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "parquet":
        with pq.ParquetWriter(tmp, _FILE_SCHEMA, compression="zstd") as writer:
            for lo in range(0, len(order), _SLICE):
                writer.write_table(both.take(pa.array(order[lo:lo + _SLICE])),
                                   row_group_size=_SLICE)
    else:
        with open(tmp, "wb") as fh:
            for lo in range(0, len(order), _SLICE):
                con.register("_sim_slice", both.take(pa.array(order[lo:lo + _SLICE])))
                lines = con.sql(f"SELECT {_JSONL_LINE} AS line FROM _sim_slice"
                                ).to_arrow_table().column(0)
                con.unregister("_sim_slice")
                for arr in lines.chunks:
                    fh.write(_string_bytes(arr))
    tmp.replace(out)
    return n_events, chunk.counts, kinds

def _dirty(chunk: Chunk, ev: pa.Table, pos: np.ndarray,
           rate: float) -> tuple[pa.Table, np.ndarray, dict[str, int]]:
    """Bad records copied from good ones and broken in one way each (deterministic).

    Returns the records, their sort keys (right after their source; a duplicate somewhere
    later in the file) and the count per kind.
    """
    rng = np.random.default_rng([chunk.w.seed, chunk.index, 1])
    n_events = ev.num_rows
    n_d = min(int(rate * n_events + rng.random()), n_events) if rate > 0 else 0
    rows: dict[str, list] = {c: [] for c in _RAW_SCHEMA.names}
    keys: list[float] = []
    kinds = dict.fromkeys(DIRTY_KINDS, 0)
    if n_d:
        src = np.sort(rng.choice(n_events, n_d, replace=False))
        records = ev.take(pa.array(pos[src])).to_pylist()
        kind_ix = rng.integers(0, len(DIRTY_KINDS), n_d)
        us = rng.random(n_d)
        picks = rng.integers(0, 1 << 30, n_d)
        for j, (rec, ki, u, pick) in enumerate(zip(records, kind_ix, us, picks, strict=True)):
            r, et = rec["r"], rec["event_type"]
            kind = DIRTY_KINDS[ki]
            required = [f for f in PAYLOADS[et] if f.required]
            if kind in ("missing_field", "wrong_type") and not required:
                kind = "bad_timestamp"
            if et in STOP_EVENTS and kind != "unknown_event_type":
                # landing reads a broken stop event the safe way instead of quarantining it
                # (crm.contract.STOP_EVENTS): its dirty copy is a replay
                kind = "duplicate"
            key = r + 0.5
            if kind == "duplicate":
                key = r + 0.5 + math.floor(u * (n_events - r))
            else:
                rec["event_id"] = rec["event_id"].rsplit("_", 1)[0] + f"_x{j}"
                if kind == "unknown_event_type":
                    rec["event_type"] = UNKNOWN_TYPES[pick % len(UNKNOWN_TYPES)]
                elif kind == "bad_timestamp":
                    rec["occurred_at"] = BAD_TIMESTAMPS[pick % len(BAD_TIMESTAMPS)]
                elif kind == "missing_timestamp":
                    rec["occurred_at"] = None
                else:
                    body = json.loads(rec["payload"])
                    fld = required[pick % len(required)]
                    if kind == "missing_field":
                        del body[fld.name]
                    else:
                        ints = [f for f in required if f.type in ("integer", "number")]
                        fld = ints[pick % len(ints)] if ints else fld
                        v = body[fld.name]
                        body[fld.name] = (str(v) if fld.type in ("integer", "number", "boolean")
                                          else 12345)
                    rec["payload"] = json.dumps(body, separators=(",", ":"))
            kinds[kind] += 1
            keys.append(key)
            for c in _RAW_SCHEMA.names:
                rows[c].append(rec[c])
    return (pa.table(rows, schema=_RAW_SCHEMA), np.array(keys, np.float64),
            {k: v for k, v in kinds.items() if v})



_FILE_SCHEMA = pa.schema([(c, pa.string()) for c in (
    "event_id", "event_type", "trace_id", "player_id", "brand_id", "occurred_at", "payload")])
_RAW_SCHEMA = pa.schema([("r", pa.int64())] + list(_FILE_SCHEMA))
_SLICE = 500_000  # rows per row group / write
# One JSONL line per record, the payload (JSON text) nested as is. Envelope values are
# generated from [A-Za-z0-9_.:/ -] only, so quoting them needs no escaping (faster than to_json).
_JSONL_LINE = "'{' || " + " || ',' || ".join(
    f"'\"{c}\":' || coalesce('\"' || {c} || '\"', 'null')" for c in _FILE_SCHEMA.names[:-1]
) + " || ',\"payload\":' || payload || '}' || chr(10)"


def _string_bytes(arr: pa.Array) -> memoryview:
    """The concatenated UTF-8 bytes of a string array without nulls (zero-copy)."""
    if len(arr) == 0:
        return memoryview(b"")
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], width)[arr.offset:arr.offset + len(arr) + 1]
    return memoryview(arr.buffers()[2])[int(offsets[0]):int(offsets[-1])]


# --------------------------------------------------------------------------- truth + exports
_PLAYERS_SCHEMA = pa.schema([
    ("player_id", pa.string()), ("brand_id", pa.string()), ("country", pa.string()),
    ("currency", pa.string()), ("player_type", pa.string()), ("churn_hazard", pa.float64()),
    ("churned_on", pa.date32()), ("registered_at", pa.timestamp("s")), ("birth_date", pa.date32()),
    ("age_verified_at", pa.timestamp("s")), ("under_18", pa.bool_()),
    ("dormant_at_start", pa.bool_()), ("base_visit_prob", pa.float64()),
    ("stake_per_round_eur", pa.float64()), ("rg_limit_kind", pa.string()),
    ("exclusion_scope", pa.string()), ("excluded_from", pa.timestamp("s")),
    ("excluded_until", pa.timestamp("s")), ("returns_after_exclusion", pa.bool_()),
    ("promo_sensitivity", pa.float64()),
])
_EFFECTS_SCHEMA = pa.schema([
    ("campaign_id", pa.string()), ("player_id", pa.string()), ("arm", pa.string()),
    ("true_effect_deposit_prob", pa.float64()), ("true_effect_ngr", pa.float64()),
    ("responder_type", pa.string()), ("deposit_prob_control", pa.float64()),
    ("deposit_prob_treated", pa.float64()),
])
ABUSE_SCHEMA = pa.schema([
    ("player_id", pa.string()), ("brand_id", pa.string()), ("ring_id", pa.string()), ("role", pa.string()),
    ("linked_to", pa.string()), ("shared_attributes", pa.string()),
])
ASSIGNMENTS_SCHEMA = pa.schema([
    ("campaign_id", pa.string()), ("player_id", pa.string()), ("arm", pa.string()),
    ("channel", pa.string()), ("sent_at", pa.timestamp("s")),
])


class TruthWriters:
    """Streams the truth tables and the operator export, chunk by chunk."""

    def __init__(self, paths: Paths):
        self.players = pq.ParquetWriter(paths.truth / "players.parquet", _PLAYERS_SCHEMA)
        self.effects = pq.ParquetWriter(paths.truth / "campaign_effects.parquet", _EFFECTS_SCHEMA)
        self.assign = pq.ParquetWriter(paths.exports / "campaign_assignments.parquet", ASSIGNMENTS_SCHEMA)
        self.abuse = pq.ParquetWriter(paths.truth / "abuse_accounts.parquet", ABUSE_SCHEMA)

    def write(self, ch: Chunk) -> None:
        w = ch.w
        pid = np.char.add("p_", np.char.zfill(ch.pg.astype(str), w.pid_width))
        start = np.datetime64(w.start_date, "D")
        churned = ch.T < w.days
        churned_on = pa.array((start + np.floor(np.where(churned, ch.T, 0)).astype(np.int64))
                              .astype("datetime64[D]"), mask=~churned)
        self.players.write_table(pa.table({
            "player_id": pid, "brand_id": take(BRANDS, ch.brand), "country": take(COUNTRIES, ch.cc),
            "currency": take(CURRENCIES, ch.cc), "player_type": take(PLAYER_TYPES, ch.ptype),
            "churn_hazard": ch.h, "churned_on": churned_on, "registered_at": ts_array(ch.reg_ts),
            "birth_date": pa.array((start + ch.birth_day).astype("datetime64[D]")),
            "age_verified_at": ts_array(ch.verify_ts), "under_18": ch.minor,
            "dormant_at_start": ch.dormant, "base_visit_prob": ch.base,
            "stake_per_round_eur": ch.spr / 100.0,
            "rg_limit_kind": take(LIMIT_KINDS, np.where(ch.lim, ch.lim_kind, -1)),
            "exclusion_scope": take(SELF_EXCLUSION_SCOPES, np.where(ch.blocked, ch.se_scope, -1)),
            "excluded_from": ts_array(ch.blk_lo), "excluded_until": ts_array(ch.blk_until),
            "returns_after_exclusion": ch.returns, "promo_sensitivity": np.round(ch.promo, 6),
        }, schema=_PLAYERS_SCHEMA))
        ab = ch.abuse_truth
        ring_id = pa.array(np.char.add(f"ring_{w.seed}_{ch.index:04d}_", ab["ring"].astype(str)),
                           mask=ab["ring"] < 0)
        self.abuse.write_table(pa.table({
            "player_id": pid[ab["p"]], "brand_id": take(BRANDS, ch.brand[ab["p"]]), "ring_id": ring_id,
            "role": take(ROLES, ab["role"]),
            "linked_to": pa.array(pid[np.maximum(ab["linked"], 0)], mask=ab["linked"] < 0),
            "shared_attributes": take(SHARED_TEXT, ab["mask"]),
        }, schema=ABUSE_SCHEMA))
        if not ch.camp_rows:
            return
        rows = {k: np.concatenate([r[k] for r in ch.camp_rows]) for k in ch.camp_rows[0]}
        # bonus hunters' main-stream lives are not in the events (crm.simulator.abuse): nor in campaigns
        rows = {k: v[~ch.ids.hunter[rows["p"]]] for k, v in rows.items()}
        camp_ids = tuple(c.campaign_id for c in w.campaigns)
        camp = take(camp_ids, rows["campaign"])
        ppid = pa.array(pid[rows["p"]])
        arm = take(("treatment", "control"), rows["control"].astype(np.int64))
        self.effects.write_table(pa.table({
            "campaign_id": camp, "player_id": ppid, "arm": arm,
            "true_effect_deposit_prob": np.round(rows["q1"] - rows["q0"], 6),
            "true_effect_ngr": np.round(rows["eff_ngr"], 2),
            "responder_type": take(RESPONDER_TYPES, rows["rtype"]),
            "deposit_prob_control": np.round(rows["q0"], 6),
            "deposit_prob_treated": np.round(rows["q1"], 6),
        }, schema=_EFFECTS_SCHEMA))
        channel = take(CHANNELS, np.array([w.campaigns[k].channel for k in rows["campaign"]],
                                           np.int64))
        self.assign.write_table(pa.table({
            "campaign_id": camp, "player_id": ppid, "arm": arm, "channel": channel,
            "sent_at": ts_array(rows["sent"]),
        }, schema=ASSIGNMENTS_SCHEMA))

    def close(self) -> None:
        for wr in (self.players, self.effects, self.assign, self.abuse):
            wr.close()

