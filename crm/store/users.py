"""People who sign in (the web page, and the CLI's commands that act for a person): a role, the
brands and regions they may see (:mod:`crm.access` decides what each role may do), a password
hash, failed sign-ins and a lockout.

Passwords are hashed with scrypt from the standard library (``hashlib.scrypt``, OpenSSL's): a
memory-hard function the OWASP password storage cheat sheet lists, at its recommended minimum
cost (N = 2^17, r = 8, p = 1: 128 MiB and about a third of a second per hash here). The stored
string carries its parameters (``scrypt$17$8$1$<salt>$<hash>``, base64), so raising them later
re-hashes each password at its owner's next sign-in. Why not argon2id: it needs a compiled
dependency (argon2-cffi) that this platform does not otherwise need, and scrypt gives the same
protection against GPU guessing at this cost.

Second factor: the roles of :data:`SECOND_FACTOR_ROLES` (admin, compliance) sign in with a TOTP
code too (RFC 6238, 30-second steps, one step of clock drift either way, ``pyotp``); the secret is
made by :func:`enroll_totp` (``crm users totp NAME``) and shown once as an ``otpauth://`` URI for an
authenticator app; a code is accepted once (its time step is kept), and a missing or wrong code
counts as a failed sign-in.

Sign-in (:func:`authenticate`): :data:`MAX_FAILURES` wrong passwords in a row lock the account for
:data:`LOCKOUT`; a locked, disabled or unknown account is refused with the same work done (a hash
is computed either way), so the time taken does not tell whether a name exists.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

import sqlalchemy as sa

from crm.contract import JURISDICTIONS
from crm.store.schema import ID_CHARS, NAME_CHARS, users

ROLES = ("marketing", "compliance", "analytics", "support", "admin")
SECOND_FACTOR_ROLES = frozenset({"admin", "compliance"})
TOTP_ISSUER = "casino-crm"
ALL = "*"  # every brand, or every region
SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P = 17, 8, 1
SCRYPT_MAXMEM = 256 * 1024 * 1024
MIN_PASSWORD_CHARS, MAX_PASSWORD_CHARS = 12, 1024
MAX_FAILURES = 5
LOCKOUT = dt.timedelta(minutes=15)
MAX_BRANDS = 50
_NAME = re.compile(rf"[a-z][a-z0-9_.@-]{{1,{NAME_CHARS - 1}}}")
_BRAND = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.:-]{{0,{ID_CHARS - 1}}}")


class UserError(ValueError):
    """A user cannot be created or changed as asked (the message says which field and why)."""


class SignInRefused(PermissionError):
    """A sign-in is refused: wrong name or password (never which), locked, or disabled."""


@dataclass(frozen=True)
class User:
    id: int
    name: str
    person: str  # the person's name, as approvals and the audit log record it
    role: str
    brands: tuple[str, ...]  # ("*",): every brand
    regions: tuple[str, ...]  # jurisdictions; ("*",): every region
    created_at: dt.datetime
    disabled_at: dt.datetime | None
    locked_until: dt.datetime | None
    failed_logins: int
    password_changed_at: dt.datetime
    has_totp: bool = False

    def to_dict(self) -> dict:
        def iso(t: dt.datetime | None) -> str | None:
            return None if t is None else t.isoformat() + "Z"

        return {"id": self.id, "name": self.name, "person": self.person, "role": self.role, "brands": list(self.brands),
                "regions": list(self.regions), "created_at": iso(self.created_at),
                "disabled_at": iso(self.disabled_at), "locked_until": iso(self.locked_until),
                "failed_logins": self.failed_logins, "password_changed_at": iso(self.password_changed_at),
                "second_factor": self.has_totp}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=1 << log2_n, r=r, p=p, maxmem=SCRYPT_MAXMEM,
                          dklen=32)


def check_password(password: object) -> str:
    """``password`` if it may be set; else :class:`UserError` saying why (length, only spaces, NUL)."""
    if not isinstance(password, str):
        raise UserError("the password must be text")
    if len(password) < MIN_PASSWORD_CHARS or len(password) > MAX_PASSWORD_CHARS:
        raise UserError(f"the password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters long "
                        f"(got {len(password)})")
    if not password.strip():
        raise UserError("the password cannot be only spaces")
    if "\x00" in password:
        raise UserError("the password cannot hold a NUL character")
    return password


def hash_password(password: str) -> str:
    """``scrypt$<log2 N>$<r>$<p>$<salt>$<hash>`` with a new random 16-byte salt."""
    salt = os.urandom(16)
    digest = _scrypt(password, salt, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_LOG2_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` hashes to ``stored`` (constant-time compare; a malformed or too costly
    stored hash never matches)."""
    try:
        kind, log2_n, r, p, salt, digest = stored.split("$")
        log2_n_i, r_i, p_i = int(log2_n), int(r), int(p)
        if kind != "scrypt" or not (10 <= log2_n_i <= 20 and 1 <= r_i <= 32 and 1 <= p_i <= 4):
            return False
        want = base64.b64decode(digest, validate=True)
        got = _scrypt(password, base64.b64decode(salt, validate=True), log2_n_i, r_i, p_i)
    except (ValueError, TypeError, MemoryError):
        return False
    return hmac.compare_digest(got, want)


def needs_rehash(stored: str) -> bool:
    return not stored.startswith(f"scrypt${SCRYPT_LOG2_N}${SCRYPT_R}${SCRYPT_P}$")


_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    """A hash to verify against when there is no account (the same work as a real sign-in)."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(os.urandom(16).hex())
    return _DUMMY_HASH


def _scope(values: list[str] | tuple[str, ...], what: str, pattern: re.Pattern | None,
           known: tuple[str, ...] | None) -> str:
    given = [v for v in values]
    if not given:
        raise UserError(f"at least one {what} (or {ALL} for all)")
    if len(given) > MAX_BRANDS:
        raise UserError(f"at most {MAX_BRANDS} {what}s (or {ALL} for all)")
    if ALL in given:
        if len(given) > 1:
            raise UserError(f"{ALL} means every {what}: give it alone")
        return ALL
    for v in given:
        if not isinstance(v, str) or (pattern is not None and not pattern.fullmatch(v)) or (
                known is not None and v not in known):
            expected = f"one of {', '.join(known)}" if known else "1-128 letters, digits or _.:-"
            raise UserError(f"{what} {str(v)[:60]!r}: expected {expected}")
    return " ".join(sorted(set(given)))


def _row(r) -> User:
    return User(r.id, r.name, r.person, r.role, tuple(r.brands.split()), tuple(r.regions.split()), r.created_at,
                r.disabled_at, r.locked_until, int(r.failed_logins or 0), r.password_changed_at,
                r.totp_secret is not None)


def add_user(engine: sa.Engine, name: str, role: str, brands: list[str] | tuple[str, ...],
             regions: list[str] | tuple[str, ...], password: str, person: str | None = None) -> User:
    """A new user. ``name``: lower case, 2-100 of a-z 0-9 _ . @ - (a sign-in name, e.g. ``ana.lopez``);
    ``brands``: brand ids or ``["*"]``; ``regions``: jurisdictions (:data:`crm.contract.JURISDICTIONS`) or
    ``["*"]``; ``person``: their name as approvals record it (default ``name``; the caller checks it
    is a person's name, :func:`crm.campaigns.approvals.name_problem`). Bad input is a
    :class:`UserError` naming the field; nothing is written then."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(f"name {str(name)[:60]!r}: 2-{NAME_CHARS} characters, lower-case letters first, then "
                        "a-z 0-9 _ . @ -")
    if role not in ROLES:
        raise UserError(f"role {str(role)[:40]!r}: expected one of {', '.join(ROLES)}")
    brand_text = _scope(brands, "brand", _BRAND, None)
    region_text = _scope([str(r).upper() if isinstance(r, str) and r != ALL else r for r in regions], "region",
                         None, JURISDICTIONS)
    person = name if person is None else person
    if not isinstance(person, str) or not person.strip() or len(person) > 200:
        raise UserError("person: the person's name, 1-200 characters")
    stored = hash_password(check_password(password))
    now = _now()
    with engine.begin() as conn:
        if conn.execute(sa.select(users.c.id).where(users.c.name == name)).first():
            raise UserError(f"a user named {name!r} exists already")
        uid = conn.execute(users.insert().values(
            name=name, person=person, role=role, brands=brand_text, regions=region_text, password_hash=stored,
            failed_logins=0, created_at=now, password_changed_at=now)).inserted_primary_key[0]
        return _row(conn.execute(sa.select(users).where(users.c.id == uid)).one())


def get_user(engine: sa.Engine, name: str) -> User:
    with engine.connect() as conn:
        r = conn.execute(sa.select(users).where(users.c.name == name)).first()
    if r is None:
        raise UserError(f"no user named {str(name)[:60]!r}")
    return _row(r)


def list_users(engine: sa.Engine) -> list[User]:
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(sa.select(users).order_by(users.c.name))]


def set_password(engine: sa.Engine, name: str, password: str) -> User:
    """A new password (and the lockout lifted: the owner proved who they are another way)."""
    stored = hash_password(check_password(password))
    get_user(engine, name)
    with engine.begin() as conn:
        conn.execute(users.update().where(users.c.name == name).values(
            password_hash=stored, password_changed_at=_now(), failed_logins=0, locked_until=None))
    return get_user(engine, name)


def set_disabled(engine: sa.Engine, name: str, disabled: bool) -> User:
    get_user(engine, name)
    with engine.begin() as conn:
        conn.execute(users.update().where(users.c.name == name).values(
            disabled_at=_now() if disabled else None))
    return get_user(engine, name)


def unlock(engine: sa.Engine, name: str) -> User:
    get_user(engine, name)
    with engine.begin() as conn:
        conn.execute(users.update().where(users.c.name == name).values(failed_logins=0, locked_until=None))
    return get_user(engine, name)


def enroll_totp(engine: sa.Engine, name: str) -> tuple[User, str]:
    """A new TOTP secret for ``name`` (replacing any): returns the user and the ``otpauth://`` URI to
    show once (an authenticator app reads it, e.g. as a QR code)."""
    import pyotp

    get_user(engine, name)
    secret = pyotp.random_base32()
    with engine.begin() as conn:
        conn.execute(users.update().where(users.c.name == name).values(totp_secret=secret, totp_last_step=None))
    return get_user(engine, name), pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=TOTP_ISSUER)


def _totp_step(secret: str | None, code: object, now: dt.datetime, last: int | None) -> int | None:
    """The time step ``code`` is valid for (now, or one step either side), later than ``last``; None:
    no secret, not a 6-digit code, wrong, or used already."""
    import pyotp

    if not secret or not isinstance(code, str) or not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    t = now.replace(tzinfo=dt.UTC)
    for drift in (0, -1, 1):
        at = t + dt.timedelta(seconds=30 * drift)
        if hmac.compare_digest(totp.at(at), code):
            step = int(at.timestamp()) // 30
            return step if last is None or step > last else None
    return None


def authenticate(engine: sa.Engine, name: str, password: str, now: dt.datetime | None = None,
                 code: str | None = None) -> User:
    """The user ``name`` if ``password`` is theirs and the account is usable; else
    :class:`SignInRefused`. Each wrong password counts; the :data:`MAX_FAILURES`-th in a row locks
    the account for :data:`LOCKOUT` (a right password while locked is refused too and does not
    unlock it). A right one resets the count, and re-hashes a password stored with older costs. A
    role of :data:`SECOND_FACTOR_ROLES` needs an enrolled TOTP and its current ``code`` as well (a
    wrong or missing code counts like a wrong password)."""
    now = now or _now()
    if not isinstance(name, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS \
            or len(name) > NAME_CHARS:
        verify_password("x", _dummy_hash())
        raise SignInRefused("wrong name or password")
    refused = None  # raised after the transaction commits (a failure must be counted)
    with engine.begin() as conn:
        q = sa.select(users).where(users.c.name == name)
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()  # two sign-ins at once count both failures
        r = conn.execute(q).first()
        ok = verify_password(password, r.password_hash if r is not None else _dummy_hash())
        if r is None:
            refused = "wrong name or password"
        elif r.disabled_at is not None:
            refused = "this account is disabled"
        elif r.locked_until is not None and r.locked_until > now:
            refused = f"too many wrong passwords: locked until {r.locked_until:%Y-%m-%d %H:%M} UTC"
        elif ok and r.role in SECOND_FACTOR_ROLES and r.totp_secret is None:
            refused = f"the {r.role} role signs in with a second factor: enroll one first (crm users totp {r.name})"
        elif not ok or (r.role in SECOND_FACTOR_ROLES and _totp_step(r.totp_secret, code, now,
                                                                     r.totp_last_step) is None):
            failures = int(r.failed_logins or 0) + 1
            locked = now + LOCKOUT if failures >= MAX_FAILURES else None
            conn.execute(users.update().where(users.c.id == r.id).values(
                failed_logins=0 if locked else failures, locked_until=locked))
            refused = ("wrong name or password" if not ok or r.role not in SECOND_FACTOR_ROLES
                       else "wrong or used second-factor code") + (
                f"; too many in a row: locked until {locked:%Y-%m-%d %H:%M} UTC" if locked else "")
        else:
            values: dict = {"failed_logins": 0, "locked_until": None}
            if r.role in SECOND_FACTOR_ROLES:
                values["totp_last_step"] = _totp_step(r.totp_secret, code, now, r.totp_last_step)
            if needs_rehash(r.password_hash):
                values["password_hash"] = hash_password(password)
            conn.execute(users.update().where(users.c.id == r.id).values(**values))
            user = _row(conn.execute(sa.select(users).where(users.c.id == r.id)).one())
    if refused is not None:
        raise SignInRefused(refused)
    return user
