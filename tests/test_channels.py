"""crm/channels: real SMTP (aiosmtpd) and HTTP servers on localhost, the file outbox, templates in
their sandbox, and the pure retry / rate-limit logic on a fake clock."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import http.server
import json
import random
import socket
import threading
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from crm.channels import (
    DELIVERED,
    PERMANENT_FAILURE,
    REFUSED,
    TEMPORARY_FAILURE,
    DeliveryResult,
    FileOutboxChannel,
    InvalidSignature,
    Message,
    MessageError,
    RateLimiter,
    Rendered,
    RetryPolicy,
    SmtpConfig,
    SmtpEmailChannel,
    TemplateError,
    TemplateRenderError,
    TemplateStore,
    WebhookChannel,
    WebhookConfig,
    channel_from_env,
    priority_key,
    sign,
    verify_signature,
)
from crm.channels.templates import locale_chain

BOUNCE = "nobody@example.test"
DEFER = "busy@example.test"
FROM = "Lucky Star <news@luckystar.example>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def message(delivery_id="d1", channel="email", address="player@example.test", **kw) -> Message:
    base = dict(player_id="p_1", brand_id="A", locale="en", template_id="cashback", params={})
    return Message(delivery_id, channel, **(base | kw), address=address)


RENDERED = Rendered("cashback", "en", "10% cashback für dich", "Plain text body\n", "<p>HTML <b>body</b></p>")


# --- SMTP ------------------------------------------------------------------------------------

class Handler:
    """Stores what arrives; 550 at RCPT for BOUNCE, 451 for DEFER."""

    def __init__(self) -> None:
        self.envelopes = []
        self.data_reply = "250 2.0.0 Ok: queued"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == BOUNCE:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address == DEFER:
            return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply.startswith("250"):
            self.envelopes.append(envelope)
        return self.data_reply


def _auth(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"crm" and auth_data.password == b"p@ss word"
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself


@pytest.fixture
def smtp_server():
    handler = Handler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, authenticator=_auth,
                            auth_require_tls=False)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def smtp_channel(port: int, url_tail: str = "") -> SmtpEmailChannel:
    return SmtpEmailChannel(SmtpConfig.from_url(f"smtp://127.0.0.1:{port}{url_tail}", FROM))


def test_smtp_delivers_a_proper_mime_message(smtp_server):
    handler, port = smtp_server
    result = smtp_channel(port).send(message("dlv-42"), RENDERED)
    assert result.status == DELIVERED and result.code == 250
    assert result.provider_id == "<dlv-42@luckystar.example>"
    [env] = handler.envelopes
    assert env.mail_from == "news@luckystar.example" and env.rcpt_tos == ["player@example.test"]
    assert b"\n" not in env.original_content.replace(b"\r\n", b"")  # SMTP's CRLF line ends only
    mime = email.message_from_bytes(env.original_content, policy=email.policy.default)
    assert mime["From"] == FROM and mime["To"] == "player@example.test"
    assert mime["Subject"] == "10% cashback für dich"  # encoded on the wire, decoded here
    assert mime["Message-ID"] == "<dlv-42@luckystar.example>"
    assert mime["X-CRM-Delivery-Id"] == "dlv-42" and mime["Content-Language"] == "en"
    assert mime.get_content_type() == "multipart/alternative"
    assert mime.get_body(("plain",)).get_content().replace("\r\n", "\n") == "Plain text body\n"
    assert mime.get_body(("html",)).get_content().strip() == "<p>HTML <b>body</b></p>"


def test_smtp_text_only_when_the_template_has_no_html(smtp_server):
    handler, port = smtp_server
    plain = Rendered("t", "en", "Hi", "only text\n", None)
    assert smtp_channel(port).send(message(), plain).status == DELIVERED
    mime = email.message_from_bytes(handler.envelopes[0].original_content, policy=email.policy.default)
    assert mime.get_content_type() == "text/plain" and mime.get_content().strip() == "only text"


def test_smtp_550_at_rcpt_is_a_hard_bounce_without_the_address_in_the_detail(smtp_server):
    handler, port = smtp_server
    result = smtp_channel(port).send(message(address=BOUNCE), RENDERED)
    assert result.status == PERMANENT_FAILURE and result.hard_bounce and not result.retryable
    assert result.code == 550 and "User unknown" in result.detail
    assert BOUNCE not in result.detail and "<address>" in result.detail
    assert handler.envelopes == []


def test_smtp_4xx_at_rcpt_is_temporary(smtp_server):
    _, port = smtp_server
    result = smtp_channel(port).send(message(address=DEFER), RENDERED)
    assert result.status == TEMPORARY_FAILURE and result.code == 451 and result.retryable


@pytest.mark.parametrize("reply, status", [
    ("554 5.7.1 Message rejected as spam", REFUSED),  # the content, not the address: no bounce
    ("452 4.3.1 Insufficient system storage", TEMPORARY_FAILURE),
])
def test_smtp_answers_to_the_message_body(smtp_server, reply, status):
    handler, port = smtp_server
    handler.data_reply = reply
    result = smtp_channel(port).send(message(), RENDERED)
    assert (result.status, result.code) == (status, int(reply[:3])) and "SMTPDataError" in result.detail


def test_smtp_no_server_is_temporary():
    result = smtp_channel(free_port(), "?timeout=2").send(message(), RENDERED)
    assert result.status == TEMPORARY_FAILURE and result.detail.startswith("connection:")


def test_smtp_one_kept_connection_survives_a_bounce_and_logs_in(smtp_server):
    handler, port = smtp_server
    channel = SmtpEmailChannel(SmtpConfig.from_url(f"smtp://crm:p%40ss%20word@127.0.0.1:{port}", FROM))
    with channel:
        results = [channel.send(message(f"d{i}", address=a), RENDERED)
                   for i, a in enumerate(["a@example.test", BOUNCE, "b@example.test"])]
        assert channel._smtp is not None  # still the one connection
    assert [r.status for r in results] == [DELIVERED, PERMANENT_FAILURE, DELIVERED]
    assert [e.rcpt_tos for e in handler.envelopes] == [["a@example.test"], ["b@example.test"]]
    assert channel._smtp is None


def test_smtp_kept_connection_reconnects_after_the_server_dropped_it(smtp_server):
    handler, port = smtp_server
    with smtp_channel(port) as channel:
        assert channel.send(message("d1"), RENDERED).status == DELIVERED
        channel._smtp.sock.close()  # as if the relay had closed an idle connection
        assert channel.send(message("d2"), RENDERED).status == DELIVERED
    assert [e.rcpt_tos for e in handler.envelopes] == [["player@example.test"]] * 2


def test_smtp_wrong_password_is_refused_not_a_bounce(smtp_server):
    _, port = smtp_server
    channel = SmtpEmailChannel(SmtpConfig.from_url(f"smtp://crm:wrong@127.0.0.1:{port}", FROM))
    result = channel.send(message(), RENDERED)
    assert result.status == REFUSED and result.code == 535


def test_smtp_starttls_never_falls_back_to_clear_text(smtp_server):
    handler, port = smtp_server
    result = smtp_channel(port, "?starttls=true").send(message(), RENDERED)
    assert result.status == REFUSED and "STARTTLS" in result.detail.upper()
    assert handler.envelopes == []


def test_smtp_refuses_what_it_cannot_address(smtp_server):
    _, port = smtp_server
    channel = smtp_channel(port)
    assert channel.send(message(address=None), RENDERED).status == REFUSED
    assert channel.send(message(address="a@example.test\r\nBcc: all@example.test"), RENDERED).status == REFUSED
    assert channel.send(message(channel="sms", address="+4912345"), RENDERED).status == REFUSED


def test_smtp_config_from_url_and_env():
    c = SmtpConfig.from_url("smtps://u%40x:s3cret@relay.example:2465?timeout=5", FROM)
    assert (c.host, c.port, c.username, c.password, c.tls, c.starttls, c.timeout) == (
        "relay.example", 2465, "u@x", "s3cret", True, False, 5.0)
    assert "s3cret" not in repr(c)
    assert SmtpConfig.from_url("smtp://relay.example?starttls=1", FROM).port == 25
    for bad in ("http://relay", "smtp://", "smtp://relay?tls=1", "smtps://relay?starttls=true"):
        with pytest.raises(ValueError):
            SmtpConfig.from_url(bad, FROM)
    with pytest.raises(ValueError):
        SmtpConfig.from_url("smtp://relay", "not an address")
    env = {"CRM_SMTP_URL": "smtp://relay.example:2525", "CRM_SMTP_FROM": FROM}
    assert SmtpConfig.from_env(env).port == 2525
    with pytest.raises(ValueError, match="CRM_SMTP_URL"):
        SmtpConfig.from_env({})


# --- webhook ---------------------------------------------------------------------------------

SECRET = "whsec_0123456789abcdef"


@pytest.fixture
def http_server():
    """Verifies every request's signature; answers what ``state["reply"]`` says."""
    state = {"reply": (200, {}, b'{"id": "gw-1"}'), "requests": [], "delay": 0.0}

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            try:
                verified = verify_signature(SECRET, self.headers.get("X-CRM-Signature"), body)
            except InvalidSignature as e:
                verified = str(e)
            state["requests"].append({"headers": self.headers, "body": body, "verified": verified})
            time.sleep(state["delay"])
            code, headers, answer = state["reply"]
            try:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the timeout test's client gave up already

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/crm/push"
    finally:
        server.shutdown()
        server.server_close()


def push(url: str, timeout: float = 5.0) -> WebhookChannel:
    return WebhookChannel("push", WebhookConfig(url, SECRET, timeout))


def test_webhook_delivers_a_signed_json_body(http_server):
    state, url = http_server
    msg = message("dlv-7", channel="push", address="device-token-xyz", campaign_id="cashback_recent_losers",
                  params={"cap_eur": 50})
    result = push(url).send(msg, RENDERED)
    assert result.status == DELIVERED and result.code == 200 and result.provider_id == "gw-1"
    [req] = state["requests"]
    assert req["verified"] is True
    assert req["headers"]["X-CRM-Delivery-Id"] == "dlv-7" and req["headers"]["Idempotency-Key"] == "dlv-7"
    body = json.loads(req["body"])
    assert body["to"] == "device-token-xyz" and body["player_id"] == "p_1"
    assert body["campaign_id"] == "cashback_recent_losers" and body["channel"] == "push"
    assert body["content"] == {"subject": RENDERED.subject, "text": RENDERED.text, "html": RENDERED.html}


@pytest.mark.parametrize("code, status", [
    (202, DELIVERED), (500, TEMPORARY_FAILURE), (503, TEMPORARY_FAILURE), (429, TEMPORARY_FAILURE),
    (408, TEMPORARY_FAILURE), (400, PERMANENT_FAILURE), (404, PERMANENT_FAILURE), (410, PERMANENT_FAILURE),
    (301, PERMANENT_FAILURE),
])
def test_webhook_answers_map_to_statuses(http_server, code, status):
    state, url = http_server
    state["reply"] = (code, {"Location": "http://127.0.0.1:1/elsewhere"} if code == 301 else {}, b"")
    result = push(url).send(message(channel="push"), RENDERED)
    assert (result.status, result.code) == (status, code)
    assert len(state["requests"]) == 1  # a redirect is not followed


def test_webhook_429_keeps_retry_after(http_server):
    state, url = http_server
    state["reply"] = (429, {"Retry-After": "120"}, b"slow down")
    result = push(url).send(message(channel="push"), RENDERED)
    assert result.status == TEMPORARY_FAILURE and result.retry_after == 120.0


def test_webhook_timeout_and_no_server_are_temporary(http_server):
    state, url = http_server
    state["delay"] = 1.0
    result = push(url, timeout=0.2).send(message(channel="push"), RENDERED)
    assert result.status == TEMPORARY_FAILURE and "timed out" in result.detail
    closed = push(f"http://127.0.0.1:{free_port()}/x").send(message(channel="push"), RENDERED)
    assert closed.status == TEMPORARY_FAILURE and closed.detail.startswith("connection:")


def test_webhook_refuses_without_address_or_on_the_wrong_channel(http_server):
    state, url = http_server
    assert push(url).send(message(channel="push", address=None), RENDERED).status == REFUSED
    assert push(url).send(message(channel="sms"), RENDERED).status == REFUSED
    assert state["requests"] == []


def test_verify_signature_refuses_tampering_other_secrets_and_replays():
    body = b'{"delivery_id":"d1"}'
    header = sign(SECRET, body, 1_700_000_000)
    assert verify_signature(SECRET, header, body, now=1_700_000_100)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_signature(SECRET, header, body + b" ", now=1_700_000_100)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_signature("another-secret-0123456", header, body, now=1_700_000_100)
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify_signature(SECRET, header, body, tolerance=300, now=1_700_000_301)
    for bad in (None, "", "v1=abc", "t=now,v1=abc", "t=1700000000"):
        with pytest.raises(InvalidSignature):
            verify_signature(SECRET, bad, body, now=1_700_000_000)
    # a sender rotating secrets signs with both: either one verifies
    rotated = header + "," + sign("old-secret-0123456789", body, 1_700_000_000).split(",")[1]
    assert verify_signature("old-secret-0123456789", rotated, body, now=1_700_000_000)


def test_webhook_config_from_env():
    env = {"CRM_WEBHOOK_URL_IN_APP": "https://gw.example/in-app", "CRM_WEBHOOK_SECRET_IN_APP": SECRET,
           "CRM_WEBHOOK_TIMEOUT_IN_APP": "3"}
    c = WebhookConfig.from_env("in_app", env)
    assert (c.url, c.timeout) == ("https://gw.example/in-app", 3.0) and SECRET not in repr(c)
    with pytest.raises(ValueError, match="CRM_WEBHOOK_SECRET_SMS"):
        WebhookConfig.from_env("sms", {"CRM_WEBHOOK_URL_SMS": "https://gw.example/sms"})
    with pytest.raises(ValueError, match="16 characters"):
        WebhookConfig("https://gw.example/sms", "short")
    with pytest.raises(ValueError, match="http"):
        WebhookConfig("file:///etc/passwd", SECRET)


def test_channel_from_env_picks_the_configured_adapter(tmp_path):
    env = {"CRM_SMTP_URL": "smtp://relay.example", "CRM_SMTP_FROM": FROM,
           "CRM_WEBHOOK_URL_SMS": "https://gw.example/sms", "CRM_WEBHOOK_SECRET_SMS": SECRET}
    assert isinstance(channel_from_env("email", tmp_path, env), SmtpEmailChannel)
    assert isinstance(channel_from_env("sms", tmp_path, env), WebhookChannel)
    assert isinstance(channel_from_env("push", tmp_path, env), FileOutboxChannel)
    assert isinstance(channel_from_env("email", tmp_path, {}), FileOutboxChannel)
    with pytest.raises(ValueError):  # half a configuration never falls back to the outbox
        channel_from_env("push", tmp_path, {"CRM_WEBHOOK_SECRET_PUSH": SECRET})
    with pytest.raises(ValueError):
        channel_from_env("fax", tmp_path, {})


# --- file outbox -----------------------------------------------------------------------------

def test_file_outbox_appends_once_without_the_address(tmp_path):
    outbox = tmp_path / "outbox"
    channel = FileOutboxChannel("email", outbox)
    first = channel.send(message("d1", params={"cap_eur": 50}), RENDERED)
    again = channel.send(message("d1", params={"cap_eur": 50}), RENDERED)
    other = channel.send(message("d2"), RENDERED)
    assert [r.status for r in (first, again, other)] == [DELIVERED] * 3
    assert "already in" in again.detail
    path = Path(first.provider_id)
    assert path.relative_to(outbox).parts[:2] == ("deliveries", "email") and path.name == "deliveries.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["delivery_id"] for x in lines] == ["d1", "d2"]
    assert lines[0]["params"] == {"cap_eur": 50} and lines[0]["html"] == RENDERED.html
    assert "to" not in lines[0] and "player@example.test" not in path.read_text()
    assert list(outbox.glob("*/*/*.jsonl")) == []  # dispatch's readers never see these files
    assert not list(path.parent.glob("*.tmp"))


def test_file_outbox_can_carry_the_address_when_asked(tmp_path):
    result = FileOutboxChannel("sms", tmp_path, include_address=True).send(
        message(channel="sms", address="+491701234567"), RENDERED)
    assert json.loads(Path(result.provider_id).read_text())["to"] == "+491701234567"


# --- the message contract --------------------------------------------------------------------

def test_message_contract():
    m = message(address="secret@example.test")
    assert "secret@example.test" not in repr(m)
    assert m.with_address("x@example.test").address == "x@example.test"
    for bad in ("", "../x", "a b", "x" * 129, "d1\r\nBcc: x"):
        with pytest.raises(MessageError):
            message(delivery_id=bad)
    with pytest.raises(MessageError, match="channel"):
        message(channel="fax")
    with pytest.raises(ValueError):
        DeliveryResult("d1", "lost")
    assert len(DeliveryResult("d1", REFUSED, "x" * 10_000).detail) == 500


# --- templates -------------------------------------------------------------------------------

def write_template(root: Path, tid: str, body: str) -> TemplateStore:
    (root / f"{tid}.yaml").write_text(body)
    return TemplateStore(root)


GREETING = """
id: greet
default_locale: en
params:
  name: {description: A name, example: Ana}
locales:
  en: {subject: "Hello {{ name }}", text: "Hello {{ name }}", html: "<p>Hello {{ name }}</p>"}
  de: {subject: "Hallo {{ name }}", text: "Hallo {{ name }}"}
  de-AT: {subject: "Servus {{ name }}", text: "Servus {{ name }}"}
  fr: {subject: "Bonjour {{ name }}", text: "Bonjour {{ name }}"}
"""


def test_locale_fallback_chain(tmp_path):
    store = write_template(tmp_path, "greet", GREETING)
    got = {loc: store.render("greet", loc, {"name": "Ana"}, brand_default_locale=brand).locale
           for loc, brand in [("de-AT", None), ("de_at", None), ("de-CH", None), ("de-Latn-CH", None),
                              ("es-MX", "fr"), ("es-MX", "fr-CA"), ("es", None), ("en-GB", "de")]}
    assert got == {"de-AT": "de-at", "de_at": "de-at", "de-CH": "de", "de-Latn-CH": "de",
                   "es-MX": "fr", "es": "en", "en-GB": "en"} | {"es-MX": "fr"}
    assert store.render("greet", "de-CH", {"name": "Ana"}).subject == "Hallo Ana"
    assert locale_chain("de-AT", "fr-CA", "en") == ["de-at", "de", "fr-ca", "fr", "en"]
    with pytest.raises(TemplateRenderError, match="BCP-47"):
        store.render("greet", "../../etc", {"name": "Ana"})


def test_missing_parameter_is_an_error_naming_it(tmp_path):
    store = write_template(tmp_path, "greet", GREETING)
    with pytest.raises(TemplateRenderError, match="'name' is undefined"):
        store.render("greet", "en", {})


def test_a_template_may_use_declared_parameters_only(tmp_path):
    bad = GREETING.replace("Servus {{ name }}\"}", "Servus {{ nickname }}\"}")
    with pytest.raises(TemplateError, match="nickname, not declared"):
        write_template(tmp_path, "greet", bad).get("greet")
    with pytest.raises(TemplateError, match="line 1"):
        write_template(tmp_path, "broken", GREETING.replace("greet", "broken").replace("{{ name }}</p>", "{% if")
                       ).get("broken")
    with pytest.raises(TemplateError, match="default_locale"):
        write_template(tmp_path, "nodef", GREETING.replace("greet", "nodef").replace("default_locale: en",
                                                                                     "default_locale: it")
                       ).get("nodef")
    with pytest.raises(TemplateError):
        TemplateStore(tmp_path).get("../greet")
    assert [p.name for p in write_template(tmp_path, "greet", GREETING).placeholders("greet")] == ["name"]


@pytest.mark.parametrize("expression", [
    "''.__class__", "''.__class__.__mro__[1].__subclasses__()", "name.__init__.__globals__",
    "cycler.__init__.__globals__.os", "lipsum.__globals__.os.popen('id').read()",
    "self.__init__.__globals__", "name.__class__.__base__.__subclasses__()",
])
def test_the_sandbox_refuses_attribute_tricks(tmp_path, expression):
    body = GREETING.replace('text: "Hello {{ name }}"', f'text: "{{{{ {expression} }}}}"')
    store = write_template(tmp_path, "greet", body)
    with pytest.raises(TemplateRenderError):
        store.render("greet", "en", {"name": "Ana"})


def test_the_sandbox_refuses_mutation_and_huge_loops(tmp_path):
    body = GREETING.replace('text: "Hello {{ name }}"', 'text: "{{ name.append(1) }}"')
    with pytest.raises(TemplateRenderError, match="not allowed|unsafe"):
        write_template(tmp_path, "greet", body).render("greet", "en", {"name": [1]})
    body = GREETING.replace('text: "Hello {{ name }}"', 'text: "{% for i in range(10**9) %}x{% endfor %}"')
    with pytest.raises(TemplateRenderError):
        write_template(tmp_path, "greet", body).render("greet", "en", {"name": "Ana"})
    body = GREETING.replace('text: "Hello {{ name }}"', 'text: "{% for i in range(99999) %}{{ name }}{% endfor %}"')
    with pytest.raises(TemplateRenderError, match="longer than"):
        write_template(tmp_path, "greet", body).render("greet", "en", {"name": "many words"})


def test_hostile_parameters(tmp_path):
    store = write_template(tmp_path, "greet", GREETING)
    r = store.render("greet", "en", {"name": '<script>alert(1)</script>"&'})
    assert r.html == "<p>Hello &lt;script&gt;alert(1)&lt;/script&gt;&#34;&amp;</p>"
    assert r.text == 'Hello <script>alert(1)</script>"&'  # text is not HTML
    assert store.render("greet", "en", {"name": "Ana\r\nBcc: everyone@example.test"}).subject == (
        "Hello Ana Bcc: everyone@example.test")  # one line: no header injection
    with pytest.raises(TemplateRenderError, match="longer than"):
        store.render("greet", "en", {"name": "x" * 1_000_000})
    with pytest.raises(TemplateRenderError, match="only strings"):
        store.render("greet", "en", {"name": object()})
    with pytest.raises(TemplateRenderError, match="nested"):
        store.render("greet", "en", {"name": [[[[["deep"]]]]]})


def test_shipped_templates_render_in_en_and_de():
    store = TemplateStore()  # templates/ in the checkout
    assert {"cashback", "payment_failure_help"} <= set(store.ids())
    for template in store.load_all():
        assert {"en", "de"} <= set(template.locales)
        for loc in ("en", "de", "de-AT", "fr"):
            r = store.preview(template.id, loc)
            assert r.subject and r.text and r.html and "{" not in r.text
    de = store.preview("cashback", "de-AT")
    assert de.locale == "de" and "Cashback" in de.subject and "Lucky Star" in de.html


# --- retries, rate limits, priority ------------------------------------------------------------

T0 = dt.datetime(2026, 12, 5, 9, 0, tzinfo=dt.UTC)


def result(status: str, retry_after: float | None = None) -> DeliveryResult:
    return DeliveryResult("d1", status, "x", attempted_at=T0, retry_after=retry_after)


def test_backoff_grows_exponentially_with_a_cap():
    policy = RetryPolicy(max_attempts=10, base_delay=dt.timedelta(seconds=30), factor=2,
                         max_delay=dt.timedelta(minutes=10), jitter=0)
    assert [policy.backoff(n).total_seconds() for n in range(1, 8)] == [30, 60, 120, 240, 480, 600, 600]


def test_jitter_stays_in_bounds_and_is_deterministic_per_delivery():
    policy = RetryPolicy(jitter=0.5)
    for attempt in range(1, 6):
        full = min(30 * 2 ** (attempt - 1), 3600)
        waits = {policy.backoff(attempt, f"d{i}").total_seconds() for i in range(200)}
        assert all(full / 2 <= w <= full for w in waits) and len(waits) > 150  # spread out
        assert policy.backoff(attempt, "d1") == policy.backoff(attempt, "d1")
    seeded = [policy.backoff(3, rng=random.Random(7)) for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_retry_decisions_and_dead_letter():
    policy = RetryPolicy(max_attempts=3, jitter=0)
    assert policy.decide(result(DELIVERED), 1).action == "done"
    assert policy.decide(result(PERMANENT_FAILURE), 1).action == "done"
    assert policy.decide(result(REFUSED), 1).action == "done"
    first = policy.decide(result(TEMPORARY_FAILURE), 1)
    assert (first.action, first.next_attempt_at) == ("retry", T0 + dt.timedelta(seconds=30))
    second = policy.decide(result(TEMPORARY_FAILURE), 2, now=T0 + dt.timedelta(minutes=5))
    assert second.next_attempt_at == T0 + dt.timedelta(minutes=5, seconds=60)
    last = policy.decide(result(TEMPORARY_FAILURE), 3)
    assert last.action == "dead_letter" and last.next_attempt_at is None and "attempt 3 of 3" in last.reason
    # the provider's Retry-After wins when longer, within max_delay
    assert policy.decide(result(TEMPORARY_FAILURE, retry_after=600), 1).next_attempt_at == T0 + dt.timedelta(
        minutes=10)
    assert policy.decide(result(TEMPORARY_FAILURE, retry_after=10 ** 9), 1).next_attempt_at == T0 + dt.timedelta(
        hours=1)
    for bad in (dict(max_attempts=0), dict(jitter=2), dict(factor=0.5), dict(base_delay=dt.timedelta(0))):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_per_channel_on_a_fake_clock():
    clock = FakeClock()
    limiter = RateLimiter({"sms": (2.0, 3), "email": (100.0, 100)}, clock)
    assert [limiter.try_acquire("sms") for _ in range(4)] == [True, True, True, False]
    assert limiter.wait_time("sms") == pytest.approx(0.5)
    clock.now += 0.25
    assert not limiter.try_acquire("sms") and limiter.wait_time("sms") == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.try_acquire("sms") and not limiter.try_acquire("sms")
    clock.now += 60  # refills to the burst, never above
    assert [limiter.try_acquire("sms") for _ in range(4)] == [True, True, True, False]
    assert limiter.try_acquire("email", 100) and not limiter.try_acquire("email")  # channels are separate
    assert all(limiter.try_acquire("push") for _ in range(1000))  # no limit configured
    with pytest.raises(ValueError):
        limiter.try_acquire("sms", 4)
    clock.now -= 5  # a clock that goes back never adds tokens
    assert limiter.wait_time("sms") > 0
    with pytest.raises(ValueError):
        RateLimiter({"sms": (0, 1)}, clock)


def test_transactional_goes_first():
    due = [
        (message("m-late", transactional=False), T0),
        (message("t-late", transactional=True), T0 + dt.timedelta(minutes=5)),
        (message("m-early", transactional=False), T0 - dt.timedelta(minutes=5)),
        (message("t-early", transactional=True), T0),
    ]
    ordered = sorted(due, key=lambda d: priority_key(*d))
    assert [m.delivery_id for m, _ in ordered] == ["t-early", "t-late", "m-early", "m-late"]
