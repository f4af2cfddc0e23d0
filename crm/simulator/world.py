"""The simulated casino's world: its parameters (jurisdictions, player types, games,
payments, past campaigns), the run's shared state and the event families' payloads.

See :mod:`crm.simulator.casino` for what the world looks like and how events are encoded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from crm.contract import CHANNELS, CONSENT_CHANNELS, EVENT_TYPES, SELF_EXCLUSION_SCOPES

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
DIAL = ("+44", "+356", "+31", "+46", "+49")
COUNTRY_P = (0.34, 0.10, 0.20, 0.14, 0.22)
UK, NL, SE = 0, 2, 3
FX = np.array([0.85, 1.0, 1.0, 11.0, 1.0])  # local currency units per EUR
STEP = np.array([5, 5, 5, 50, 5])  # rounding step of deposits, local units
REGIONS_BY_COUNTRY = (
    ("GB-ENG", "GB-SCT", "GB-WLS", "GB-NIR"),
    ("MT-07", "MT-15", "MT-38", "MT-60"),
    ("NL-NH", "NL-ZH", "NL-UT", "NL-NB", "NL-GE"),
    ("SE-AB", "SE-O", "SE-M", "SE-E"),
    ("DE-BE", "DE-BY", "DE-NW", "DE-HH", "DE-HE", "DE-BW"),
)
REGIONS = tuple(r for rs in REGIONS_BY_COUNTRY for r in rs)
REGION_N = np.array([len(rs) for rs in REGIONS_BY_COUNTRY])
REGION_START = np.cumsum(REGION_N) - REGION_N

PLAYER_TYPES = ("casual", "regular", "vip")
TYPE_P = (0.65, 0.28, 0.07)
VISIT = np.array([0.07, 0.24, 0.50])  # median daily visit probability
HAZARD = np.array([0.015, 0.006, 0.003])  # median daily churn hazard
SESS_LAM = np.array([0.15, 0.35, 0.70])  # extra sessions per active day
GAMES_LAM = np.array([0.8, 1.3, 2.0])  # extra games per session
SPR = np.array([40.0, 100.0, 600.0])  # mean stake per round, EUR cents
DEP_P = np.array([0.30, 0.40, 0.55])  # deposit probability per active day
DEP_EUR = np.array([20.0, 50.0, 250.0])  # median deposit, EUR

CATEGORIES = ("slots", "live", "table")
CAT_ROUNDS = np.array([60.0, 12.0, 20.0])  # mean extra rounds per game
CAT_MULT = np.array([1.0, 4.0, 3.0])  # stake per round multiplier
CAT_SEC = np.array([5.0, 45.0, 30.0])  # seconds per round
CAT_VOL = np.array([5.0, 1.5, 1.0])  # sd of the win multiplier per round
CAT_PREFS = np.array([[0.85, 0.10, 0.05], [0.35, 0.50, 0.15], [0.35, 0.15, 0.50]])
PROVIDERS = ("NetEnt", "Pragmatic Play", "Evolution", "Play'n GO", "Microgaming", "Red Tiger")
GAME_LIST = (
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
GAME_ORDER = sorted(range(len(GAME_LIST)), key=lambda i: GAME_LIST[i][2])
GAMES = tuple(GAME_LIST[i][0] for i in GAME_ORDER)
GAME_PROVIDER = np.array([GAME_LIST[i][1] for i in GAME_ORDER])
GAME_CAT = np.array([GAME_LIST[i][2] for i in GAME_ORDER])
CAT_N = np.bincount(GAME_CAT, minlength=3)
CAT_START = np.cumsum(CAT_N) - CAT_N

DEVICES = ("mobile", "desktop", "tablet")
SESSION_CHANNELS = ("web", "app")
PSPS = ("Adyen", "Worldpay", "Trustly", "Skrill", "Paysafe")
PSP_METHOD = np.array([0, 0, 1, 2, 3])
METHODS = ("card", "bank_transfer", "ewallet", "voucher")
FAIL_REASONS = ("3DS_TIMEOUT", "INSUFFICIENT_FUNDS", "CARD_DECLINED", "RISK_REJECTED", "PSP_ERROR")
REFUND_REASONS = ("CUSTOMER_REQUEST", "DUPLICATE_PAYMENT", "CHARGEBACK")
WALLET_REASONS = ("cashback", "goodwill", "tournament_prize", "jackpot", "fee", "adjustment")
BONUS_TEMPLATES = ("welcome", "reload", "cashback", "free_spins")
BONUS_OFFERS = ("welcome_100", "reload_50", "cashback_10", "free_spins_20")
LIMIT_KINDS = ("deposit", "loss", "session")  # of crm.contract.LIMIT_KINDS
CONSENT_SOURCES = ("registration", "preference_centre", "support")
RESPONDER_TYPES = ("none", "positive", "negative")
CONSENT_P = np.array([0.70, 0.50, 0.30, 0.85, 0.80])  # email, push, sms, in_app, profiling
UNKNOWN_TYPES = ("bet.voided", "session.heartbeat", "player.deleted", "promo.viewed")
BAD_TIMESTAMPS = ("2025-13-45T25:61:00Z", "not-a-timestamp", "", "31/12/2025 25:00")
DIRTY_KINDS = ("unknown_event_type", "missing_field", "wrong_type", "bad_timestamp",
               "missing_timestamp", "duplicate")


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    day: int
    channel: int  # index into CHANNELS
    template: int  # index into BONUS_TEMPLATES, -1 = message only
    cost_eur: int  # bonus cost, EUR cents


def campaign_plan(days: int) -> list[Campaign]:
    """Four past campaigns spread over the period (fewer if the period is short)."""
    specs = ((0.12, 0, -1, 0), (0.36, 1, 1, 1000), (0.60, 0, -1, 0), (0.84, 1, 3, 500))
    out = []
    for k, (frac, ch, tmpl, cost) in enumerate(specs):
        day = int(round(days * frac))
        if day >= 1 and day + 7 <= days:
            out.append(Campaign(f"hist_c{k + 1:02d}", day, ch, tmpl, cost))
    return out



class World:
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
        self.campaigns = campaign_plan(days)
        self.pid_width = max(7, len(str(players - 1)))

    def utc(self, cc: np.ndarray, day: np.ndarray, local_seconds: np.ndarray) -> np.ndarray:
        """UTC epoch seconds of a local time of day on day ``day`` (relative to start)."""
        return self.start_ts + day * DAY + local_seconds - self.off[cc, day - self.OFF_LO]


def local_seconds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Local time of day (seconds, may run past midnight) with an evening peak."""
    k = rng.random(n)
    h = np.where(k < 0.55, rng.normal(21.0, 1.7, n),
                 np.where(k < 0.8, rng.normal(14.0, 2.5, n), rng.uniform(7.0, 24.0, n)))
    return np.clip(h, 6.0, 26.9) * 3600.0


def take(values: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    """Strings from a small dictionary by code (code < 0 -> null), in Arrow C++."""
    codes = np.asarray(codes)
    mask = codes < 0
    idx = pa.array(np.where(mask, 0, codes).astype(np.int32), mask=mask if mask.any() else None)
    return pa.array(values, pa.string()).take(idx)


def ts_array(ts: np.ndarray) -> pa.Array:
    """Epoch seconds (float, inf = null) -> Arrow timestamp[s]."""
    ts = np.asarray(ts, np.float64)
    mask = ~np.isfinite(ts)
    secs = np.floor(np.where(mask, 0.0, ts)).astype(np.int64)
    return pa.array(secs.astype("datetime64[s]"), mask=mask if mask.any() else None)


def group_first(counts: np.ndarray) -> np.ndarray:
    """For items repeated by ``counts``: index of the first item of each item's group."""
    starts = np.cumsum(counts) - counts
    return np.repeat(starts, counts)


# Per family: columns that are codes into a dictionary, trace_id expression, payload expression.
FAMILIES: dict[str, tuple[dict[str, tuple[str, ...]], str, str]] = {
    "reg": (
        {"country": COUNTRIES, "region": REGIONS, "locale": LOCALES, "tz": TIMEZONES, "dial": DIAL},
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
NEEDS_CURRENCY = ("reg", "bet", "pay", "wallet", "bonus")


