"""The PII vault: players' direct identifiers, encrypted per player, out of everything else.

Landing (:mod:`crm.ingest.landing`) and the API (``/v1/events``) split every payload key of
:data:`crm.contract.PII_FIELDS` (email, phone, device id, IP, names, payment instrument) off the
event before anything is stored: the value goes here, and the event keeps a **pseudonym** in its
place (:meth:`Vault.pseudonym`: a keyed HMAC-SHA256, ``pii1:`` + 32 hex digits), so landed events,
the warehouse, lists and models can still tell "the same device" without knowing it. The split
also adds **derived keys** (:func:`derived_forms`, :data:`crm.contract.DERIVED_PII_FIELDS`): the
pseudonyms of an IP's network, of a name's variant-free form and of a normalized address, so that
variants link in the warehouse (entity resolution, docs/abuse.md) while only the split sees them. The channels
read the clear value here at send time only (:meth:`Vault.contact`).

* **Encryption**: each player has their own data key (AES-256-GCM, the ``cryptography`` library),
  stored wrapped by the vault's master key; each value is sealed with the player's key, bound to
  (brand, player, field) as associated data, so a ciphertext moved to another row does not open.
  The master key is ``$CRM_VAULT_MASTER_KEY`` (url-safe base64 of 32 bytes: from a secret store)
  or a file made once at ``$CRM_HOME/vault/master.key`` (0600). The pseudonym key likewise
  (``$CRM_PII_HASH_KEY`` or ``vault/hash.key``): it must stay the same for pseudonyms to link.
* **Crypto-shredding** (:meth:`Vault.forget`): the player's data key and values are deleted and a
  tombstone kept; later identifiers for a forgotten player are dropped, not stored. SQLite vaults
  run with ``secure_delete`` and are vacuumed after a forget, so no freed page keeps the bytes.
* **Residency**: the vault of a player is chosen by the country (jurisdiction code) of the event
  that first brings their identifiers: ``$CRM_VAULT_URL_<CODE>`` (e.g. ``CRM_VAULT_URL_UK``) when
  set, else ``$CRM_VAULT_URL``, else SQLite at ``$CRM_HOME/vault/vault.sqlite``. A player stays in
  the vault that holds their key (later events need not carry a country).

Only the newest value per (player, field) is kept (by the event's time): the vault serves sends,
and the history of a device or address lives on as pseudonyms in the events.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crm.config import Paths
from crm.contract import PII_FIELDS
from crm.store.db import key_chunks, make_engine

PSEUDONYM_PREFIX = "pii1:"
_PSEUDONYM = re.compile(r"pii1:[0-9a-f]{32}")
BULK_PLAYERS = 20_000  # a batch naming more players reads the vault's tables whole (crm.store.vault.Vault._rows_of)
MAX_VALUE_CHARS = 1000  # an identifier longer than this is cut (an address line is far shorter)
_NONCE = 12
# the channel whose address each identifier is (crm.store.profile.CONTACT_FIELDS, the other way round)
CHANNEL_FIELDS = {"email": "email", "sms": "phone"}

metadata = sa.MetaData()
vault_keys = sa.Table(
    "vault_keys", metadata,
    sa.Column("brand_id", sa.String(128), primary_key=True),
    sa.Column("player_id", sa.String(128), primary_key=True),
    sa.Column("region", sa.String(40), nullable=False),  # the residency the player was placed by
    sa.Column("wrapped_key", sa.LargeBinary, nullable=False),  # nonce + AES-GCM(master, data key)
    sa.Column("created_at", sa.DateTime, nullable=False),
)
vault_values = sa.Table(
    "vault_values", metadata,
    sa.Column("brand_id", sa.String(128), primary_key=True),
    sa.Column("player_id", sa.String(128), primary_key=True),
    sa.Column("field", sa.String(40), primary_key=True),
    sa.Column("sealed", sa.LargeBinary, nullable=False),  # nonce + AES-GCM(data key, value)
    sa.Column("occurred_at", sa.DateTime, nullable=False),  # the event's time: the newest wins
)
vault_forgotten = sa.Table(
    "vault_forgotten", metadata,
    sa.Column("brand_id", sa.String(128), primary_key=True),
    sa.Column("player_id", sa.String(128), primary_key=True),
    sa.Column("forgotten_at", sa.DateTime, nullable=False),
)


class VaultError(RuntimeError):
    """The vault cannot be used as configured (a bad key, an unreadable key file)."""


@dataclass(frozen=True)
class Identifier:
    """One identifier taken off an event: whose, which field, the value, when, and the country
    the event named (residency; None when it named none)."""

    brand_id: str
    player_id: str
    field: str
    value: str
    occurred_at: dt.datetime
    region: str | None = None


def is_pseudonym(value: object) -> bool:
    return isinstance(value, str) and _PSEUDONYM.fullmatch(value) is not None


def normalized(field: str, value: str) -> str:
    """What the pseudonym is computed from: the same person's ``Jo@X.com `` and ``jo@x.com`` link."""
    v = value.strip()
    if field == "email":
        return v.casefold()
    if field == "phone":
        return ("+" if v.startswith("+") else "") + re.sub(r"\D", "", v)
    return v.casefold() if field in ("first_name", "last_name", "name", "full_name") else v


# -- derived keys: what makes variants of one identifier link (crm.contract.DERIVED_PII_FIELDS) -----
_PUNCT = re.compile(r"[^\w\s]|_")
# street words written in full or abbreviated ("12 High Street" ~ "12 high st."): the short form
_STREET_WORDS = {"street": "st", "road": "rd", "avenue": "ave", "av": "ave", "lane": "ln", "drive": "dr",
                 "court": "ct", "place": "pl", "square": "sq", "terrace": "ter", "crescent": "cres",
                 "close": "cl", "gardens": "gdns", "boulevard": "blvd", "highway": "hwy", "north": "n",
                 "south": "s", "east": "e", "west": "w", "apartment": "apt", "flat": "apt", "number": "no"}
# the HMAC label of a derived key where it differs from its field: both name forms are hashed as
# "name_key", so a swapped name's second form equals the first form of the name written right
DERIVED_LABEL = {"name_key_swapped": "name_key"}
_SOUNDEX = {**dict.fromkeys("bfpv", "1"), **dict.fromkeys("cgjkqsxz", "2"), **dict.fromkeys("dt", "3"),
            "l": "4", **dict.fromkeys("mn", "5"), "r": "6"}


def _tokens(text: str) -> list[str]:
    """Casefolded words without accents and punctuation ("Ó'Brien-Smith" -> ["obrien", "smith"])."""
    plain = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return _PUNCT.sub(lambda m: " " if m.group() in "-_/,;" else "", plain).split()


def soundex(word: str) -> str:
    """American Soundex ("Smith", "Smyth" -> S530; "Jon", "John" -> J500): a phonetic key, written
    out here (a dozen lines) rather than a dependency."""
    letters = [c for c in word if "a" <= c <= "z"]
    if not letters:
        return word[:4]
    out, last = letters[0].upper(), _SOUNDEX.get(letters[0], "")
    for c in letters[1:]:
        code = _SOUNDEX.get(c, "")
        if code and code != last:
            out += code
        if c not in "hw":  # h and w do not separate two letters of one code; vowels do
            last = code
    return (out + "000")[:4]


def name_forms(first: str, last: str) -> list[str]:
    """The forms a name's variants share: the sorted initials of its words and the Soundex of its
    surname, and a second form with the first name taken as the surname (names arrive swapped,
    "Smith John"), unless the first name is an initial. "John Smith", "Jon Smith", "J. Smith",
    "john smith" and "Smith John" all have ``js|S530`` among their forms. ``last`` empty: ``first``
    is a whole name, its last full word taken as the surname. Coarse on purpose (John and Jane Smith
    share a form): a weak attribute, weighted by its frequency."""
    words = _tokens(f"{first} {last}")
    if len(words) < 2:
        return []
    initials = "".join(sorted(w[0] for w in words))
    if last:
        surname, given = "".join(_tokens(last)), "".join(_tokens(first))
    else:
        full = [w for w in words if len(w) > 1] or [""]
        surname, given = full[-1], full[0] if len(full) > 1 else ""
    forms = [f"{initials}|{soundex(w)}" for w in (surname, given) if len(w) > 1]
    return list(dict.fromkeys(forms))


def address_form(address: str, postcode: str) -> str | None:
    """The normalized street line and postcode ("12 High St." + "sw1a 1aa" ~ "12 high street" +
    "SW1A1AA"): words casefolded, accents and punctuation dropped, street words abbreviated; the
    postcode without spaces. None without both (a street line alone names many places)."""
    words = [_STREET_WORDS.get(w, w) for w in _tokens(address)]
    code = "".join(_tokens(postcode))
    return f"{' '.join(words)}|{code}" if words and code else None


def ip_network(ip: str) -> str | None:
    """The network of an address: the /24 of an IPv4 (an IPv4-mapped IPv6 too), the /64 of an IPv6;
    None when it is not an IP address."""
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(ipaddress.ip_network(f"{addr}/{24 if addr.version == 4 else 64}", strict=False))


_DERIVED_FROM = frozenset({"ip", "first_name", "last_name", "full_name", "name", "address", "postcode"})


def _text(payload: Mapping, key: str) -> str:
    v = payload.get(key)
    return str(v) if isinstance(v, str | int | float) and not isinstance(v, bool) and not is_pseudonym(v) else ""


def derived_forms(payload: Mapping) -> dict[str, str]:
    """The clear forms the derived keys are computed from (crm.contract.DERIVED_PII_FIELDS), from a
    payload's clear identifiers: ``ip_net`` from ``ip``, ``name_key`` and ``name_key_swapped`` (the
    name read the other way round) from first + last name (or a
    full name), ``address_key`` from ``address`` + ``postcode``. Only the split sees them."""
    if payload.keys().isdisjoint(_DERIVED_FROM):  # most events (payments: an instrument only)
        return {}
    out = {}
    if (ip := _text(payload, "ip")) and (net := ip_network(ip)):
        out["ip_net"] = net
    first, last = _text(payload, "first_name"), _text(payload, "last_name")
    whole = _text(payload, "full_name") or _text(payload, "name")
    forms = name_forms(first, last) if first and last else name_forms(whole, "")
    for k, form in zip(("name_key", "name_key_swapped"), forms, strict=False):
        out[k] = form
    if (form := address_form(_text(payload, "address"), _text(payload, "postcode"))) is not None:
        out["address_key"] = form
    return out


def _secret(env: Mapping[str, str], var: str, path: Path) -> bytes:
    """32 bytes from ``$var`` (url-safe base64) or from ``path`` (made once, 0600)."""
    text = env.get(var)
    if text:
        try:
            key = base64.b64decode(text.strip() + "=" * (-len(text.strip()) % 4), altchars=b"-_", validate=True)
        except ValueError as e:
            raise VaultError(f"${var} is not url-safe base64: {e}") from e
        if len(key) != 32:
            raise VaultError(f"${var} must hold 32 bytes (it holds {len(key)})")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) != 32:
            raise VaultError(f"{path} must hold 32 bytes (it holds {len(key)}); was it edited?") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def _secure_sqlite(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA secure_delete=ON")  # deleted values are zeroed in the file, not left in free pages
    cur.close()


class Vault:
    """The vaults of a data home (one per configured region), with its master and pseudonym keys."""

    def __init__(self, paths: Paths, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.paths = paths
        self.dir = paths.home / "vault"
        self.default_url = env.get("CRM_VAULT_URL") or f"sqlite:///{self.dir / 'vault.sqlite'}"
        self.region_urls = {k.removeprefix("CRM_VAULT_URL_").upper(): v for k, v in env.items()
                             if k.startswith("CRM_VAULT_URL_") and v}
        self._master = AESGCM(_secret(env, "CRM_VAULT_MASTER_KEY", self.dir / "master.key"))
        self._hash_key = _secret(env, "CRM_PII_HASH_KEY", self.dir / "hash.key")
        self._engines: dict[str, sa.Engine] = {}

    # -- where ---------------------------------------------------------------------------------
    def url_for(self, region: str | None) -> str:
        return self.region_urls.get((region or "").strip().upper(), self.default_url)

    def urls(self) -> list[str]:
        return list(dict.fromkeys([self.default_url, *self.region_urls.values()]))

    def engine(self, url: str) -> sa.Engine:
        if url not in self._engines:
            eng = make_engine(self.paths, url)
            if eng.dialect.name == "sqlite":
                sa.event.listen(eng, "connect", _secure_sqlite)
            # The vault's three tables are created here rather than by the store's migrations: the
            # vault is its own database (per region), and holds nothing a migration would move.
            metadata.create_all(eng)
            self._engines[url] = eng
        return self._engines[url]

    def dispose(self) -> None:
        for eng in self._engines.values():
            eng.dispose()
        self._engines.clear()

    # -- pseudonyms ----------------------------------------------------------------------------
    def pseudonym(self, field: str, value: str) -> str:
        """The keyed hash that stands for ``value`` outside the vault (stable for the same key)."""
        if is_pseudonym(value):
            return value
        digest = hmac.new(self._hash_key, f"{field}\x1f{normalized(field, value)}".encode("utf-8", "replace"),
                          hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest[:32]

    def split(self, payload: dict, brand_id: str, player_id: str, occurred_at: dt.datetime,
              forgotten: bool = False) -> tuple[dict, list[Identifier]]:
        """The payload with each identifier replaced by its pseudonym (nested objects too, e.g. a
        ``payload_received`` kept by landing), and the top-level identifiers to store here. For a
        ``forgotten`` player (:meth:`forgotten`) the identifiers are nulled, not pseudonymised: a
        pseudonym would link the new value to them again."""
        region = payload.get("country") if isinstance(payload.get("country"), str) else None
        found: list[Identifier] = []

        def walk(obj: object, top: bool) -> object:
            if isinstance(obj, dict):
                out = {}
                for k, v in obj.items():
                    if k in PII_FIELDS and isinstance(v, str | int | float) and not isinstance(v, bool):
                        text = str(v)
                        if forgotten:
                            out[k] = None
                            continue
                        if text.strip() and not is_pseudonym(text):
                            if top:
                                found.append(Identifier(brand_id, player_id, k, text.strip()[:MAX_VALUE_CHARS],
                                                        occurred_at, region))
                            out[k] = self.pseudonym(k, text)
                            continue
                    out[k] = walk(v, False) if isinstance(v, dict | list) else v
                return out
            if isinstance(obj, list):
                return [walk(v, False) if isinstance(v, dict | list) else v for v in obj]
            return obj

        out = walk(payload, True)
        if not forgotten:
            # derived keys (crm.contract.DERIVED_PII_FIELDS): from the clear values, as keyed hashes only;
            # one sent by the casino was pseudonymised like any identifier above and is replaced here
            for k, form in derived_forms(payload).items():
                out[k] = self.pseudonym(DERIVED_LABEL.get(k, k), form)
        return out, found

    # -- keys ----------------------------------------------------------------------------------
    @staticmethod
    def _aad(brand_id: str, player_id: str, field: str) -> bytes:
        return f"{brand_id}\x1f{player_id}\x1f{field}".encode()

    def _wrap(self, brand_id: str, player_id: str, key: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._master.encrypt(nonce, key, self._aad(brand_id, player_id, "\x00key"))

    def _unwrap(self, brand_id: str, player_id: str, wrapped: bytes) -> AESGCM:
        try:
            return AESGCM(self._master.decrypt(wrapped[:_NONCE], wrapped[_NONCE:],
                                               self._aad(brand_id, player_id, "\x00key")))
        except InvalidTag as e:
            raise VaultError(f"the data key of {brand_id}/{player_id} does not open with this master key "
                             "(CRM_VAULT_MASTER_KEY or vault/master.key changed?)") from e

    @staticmethod
    def _rows_of(conn: sa.Connection, table: sa.Table, columns: list, players: set[tuple[str, str]]):
        """The rows of ``table`` of these players: looked up by key in chunks, or for a batch of many
        (a first landing) read whole in one scan and filtered here, which is far cheaper."""
        c = table.c
        if len(players) > BULK_PLAYERS:
            return [r for r in conn.execute(sa.select(c.brand_id, c.player_id, *columns))
                    if (r.brand_id, r.player_id) in players]
        return [r for chunk in key_chunks(sorted(players)) for r in conn.execute(
            sa.select(c.brand_id, c.player_id, *columns).where(sa.tuple_(c.brand_id, c.player_id).in_(chunk)))]

    def _located(self, players: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, AESGCM]]:
        """(brand, player) -> (vault url, their data key) for those that have one."""
        out: dict[tuple[str, str], tuple[str, AESGCM]] = {}
        for url in self.urls():
            wanted = set(players) - set(out)
            if not wanted:
                break
            with self.engine(url).connect() as conn:
                for r in self._rows_of(conn, vault_keys, [vault_keys.c.wrapped_key], wanted):
                    out[(r.brand_id, r.player_id)] = (url, self._unwrap(r.brand_id, r.player_id, r.wrapped_key))
        return out

    def forgotten(self, players: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        players = set(players)
        out: set[tuple[str, str]] = set()
        for url in self.urls():
            with self.engine(url).connect() as conn:
                out |= {(r.brand_id, r.player_id) for r in self._rows_of(conn, vault_forgotten, [], players)}
        return out

    # -- values --------------------------------------------------------------------------------
    def put(self, identifiers: Iterable[Identifier]) -> dict[str, int]:
        """Store the newest value per (player, field); a player's first identifiers make their data
        key, in the vault of their region. Identifiers of a forgotten player are dropped.
        Returns counts: stored, older (a newer value is kept), forgotten (dropped).
        Two writers making the same new player's key at once (the API and a landing): the one that
        loses the race reads the winner's key and stores again."""
        identifiers = list(identifiers)
        try:
            return self._put(identifiers)
        except sa.exc.IntegrityError:
            return self._put(identifiers)

    def _put(self, identifiers: list[Identifier]) -> dict[str, int]:
        newest: dict[tuple[str, str, str], Identifier] = {}
        for i in identifiers:
            k = (i.brand_id, i.player_id, i.field)
            if k not in newest or i.occurred_at >= newest[k].occurred_at:
                newest[k] = i
        counts = {"stored": 0, "older": 0, "forgotten": 0}
        if not newest:
            return counts
        players = sorted({(b, p) for b, p, _ in newest})
        gone = self.forgotten(players)
        keys = self._located([p for p in players if p not in gone])
        region = {}
        for i in newest.values():
            if i.region and (i.brand_id, i.player_id) not in region:
                region[(i.brand_id, i.player_id)] = i.region.strip().upper()[:40]
        by_url: dict[str, list[tuple[Identifier, AESGCM]]] = {}
        fresh_keys: dict[str, list[dict]] = {}
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        for (b, p, _), i in sorted(newest.items()):
            if (b, p) in gone:
                counts["forgotten"] += 1
                continue
            if (b, p) not in keys:
                reg = region.get((b, p), "")
                url, raw = self.url_for(reg), AESGCM.generate_key(bit_length=256)
                keys[(b, p)] = (url, AESGCM(raw))
                fresh_keys.setdefault(url, []).append({"brand_id": b, "player_id": p, "region": reg or "*",
                                                       "wrapped_key": self._wrap(b, p, raw), "created_at": now})
            url, aead = keys[(b, p)]
            by_url.setdefault(url, []).append((i, aead))
        for url in set(by_url) | set(fresh_keys):
            with self.engine(url).begin() as conn:
                for chunk in range(0, len(fresh_keys.get(url, [])), 5000):
                    conn.execute(vault_keys.insert(), fresh_keys[url][chunk:chunk + 5000])
                stored, older = self._store_values(conn, by_url.get(url, []))
                counts["stored"] += stored
                counts["older"] += older
        return counts

    def _store_values(self, conn: sa.Connection, items: list[tuple[Identifier, AESGCM]]) -> tuple[int, int]:
        v = vault_values.c
        known = {(r.brand_id, r.player_id, r.field): r.occurred_at for r in self._rows_of(
            conn, vault_values, [v.field, v.occurred_at], {(i.brand_id, i.player_id) for i, _ in items})}
        inserts, stored, older = [], 0, 0
        for i, aead in items:
            k = (i.brand_id, i.player_id, i.field)
            nonce = secrets.token_bytes(_NONCE)
            sealed = nonce + aead.encrypt(nonce, i.value.encode("utf-8", "replace"), self._aad(*k))
            if k not in known:
                inserts.append({"brand_id": i.brand_id, "player_id": i.player_id, "field": i.field,
                                "sealed": sealed, "occurred_at": i.occurred_at})
            elif i.occurred_at >= known[k]:
                conn.execute(vault_values.update().where(v.brand_id == k[0], v.player_id == k[1], v.field == k[2])
                             .values(sealed=sealed, occurred_at=i.occurred_at))
            else:
                older += 1
                continue
            stored += 1
        for chunk in range(0, len(inserts), 5000):
            conn.execute(vault_values.insert(), inserts[chunk:chunk + 5000])
        return stored, older

    def values(self, brand_id: str, player_id: str) -> dict[str, str]:
        """Every identifier held for the player, in clear (the channel edge and a forget only)."""
        located = self._located([(brand_id, player_id)])
        if (brand_id, player_id) not in located:
            return {}
        url, aead = located[(brand_id, player_id)]
        v = vault_values.c
        with self.engine(url).connect() as conn:
            rows = conn.execute(sa.select(v.field, v.sealed).where(v.brand_id == brand_id,
                                                                   v.player_id == player_id)).all()
        out = {}
        for field, sealed in rows:
            try:
                out[field] = aead.decrypt(sealed[:_NONCE], sealed[_NONCE:],
                                          self._aad(brand_id, player_id, field)).decode("utf-8")
            except InvalidTag as e:
                raise VaultError(f"the {field} of {brand_id}/{player_id} does not open: tampered with?") from e
        return out

    def contact(self, brand_id: str, player_id: str, channel: str) -> str | None:
        """The player's address on ``channel`` (email, sms), read at send time; None if none is held."""
        field = CHANNEL_FIELDS.get(channel)
        return self.values(brand_id, player_id).get(field) if field else None

    def forget(self, brand_id: str, player_id: str) -> dict[str, str]:
        """Crypto-shred the player: their data key and values deleted in every vault, a tombstone
        kept (later identifiers are dropped). Returns what was held, in clear, so the caller can
        remove the same values from raw files; the caller must not keep it."""
        held = self.values(brand_id, player_id)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        for url in self.urls():
            eng = self.engine(url)
            with eng.begin() as conn:
                for t in (vault_values, vault_keys):
                    conn.execute(t.delete().where(t.c.brand_id == brand_id, t.c.player_id == player_id))
                f = vault_forgotten.c
                if url == self.default_url and conn.execute(sa.select(f.player_id).where(
                        f.brand_id == brand_id, f.player_id == player_id)).first() is None:
                    conn.execute(vault_forgotten.insert().values(brand_id=brand_id, player_id=player_id,
                                                                 forgotten_at=now))
            compact(eng)
        return held


def compact(engine: sa.Engine) -> None:
    """Leave no freed page with old bytes: SQLite is vacuumed and its write-ahead log truncated;
    PostgreSQL is vacuumed (dead rows' space reused; WAL segments recycle on their own)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("VACUUM")
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        elif engine.dialect.name == "postgresql":
            conn.exec_driver_sql("VACUUM")
