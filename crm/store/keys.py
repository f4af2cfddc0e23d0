"""API keys: one brand and a set of scopes each; only a hash of the key is stored."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import asdict, dataclass

import sqlalchemy as sa

from crm.store.schema import ID_CHARS, NAME_CHARS, api_keys

SCOPES = ("events:write", "feedback:write", "messaging:send", "offers:generate")
KEY_PREFIX = "crm_"
MAX_KEY_CHARS = 200  # a presented key longer than this is not one of ours (never hashed)
_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.:@-]{{0,{NAME_CHARS - 1}}}")
_BRAND = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.:-]{{0,{ID_CHARS - 1}}}")


class ApiKeyError(ValueError):
    """A key cannot be created or found as asked (bad name, brand or scope; unknown key)."""


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    brand_id: str
    scopes: tuple[str, ...]
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scopes"] = list(self.scopes)
        d["created_at"] = self.created_at.isoformat() + "Z"
        d["revoked_at"] = self.revoked_at.isoformat() + "Z" if self.revoked_at else None
        return d


def hash_key(key: str) -> str:
    """sha256 of the key, hex. A key is 32 random bytes (256 bits) from ``secrets``: no dictionary
    or brute-force search can find it from its hash, so a slow password hash (bcrypt, argon2) adds
    nothing but latency on every request; a fast hash also lets the store find the key by an index."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def _row(r) -> ApiKey:
    return ApiKey(r.id, r.name, r.brand_id, tuple(r.scopes.split()), r.created_at, r.revoked_at)


def create_key(engine: sa.Engine, name: str, brand_id: str, scopes: list[str] | tuple[str, ...]) -> tuple[ApiKey, str]:
    """A new key: returns its record and the key itself (shown once, never stored)."""
    if not _NAME.fullmatch(name or "") or name.isdigit():
        raise ApiKeyError(f"name {name!r}: 1-{NAME_CHARS} letters, digits or _.:@- (not only digits: "
                        "`revoke` takes a name or an id)")
    if not _BRAND.fullmatch(brand_id or ""):
        raise ApiKeyError(f"brand {brand_id!r}: 1-{ID_CHARS} letters, digits or _.:-")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ApiKeyError(f"scopes {sorted(set(scopes))}: at least one of {', '.join(SCOPES)}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        if conn.execute(sa.select(api_keys.c.id).where(api_keys.c.name == name)).first():
            raise ApiKeyError(f"a key named {name!r} exists already")
        kid = conn.execute(api_keys.insert().values(
            name=name, brand_id=brand_id, scopes=" ".join(sorted(set(scopes))), key_hash=hash_key(key),
            created_at=_now())).inserted_primary_key[0]
        row = conn.execute(sa.select(api_keys).where(api_keys.c.id == kid)).one()
    return _row(row), key


def list_keys(engine: sa.Engine) -> list[ApiKey]:
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(sa.select(api_keys).order_by(api_keys.c.id))]


def revoke_key(engine: sa.Engine, name_or_id: str) -> ApiKey:
    """Revoke a key by name or id (revoking a revoked key keeps its first revocation time)."""
    where = api_keys.c.id == int(name_or_id) if name_or_id.isdigit() else api_keys.c.name == name_or_id
    with engine.begin() as conn:
        row = conn.execute(sa.select(api_keys).where(where)).first()
        if row is None:
            raise ApiKeyError(f"no key named or numbered {name_or_id!r}")
        if row.revoked_at is None:
            conn.execute(api_keys.update().where(api_keys.c.id == row.id).values(revoked_at=_now()))
        row = conn.execute(sa.select(api_keys).where(api_keys.c.id == row.id)).one()
    return _row(row)


def authenticate(engine: sa.Engine, key: str) -> ApiKey | None:
    """The live key ``key`` is, or None (unknown or revoked). Found by its hash (an index: the
    lookup reveals nothing about a key nobody can invert the hash of); the hashes are then
    compared in constant time all the same."""
    if not key or len(key) > MAX_KEY_CHARS:
        return None
    h = hash_key(key)
    with engine.connect() as conn:
        row = conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == h)).first()
    if row is None or not hmac.compare_digest(row.key_hash, h) or row.revoked_at is not None:
        return None
    return _row(row)
