"""The web page's first step (issue 18): sign-in with CSRF and lockout, signed sessions that end
when the account changes, and campaigns scoped by brand and region (another brand's campaign by
URL: the same 404 as none), over the real app served by uvicorn, the real store and campaign files the test writes. The
client keeps cookies itself (they are Secure: a browser sends them over HTTPS only; the TLS step
of the issue comes later)."""

from __future__ import annotations

import http.client
import re
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import pytest
from _service import running_server
from _web import PW, Browser, Response, csrf_of
from _web import sign_in as _sign_in
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.config import Paths
from crm.service import create_app
from crm.store import users as u

CAMPAIGNS = {
    "a_only": "brands: [A]\n",
    "b_only": "brands: [B]\n",
    "every_brand": "",
    "a_in_uk": "brands: [A]\njurisdictions: [UK]\n",
    "a_script": "brands: [A]\n",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    home = tmp_path_factory.mktemp("web")
    folder = home / "campaigns"
    folder.mkdir()
    for cid, extra in CAMPAIGNS.items():
        name = "<script>alert(1)</script>" if cid == "a_script" else cid.replace("_", " ")
        (folder / f"{cid}.yaml").write_text(f"id: {cid}\nname: '{name}'\nowner: Ana Lopez\nchannel: email\n{extra}")
    mp = pytest.MonkeyPatch()
    mp.setenv("CRM_CAMPAIGNS_DIR", str(folder))
    app = create_app(Paths(home))
    engine = app.state.engine
    u.add_user(engine, "ana.a", "marketing", ["A"], ["*"], PW)
    u.add_user(engine, "uma.a", "marketing", ["A"], ["UK"], PW)
    u.add_user(engine, "bo.b", "marketing", ["B"], ["*"], PW)
    u.add_user(engine, "cleo.all", "compliance", ["*"], ["*"], PW)
    u.add_user(engine, "lock.me", "analytics", ["A"], ["*"], PW)
    u.add_user(engine, "ana.author", "compliance", ["*"], ["*"], PW, person="Ana Lopez")  # the campaigns' owner
    u.add_user(engine, "cai.a", "compliance", ["A"], ["*"], PW, person="Cai Ng")
    for name in ("cleo.all", "ana.author", "cai.a"):
        SECRETS[name] = parse_qs(urlsplit(u.enroll_totp(engine, name)[1]).query)["secret"][0]
    _publish_a_list(home, folder / "a_only.yaml")
    with running_server(Paths(home), app=app) as url:
        app.state.url = url
        yield app, home
    mp.undo()
    engine.dispose()


def _publish_a_list(home, spec_file) -> None:
    """A published list of ``a_only`` for 2025-10-01: three clean players of brand A."""
    import datetime as dt

    import pandas as pd

    from crm.campaigns.lists import build_list, publish
    from crm.campaigns.spec import load_campaign

    aud = pd.DataFrame([{"player_id": f"p_{i}", "brand_id": "A", "country": "MT", "locale": "en", "timezone":
                         "Europe/Malta", "age_years": 40, "age_verified": True, "self_excluded_now": False,
                         "ever_self_excluded": False, "returned_after_exclusion": False, "cooling_off_now": False,
                         "harm_risk_flag": False, "consent_email": True, "consent_profiling": True} for i in range(3)])
    publish(build_list(load_campaign(spec_file), aud, dt.date(2025, 10, 1)), Paths(home))


def _client(app) -> Browser:
    return Browser(app.state.url)


_csrf = csrf_of
SECRETS: dict[str, str] = {}  # the second factor of the compliance users (enrolled in the fixture)


def sign_in(app, name: str, password: str = PW, code: str | None = None) -> tuple[Browser, Response]:
    return _sign_in(app, name, SECRETS, password, code)


def _ids(html: str) -> set[str]:
    return set(re.findall(r'href="/ui/campaigns/([a-z_]+)"', html)) - {"new"}  # the form's link


def test_signed_out_is_sent_to_sign_in_and_a_form_without_its_token_is_refused(site):
    app, _ = site
    c = _client(app)
    assert c.get("/ui/campaigns").headers["location"] == "/ui/login"
    assert c.get("/ui/campaigns/a_only").headers["location"] == "/ui/login"
    assert c.post("/ui/login", data={"name": "ana.a", "password": PW}).status_code == 403
    c.get("/ui/login")
    assert c.post("/ui/login", data={"csrf": "0" * 64, "name": "ana.a", "password": PW}).status_code == 403
    _, wrong = sign_in(app, "ana.a", "not the password")
    assert wrong.status_code == 401 and "wrong name or password" in wrong.text
    _, unknown = sign_in(app, "nobody.here")
    assert unknown.status_code == 401 and "wrong name or password" in unknown.text


def test_each_user_sees_only_campaigns_of_their_brands_and_regions(site):
    app, _ = site
    c, r = sign_in(app, "ana.a")
    assert r.status_code == 303 and r.headers["location"] == "/ui/campaigns"
    (cookie,) = [x for x in r.set_cookies if x.startswith("crm_session=")]
    assert "HttpOnly" in cookie and "Secure" in cookie and "samesite=strict" in cookie.lower()
    page = c.get("/ui/campaigns")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    # brand A, every region: not B's, not the all-brands one
    assert _ids(page.text) == {"a_only", "a_script", "a_in_uk"}
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text
    detail = c.get("/ui/campaigns/a_only")
    assert detail.status_code == 200 and "id: a_only" in detail.text
    for other in ("b_only", "every_brand", "no_such_campaign", "..%2F..%2Fetc%2Fpasswd"):
        assert c.get(f"/ui/campaigns/{other}").status_code == 404, other
    # brand A in the UK only: a campaign for every jurisdiction reaches players they may not see
    uma = sign_in(app, "uma.a")[0]
    assert _ids(uma.get("/ui/campaigns").text) == {"a_in_uk"} and uma.get("/ui/campaigns/a_only").status_code == 404
    assert _ids(sign_in(app, "bo.b")[0].get("/ui/campaigns").text) == {"b_only"}
    assert _ids(sign_in(app, "cleo.all")[0].get("/ui/campaigns").text) == set(CAMPAIGNS)
    assert "Approve this version" not in detail.text  # a marketer approves nothing


def test_a_session_ends_on_sign_out_tampering_disabling_or_a_new_password(site):
    app, _ = site
    c, _ = sign_in(app, "bo.b")
    page = c.get("/ui/campaigns")
    assert page.status_code == 200
    assert c.post("/ui/logout", data={"csrf": "f" * 64}).status_code == 403  # not this page's form
    out = c.post("/ui/logout", data={"csrf": _csrf(page.text)})
    assert out.status_code == 303 and c.get("/ui/campaigns").status_code == 303
    c, r = sign_in(app, "bo.b")
    token = c.cookies["crm_session"]
    forged = _client(app)
    forged.cookies["crm_session"] = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert forged.get("/ui/campaigns").status_code == 303
    u.set_disabled(app.state.engine, "bo.b", True)
    assert c.get("/ui/campaigns").status_code == 303
    u.set_disabled(app.state.engine, "bo.b", False)
    c, _ = sign_in(app, "bo.b")
    assert c.get("/ui/campaigns").status_code == 200
    u.set_password(app.state.engine, "bo.b", PW + "!")
    assert c.get("/ui/campaigns").status_code == 303
    u.set_password(app.state.engine, "bo.b", PW)


def test_the_lockout_holds_on_the_page(site):
    app, _ = site
    for _ in range(u.MAX_FAILURES):
        _, r = sign_in(app, "lock.me", "wrong wrong wrong")
        assert r.status_code == 401
    _, r = sign_in(app, "lock.me")
    assert r.status_code == 401 and "locked until" in r.text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(body=st.one_of(st.binary(max_size=6000), st.text(max_size=300).map(str.encode)),
       content_type=st.sampled_from(["application/x-www-form-urlencoded", "multipart/form-data", "text/plain", ""]))
def test_no_form_body_makes_a_server_error(site, body, content_type):
    app, _ = site
    c = _client(app)
    c.get("/ui/login")
    for path in ("/ui/login", "/ui/logout"):
        r = c.post(path, content=body, headers={"content-type": content_type})
        assert r.status_code < 500, (path, r.status_code)


def test_a_token_with_any_character_is_refused_not_a_server_error(site):
    """``hmac.compare_digest`` raises on non-ASCII text: every form's token is compared as bytes."""
    app, _ = site
    c, _ = sign_in(app, "ana.a")
    for path in ("/ui/logout", "/ui/campaigns/new", "/ui/campaigns/a_only/approve"):
        assert c.post(path, data={"csrf": "é" * 64, "reason": "x", "action": "submit"}).status_code == 403, path
    fresh = _client(app)
    fresh.get("/ui/login")
    assert fresh.post("/ui/login", data={"csrf": "🎰", "name": "ana.a", "password": PW}).status_code == 403


def test_approval_on_the_page_is_four_eyes_scoped_and_audited(site):
    from crm.campaigns.audit import read_entries

    app, home = site
    author, _ = sign_in(app, "ana.author")
    page = author.get("/ui/campaigns/a_only")
    assert "Approve this version" in page.text
    refused = author.post("/ui/campaigns/a_only/approve", data={"csrf": _csrf(page.text), "reason": "looks fine"})
    assert refused.status_code == 409 and "author" in refused.text
    # a marketer of brand A: the role does not allow it; a brand-A compliance officer: not for every brand
    marketer, _ = sign_in(app, "ana.a")
    token = _csrf(marketer.get("/ui/campaigns").text)
    assert marketer.post("/ui/campaigns/a_only/approve", data={"csrf": token, "reason": "x"}).status_code == 403
    cai, _ = sign_in(app, "cai.a")
    assert cai.post("/ui/campaigns/every_brand/approve",
                    data={"csrf": _csrf(cai.get("/ui/campaigns").text), "reason": "x"}).status_code == 404
    cleo, _ = sign_in(app, "cleo.all")
    token = _csrf(cleo.get("/ui/campaigns").text)
    assert cleo.post("/ui/campaigns/a_only/approve", data={"csrf": "0" * 64, "reason": "ok"}).status_code == 403
    assert cleo.post("/ui/campaigns/a_only/approve", data={"csrf": token, "reason": "  "}).status_code == 422
    ok = cai.post("/ui/campaigns/a_only/approve", data={"csrf": _csrf(cai.get("/ui/campaigns").text),
                                                        "reason": "budget  signed off"})
    assert ok.status_code == 303
    assert "approved" in cai.get("/ui/campaigns").text
    no = cleo.post("/ui/campaigns/b_only/reject", data={"csrf": token, "reason": "wrong audience"})
    assert no.status_code == 303
    entries = [(e["kind"], e["campaign_id"], e["by"], e["reason"]) for e in read_entries(Paths(home))
               if e["kind"] in ("approved", "rejected")]
    assert entries == [("approved", "a_only", "Cai Ng", "budget signed off"),
                       ("rejected", "b_only", "cleo.all", "wrong audience")]


def test_list_downloads_are_scoped_and_audited(site):
    from crm.campaigns.audit import read_entries

    app, home = site
    ana, _ = sign_in(app, "ana.a")
    page = ana.get("/ui/campaigns/a_only")
    assert "2025-10-01" in page.text and 'lists/2025-10-01/list.xlsx' in page.text
    xlsx = ana.get("/ui/campaigns/a_only/lists/2025-10-01/list.xlsx")
    folder = Paths(home).lists / "a_only" / "2025-10-01"
    assert xlsx.status_code == 200 and xlsx.headers["content-disposition"].startswith("attachment")
    csv = ana.get("/ui/campaigns/a_only/lists/2025-10-01/list_with_holdout.csv")
    assert csv.status_code == 200 and csv.text == (folder / "list_with_holdout.csv").read_text()
    for path in ("/ui/campaigns/a_only/lists/2025-10-01/manifest.json",     # not a download
                 "/ui/campaigns/a_only/lists/2025-10-02/list.xlsx",         # no list that day
                 "/ui/campaigns/a_only/lists/..%2F..%2F..%2Fservice/session.key",
                 "/ui/campaigns/a_only/lists/2025-13-01/list.xlsx",
                 "/ui/campaigns/b_only/lists/2025-10-01/list.xlsx"):      # another brand's
        assert ana.get(path).status_code == 404, path
    assert sign_in(app, "bo.b")[0].get("/ui/campaigns/a_only/lists/2025-10-01/list.xlsx").status_code == 404
    support_user = "sam.support"
    u.add_user(app.state.engine, support_user, "support", ["A"], ["*"], PW)
    assert sign_in(app, support_user)[0].get("/ui/campaigns/a_only/lists/2025-10-01/list.xlsx").status_code == 403
    got = [(e["by"], e["campaign_id"], e["details"]["file"], e["details"]["sha256"]) for e in read_entries(Paths(home))
           if e["kind"] == "list_downloaded"]
    import hashlib
    assert got == [("ana.a", "a_only", "list.xlsx", hashlib.sha256((folder / "list.xlsx").read_bytes()).hexdigest()),
                   ("ana.a", "a_only", "list_with_holdout.csv",
                    hashlib.sha256((folder / "list_with_holdout.csv").read_bytes()).hexdigest())]


def test_admin_and_compliance_sign_in_with_a_second_factor_used_once(site):
    app, _ = site
    u.add_user(app.state.engine, "noor.admin", "admin", ["*"], ["*"], PW)
    _, r = sign_in(app, "noor.admin")
    assert r.status_code == 401 and "second factor" in r.text and "crm users totp noor.admin" in r.text
    secret = parse_qs(urlsplit(u.enroll_totp(app.state.engine, "noor.admin")[1]).query)["secret"][0]
    _, r = sign_in(app, "noor.admin")  # no code
    assert r.status_code == 401 and "second-factor code" in r.text
    _, r = sign_in(app, "noor.admin", code="000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    assert r.status_code == 401
    code = pyotp.TOTP(secret).now()
    c, r = sign_in(app, "noor.admin", code=code)
    assert r.status_code == 303 and c.get("/ui/campaigns").status_code == 200
    _, again = sign_in(app, "noor.admin", code=code)  # the same code twice: refused (replay)
    assert again.status_code == 401
    assert u.get_user(app.state.engine, "noor.admin").failed_logins == 1  # the replay (the success reset the others)
    # a marketer needs none
    assert sign_in(app, "bo.b")[1].status_code == 303


def _self_signed(directory) -> tuple[str, str]:
    """A certificate for 127.0.0.1 signed by its own key (cryptography), as PEM files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)


def test_crm_serve_over_tls_with_a_self_signed_certificate(tmp_path):
    """`crm serve --ssl-certfile --ssl-keyfile`: the API and the web page over HTTPS only, the session
    cookie Secure, a verified TLS 1.2+ connection; plain HTTP to the port gets no answer."""
    import os
    import ssl
    import subprocess
    import sys
    import time

    from _service import free_port

    from crm.store.db import make_engine, upgrade_to_head

    home = tmp_path / "home"
    engine = make_engine(Paths(home))
    upgrade_to_head(engine)
    u.add_user(engine, "tls.user", "marketing", ["A"], ["*"], PW)
    engine.dispose()
    certfile, keyfile = _self_signed(tmp_path)
    port = free_port()
    env = {**os.environ, "CRM_HOME": str(home), "CRM_CAMPAIGNS_DIR": str(tmp_path / "no_campaigns")}
    env.pop("CRM_DATABASE_URL", None)
    env.pop("CRM_UI_INSECURE_COOKIES", None)
    serve = subprocess.Popen([sys.executable, "-m", "crm.cli", "serve", "--port", str(port), "--delivery-workers",
                              "0", "--trigger-workers", "0", "--hand-off-every", "0", "--ssl-certfile", certfile,
                              "--ssl-keyfile", keyfile], env=env, stderr=subprocess.PIPE, text=True)
    ctx = ssl.create_default_context(cafile=certfile)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
                conn.request("GET", "/healthz")
                health = conn.getresponse()
                assert health.status == 200 and conn.sock.version() in ("TLSv1.2", "TLSv1.3")
                health.read()
                conn.close()
                break
            except (ConnectionError, OSError):
                assert serve.poll() is None and time.monotonic() < deadline, "crm serve did not start over TLS"
                time.sleep(0.3)
        # the web page over HTTPS: the pre-session cookie and the session cookie are Secure
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        conn.request("GET", "/ui/login")
        page = conn.getresponse()
        text, pre = page.read().decode(), SimpleCookie(page.headers["set-cookie"])
        assert "Secure" in page.headers["set-cookie"]
        body = urlencode({"csrf": _csrf(text), "name": "tls.user", "password": PW}).encode()
        conn.request("POST", "/ui/login", body=body, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"crm_pre={pre['crm_pre'].value}"})
        signed = conn.getresponse()
        signed.read()
        cookie = [c for c in signed.headers.get_all("set-cookie") if c.startswith("crm_session=")][0]
        assert signed.status == 303 and "Secure" in cookie and "HttpOnly" in cookie
        conn.close()
        # plain HTTP on the TLS port: no HTTP answer
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            plain.request("GET", "/healthz")
            plain.getresponse().read()
    finally:
        serve.terminate()
        serve.wait(30)


def test_crm_serve_wants_both_tls_files(tmp_path):
    from click.testing import CliRunner

    from crm.cli import main

    certfile, _ = _self_signed(tmp_path)
    r = CliRunner().invoke(main, ["serve", "--ssl-certfile", certfile])
    assert r.exit_code == 2 and "give both --ssl-certfile and --ssl-keyfile" in r.output
