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

# --------------------------------------------------------------------------- identities
# Names per country (first names with a spelling variant of the same initial), streets, payment
# instruments. A small list on purpose: strangers share names, so a name alone is a weak link.
FIRST_NAMES = (
    (("John", "Jon"), ("Michael", "Micheal"), ("David", "Dave"), ("Sarah", "Sara"), ("Emma", "Ema"),
     ("Thomas", "Tom"), ("Daniel", "Dan"), ("Jessica", "Jess"), ("Laura", "Lora"),
     ("Christopher", "Chris"), ("Rebecca", "Rebekah"), ("Matthew", "Mathew")),
    (("Joseph", "Joe"), ("Maria", "Marija"), ("Antoine", "Anthony"), ("Carmen", "Carmin"),
     ("Francesca", "Franceska"), ("Paul", "Pawl"), ("Rita", "Reeta"), ("Mark", "Marc"),
     ("Nicole", "Nicol"), ("Stephen", "Steven"), ("Claire", "Clare"), ("Luke", "Luka")),
    (("Jan", "Jann"), ("Pieter", "Piet"), ("Sanne", "Sane"), ("Daan", "Dan"), ("Lotte", "Lot"),
     ("Thijs", "Tijs"), ("Anouk", "Anouck"), ("Bram", "Braam"), ("Femke", "Femka"), ("Ruben", "Reuben"),
     ("Eva", "Eefje"), ("Sem", "Semm")),
    (("Erik", "Eric"), ("Anna", "Ana"), ("Lars", "Lasse"), ("Karin", "Karen"), ("Johan", "Johann"),
     ("Maja", "Maya"), ("Nils", "Niels"), ("Elin", "Ellin"), ("Oskar", "Oscar"), ("Sofia", "Sophia"),
     ("Mikael", "Michael"), ("Linnea", "Linea")),
    (("Lukas", "Lucas"), ("Maximilian", "Max"), ("Sophie", "Sofie"), ("Felix", "Feliks"), ("Lena", "Leni"),
     ("Jonas", "Jonah"), ("Julia", "Julija"), ("Paul", "Pauli"), ("Katharina", "Katarina"),
     ("Stefan", "Stephan"), ("Sabine", "Sabina"), ("Thomas", "Tomas")),
)
LAST_NAMES = (
    ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson", "Wright",
     "Thompson", "Evans", "Walker", "White", "Roberts", "Green"),
    ("Borg", "Camilleri", "Vella", "Farrugia", "Zammit", "Galea", "Micallef", "Grech", "Attard", "Spiteri",
     "Azzopardi", "Mifsud", "Agius", "Pace", "Debono", "Cassar"),
    ("de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen", "Visser", "Smit",
     "Meijer", "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters"),
    ("Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson", "Persson",
     "Svensson", "Gustafsson", "Pettersson", "Jonsson", "Jansson", "Hansson", "Bengtsson", "Lindberg"),
    ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
     "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf"),
)
STREETS = (
    ("High Street", "Station Road", "Church Lane", "Park Avenue", "Victoria Road", "Mill Lane",
     "Queens Drive", "Green Close"),
    ("Triq il-Kbira", "Triq San Gorg", "Main Street", "Church Street", "Republic Street", "Triq il-Knisja",
     "Sea View Road", "Triq tal-Balal"),
    ("Kerkstraat", "Dorpsstraat", "Schoolstraat", "Molenweg", "Stationsweg", "Julianalaan",
     "Beatrixstraat", "Kastanjelaan"),
    ("Storgatan", "Kyrkogatan", "Drottninggatan", "Skolgatan", "Parkvägen", "Ringvägen", "Järnvägsgatan",
     "Sjövägen"),
    ("Hauptstraße", "Schulstraße", "Gartenstraße", "Bahnhofstraße", "Dorfstraße", "Bergstraße",
     "Lindenstraße", "Kirchstraße"),
)
_STREET_ABBR = {"Street": "St", "Road": "Rd", "Lane": "Ln", "Avenue": "Ave", "Drive": "Dr", "Close": "Cl"}


def _offsets(groups: tuple[tuple, ...]) -> tuple[np.ndarray, np.ndarray]:
    n = np.array([len(g) for g in groups])
    return np.cumsum(n) - n, n


FIRST_START, FIRST_N = _offsets(FIRST_NAMES)
LAST_START, LAST_N = _offsets(LAST_NAMES)
STREET_START, STREET_N = _offsets(STREETS)
_FIRST = tuple(f for c in FIRST_NAMES for f in c)
_LAST = tuple(name for c in LAST_NAMES for name in c)
_STREET = tuple(s for c in STREETS for s in c)
NF, NLAST, NSTREET = len(_FIRST), len(_LAST), len(_STREET)
# one dictionary for both name fields: first names as written (0), misspelt (1), an initial (2),
# lower case (3); then last names as written (4), lower case (5), upper case (6). Code: form * block + i.
NAME_FORMS = (tuple(f[0] for f in _FIRST) + tuple(f[1] for f in _FIRST) + tuple(f[0][0] + "." for f in _FIRST)
              + tuple(f[0].lower() for f in _FIRST) + _LAST + tuple(s.lower() for s in _LAST)
              + tuple(s.upper() for s in _LAST))
# how an account writes its name: (first-name form, last-name form), or swapped ("Smith John")
NAME_MODES = ("as written", "misspelt", "initial", "lower case", "swapped", "upper-case surname")
# streets as written (0), abbreviated ("High St"; other languages as written) (1), lower case (2)
STREET_FORMS = (_STREET + tuple(" ".join(_STREET_ABBR.get(w, w) for w in s.split()) for s in _STREET)
                + tuple(s.lower() for s in _STREET))
INSTRUMENT_PREFIX = ("card", "bank", "wallet", "voucher")  # per payment METHOD
# The payment events that name their instrument: where a deposit starts and where money goes back to
# it; the provider's callbacks (authorized, captured, failed) carry the trace id of their intent.
# (Every identifier makes landing read the record into the PII vault: a few per player, not all.)
INSTRUMENT_EVENTS = ("payment.intent", "payment.withdraw", "payment.refund")


@dataclass(frozen=True)
class Abuse:
    """What the simulator plants (:mod:`crm.simulator.abuse`): shares of all players, each drawn
    per chunk. Zero turns a kind off."""

    rings: float = 0.015  # accounts in multi-account rings (2-15 accounts of one brand)
    ring_hunters: float = 0.8  # of the ring accounts that can (new, no RG flag): hunt bonuses
    hunters: float = 0.01  # bonus hunters on their own
    reregistrations: float = 0.003  # new accounts of self-excluded players, opened while excluded
    families: float = 0.06  # accounts of a household (same address, mostly the same router)
    offices: float = 0.02  # accounts behind an office network (one /24, tens of accounts)
    carrier_nat: float = 0.03  # accounts behind a mobile carrier's NAT (one IP, hundreds of accounts)


ABUSE = Abuse()
NO_ABUSE = Abuse(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
RING_SIZES = np.arange(2, 16)
RING_SIZE_P = RING_SIZES ** -2.0 / (RING_SIZES ** -2.0).sum()  # skewed to pairs and triples
RING_BURST_H = (2.0, 96.0)  # a ring registers within this many hours (log-uniform)
# a ring's own attribute types: device, ip network, payment instrument, address, name; each account
# takes each of its ring's types with RING_TAKE (at least two where the ring has two, mostly)
RING_TYPE_P = np.array([0.5, 0.6, 0.4, 0.3, 0.45])
RING_TAKE = 0.85
RING_SAME_IP = 0.3  # a ring account on its ring's exact IP, else another address of its /24
HUNT_RTP = 0.99  # the low-house-edge table games hunters wager on
HUNT_STAKE_EUR = (0.5, 1.5)  # stake per round, EUR (small: little variance)
REREG_REUSE_P = np.array([0.6, 0.5, 0.6, 0.5])  # device, payment instrument, name + birth date, address
FAMILY_SIZE_P = (0.5, 0.3, 0.15, 0.05)  # 2-5 accounts
FAMILY_ROUTER, FAMILY_SURNAME = 0.8, 0.6  # an account on the home IP; a family with one surname
FAMILY_DEVICE, FAMILY_CARD = 0.4, 0.6  # a household device / joint card (each used by ~70% of it)
OFFICE_SIZE = (18.0, 0.5, 6, 60)  # median, log-sd, min, max
OFFICE_ONE_IP, OFFICE_WORKSTATION = 0.5, 0.3  # one NAT address / a shared workstation
NAT_GATEWAYS = 2  # carrier NAT addresses per country (the same in every chunk)


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

    def __init__(self, seed: int, days: int, start_date: dt.date, players: int, abuse: Abuse = ABUSE):
        self.seed, self.days, self.start_date, self.abuse = seed, days, start_date, abuse
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
        self.nat_ip = np.random.default_rng([seed, 19]).integers(0, 2**24, (len(COUNTRIES), NAT_GATEWAYS))

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


# A postcode in the country's format from the number ``pc`` (UK "AB12 3CD", MT "ABC 1234",
# NL "1234 AB", SE "123 45", DE "12345").
_L = "chr(CAST(65 + pc // {} % 26 AS INTEGER))"
_POSTCODE = (
    "CASE country WHEN 'UK' THEN " + _L.format(1) + " || " + _L.format(26) + " || (1 + pc // 676 % 20) || ' ' "
    "|| (pc // 13520 % 10) || " + _L.format(135200) + " || " + _L.format(3515200) + " "
    "WHEN 'MT' THEN " + _L.format(1) + " || " + _L.format(26) + " || " + _L.format(676) + " || ' ' "
    "|| (1000 + pc // 17576 % 9000) "
    "WHEN 'NL' THEN (1000 + pc % 9000) || ' ' || " + _L.format(9000) + " || " + _L.format(234000) + " "
    "WHEN 'SE' THEN (100 + pc % 900) || ' ' || lpad(CAST(pc // 900 % 100 AS VARCHAR), 2, '0') "
    "ELSE lpad(CAST(1000 + pc % 99000 AS VARCHAR), 5, '0') END"
)

# Per family: columns that are codes into a dictionary, trace_id expression, payload expression.
FAMILIES: dict[str, tuple[dict[str, tuple[str, ...]], str, str]] = {
    "reg": (
        {"country": COUNTRIES, "region": REGIONS, "locale": LOCALES, "tz": TIMEZONES, "dial": DIAL,
         "fname": NAME_FORMS, "lname": NAME_FORMS, "street": STREET_FORMS},
        "'r' || pg",
        "json_object('country', country, 'region', region, 'locale', locale, 'timezone', tz, "
        "'birth_date', strftime(birth, '%Y-%m-%d'), 'currency', cur, "
        "'email', 'player' || pg || '@example.com', 'phone', dial || ' ' || phone, "
        "'device_id', 'dev_' || device, "
        "'ip', '10.' || (ip // 65536) || '.' || (ip // 256 % 256) || '.' || (ip % 256), "
        "'age_verified', kyc, 'first_name', fname, 'last_name', lname, "
        "'address', CASE WHEN country IN ('UK', 'MT') THEN house || ' ' || street ELSE street || ' ' || house END, "
        "'postcode', " + _POSTCODE + ")",
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
        {"psp": PSPS, "method": METHODS, "reason": FAIL_REASONS + REFUND_REASONS, "ipre": INSTRUMENT_PREFIX},
        "'p' || tr",
        "CASE WHEN inst < 0 AND reason IS NULL THEN json_object('amount', amount, 'currency', cur, 'psp', psp, "
        "'method', method) WHEN inst < 0 THEN json_object('amount', amount, 'currency', cur, 'psp', psp, "
        "'method', method, 'reason_code', reason) "
        "WHEN reason IS NULL THEN json_object('amount', amount, 'currency', cur, 'psp', psp, "
        "'method', method, 'payment_instrument', ipre || '_' || printf('%012x', inst)) "
        "ELSE json_object('amount', amount, 'currency', cur, 'psp', psp, "
        "'method', method, 'reason_code', reason, 'payment_instrument', ipre || '_' || printf('%012x', inst)) END",
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


