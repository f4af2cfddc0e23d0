"""The web page for marketers and compliance officers (``/ui``), served by ``crm serve``: first
step, sign-in, the campaigns a user may see, approving or rejecting them, and their published lists
with counts, suppression and downloads (each download audited) (issue 18).

* Sign-in: a form (``POST /ui/login``) checked by :func:`crm.store.users.authenticate` (lockout
  included). The session is a cookie signed with ``itsdangerous`` (a key of 32 random bytes in
  ``$CRM_HOME/service/session.key``, made on first use, mode 0600), HttpOnly, SameSite=Strict,
  Secure unless ``CRM_UI_INSECURE_COOKIES=1`` (plain-HTTP development); it expires after
  :data:`SESSION_HOURS`, and every request reloads the user, so a disabled account, or a password
  changed since, ends the session at once.
* CSRF: every form carries a token that is an HMAC of the session (or, before sign-in, of a
  random pre-session cookie) under the same key; a POST without the right token is refused (403).
* Access: :func:`crm.access.can` on every page. A campaign for some brands is visible to a user
  who may see one of them; a campaign for every brand (no ``brands``) only to a user of every brand
  (fail closed: it reaches players of brands they may not see). Another brand's campaign by URL:
  404, the same answer as a campaign that does not exist.

Forms are ``application/x-www-form-urlencoded`` parsed with the standard library (``urllib.parse``,
bounded to :data:`MAX_FORM_BYTES`): the only form fields are short strings, so the multipart
parser FastAPI's ``Form`` needs (python-multipart) would be a dependency for nothing.
Pages are Jinja2 (autoescaped) from ``crm/service/web_templates/``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from crm.access import can
from crm.config import Paths, campaigns_dir
from crm.store import users as users_store

SESSION_COOKIE, PRE_COOKIE = "crm_session", "crm_pre"
SESSION_HOURS = 8
MAX_FORM_BYTES = 4096

router = APIRouter(prefix="/ui", include_in_schema=False)
_pages = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("web_templates")),
                            autoescape=True, undefined=jinja2.StrictUndefined)


def session_key(paths: Paths) -> bytes:
    """The signing key of sessions and CSRF tokens (made once, readable by its owner only)."""
    path = paths.home / "service" / "session.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".session.key.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        os.replace(tmp, path)  # two processes at once: one key wins, both read it below
    return path.read_bytes()


def _serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app.state.ui_key, salt="crm-ui-session")


def _csrf(request: Request, basis: str) -> str:
    return hmac.new(request.app.state.ui_key, f"csrf|{basis}".encode(), hashlib.sha256).hexdigest()


def _secure() -> bool:
    return os.environ.get("CRM_UI_INSECURE_COOKIES") != "1"


def current_user(request: Request) -> users_store.User | None:
    """The signed-in user of this request, reloaded from the store (None: not signed in, expired,
    tampered, disabled, or the password changed since sign-in)."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw or len(raw) > 1000:
        return None
    try:
        data = _serializer(request).loads(raw, max_age=SESSION_HOURS * 3600)
        user = users_store.get_user(request.app.state.engine, data["name"])
    except (BadSignature, KeyError, TypeError, users_store.UserError):
        return None
    if user.disabled_at is not None or data.get("since") != user.password_changed_at.isoformat():
        return None
    return user


def _page(name: str, status: int = 200, **context) -> HTMLResponse:
    return HTMLResponse(_pages.get_template(name).render(**context), status_code=status,
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'"})


async def _form(request: Request) -> dict[str, str] | None:
    """The urlencoded form of a POST (None: too big or not a form)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in parsed.items()}


def _login_page(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
    pre = request.cookies.get(PRE_COOKIE)
    if not pre or len(pre) != 32:
        pre = secrets.token_hex(16)
    page = _page("login.html", status, message=message, csrf=_csrf(request, pre))
    page.set_cookie(PRE_COOKIE, pre, httponly=True, samesite="strict", secure=_secure(), path="/ui")
    return page


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    pre = request.cookies.get(PRE_COOKIE, "")
    if form is None or not pre or not hmac.compare_digest(form.get("csrf", ""), _csrf(request, pre)):
        return _page("error.html", 403, message="The form expired or did not come from this page: sign in again.")
    try:
        user = users_store.authenticate(request.app.state.engine, form.get("name", ""), form.get("password", ""),
                                        code=form.get("code") or None)
    except users_store.SignInRefused as e:
        return _login_page(request, str(e), 401)
    page = RedirectResponse("/ui/campaigns", status_code=303)
    token = _serializer(request).dumps({"name": user.name, "since": user.password_changed_at.isoformat()})
    page.set_cookie(SESSION_COOKIE, token, max_age=SESSION_HOURS * 3600, httponly=True, samesite="strict",
                    secure=_secure(), path="/ui")
    page.delete_cookie(PRE_COOKIE, path="/ui", secure=_secure(), httponly=True, samesite="strict")
    return page


@router.post("/logout")
async def logout(request: Request) -> Response:
    user = current_user(request)
    form = await _form(request)
    if user is not None and (form is None or not hmac.compare_digest(form.get("csrf", ""),
                                                                      _csrf(request, user.name))):
        return _page("error.html", 403, message="The form did not come from this page.")
    page = RedirectResponse("/ui/login", status_code=303)
    page.delete_cookie(SESSION_COOKIE, path="/ui", secure=_secure(), httponly=True, samesite="strict")
    return page


def _in_scope(user, action: str, spec, every: bool = False) -> bool:
    """``action`` allowed on one (``every``: each) of the brands and jurisdictions ``spec`` reaches. A
    campaign for every brand (or jurisdiction) counts as ``*``: only a user of all of them, since it
    reaches players the others may not see."""
    scopes = (can(user, action, b, r) for b in (spec.brands or ["*"]) for r in (spec.jurisdictions or ["*"]))
    return all(scopes) if every else any(scopes)


def _campaign_visible(user, spec) -> bool:
    """Visible to a user who may see one of its brands in one of its jurisdictions."""
    return _in_scope(user, "campaign.view", spec)


def _campaign_rows(request: Request, user) -> list[dict]:
    from crm.campaigns.approvals import status
    from crm.campaigns.spec import load_campaigns

    specs, _ = load_campaigns(campaigns_dir())
    rows = []
    for spec in sorted(specs, key=lambda s: s.order_key):
        if not _campaign_visible(user, spec):
            continue
        st = status(request.app.state.paths, spec)
        rows.append({"id": spec.id, "name": spec.name, "channel": spec.channel, "priority": spec.priority,
                     "brands": ", ".join(spec.brands) or "all", "offer": spec.offer.label, "state": st.state,
                     "owner": spec.owner, "spec": spec, "approval": st.summary()})
    return rows


def _signed_in(request: Request):
    user = current_user(request)
    return user, (None if user is not None else RedirectResponse("/ui/login", status_code=303))


@router.get("/campaigns")
def campaigns_page(request: Request) -> Response:
    user, away = _signed_in(request)
    if away:
        return away
    return _page("campaigns.html", user=user, campaigns=_campaign_rows(request, user),
                 csrf=_csrf(request, user.name))


@router.get("/campaigns/{campaign_id}")
def campaign_page(request: Request, campaign_id: str) -> Response:
    user, away = _signed_in(request)
    if away:
        return away
    found = [r for r in _campaign_rows(request, user) if r["id"] == campaign_id]
    if not found:  # unknown, or another brand's: the same answer
        return _page("error.html", 404, message="No such campaign.")
    spec = found[0]["spec"]
    import yaml

    text = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    return _page("campaign.html", user=user, c=found[0], spec_yaml=text, csrf=_csrf(request, user.name),
                 may_approve=may_approve(user, spec), may_download=_in_scope(user, "list.download", spec, every=True),
                 lists=_lists_of(request.app.state.paths, campaign_id) if _in_scope(user, "list.view", spec) else [])


DOWNLOADS = {"list.xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
             "list_with_holdout.csv": "text/csv; charset=utf-8"}


def _lists_of(paths: Paths, campaign_id: str) -> list[dict]:
    """The campaign's published lists, newest first: date, counts, suppression by first failing rule,
    gate verdict."""
    from crm.campaigns.lists import gate_verdict, read_manifest

    out = []
    for mf in sorted((paths.lists / campaign_id).glob("*/manifest.json"), reverse=True)[:30]:
        m = read_manifest(mf.parent)
        passed, why = gate_verdict(mf.parent)
        out.append({"as_of": m.get("as_of_date"), "to_contact": m.get("to_contact", 0),
                    "listed": m.get("counts", {}).get("listed", 0), "holdout": m.get("counts", {}).get("holdout", 0),
                    "cost": m.get("total_offer_cost_eur_cents", 0) / 100, "empty_because": m.get("empty_because"),
                    "suppression": m.get("suppression", {}), "gate": "passed" if passed else why})
    return out


@router.get("/campaigns/{campaign_id}/lists/{as_of}/{file_name}")
def download(request: Request, campaign_id: str, as_of: str, file_name: str) -> Response:
    """A published list's file (the marketer's XLSX or the analysts' CSV), for a user allowed
    ``list.download`` on every brand and jurisdiction of the campaign; each download is a
    ``list_downloaded`` entry of the audit log (who, which file, its sha256)."""
    import datetime as dt

    from crm.campaigns.audit import append
    from crm.campaigns.lists import list_dir

    user, away = _signed_in(request)
    if away:
        return away
    found = [r for r in _campaign_rows(request, user) if r["id"] == campaign_id]
    try:
        day = dt.date.fromisoformat(as_of) if len(as_of) == 10 else None
    except ValueError:
        day = None
    if not found or day is None or file_name not in DOWNLOADS:
        return _page("error.html", 404, message="No such list file.")
    if not _in_scope(user, "list.download", found[0]["spec"], every=True):
        return _page("error.html", 403, message="Your role, brands or regions do not allow downloading this list.")
    path = list_dir(request.app.state.paths, campaign_id, day) / file_name
    if not path.is_file():
        return _page("error.html", 404, message="No such list file.")
    data = path.read_bytes()
    append(request.app.state.paths, "list_downloaded", by=user.person, campaign_id=campaign_id,
           details={"user": user.name, "file": file_name, "as_of_date": day.isoformat(),
                    "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
    return Response(data, media_type=DOWNLOADS[file_name], headers={
        "Content-Disposition": f'attachment; filename="{campaign_id}_{day.isoformat()}_{file_name}"',
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


def may_approve(user, spec) -> bool:
    """Approving reaches every player of the campaign: the user must be allowed ``campaign.approve``
    on each of its brands in each of its jurisdictions (every brand / jurisdiction: ``*``)."""
    return _in_scope(user, "campaign.approve", spec, every=True)


@router.post("/campaigns/{campaign_id}/{decision}")
async def decide(request: Request, campaign_id: str, decision: str) -> Response:
    """Approve or reject the campaign's current version (four-eyes: never its author), as
    ``crm campaign approve|reject`` does, recorded in the audit log under the user's person name."""
    from crm.campaigns.approvals import ApprovalError, approve, reject

    user, away = _signed_in(request)
    if away:
        return away
    form = await _form(request)
    if form is None or not hmac.compare_digest(form.get("csrf", ""), _csrf(request, user.name)):
        return _page("error.html", 403, message="The form did not come from this page.")
    found = [r for r in _campaign_rows(request, user) if r["id"] == campaign_id]
    if decision not in ("approve", "reject") or not found:
        return _page("error.html", 404, message="No such campaign.")
    spec = found[0]["spec"]
    if not may_approve(user, spec):
        return _page("error.html", 403, message="Your role, brands or regions do not allow approving this campaign.")
    reason = " ".join(form.get("reason", "").split())
    if not reason or len(reason) > 500:
        return _page("error.html", 422, message="A reason of 1 to 500 characters is required.")
    try:
        (approve if decision == "approve" else reject)(request.app.state.paths, spec, user.person, reason)
    except ApprovalError as e:
        return _page("error.html", 409, message=str(e))
    return RedirectResponse(f"/ui/campaigns/{campaign_id}", status_code=303)


def setup(app, paths: Paths) -> None:
    app.state.ui_key = session_key(paths)
