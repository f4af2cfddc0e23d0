"""A cookie-keeping HTTP client for the web page's tests (tests/test_web*.py) and signing in with it."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

import pyotp

from crm.store.schema import profiles
from crm.store.schema import users as users_table

PW = "correct horse battery"
AS_OF = dt.date(2025, 10, 1)  # the as-of date of the profile copy the tests write


class Response:
    def __init__(self, status: int, headers, text: str, set_cookies: list[str], body: bytes = b""):
        self.status_code, self.headers, self.text = status, headers, text
        self.set_cookies, self.body = set_cookies, body


class Browser:
    """Requests without following redirects, keeping the cookies the server sets."""

    def __init__(self, url: str):
        self.host = urlsplit(url).netloc
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> Response:
        conn = http.client.HTTPConnection(self.host, timeout=60)
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        raw = r.read()
        text = raw.decode("utf-8", "replace")
        for cookie in r.headers.get_all("set-cookie") or []:
            for name, morsel in SimpleCookie(cookie).items():
                if morsel["max-age"] == "0" or morsel.value in ("", '""'):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        conn.close()
        return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, text,
                        r.headers.get_all("set-cookie") or [], raw)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, data: dict | list | None = None, content: bytes | None = None,
             headers: dict | None = None) -> Response:
        if data is not None:  # a dict, or (name, value) pairs for a field given several times
            return self.request("POST", path, urlencode(data, doseq=isinstance(data, dict)).encode(),
                                {"Content-Type": "application/x-www-form-urlencoded"})
        return self.request("POST", path, content, headers)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]{64})"', html).group(1)


def sign_in(app, name: str, secrets: dict[str, str], password: str = PW, code: str | None = None
            ) -> tuple[Browser, Response]:
    """A new client signed in as ``name`` (a user of ``secrets`` with a fresh TOTP code)."""
    c = Browser(app.state.url)
    form = c.get("/ui/login")
    if code is None and name in secrets:  # a fresh code each time: one is accepted once
        with app.state.engine.begin() as conn:  # forget the last step so the current code works again
            conn.execute(users_table.update().where(users_table.c.name == name).values(totp_last_step=None))
        code = pyotp.TOTP(secrets[name]).now()
    r = c.post("/ui/login", data={"csrf": csrf_of(form.text), "name": name, "password": password,
                                  **({"code": code} if code else {})})
    return c, r


def profile(pid: str, brand: str = "A", **over) -> dict:
    """A dim_player row (with the sync's extra columns) of a player every rule lets through."""
    p = {"player_id": pid, "brand_id": brand, "country": "MT", "locale": "en", "timezone": "Europe/Malta",
         "age_years": 30, "age_verified": True, "self_excluded_now": False, "ever_self_excluded": False,
         "returned_after_exclusion": False, "cooling_off_now": False, "harm_risk_flag": False,
         "consent_profiling": True, "bonuses_received": 0, "as_of_date": AS_OF.isoformat(), "tenure_days": 200,
         "last_active_at": "2025-09-28T20:00:00", "net_loss_eur_7d": 3000, "churn_score": 0.4}
    for ch in ("email", "sms", "push", "in_app"):
        p |= {f"consent_{ch}": True, f"consent_{ch}_version": 1, f"consent_{ch}_source": "signup",
              f"consent_{ch}_changed_at": "2025-01-01T00:00:00", f"consent_{ch}_products": "casino,sports",
              f"consent_{ch}_products_withdrawn": None}
    return p | over


def players() -> list[dict]:
    """Brand A: 30 clean (4 of them newcomers), 6 without email consent, 4 self-excluded, 5 lapsed (active 40
    days ago), 3 in the UK; brand B: 10 clean (ids b_*)."""
    rows = [profile(f"a_{i:03d}", **({"tenure_days": 12} if i < 4 else {})) for i in range(30)]  # 4 newcomers
    rows += [profile(f"a_nomail_{i}", consent_email=False) for i in range(6)]
    rows += [profile(f"a_excl_{i}", self_excluded_now=True, ever_self_excluded=True) for i in range(4)]
    rows += [profile(f"a_lapsed_{i}", last_active_at="2025-08-22T10:00:00") for i in range(5)]
    rows += [profile(f"a_uk_{i}", country="UK", timezone="Europe/London") for i in range(3)]
    rows += [profile(f"b_{i:03d}", brand="B") for i in range(10)]
    return rows


def put_players(engine, rows: list[dict]) -> None:
    """The store's profile copy, written as :func:`crm.store.profile.sync_profiles` writes it."""
    at = dt.datetime.combine(AS_OF, dt.time(6))
    with engine.begin() as conn:
        conn.execute(profiles.insert(), [{"brand_id": p["brand_id"], "player_id": p["player_id"],
                                          "profile": json.dumps(p), "as_of_date": AS_OF, "synced_at": at}
                                         for p in rows])
