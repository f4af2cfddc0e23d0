"""Synthetic event stream of an online casino: vectorized, deterministic, chunked.

:func:`simulate` writes raw contract files (one per chunk of players) to
``paths.incoming``, the simulator's ground truth to ``paths.truth`` and the
operator's export of past campaign assignments to ``paths.exports``.

The world it simulates, in short:

* players of two brands in five jurisdictions (local time zones, currencies,
  evening peaks); casual / regular / VIP players with different visit rates,
  stakes and deposits; part of the base registered before the period;
* churn driven by a latent daily hazard: visit probability and stakes decline
  over the last weeks before a player stops, so recency and frequency trends
  predict churn;
* sessions with one ``bet.settled`` per game played (``rounds``, total stake and
  win, RTP 0.96), payments (intent -> authorized -> captured, ~8% failed),
  withdrawals, refunds, wallet adjustments, bonuses with their lifecycle;
* responsible gambling: limits and limit hits, reality checks, self-exclusions
  (brand / operator, some indefinite) and cooling-off periods; nobody gambles
  while excluded;
* consents per channel (granted at registration, later revoked / re-granted);
* four past CRM campaigns with a 20% holdout and heterogeneous true effects
  (positive / none / negative responders) that change the generated behaviour;
* optional dirty records (``dirty_rate``) to exercise quarantine.

Everything is drawn from ``np.random.default_rng([seed, chunk])`` (and
``[seed, chunk, 1]`` for dirty records, so the clean events do not depend on
``dirty_rate``): the same arguments give byte-identical files. Payload JSON is
serialised by DuckDB (``json_object``); rows are written in ``occurred_at`` order.

Encoding notes for the pipeline:

* ids: ``event_id`` ``ev_{seed}_{chunk:04d}_{n}`` (dirty copies ``..._x{j}``),
  ``player_id`` ``p_{index:07d}``, ``trace_id`` ``tr_{seed}_{chunk}_{k}``, shared by
  the events of one session (``s``), payment attempt (``p``: intent -> authorized ->
  captured | failed, and its refund), bonus (``b``), delivery (``d``), exclusion
  (``x``) or registration (``r``: player.registered + its consent grants).
* only ``player.registered`` and its ``consent.granted`` (source ``registration``)
  may precede ``start_date``; everything else lies in ``[start_date, end_date]``.
* payload keys beyond the contract: ``bonus_id`` on bonus.* (links issued ->
  consumed | expired). Optional keys are omitted, never null: ``until`` is absent
  for an indefinite self-exclusion, ``reason_code`` only on payment.failed /
  payment.refund, ``campaign_id`` only on campaign bonuses, ``duration_s`` only
  on session.ended.
* money: minor units of the player's currency (GBP, EUR, SEK); ``bet.settled``
  aggregates one game of a session (``rounds``, total ``stake`` and ``win``).
  ``bet.placed`` is rare (live/table), repeats the stake of the following
  bet.settled with ``win`` 0: count money from bet.settled only.
* self-exclusion: rg.self_exclusion.started ``scope`` brand | operator (``until``
  30 days .. 5 years, or absent), rg.self_exclusion.ended at ``until`` if that is
  within the period. Cooling-off: scope ``cooling_off`` with ``until`` 1-42 days
  later, then ended. No sessions, bets, payments, bonuses, messages, limit or
  e-mail changes while excluded; after the end some players return, some never do.
* consents: consent.granted at registration per channel (email, push, sms,
  in_app, profiling; purpose marketing | profiling, product casino), later
  revocations / re-grants (source preference_centre | support). A
  crm.unsubscribe or crm.complaint is *not* followed by a consent.revoked: it
  withdraws the channel by itself (no later delivery or consent change there).
* rg.limit.set ``value``: minor units for deposit / loss limits, minutes for
  session limits. player.updated carries ``age_verified`` (late KYC) or a new
  ``email``. Under-18 players register with ``age_verified`` false and never play.
* past campaigns ``hist_c01..04`` (email, push, email, push; c02 / c04 carry a
  bonus): crm.* events for the treatment arm only; the export
  ``campaign_assignments`` has both arms, ``sent_at`` being the scheduled send
  time (for control: when it would have been sent).
* truth: ``churned_on`` is the day activity stops for good (latent churn, or an
  exclusion without return), null if the player is still active at the end;
  a churned player may come back briefly if a campaign reactivates them.
  ``true_effect_ngr`` is the expected change in NGR (EUR cents, 7 days) including
  the bonus cost, so it is negative for non-responders of bonus campaigns.
  Truth files describe the last run only (one seed).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from crm.config import Paths
from crm.contract import CHANNELS, CONSENT_CHANNELS, EVENT_TYPES, PAYLOADS, SELF_EXCLUSION_SCOPES, STOP_EVENTS

DAY = 86_400
INF = np.inf
TS_FMT = "%Y-%m-%dT%H:%M:%SZ"
ET = {name: i for i, name in enumerate(EVENT_TYPES)}

# --------------------------------------------------------------------------- world constants
BRANDS = ("A", "B")
COUNTRIES = ("UK", "MT", "NL", "SE", "DE")
CURRENCIES = ("GBP", "EUR", "EUR", "SEK", "EUR")
TIMEZONES = ("Europe/London", "Europe/Malta", "Europe/Amsterdam", "Europe/Stockholm", "Europe/Berlin")
LOCALES = ("en-GB", "en-MT", "nl-NL", "sv-SE", "de-DE")
_DIAL = ("+44", "+356", "+31", "+46", "+49")
_COUNTRY_P = (0.34, 0.10, 0.20, 0.14, 0.22)
_UK, _NL, _SE = 0, 2, 3
_FX = np.array([0.85, 1.0, 1.0, 11.0, 1.0])  # local currency units per EUR
_STEP = np.array([5, 5, 5, 50, 5])  # rounding step of deposits, local units
_REGIONS_BY_COUNTRY = (
    ("GB-ENG", "GB-SCT", "GB-WLS", "GB-NIR"),
    ("MT-07", "MT-15", "MT-38", "MT-60"),
    ("NL-NH", "NL-ZH", "NL-UT", "NL-NB", "NL-GE"),
    ("SE-AB", "SE-O", "SE-M", "SE-E"),
    ("DE-BE", "DE-BY", "DE-NW", "DE-HH", "DE-HE", "DE-BW"),
)
REGIONS = tuple(r for rs in _REGIONS_BY_COUNTRY for r in rs)
_REGION_N = np.array([len(rs) for rs in _REGIONS_BY_COUNTRY])
_REGION_START = np.cumsum(_REGION_N) - _REGION_N

PLAYER_TYPES = ("casual", "regular", "vip")
_TYPE_P = (0.65, 0.28, 0.07)
_VISIT = np.array([0.07, 0.24, 0.50])  # median daily visit probability
_HAZARD = np.array([0.015, 0.006, 0.003])  # median daily churn hazard
_SESS_LAM = np.array([0.15, 0.35, 0.70])  # extra sessions per active day
_GAMES_LAM = np.array([0.8, 1.3, 2.0])  # extra games per session
_SPR = np.array([40.0, 100.0, 600.0])  # mean stake per round, EUR cents
_DEP_P = np.array([0.30, 0.40, 0.55])  # deposit probability per active day
_DEP_EUR = np.array([20.0, 50.0, 250.0])  # median deposit, EUR

CATEGORIES = ("slots", "live", "table")
_CAT_ROUNDS = np.array([60.0, 12.0, 20.0])  # mean extra rounds per game
_CAT_MULT = np.array([1.0, 4.0, 3.0])  # stake per round multiplier
_CAT_SEC = np.array([5.0, 45.0, 30.0])  # seconds per round
_CAT_VOL = np.array([5.0, 1.5, 1.0])  # sd of the win multiplier per round
_CAT_PREFS = np.array([[0.85, 0.10, 0.05], [0.35, 0.50, 0.15], [0.35, 0.15, 0.50]])
PROVIDERS = ("NetEnt", "Pragmatic Play", "Evolution", "Play'n GO", "Microgaming", "Red Tiger")
_GAME_LIST = (
    ("Starburst", 0, 0), ("Gonzo's Quest", 0, 0), ("Dead or Alive 2", 0, 0), ("Divine Fortune", 0, 0),
    ("Gates of Olympus", 1, 0), ("Sweet Bonanza", 1, 0), ("The Dog House", 1, 0),
    ("Big Bass Bonanza", 1, 0), ("Book of Dead", 3, 0), ("Reactoonz", 3, 0), ("Rise of Olympus", 3, 0),
    ("Mega Moolah", 4, 0), ("Immortal Romance", 4, 0), ("Thunderstruck II", 4, 0),
    ("Mystery Reels", 5, 0), ("Dragon's Luck", 5, 0), ("Piggy Riches Megaways", 5, 0),
    ("Lightning Roulette", 2, 1), ("Crazy Time", 2, 1), ("Infinite Blackjack", 2, 1),
    ("Monopoly Live", 2, 1), ("Speed Baccarat", 2, 1), ("Mega Roulette", 1, 1), ("ONE Blackjack", 1, 1),
    ("Blackjack Classic", 0, 2), ("European Roulette", 3, 2), ("Baccarat Pro", 3, 2),
    ("Atlantic City Blackjack", 4, 2), ("Casino Hold'em", 5, 2), ("Roulette Master", 5, 2),
)
_GAME_ORDER = sorted(range(len(_GAME_LIST)), key=lambda i: _GAME_LIST[i][2])
GAMES = tuple(_GAME_LIST[i][0] for i in _GAME_ORDER)
_GAME_PROVIDER = np.array([_GAME_LIST[i][1] for i in _GAME_ORDER])
_GAME_CAT = np.array([_GAME_LIST[i][2] for i in _GAME_ORDER])
_CAT_N = np.bincount(_GAME_CAT, minlength=3)
_CAT_START = np.cumsum(_CAT_N) - _CAT_N

DEVICES = ("mobile", "desktop", "tablet")
SESSION_CHANNELS = ("web", "app")
PSPS = ("Adyen", "Worldpay", "Trustly", "Skrill", "Paysafe")
_PSP_METHOD = np.array([0, 0, 1, 2, 3])
METHODS = ("card", "bank_transfer", "ewallet", "voucher")
FAIL_REASONS = ("3DS_TIMEOUT", "INSUFFICIENT_FUNDS", "CARD_DECLINED", "RISK_REJECTED", "PSP_ERROR")
REFUND_REASONS = ("CUSTOMER_REQUEST", "DUPLICATE_PAYMENT", "CHARGEBACK")
WALLET_REASONS = ("cashback", "goodwill", "tournament_prize", "jackpot", "fee", "adjustment")
BONUS_TEMPLATES = ("welcome", "reload", "cashback", "free_spins")
_BONUS_OFFERS = ("welcome_100", "reload_50", "cashback_10", "free_spins_20")
LIMIT_KINDS = ("deposit", "loss", "session")  # of crm.contract.LIMIT_KINDS
CONSENT_SOURCES = ("registration", "preference_centre", "support")
RESPONDER_TYPES = ("none", "positive", "negative")
_CONSENT_P = np.array([0.70, 0.50, 0.30, 0.85, 0.80])  # email, push, sms, in_app, profiling
_UNKNOWN_TYPES = ("bet.voided", "session.heartbeat", "player.deleted", "promo.viewed")
_BAD_TIMESTAMPS = ("2025-13-45T25:61:00Z", "not-a-timestamp", "", "31/12/2025 25:00")
DIRTY_KINDS = ("unknown_event_type", "missing_field", "wrong_type", "bad_timestamp",
               "missing_timestamp", "duplicate")


@dataclass(frozen=True)
class _Campaign:
    campaign_id: str
    day: int
    channel: int  # index into CHANNELS
    template: int  # index into BONUS_TEMPLATES, -1 = message only
    cost_eur: int  # bonus cost, EUR cents


def _campaign_plan(days: int) -> list[_Campaign]:
    """Four past campaigns spread over the period (fewer if the period is short)."""
    specs = ((0.12, 0, -1, 0), (0.36, 1, 1, 1000), (0.60, 0, -1, 0), (0.84, 1, 3, 500))
    out = []
    for k, (frac, ch, tmpl, cost) in enumerate(specs):
        day = int(round(days * frac))
        if day >= 1 and day + 7 <= days:
            out.append(_Campaign(f"hist_c{k + 1:02d}", day, ch, tmpl, cost))
    return out


# --------------------------------------------------------------------------- public API
@dataclass
class SimulationSummary:
    players: int
    days: int
    seed: int
    start_date: dt.date
    end_date: dt.date  # last simulated day (inclusive)
    events: int  # valid events written (dirty records not included)
    files: list[Path]
    seconds: float
    dirty_records: int  # extra bad records in the files (including exact duplicates)
    events_by_type: dict[str, int] = field(default_factory=dict)
    dirty_by_kind: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["start_date"] = self.start_date.isoformat()
        d["end_date"] = self.end_date.isoformat()
        d["files"] = [str(f) for f in self.files]
        return d


def simulate(
    paths: Paths,
    players: int = 20_000,
    days: int = 120,
    seed: int = 42,
    start_date: dt.date = dt.date(2025, 6, 1),
    fmt: str = "parquet",
    chunk_players: int = 50_000,
    dirty_rate: float = 0.0005,
    progress: bool = True,
) -> SimulationSummary:
    """Simulate ``players`` over ``days`` days from ``start_date`` and write raw event files."""
    if fmt not in ("parquet", "jsonl"):
        raise ValueError(f"fmt must be 'parquet' or 'jsonl', not {fmt!r}")
    if players < 1 or days < 1 or chunk_players < 1:
        raise ValueError("players, days and chunk_players must be positive")
    if not 0.0 <= dirty_rate < 1.0:
        raise ValueError("dirty_rate must be in [0, 1)")
    t0 = time.perf_counter()
    world = _World(seed, days, start_date, players)
    for d in (paths.incoming, paths.truth, paths.exports):
        d.mkdir(parents=True, exist_ok=True)
    for old in sorted(paths.incoming.glob(f"events_s{seed}_c*")):
        if old.suffix in (".parquet", ".jsonl", ".tmp"):
            old.unlink()

    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    n_chunks = math.ceil(players / chunk_players)
    files: list[Path] = []
    by_type = np.zeros(len(EVENT_TYPES), np.int64)
    dirty_by_kind = dict.fromkeys(DIRTY_KINDS, 0)
    events = 0
    truth_w = _Writers(paths)
    bar = tqdm(total=n_chunks, desc=f"simulate s{seed}", unit="chunk", disable=not progress,
               file=sys.stderr)
    try:
        for c in range(n_chunks):
            first = c * chunk_players
            chunk = _Chunk(world, c, first, min(chunk_players, players - first))
            out = paths.incoming / f"events_s{seed}_c{c:04d}.{fmt}"
            n_ev, counts, kinds = chunk.write(con, out, fmt, dirty_rate)
            truth_w.write(chunk)
            files.append(out)
            events += n_ev
            by_type += counts
            for k, v in kinds.items():
                dirty_by_kind[k] += v
            bar.update(1)
            bar.set_postfix(events=events)
            del chunk
    finally:
        bar.close()
        truth_w.close()
        con.close()
    summary = SimulationSummary(
        players=players, days=days, seed=seed, start_date=start_date,
        end_date=start_date + dt.timedelta(days=days - 1), events=events, files=files,
        seconds=round(time.perf_counter() - t0, 3), dirty_records=sum(dirty_by_kind.values()),
        events_by_type={t: int(v) for t, v in zip(EVENT_TYPES, by_type, strict=True) if v},
        dirty_by_kind={k: v for k, v in dirty_by_kind.items() if v},
    )
    # the home holds history: dispatch sends its lists on time, not at today's wall clock
    # (crm.config.dispatch_clock)
    paths.simulation_file.write_text(json.dumps(
        {"players": players, "days": days, "seed": seed, "start_date": start_date.isoformat(),
         "end_date": summary.end_date.isoformat()}, indent=2) + "\n")
    return summary


# --------------------------------------------------------------------------- helpers
class _World:
    """Everything shared by all chunks: calendar, time zones, campaign plan."""

    OFF_LO = -800  # first day (relative to start) with a known UTC offset

    def __init__(self, seed: int, days: int, start_date: dt.date, players: int):
        self.seed, self.days, self.start_date = seed, days, start_date
        self.start_ts = float(dt.datetime.combine(start_date, dt.time(), dt.UTC).timestamp())
        self.end_ts = self.start_ts + days * DAY
        span = range(self.OFF_LO, days + 3)
        self.off = np.array([
            [ZoneInfo(tz).utcoffset(dt.datetime.combine(start_date + dt.timedelta(d), dt.time(12)))
             .total_seconds() for d in span]
            for tz in TIMEZONES
        ])
        weekday_factor = np.array([0.9, 0.9, 0.92, 0.95, 1.1, 1.25, 1.15])
        self.weekday = np.array(
            [weekday_factor[(start_date + dt.timedelta(d)).weekday()] for d in range(days)], np.float32)
        self.campaigns = _campaign_plan(days)
        self.pid_width = max(7, len(str(players - 1)))

    def utc(self, cc: np.ndarray, day: np.ndarray, local_seconds: np.ndarray) -> np.ndarray:
        """UTC epoch seconds of a local time of day on day ``day`` (relative to start)."""
        return self.start_ts + day * DAY + local_seconds - self.off[cc, day - self.OFF_LO]


def _local_seconds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Local time of day (seconds, may run past midnight) with an evening peak."""
    k = rng.random(n)
    h = np.where(k < 0.55, rng.normal(21.0, 1.7, n),
                 np.where(k < 0.8, rng.normal(14.0, 2.5, n), rng.uniform(7.0, 24.0, n)))
    return np.clip(h, 6.0, 26.9) * 3600.0


def _take(values: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    """Strings from a small dictionary by code (code < 0 -> null), in Arrow C++."""
    codes = np.asarray(codes)
    mask = codes < 0
    idx = pa.array(np.where(mask, 0, codes).astype(np.int32), mask=mask if mask.any() else None)
    return pa.array(values, pa.string()).take(idx)


def _ts_array(ts: np.ndarray) -> pa.Array:
    """Epoch seconds (float, inf = null) -> Arrow timestamp[s]."""
    ts = np.asarray(ts, np.float64)
    mask = ~np.isfinite(ts)
    secs = np.floor(np.where(mask, 0.0, ts)).astype(np.int64)
    return pa.array(secs.astype("datetime64[s]"), mask=mask if mask.any() else None)


def _group_first(counts: np.ndarray) -> np.ndarray:
    """For items repeated by ``counts``: index of the first item of each item's group."""
    starts = np.cumsum(counts) - counts
    return np.repeat(starts, counts)


# Per family: columns that are codes into a dictionary, trace_id expression, payload expression.
_FAMILIES: dict[str, tuple[dict[str, tuple[str, ...]], str, str]] = {
    "reg": (
        {"country": COUNTRIES, "region": REGIONS, "locale": LOCALES, "tz": TIMEZONES, "dial": _DIAL},
        "'r' || pg",
        "json_object('country', country, 'region', region, 'locale', locale, 'timezone', tz, "
        "'birth_date', strftime(birth, '%Y-%m-%d'), 'currency', cur, "
        "'email', 'player' || pg || '@example.com', 'phone', dial || ' ' || phone, "
        "'device_id', 'dev_' || device, "
        "'ip', '10.' || (ip // 65536) || '.' || (ip // 256 % 256) || '.' || (ip % 256), "
        "'age_verified', kyc)",
    ),
    "upd": (
        {},
        "'e' || r",
        "CASE WHEN kind = 0 THEN json_object('age_verified', true) "
        "ELSE json_object('email', 'player' || pg || '.' || kind || '@example.net') END",
    ),
    "consent": (
        {"channel": CONSENT_CHANNELS, "source": CONSENT_SOURCES},
        "CASE WHEN source = 'registration' THEN 'r' || pg ELSE 'e' || r END",
        "json_object('channel', channel, 'product', 'casino', "
        "'purpose', CASE WHEN channel = 'profiling' THEN 'profiling' ELSE 'marketing' END, "
        "'source', source)",
    ),
    "session": (
        {"device": DEVICES, "chan": SESSION_CHANNELS},
        "'s' || sid",
        "CASE WHEN dur < 0 THEN json_object('session_id', '{sp}' || sid, 'device', device, "
        "'channel', chan) ELSE json_object('session_id', '{sp}' || sid, 'device', device, "
        "'channel', chan, 'duration_s', dur) END",
    ),
    "bet": (
        {"provider": PROVIDERS, "game": GAMES, "category": CATEGORIES},
        "'s' || sid",
        "json_object('stake', stake, 'win', win, 'currency', cur, 'in_bonus', in_bonus, "
        "'provider', provider, 'game', game, 'game_category', category, 'rounds', rounds, "
        "'session_id', '{sp}' || sid)",
    ),
    "pay": (
        {"psp": PSPS, "method": METHODS, "reason": FAIL_REASONS + REFUND_REASONS},
        "'p' || tr",
        "CASE WHEN reason IS NULL THEN json_object('amount', amount, 'currency', cur, 'psp', psp, "
        "'method', method) ELSE json_object('amount', amount, 'currency', cur, 'psp', psp, "
        "'method', method, 'reason_code', reason) END",
    ),
    "wallet": (
        {"reason": WALLET_REASONS},
        "CASE WHEN sid >= 0 THEN 's' || sid ELSE 'e' || r END",
        "json_object('amount', amount, 'currency', cur, 'reason', reason)",
    ),
    "bonus": (
        {"template": BONUS_TEMPLATES},
        "'b' || bid",
        "CASE WHEN campaign IS NULL THEN json_object('offer_id', offer, 'template', template, "
        "'cost', cost, 'currency', cur, 'wagering', wagering, 'bonus_id', '{bp}' || bid) "
        "ELSE json_object('offer_id', offer, 'template', template, 'cost', cost, 'currency', cur, "
        "'wagering', wagering, 'campaign_id', campaign, 'bonus_id', '{bp}' || bid) END",
    ),
    "limit": (
        {"kind": LIMIT_KINDS},
        "CASE WHEN sid >= 0 THEN 's' || sid ELSE 'e' || r END",
        "json_object('kind', kind, 'value', value)",
    ),
    "reality": (
        {},
        "'s' || sid",
        "json_object('session_minutes', minutes)",
    ),
    "exclusion": (
        {"scope": SELF_EXCLUSION_SCOPES},
        "'x' || pg",
        "CASE WHEN until IS NULL THEN json_object('scope', scope) "
        "ELSE json_object('scope', scope, 'until', strftime(until, '" + TS_FMT + "')) END",
    ),
    "crm": (
        {"channel": CHANNELS},
        "'d' || campaign || '_' || pg",
        "json_object('delivery_id', 'dl_' || campaign || '_' || pg, 'campaign_id', campaign, "
        "'channel', channel)",
    ),
}
_NEEDS_CURRENCY = ("reg", "bet", "pay", "wallet", "bonus")


# --------------------------------------------------------------------------- one chunk
class _Chunk:
    """One chunk of players: draws their lives and holds the events as column arrays."""

    def __init__(self, world: _World, index: int, first: int, n: int):
        self.w, self.index, self.n = world, index, n
        self.rng = np.random.default_rng([world.seed, index])
        self.pg = first + np.arange(n, dtype=np.int64)
        self.parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, dict]]] = {}
        self.camp_rows: list[dict[str, np.ndarray]] = []
        self._players()
        self._timeline()
        self._visits()
        self._consents_and_campaigns()
        self._activity()
        self._payments()
        self._bonuses()
        self._bets_and_sessions()
        self._rg_and_account()

    # ---------------------------------------------------------------- emit
    def emit(self, fam: str, et, ts: np.ndarray, p: np.ndarray, **cols) -> None:
        """Queue events of one family: event type(s), time (epoch s), player index, columns."""
        p = np.asarray(p, np.int64)
        if len(p) == 0:
            return
        et = np.broadcast_to(np.asarray(et, np.int16), p.shape)
        cols = {k: np.broadcast_to(np.asarray(v), p.shape) for k, v in cols.items()}
        self.parts.setdefault(fam, []).append((et, np.floor(ts).astype(np.int64), p, cols))

    def outside_block(self, p: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """True where the player is not self-excluded / cooling off at time ``ts``."""
        return ~((ts >= self.blk_lo[p]) & (ts < self.blk_hi[p]))

    # ---------------------------------------------------------------- players
    def _players(self) -> None:
        w, rng, n, D = self.w, self.rng, self.n, self.w.days
        self.brand = (rng.random(n) < 0.4).astype(np.int8)
        self.cc = rng.choice(5, n, p=_COUNTRY_P).astype(np.int8)
        self.ptype = rng.choice(3, n, p=_TYPE_P).astype(np.int8)
        self.minor = rng.random(n) < 0.003
        pre = rng.random(n) < 0.6
        rd = np.where(pre, -rng.integers(1, 731, n), rng.integers(0, D, n))
        rd = np.where(self.minor, rng.integers(-60, D, n), rd)
        young = rng.random(n) < 0.03
        age_end = np.where(young, rng.uniform(18.05, 24.0, n),
                           24.0 + np.minimum(rng.gamma(2.2, 9.0, n), 51.0))
        self.age_end = np.where(self.minor, rng.uniform(16.0, 17.95, n), age_end)
        self.birth_day = np.floor(D - self.age_end * 365.25).astype(np.int64)
        adult_day = self.birth_day + math.ceil(18 * 365.25) + 1
        rd = np.where(self.minor, rd, np.minimum(np.maximum(rd, adult_day), D - 1))
        reg = w.utc(self.cc, rd, _local_seconds(rng, n))
        self.reg_ts = np.minimum(reg, w.end_ts - 3600.0)
        self.pre = self.reg_ts < w.start_ts
        self.region = _REGION_START[self.cc] + (rng.random(n) * _REGION_N[self.cc]).astype(np.int64)

        t = self.ptype
        self.h = _HAZARD[t] * np.exp(rng.normal(0.0, 0.7, n))
        self.base = np.minimum(_VISIT[t] * np.exp(rng.normal(-0.125, 0.5, n)), 0.95)
        self.spr = _SPR[t] * np.exp(rng.normal(-0.18, 0.6, n))
        self.L = rng.uniform(10.0, 30.0, n)
        prefs = _CAT_PREFS[rng.choice(3, n, p=(0.65, 0.20, 0.15))]
        self.cp0, self.cp1 = prefs[:, 0], prefs[:, 0] + prefs[:, 1]
        self.fav = np.stack([_CAT_START[c] + rng.integers(0, _CAT_N[c], n) for c in range(3)], axis=1)
        self.dev = rng.choice(3, n, p=(0.62, 0.28, 0.10))
        self.app = rng.random(n) < 0.45
        self.psp = rng.choice(5, n, p=(0.30, 0.20, 0.20, 0.15, 0.15))
        # expected stake per active day (EUR cents) at full engagement: for the truth tables
        per_game = (prefs * (1.0 + _CAT_ROUNDS) * _CAT_MULT).sum(axis=1)
        self.estake = (1 + _SESS_LAM[t]) * (1 + _GAMES_LAM[t]) * per_game * self.spr
        # KYC: minors never verify; a few new adults verify days after registering
        late = ~self.pre & ~self.minor & (rng.random(n) < 0.05)
        never = late & (rng.random(n) < 0.15)
        self.kyc_at_reg = ~(late | self.minor)
        self.verify_ts = np.where(late, self.reg_ts + rng.uniform(0.3, 10.0, n) * DAY, self.reg_ts)
        self.verify_ts[never | self.minor] = INF
        self.ok_ts = np.maximum(self.reg_ts, self.verify_ts)
        self.bonus_ok = ~self.minor & (self.cc != _SE) & ~((self.cc == _NL) & (self.age_end < 24))

    # ---------------------------------------------------------------- churn, limits, exclusions
    def _timeline(self) -> None:
        w, rng, n, D = self.w, self.rng, self.n, self.w.days
        rdf = (self.reg_ts - w.start_ts) / DAY
        self.t0 = np.maximum(rdf, 0.0)
        self.dormant = self.pre & (rng.random(n) < 0.35)
        T = self.t0 + rng.exponential(1.0, n) / self.h
        T = np.where(self.dormant, rdf * rng.random(n), T)

        # responsible-gambling limits (~5%)
        self.lim = ~self.minor & (rng.random(n) < 0.05)
        self.lim_kind = rng.choice(3, n, p=(0.6, 0.25, 0.15))
        eur = rng.choice(np.array([50, 100, 200, 500, 1000]), n)
        minutes = rng.choice(np.array([60, 120, 180, 240]), n)
        self.lim_value = np.where(self.lim_kind == 2, minutes,
                                  np.rint(eur * _FX[self.cc]) * 100).astype(np.int64)
        at_reg = ~self.pre & (rng.random(n) < 0.4)
        lo = np.maximum(self.reg_ts, w.start_ts) + 3600.0
        self.lim_ts = np.where(at_reg, self.reg_ts + rng.uniform(300.0, 3600.0, n),
                               lo + rng.random(n) * (w.end_ts - 3600.0 - lo))
        self.lim &= (self.lim_ts > self.reg_ts) & (self.lim_ts < w.end_ts)

        # self-exclusion (~1.5%, more among limit setters) and cooling-off (~1.5%)
        se = ~self.minor & (rng.random(n) < np.where(self.lim, 0.04, 0.0133))
        co = ~self.minor & ~se & (rng.random(n) < 0.015)
        lo_d = np.maximum(rdf + 0.5, 0.25)
        hi_d = np.minimum(T, D)
        hi_d = np.where(hi_d - lo_d < 1.0, D, hi_d)
        x0 = np.minimum(lo_d + rng.random(n) * (hi_d - lo_d), D - 0.02)
        room = lo_d < D - 0.05
        se &= room
        co &= room
        start = w.start_ts + x0 * DAY
        durations = rng.choice(np.array([30, 60, 90, 180, 365, 1825]), n,
                               p=(0.2, 0.15, 0.15, 0.2, 0.2, 0.1))
        indefinite = se & (rng.random(n) < 0.25)
        until = np.where(se, start + durations * DAY, start + rng.integers(1, 43, n) * DAY)
        until = np.where(indefinite, INF, until)
        returns = np.where(se, rng.random(n) < 0.5, rng.random(n) < 0.8) & np.isfinite(until)
        lag = np.where(se, rng.uniform(1.0, 21.0, n), rng.uniform(0.0, 5.0, n))
        resume = until + lag * DAY
        blocked = se | co
        self.se, self.co, self.blocked = se, co, blocked
        self.se_scope = np.where(co, 2, (rng.random(n) < 0.45).astype(np.int64))  # brand/operator
        self.blk_lo = np.where(blocked, start, INF)
        self.blk_until = np.where(blocked, until, INF)
        self.blk_hi = np.where(blocked & returns, resume, INF)
        self.returns = blocked & returns
        x_res = np.where(self.returns, (resume - w.start_ts) / DAY, 0.0)
        T = np.where(blocked & ~returns, np.minimum(T, x0), T)
        late_T = self.returns & (T < x_res)
        T = np.where(late_T, x_res + rng.exponential(1.0, n) / self.h, T)
        self.T = T

    # ---------------------------------------------------------------- daily visit probability
    def _visits(self) -> None:
        w, D = self.w, self.w.days
        t = np.arange(D, dtype=np.float32)[None, :]
        T = self.T.astype(np.float32)[:, None]
        x = np.clip((T - t) / self.L.astype(np.float32)[:, None], 0.0, 1.0)
        ramp = np.where(t < T, 0.15 + 0.85 * x, 0.0)
        del x
        age = np.maximum(t - self.t0.astype(np.float32)[:, None], 0.0)
        decay = np.exp(-0.3 * self.h.astype(np.float32)[:, None] * age)
        del age
        ok_day = np.floor((self.ok_ts - w.start_ts) / DAY).astype(np.float32)[:, None]
        lo_d = ((self.blk_lo - w.start_ts) / DAY).astype(np.float32)[:, None]
        hi_d = ((self.blk_hi - w.start_ts) / DAY).astype(np.float32)[:, None]
        self.allowed = (t >= ok_day) & ~((t + 1.0 > lo_d) & (t < hi_d))
        p = (self.base.astype(np.float32)[:, None] * w.weekday[None, :]) * decay * ramp
        self.p = np.where(self.allowed, np.minimum(p, 0.97), 0.0).astype(np.float32)
        self.dep_mult = np.ones((self.n, D), np.float32)

    def _engagement(self, p: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Fraction of full engagement (1 -> 0 over the last L days before churn)."""
        return np.clip((self.T[p] - day) / self.L[p], 0.0, 1.0)

    # ---------------------------------------------------------------- consents + past campaigns
    def _consents_and_campaigns(self) -> None:
        w, rng, n = self.w, self.rng, self.n
        nc = len(CONSENT_CHANNELS)
        g0 = rng.random((n, nc)) < _CONSENT_P
        lo = np.maximum(self.reg_ts + DAY, w.start_ts)
        span = w.end_ts - lo
        has1 = (rng.random((n, nc)) < 0.06) & (span > DAY)[:, None]
        c1v = lo[:, None] + rng.random((n, nc)) * span[:, None]
        has2 = has1 & (rng.random((n, nc)) < 0.3)
        c2v = c1v + rng.random((n, nc)) * (w.end_ts - c1v)
        c1 = np.where(has1, c1v, INF)
        c2 = np.where(has2, c2v, INF)
        block = np.full((n, len(CHANNELS)), INF)  # unsubscribe / complaint time per channel
        cb_p, cb_ts, cb_tmpl, cb_cost, cb_camp = [], [], [], [], []

        for k, cp in enumerate(w.campaigns):
            ch = cp.channel
            send = w.start_ts + cp.day * DAY + 9 * 3600.0 + rng.random(n) * 3 * 3600.0
            consent = g0[:, ch] ^ (send >= c1[:, ch]) ^ (send >= c2[:, ch])
            elig = ((self.ok_ts < send - DAY) & ~self.minor & self.outside_block(np.arange(n), send)
                    & consent & (block[:, ch] > send))
            sel = elig & (rng.random(n) < 0.7)
            ctrl = rng.random(n) < 0.2
            u = rng.random(n)
            lapsing = (self.T - cp.day) < (self.L + 7.0)
            p_pos = np.clip(0.28 + 0.22 * lapsing + 0.08 * (self.ptype == 1) - 0.12 * (self.ptype == 2),
                            0.05, 0.9)
            p_neg = np.clip(0.06 + 0.12 * (self.ptype == 2) + 0.04 * (ch == 1)
                            + 0.05 * (self.age_end < 24), 0.0, 0.5)
            rtype = np.where(u < p_pos, 1, np.where(u > 1.0 - p_neg, 2, 0))

            idx = np.nonzero(sel)[0]
            d0, d1 = cp.day, min(cp.day + 7, w.days)
            days = np.arange(d0, d1)
            P0 = self.p[idx, d0:d1].astype(np.float64)
            Tm = self.T[idx][:, None]
            churned = (days[None, :] >= Tm) & self.allowed[idx, d0:d1]
            pos, neg = rtype[idx] == 1, rtype[idx] == 2
            P1 = P0.copy()
            P1[pos] = np.where(churned[pos], np.maximum(1 - (1 - P0[pos]) ** 2.2, 0.03),
                               1 - (1 - P0[pos]) ** 2.2)
            P1[neg] *= 0.6
            mult = np.where(pos, 1.6, np.where(neg, 0.6, 1.0))[:, None]
            dep0 = np.minimum(_DEP_P[self.ptype[idx]][:, None] * self.dep_mult[idx, d0:d1], 0.95)
            dep1 = np.minimum(dep0 * mult, 0.95)
            q0 = 1 - np.prod(1 - P0 * dep0 * 0.92, axis=1)
            q1 = 1 - np.prod(1 - P1 * dep1 * 0.92, axis=1)
            sf = 0.5 + 0.5 * np.clip((Tm - days[None, :]) / self.L[idx][:, None], 0.0, 1.0)
            ggr = 0.04 * self.estake[idx][:, None] * sf
            with_bonus = self.bonus_ok[idx] & (cp.template >= 0)
            eff_ngr = ((P1 - P0) * ggr).sum(axis=1) - cp.cost_eur * with_bonus
            treated = ~ctrl[idx]
            self.camp_rows.append({
                "campaign": np.full(len(idx), k), "p": idx, "control": ctrl[idx], "sent": send[idx],
                "rtype": rtype[idx], "q0": q0, "q1": q1, "eff_ngr": eff_ngr,
            })
            # the effect changes behaviour of treated players only
            ti = idx[treated]
            self.p[ti, d0:d1] = P1[treated].astype(np.float32)
            self.dep_mult[ti, d0:d1] *= mult[treated].astype(np.float32)

            # message feedback of treated players
            rt, s, m = rtype[ti], send[ti], len(ti)
            email = ch == 0
            bounce = rng.random(m) < (0.02 if email else 0.01)
            open_p = (np.array([0.20, 0.30, 0.15]) if email else np.array([0.07, 0.12, 0.05]))[rt]
            open_ts = s + 60.0 + np.minimum(rng.lognormal(np.log(1.5 * 3600), 1.0, m), 5 * DAY)
            opened = ~bounce & (rng.random(m) < open_p) & self._ok(ti, open_ts)
            click_ts = open_ts + rng.uniform(5.0, 300.0, m)
            click = opened & (rng.random(m) < np.array([0.15, 0.30, 0.10])[rt]) & self._ok(ti, click_ts)
            unsub_ts = open_ts + rng.uniform(10.0, 600.0, m)
            unsub = opened & (rng.random(m) < np.array([0.02, 0.01, 0.15])[rt]) & self._ok(ti, unsub_ts)
            comp_ts = s + rng.uniform(3600.0, 72 * 3600.0, m)
            comp = (email & ~bounce & (rng.random(m) < np.array([0.002, 0.001, 0.02])[rt])
                    & self._ok(ti, comp_ts))
            bounce_ts = s + rng.uniform(5.0, 120.0, m)
            for et, mask, ts in (("crm.delivery", slice(None), s), ("crm.bounce", bounce, bounce_ts),
                                 ("crm.open", opened, open_ts), ("crm.click", click, click_ts),
                                 ("crm.unsubscribe", unsub, unsub_ts), ("crm.complaint", comp, comp_ts)):
                self.emit("crm", ET[et], ts[mask], ti[mask], campaign=k, channel=ch)
            stop = np.minimum(np.where(unsub, unsub_ts, INF), np.where(comp, comp_ts, INF))
            block[ti, ch] = np.minimum(block[ti, ch], stop)
            if cp.template >= 0:
                b = with_bonus[treated]
                cb_p.append(ti[b])
                cb_ts.append(s[b] + rng.uniform(5.0, 60.0, int(b.sum())))
                cb_tmpl.append(np.full(int(b.sum()), cp.template))
                cb_cost.append(np.rint(cp.cost_eur * _FX[self.cc[ti[b]]]).astype(np.int64))
                cb_camp.append(np.full(int(b.sum()), k))
        self.camp_bonus = tuple(
            np.concatenate(x) if x else np.zeros(0, np.int64)
            for x in (cb_p, cb_ts, cb_tmpl, cb_cost, cb_camp))

        # consent events: at registration, then changes (none after an unsubscribe / complaint)
        pp, cc_ = np.nonzero(g0)
        self.emit("consent", ET["consent.granted"], self.reg_ts[pp] + 1 + cc_, pp,
                  channel=cc_, source=0)
        stop = np.concatenate([block, np.full((n, 1), INF)], axis=1)
        for chg, first in ((c1, True), (c2, False)):
            pp, cc_ = np.nonzero(np.isfinite(chg) & (chg < stop))
            granted = ~g0[pp, cc_] if first else g0[pp, cc_]
            et = np.where(granted, ET["consent.granted"], ET["consent.revoked"])
            src = np.where(rng.random(len(pp)) < 0.85, 1, 2)
            self.emit("consent", et, chg[pp, cc_], pp, channel=cc_, source=src)
        self.g0, self.c1, self.c2, self.block = g0, c1, c2, block

    def _ok(self, p: np.ndarray, ts: np.ndarray) -> np.ndarray:
        return (ts < self.w.end_ts) & self.outside_block(p, ts)

    # ---------------------------------------------------------------- active days and sessions
    def _activity(self) -> None:
        w, rng, D = self.w, self.rng, self.w.days
        active = rng.random((self.n, D), dtype=np.float32) < self.p
        del self.p
        ap, ad = np.nonzero(active)
        del active
        A = len(ap)
        typ = self.ptype[ap]
        ns = 1 + rng.poisson(_SESS_LAM[typ])
        s_ad = np.repeat(np.arange(A), ns)
        s_p = ap[s_ad]
        S = len(s_ad)
        ng = 1 + rng.poisson(_GAMES_LAM[self.ptype[s_p]])
        g_s = np.repeat(np.arange(S), ng)
        g_p = s_p[g_s]
        G = len(g_s)
        # games: category, game, rounds, stake, win, duration
        u = rng.random(G)
        cat = (u >= self.cp0[g_p]).astype(np.int64) + (u >= self.cp1[g_p])
        rand_game = _CAT_START[cat] + (rng.random(G) * _CAT_N[cat]).astype(np.int64)
        game = np.where(rng.random(G) < 0.6, self.fav[g_p, cat], rand_game)
        rounds = 1 + rng.poisson(_CAT_ROUNDS[cat] * rng.gamma(2.0, 0.5, G))
        g_day = ad[s_ad[g_s]]
        sf = 0.5 + 0.5 * self._engagement(g_p, g_day)
        stake_eur = rounds * self.spr[g_p] * _CAT_MULT[cat] * sf * rng.lognormal(-0.045, 0.3, G)
        stake = np.maximum(1, np.rint(stake_eur * _FX[self.cc[g_p]])).astype(np.int64)
        k = rounds / _CAT_VOL[cat] ** 2
        win = np.rint(stake * rng.gamma(k, 0.96 / k)).astype(np.int64)
        g_dur = rounds * _CAT_SEC[cat] * rng.lognormal(0.0, 0.25, G)
        s_dur = np.floor(np.bincount(g_s, g_dur, minlength=S) + rng.uniform(30.0, 400.0, S))
        # session start times: first session of the day at a local time, then gaps
        first = w.utc(self.cc[ap], ad, _local_seconds(rng, A))
        lb = np.maximum(w.start_ts, self.ok_ts[ap]) + 600.0
        first = np.where(first < lb, lb + rng.uniform(0.0, 3600.0, A), first)
        inc = s_dur + 900.0 + rng.exponential(3 * 3600.0, S)
        cum = np.cumsum(inc) - inc
        gf = _group_first(ns)
        s_start = np.floor(first[s_ad] + cum - cum[gf])
        lo, hi = s_start - 400.0, s_start + s_dur + 900.0
        keep = (hi < w.end_ts) & ~((hi > self.blk_lo[s_p]) & (lo < self.blk_hi[s_p]))

        # drop sessions that would cross the period end or an exclusion, then re-index
        gk = keep[g_s]
        s_remap = np.cumsum(keep) - 1
        self.g_s = s_remap[g_s[gk]]
        self.g_cat, self.g_game, self.g_rounds = cat[gk], game[gk], rounds[gk]
        self.g_stake, self.g_win, self.g_dur = stake[gk], win[gk], g_dur[gk]
        self.g_p = g_p[gk]
        ad_has = np.bincount(s_ad[keep], minlength=A) > 0
        a_remap = np.cumsum(ad_has) - 1
        self.s_ad = a_remap[s_ad[keep]]
        self.s_p, self.s_start, self.s_dur = s_p[keep], s_start[keep], s_dur[keep]
        self.a_p, self.a_day = ap[ad_has], ad[ad_has]
        A = len(self.a_p)
        self.a_ns = np.bincount(self.s_ad, minlength=A)
        self.a_first = np.cumsum(self.a_ns) - self.a_ns
        s_end = self.s_start + self.s_dur
        self.a_last_end = (np.maximum.reduceat(s_end, self.a_first) if A else np.zeros(0))
        self.a_key = self.a_p * D + self.a_day
        self.g_ad = self.s_ad[self.g_s]
        self.a_net = np.bincount(self.g_ad, (self.g_win - self.g_stake).astype(np.float64), minlength=A)

    def _random_session(self, ad: np.ndarray) -> np.ndarray:
        """A random session of each given active day."""
        return self.a_first[ad] + (self.rng.random(len(ad)) * self.a_ns[ad]).astype(np.int64)

    # ---------------------------------------------------------------- payments
    def _payments(self) -> None:
        rng = self.rng
        A, ap, aday = len(self.a_p), self.a_p, self.a_day
        cc = self.cc[ap]
        first_of_p = np.r_[True, ap[1:] != ap[:-1]] if A else np.zeros(0, bool)
        p_dep = np.minimum(_DEP_P[self.ptype[ap]] * self.dep_mult[ap, aday], 0.95)
        p_dep = np.where(first_of_p & ~self.pre[ap], 0.9, p_dep)
        del self.dep_mult
        n_att = (rng.random(A) < p_dep) * (1 + rng.poisson(0.15, A))
        att_ad = np.repeat(np.arange(A), n_att)
        sess = self._random_session(att_ad)
        t = self.s_start[sess] - rng.uniform(20.0, 300.0, len(att_ad))
        q = self.a_p[att_ad]
        units = (_DEP_EUR[self.ptype[q]] * np.exp(rng.normal(0.0, 0.5, len(q)))
                 * (0.6 + 0.4 * self._engagement(q, aday[att_ad])) * _FX[self.cc[q]])
        step = _STEP[self.cc[q]]
        amount = np.maximum(2 * step, np.rint(units / step) * step).astype(np.int64) * 100
        fail = rng.random(len(q)) < 0.08
        retry = fail & (rng.random(len(q)) < 0.4)
        # retried attempts: a new intent a few minutes later
        q = np.concatenate([q, q[retry]])
        t = np.concatenate([t, t[retry] + rng.uniform(60.0, 400.0, int(retry.sum()))])
        amount = np.concatenate([amount, amount[retry]])
        att_ad = np.concatenate([att_ad, att_ad[retry]])
        fail = np.concatenate([fail, rng.random(int(retry.sum())) < 0.08])
        n = len(q)
        psp = np.where(rng.random(n) < 0.9, self.psp[q], rng.integers(0, 5, n))
        method = _PSP_METHOD[psp]
        tr = np.arange(n)
        reason = rng.choice(5, n, p=(0.3, 0.3, 0.2, 0.1, 0.1))
        ok = ~fail
        cols = dict(amount=amount, psp=psp, method=method, tr=tr, reason=-1)
        self.emit("pay", ET["payment.intent"], t, q, **cols)
        self.emit("pay", ET["payment.failed"], t[fail] + rng.uniform(2.0, 40.0, int(fail.sum())),
                  q[fail], **{k: (v[fail] if np.ndim(v) else v) for k, v in cols.items()}
                  | {"reason": reason[fail]})
        oc = {k: (v[ok] if np.ndim(v) else v) for k, v in cols.items()}
        m = int(ok.sum())
        self.emit("pay", ET["payment.authorized"], t[ok] + rng.uniform(1.0, 8.0, m), q[ok], **oc)
        cap_ts = t[ok] + rng.uniform(10.0, 60.0, m)
        self.emit("pay", ET["payment.captured"], cap_ts, q[ok], **oc)
        # captured deposits feed bonuses
        self.dep = dict(p=q[ok], ts=cap_ts, amount=amount[ok], ad=att_ad[ok], tr=tr[ok],
                        psp=psp[ok])
        # a few refunds, days later
        rf = rng.random(m) < 0.003
        rts = cap_ts[rf] + rng.uniform(1.0, 10.0, int(rf.sum())) * DAY
        rq = q[ok][rf]
        good = self._ok(rq, rts)
        self.emit("pay", ET["payment.refund"], rts[good], rq[good], amount=amount[ok][rf][good],
                  psp=psp[ok][rf][good], method=method[ok][rf][good], tr=tr[ok][rf][good],
                  reason=5 + rng.integers(0, 3, int(good.sum())))
        # withdrawals by winners at the end of the day's play
        thr = 30.0 * _FX[cc] * 100
        wd = (self.a_net > thr) & (rng.random(A) < 0.5)
        step = _STEP[cc[wd]] * 100
        wamt = (np.floor(self.a_net[wd] * rng.uniform(0.5, 1.0, int(wd.sum())) / step) * step)
        wamt = wamt.astype(np.int64)
        wq = ap[wd]
        wp = self.psp[wq]
        good = wamt > 0
        self.emit("pay", ET["payment.withdraw"],
                  self.a_last_end[wd][good] + rng.uniform(60.0, 600.0, int(good.sum())), wq[good],
                  amount=wamt[good], psp=wp[good], method=_PSP_METHOD[wp[good]],
                  tr=n + np.arange(int(good.sum())), reason=-1)
        # occasional wallet adjustments inside a session
        for et, prob, reasons, lo_eur, hi_eur in (("wallet.credit", 0.02, (0, 1, 2, 3), 1, 50),
                                                  ("wallet.debit", 0.006, (4, 5), 1, 20)):
            sel = np.nonzero(rng.random(A) < prob)[0]
            s = self._random_session(sel)
            wq = ap[sel]
            amt = (rng.integers(lo_eur, hi_eur + 1, len(sel)) * _FX[self.cc[wq]]).round() * 100
            self.emit("wallet", ET[et], self.s_start[s] + self.s_dur[s] - rng.uniform(1.0, 20.0, len(s)),
                      wq, amount=np.maximum(amt, 100).astype(np.int64),
                      reason=rng.choice(np.array(reasons), len(sel)), sid=s)

    # ---------------------------------------------------------------- bonuses
    def _bonuses(self) -> None:
        w, rng, D, n = self.w, self.rng, self.w.days, self.n
        dep = self.dep
        order = np.lexsort((dep["ts"], dep["p"]))
        dp, dts, damt = dep["p"][order], dep["ts"][order], dep["amount"][order]
        first = np.r_[True, dp[1:] != dp[:-1]] if len(dp) else np.zeros(0, bool)
        ok = self.bonus_ok[dp]
        fx = _FX[self.cc[dp]]
        # welcome bonus on the first deposit (allowed in SE: first occasion; not NL under 24)
        welcome_ok = ~self.minor[dp] & ~((self.cc[dp] == _NL) & (self.age_end[dp] < 24))
        welcome = first & ~self.pre[dp] & welcome_ok & (rng.random(len(dp)) < 0.75)
        reload = ~first & ok & (rng.random(len(dp)) < 0.05)
        cap_w = np.rint(10000 * fx)
        cap_r = np.rint(5000 * fx)
        b_p = [dp[welcome], dp[reload]]
        b_ts = [dts[welcome] + rng.uniform(5.0, 60.0, int(welcome.sum())),
                dts[reload] + rng.uniform(5.0, 60.0, int(reload.sum()))]
        b_tmpl = [np.zeros(int(welcome.sum()), np.int64), np.ones(int(reload.sum()), np.int64)]
        b_cost = [np.minimum(damt[welcome], cap_w[welcome]),
                  np.minimum(np.rint(damt[reload] * 0.5), cap_r[reload])]
        # cashback after a losing day, free spins now and then
        A = len(self.a_p)
        aq = self.a_p
        loss_thr = 5000.0 * _FX[self.cc[aq]]
        cb = self.bonus_ok[aq] & (-self.a_net > loss_thr) & (rng.random(A) < 0.06)
        b_p.append(aq[cb])
        b_ts.append(self.a_last_end[cb] + rng.uniform(60.0, 800.0, int(cb.sum())))
        b_tmpl.append(np.full(int(cb.sum()), 2))
        b_cost.append(np.rint(-self.a_net[cb] * 0.1))
        fs = np.nonzero(self.bonus_ok[aq] & (rng.random(A) < 0.02))[0]
        s = self._random_session(fs)
        b_p.append(aq[fs])
        b_ts.append(self.s_start[s] + rng.uniform(10.0, 60.0, len(fs)))
        b_tmpl.append(np.full(len(fs), 3))
        b_cost.append(np.rint(rng.choice(np.array([200, 500, 1000]), len(fs)) * _FX[self.cc[aq[fs]]]))
        cp_p, cp_ts, cp_tmpl, cp_cost, cp_camp = self.camp_bonus
        b_p.append(cp_p)
        b_ts.append(cp_ts)
        b_tmpl.append(cp_tmpl)
        b_cost.append(cp_cost)
        camp = np.concatenate([np.full(sum(len(x) for x in b_p[:-1]), -1), cp_camp]).astype(np.int64)
        bp = np.concatenate(b_p).astype(np.int64)
        bts = np.concatenate(b_ts)
        tmpl = np.concatenate(b_tmpl).astype(np.int64)
        cost = np.maximum(np.concatenate(b_cost), 1).astype(np.int64)
        uk = self.cc[bp] == _UK
        wagering = np.where(uk, np.where(tmpl == 2, 1, 10), np.array([35, 30, 1, 20])[tmpl])
        offer = np.where(camp >= 0, 4 + camp, tmpl)
        nb = len(bp)
        bid = np.arange(nb)
        cols = dict(template=tmpl, offer=offer, cost=cost, wagering=wagering, campaign=camp, bid=bid)
        self.emit("bonus", ET["bonus.issued"], bts, bp, **cols)
        # consumed on the next active day within 7 days (80%), else expired after 7 days
        iday = np.floor((bts - w.start_ts) / DAY).astype(np.int64)
        nxt = self._next_active_day()
        nd = nxt[bp, np.minimum(iday + 1, D)]
        used = (nd <= iday + 7) & (nd < D) & (rng.random(nb) < 0.8)
        ua = np.searchsorted(self.a_key, bp[used] * D + nd[used])
        s = self.a_first[ua]
        uts = self.s_start[s] + rng.uniform(0.1, 0.9, len(s)) * self.s_dur[s]
        self.emit("bonus", ET["bonus.consumed"], uts, bp[used],
                  **{k: v[used] for k, v in cols.items()})
        ets = bts + 7 * DAY
        exp = ~used & self._ok(bp, ets)
        self.emit("bonus", ET["bonus.expired"], ets[exp], bp[exp], **{k: v[exp] for k, v in cols.items()})
        # days with an active bonus: bets are in_bonus there
        end_day = np.where(used, nd, np.minimum(iday + 7, D - 1))
        diff = np.zeros((n, D + 1), np.int16)
        np.add.at(diff, (bp, iday), 1)
        np.add.at(diff, (bp, end_day + 1), -1)
        self.bonus_days = np.cumsum(diff, axis=1, dtype=np.int16)[:, :D] > 0

    def _next_active_day(self) -> np.ndarray:
        D = self.w.days
        idx = np.full((self.n, D + 1), D, np.int16)
        idx[self.a_p, self.a_day] = self.a_day
        return np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]

    # ---------------------------------------------------------------- sessions and bets
    def _bets_and_sessions(self) -> None:
        rng = self.rng
        S, G = len(self.s_p), len(self.g_s)
        sid = np.arange(S)
        dev = np.where(rng.random(S) < 0.85, self.dev[self.s_p], rng.choice(3, S, p=(0.62, 0.28, 0.10)))
        chan = ((dev != 1) & self.app[self.s_p]).astype(np.int64)
        self.emit("session", ET["session.started"], self.s_start, self.s_p, sid=sid, device=dev,
                  chan=chan, dur=-1)
        self.emit("session", ET["session.ended"], self.s_start + self.s_dur, self.s_p, sid=sid,
                  device=dev, chan=chan, dur=self.s_dur.astype(np.int64))
        # one bet.settled per game, at the end of the game
        ng = np.bincount(self.g_s, minlength=S)
        cg = np.cumsum(self.g_dur)
        ex = cg - self.g_dur
        within = cg - ex[_group_first(ng)]
        g_ts = self.s_start[self.g_s] + 15.0 + within
        in_bonus = self.bonus_days[self.g_p, self.a_day[self.g_ad]] & (rng.random(G) < 0.8)
        del self.bonus_days
        provider = _GAME_PROVIDER[self.g_game]
        cols = dict(stake=self.g_stake, win=self.g_win, in_bonus=in_bonus, provider=provider,
                    game=self.g_game, category=self.g_cat, rounds=self.g_rounds, sid=self.g_s)
        self.emit("bet", ET["bet.settled"], g_ts, self.g_p, **cols)
        # rarely a bet.placed at the start of a live / table game (stake repeated, win 0)
        pl = (self.g_cat > 0) & (rng.random(G) < 0.02)
        self.emit("bet", ET["bet.placed"], g_ts[pl] - self.g_dur[pl], self.g_p[pl],
                  **({k: v[pl] for k, v in cols.items()} | {"win": 0, "in_bonus": in_bonus[pl]}))
        # reality checks every hour of play
        n_rc = np.minimum(self.s_dur // 3600, 4).astype(np.int64)
        rs = np.repeat(sid, n_rc)
        j = np.arange(len(rs)) - _group_first(n_rc) + 1
        self.emit("reality", ET["rg.reality_check"], self.s_start[rs] + 3600.0 * j, self.s_p[rs],
                  minutes=60 * j, sid=rs)

    # ---------------------------------------------------------------- registration, RG, account
    def _rg_and_account(self) -> None:
        w, rng, n = self.w, self.rng, self.n
        allp = np.arange(n)
        self.emit("reg", ET["player.registered"], self.reg_ts, allp,
                  country=self.cc, region=self.region, locale=self.cc, tz=self.cc, dial=self.cc,
                  birth=self.birth_day, phone=rng.integers(10**8, 10**9, n),
                  device=rng.integers(10**9, 10**10, n), ip=rng.integers(0, 2**24, n),
                  kyc=self.kyc_at_reg)
        # player.updated: late KYC, e-mail changes
        kyc = ~self.kyc_at_reg & np.isfinite(self.verify_ts) & (self.verify_ts < w.end_ts)
        self.emit("upd", ET["player.updated"], self.verify_ts[kyc], allp[kyc], kind=0)
        lo = np.maximum(self.reg_ts, w.start_ts) + DAY
        ets = lo + rng.random(n) * (w.end_ts - lo)
        em = (rng.random(n) < 0.015) & (ets < w.end_ts) & (ets > lo) & self.outside_block(allp, ets)
        self.emit("upd", ET["player.updated"], ets[em], allp[em], kind=1)
        # limits and limit hits (in a session after the limit was set)
        lim = self.lim & self.outside_block(allp, self.lim_ts)
        self.emit("limit", ET["rg.limit.set"], self.lim_ts[lim], allp[lim], kind=self.lim_kind[lim],
                  value=self.lim_value[lim], sid=-1)
        sel = np.nonzero(lim[self.a_p] & (rng.random(len(self.a_p)) < 0.12))[0]
        s = self._random_session(sel)
        hts = self.s_start[s] + rng.uniform(0.2, 0.9, len(s)) * self.s_dur[s]
        q = self.a_p[sel]
        ok = hts > self.lim_ts[q]
        self.emit("limit", ET["rg.limit.hit"], hts[ok], q[ok], kind=self.lim_kind[q[ok]],
                  value=self.lim_value[q[ok]], sid=s[ok])
        # self-exclusions and cooling-off periods
        b = np.nonzero(self.blocked)[0]
        until = self.blk_until[b]
        self.emit("exclusion", ET["rg.self_exclusion.started"], self.blk_lo[b], b,
                  scope=self.se_scope[b], until=until)
        ended = np.isfinite(until) & (until + 600.0 < w.end_ts)
        self.emit("exclusion", ET["rg.self_exclusion.ended"],
                  until[ended] + rng.uniform(0.0, 600.0, int(ended.sum())), b[ended],
                  scope=self.se_scope[b[ended]], until=INF)

    # ---------------------------------------------------------------- output
    def _family_tables(self):
        """Yield (family, Arrow table) with the rank ``r`` of each event in time order."""
        fams = [f for f in _FAMILIES if f in self.parts]
        merged = {}
        for f in fams:
            parts = self.parts.pop(f)
            merged[f] = (
                np.concatenate([x[0] for x in parts]), np.concatenate([x[1] for x in parts]),
                np.concatenate([x[2] for x in parts]),
                {k: np.concatenate([x[3][k] for x in parts]) for k in parts[0][3]},
            )
        all_ts = np.concatenate([merged[f][1] for f in fams]) if fams else np.zeros(0, np.int64)
        self.counts = np.bincount(np.concatenate([merged[f][0] for f in fams]) if fams else
                                  np.zeros(0, np.int64), minlength=len(EVENT_TYPES))
        rank = np.empty(len(all_ts), np.int64)
        rank[np.argsort(all_ts, kind="stable")] = np.arange(len(all_ts))
        del all_ts
        camp_ids = tuple(c.campaign_id for c in self.w.campaigns)
        offers = _BONUS_OFFERS + tuple(
            f"{c.campaign_id}_{BONUS_TEMPLATES[c.template]}" for c in self.w.campaigns)
        off = 0
        for f in fams:
            et, ts, p, cols = merged.pop(f)
            cats = _FAMILIES[f][0]
            data: dict[str, pa.Array | np.ndarray] = {
                "r": rank[off:off + len(ts)], "event_type": _take(EVENT_TYPES, et),
                "pg": self.pg[p], "brand_id": _take(BRANDS, self.brand[p]),
                "ts": pa.array(ts.astype("datetime64[s]")),
            }
            off += len(ts)
            if f in _NEEDS_CURRENCY:
                data["cur"] = _take(CURRENCIES, self.cc[p])
            for k, v in cols.items():
                if k in cats:
                    data[k] = _take(cats[k], v)
                elif k == "until":
                    data[k] = _ts_array(v)
                elif k == "birth":
                    data[k] = pa.array((np.datetime64(self.w.start_date, "D") + v)
                                       .astype("datetime64[D]"))
                elif k == "campaign":
                    data[k] = _take(camp_ids, v)
                elif k == "offer":
                    data[k] = _take(offers, v)
                else:
                    data[k] = v
            yield f, pa.table(data)

    def write(self, con: duckdb.DuckDBPyConnection, out: Path, fmt: str,
              dirty_rate: float) -> tuple[int, np.ndarray, dict[str, int]]:
        """Write this chunk's events (+ dirty records) to ``out`` in time order; return counts.

        DuckDB serialises each family's records; rows are put in time order with Arrow
        ``take`` one slice at a time and appended to the file (bounded memory, no SQL sort).
        """
        w = self.w
        pre = f"{w.seed}_{self.index:04d}_"
        pieces = []
        for f, tab in self._family_tables():
            con.register("_sim_fam", tab)
            _, trace, payload = _FAMILIES[f]
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
        dirty, dirty_keys, kinds = self._dirty(ev, pos, dirty_rate)
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
        return n_events, self.counts, kinds

    def _dirty(self, ev: pa.Table, pos: np.ndarray,
               rate: float) -> tuple[pa.Table, np.ndarray, dict[str, int]]:
        """Bad records copied from good ones and broken in one way each (deterministic).

        Returns the records, their sort keys (right after their source; a duplicate somewhere
        later in the file) and the count per kind.
        """
        rng = np.random.default_rng([self.w.seed, self.index, 1])
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
                        rec["event_type"] = _UNKNOWN_TYPES[pick % len(_UNKNOWN_TYPES)]
                    elif kind == "bad_timestamp":
                        rec["occurred_at"] = _BAD_TIMESTAMPS[pick % len(_BAD_TIMESTAMPS)]
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
])
_EFFECTS_SCHEMA = pa.schema([
    ("campaign_id", pa.string()), ("player_id", pa.string()), ("arm", pa.string()),
    ("true_effect_deposit_prob", pa.float64()), ("true_effect_ngr", pa.float64()),
    ("responder_type", pa.string()), ("deposit_prob_control", pa.float64()),
    ("deposit_prob_treated", pa.float64()),
])
_ASSIGN_SCHEMA = pa.schema([
    ("campaign_id", pa.string()), ("player_id", pa.string()), ("arm", pa.string()),
    ("channel", pa.string()), ("sent_at", pa.timestamp("s")),
])


class _Writers:
    """Streams the truth tables and the operator export, chunk by chunk."""

    def __init__(self, paths: Paths):
        self.players = pq.ParquetWriter(paths.truth / "players.parquet", _PLAYERS_SCHEMA)
        self.effects = pq.ParquetWriter(paths.truth / "campaign_effects.parquet", _EFFECTS_SCHEMA)
        self.assign = pq.ParquetWriter(paths.exports / "campaign_assignments.parquet", _ASSIGN_SCHEMA)

    def write(self, ch: _Chunk) -> None:
        w = ch.w
        pid = np.char.add("p_", np.char.zfill(ch.pg.astype(str), w.pid_width))
        start = np.datetime64(w.start_date, "D")
        churned = ch.T < w.days
        churned_on = pa.array((start + np.floor(np.where(churned, ch.T, 0)).astype(np.int64))
                              .astype("datetime64[D]"), mask=~churned)
        self.players.write_table(pa.table({
            "player_id": pid, "brand_id": _take(BRANDS, ch.brand), "country": _take(COUNTRIES, ch.cc),
            "currency": _take(CURRENCIES, ch.cc), "player_type": _take(PLAYER_TYPES, ch.ptype),
            "churn_hazard": ch.h, "churned_on": churned_on, "registered_at": _ts_array(ch.reg_ts),
            "birth_date": pa.array((start + ch.birth_day).astype("datetime64[D]")),
            "age_verified_at": _ts_array(ch.verify_ts), "under_18": ch.minor,
            "dormant_at_start": ch.dormant, "base_visit_prob": ch.base,
            "stake_per_round_eur": ch.spr / 100.0,
            "rg_limit_kind": _take(LIMIT_KINDS, np.where(ch.lim, ch.lim_kind, -1)),
            "exclusion_scope": _take(SELF_EXCLUSION_SCOPES, np.where(ch.blocked, ch.se_scope, -1)),
            "excluded_from": _ts_array(ch.blk_lo), "excluded_until": _ts_array(ch.blk_until),
            "returns_after_exclusion": ch.returns,
        }, schema=_PLAYERS_SCHEMA))
        if not ch.camp_rows:
            return
        rows = {k: np.concatenate([r[k] for r in ch.camp_rows]) for k in ch.camp_rows[0]}
        camp_ids = tuple(c.campaign_id for c in w.campaigns)
        camp = _take(camp_ids, rows["campaign"])
        ppid = pa.array(pid[rows["p"]])
        arm = _take(("treatment", "control"), rows["control"].astype(np.int64))
        self.effects.write_table(pa.table({
            "campaign_id": camp, "player_id": ppid, "arm": arm,
            "true_effect_deposit_prob": np.round(rows["q1"] - rows["q0"], 6),
            "true_effect_ngr": np.round(rows["eff_ngr"], 2),
            "responder_type": _take(RESPONDER_TYPES, rows["rtype"]),
            "deposit_prob_control": np.round(rows["q0"], 6),
            "deposit_prob_treated": np.round(rows["q1"], 6),
        }, schema=_EFFECTS_SCHEMA))
        channel = _take(CHANNELS, np.array([w.campaigns[k].channel for k in rows["campaign"]],
                                           np.int64))
        self.assign.write_table(pa.table({
            "campaign_id": camp, "player_id": ppid, "arm": arm, "channel": channel,
            "sent_at": _ts_array(rows["sent"]),
        }, schema=_ASSIGN_SCHEMA))

    def close(self) -> None:
        for wr in (self.players, self.effects, self.assign):
            wr.close()
