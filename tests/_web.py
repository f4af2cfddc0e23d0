"""A cookie-keeping HTTP client for the web page's tests (tests/test_web*.py) and signing in with it."""

from __future__ import annotations

import http.client
import re
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

import pyotp

from crm.store.schema import users as users_table

PW = "correct horse battery"


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
