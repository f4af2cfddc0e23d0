"""The web page for marketers and compliance officers (``/ui``), served by ``crm serve``: sign-in,
the campaigns a user may see, approving or rejecting them, their published lists with counts,
suppression and downloads (each download audited), drafting a campaign from a form with a dry run
before saving (:mod:`crm.service.draft_form`, :mod:`crm.campaigns.dry_run`, :mod:`crm.campaigns.drafts`),
the diff between a campaign's versions, and "why is this player out?" (issue 18).

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

* Drafting (``/ui/campaigns/new``, ``campaign.draft`` / ``campaign.submit`` on every brand and
  jurisdiction of the draft): brands and jurisdictions offered are the user's own; *Dry run* builds
  the list on the service's profile copy (the service never opens the warehouse) and saves
  nothing; *Submit for approval* writes ``<id>.yaml`` into the campaign folder the pipeline reads,
  validated by its loader, atomically, audited, ``approval.required`` set. An existing campaign is
  replaced only by a user who may see and draft it on every brand and jurisdiction, from its Edit
  form (the version it edited named: a version changed meanwhile is not overwritten). The id
  ``new`` is the form's own path: a campaign cannot take it here.
* Explain (``/ui/campaigns/<id>/explain?player=P``, ``player.explain``): every rule's verdict for a
  player of the user's brands and regions on the profile copy; any other id, of another brand
  included, gets the same "no such player" answer.

Forms are ``application/x-www-form-urlencoded`` parsed with the standard library (``urllib.parse``,
bounded to :data:`MAX_FORM_BYTES`, the campaign form to :data:`crm.service.draft_form.MAX_FORM_BYTES`):
the form fields are short strings, so the multipart parser FastAPI's ``Form`` needs
(python-multipart) would be a dependency for nothing.
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
DOCS_COOKIE = "crm_docs"  # the Data Docs' own (crm.service.web_pages): SameSite=Lax, path /ui/data-docs
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


def _same(given: str, expected: str) -> bool:
    """A form's token against the expected one, in constant time. As bytes: ``hmac.compare_digest``
    raises TypeError on text with a non-ASCII character, which a hostile form may well send."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def _secure() -> bool:
    return os.environ.get("CRM_UI_INSECURE_COOKIES") != "1"


def current_user(request: Request) -> users_store.User | None:
    """The signed-in user of this request, reloaded from the store (None: not signed in, expired,
    tampered, disabled, or the password changed since sign-in)."""
    return user_of_cookie(request, SESSION_COOKIE, _serializer(request))


def user_of_cookie(request: Request, cookie: str, serializer: URLSafeTimedSerializer) -> users_store.User | None:
    """The user a signed cookie names, checked as a session is (signature, age, account enabled,
    password unchanged since it was issued); None otherwise. Sessions and the Data Docs cookie."""
    raw = request.cookies.get(cookie)
    if not raw or len(raw) > 1000:
        return None
    try:
        data = serializer.loads(raw, max_age=SESSION_HOURS * 3600)
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


async def _fields(request: Request, max_bytes: int = MAX_FORM_BYTES,
                  max_fields: int = 20) -> dict[str, list[str]] | None:
    """The urlencoded form of a POST, every value of each field (None: too big or not a form)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            return None
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=max_fields)
    except (UnicodeDecodeError, ValueError):
        return None


async def _form(request: Request) -> dict[str, str] | None:
    """The urlencoded form of a POST, the first value of each field (None: too big or not a form)."""
    parsed = await _fields(request)
    return None if parsed is None else {k: v[0] for k, v in parsed.items()}


def _login_page(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
    pre = request.cookies.get(PRE_COOKIE)
    if not pre or len(pre) != 32:
        pre = secrets.token_hex(16)
    page = _page("login.html", status, message=message, csrf=_csrf(request, pre))
    page.set_cookie(PRE_COOKIE, pre, httponly=True, samesite="strict", secure=_secure(), path="/ui")
    return page


@router.get("/style.css")
def stylesheet() -> Response:
    """The pages' styles (a file of the same origin: the Content-Security-Policy refuses inline styles)."""
    return Response(_STYLE, media_type="text/css; charset=utf-8",
                    headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})


_STYLE = Path(__file__).with_name("web_templates").joinpath("style.css").read_bytes()


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    pre = request.cookies.get(PRE_COOKIE, "")
    if form is None or not pre or not _same(form.get("csrf", ""), _csrf(request, pre)):
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
    if user is not None and (form is None or not _same(form.get("csrf", ""), _csrf(request, user.name))):
        return _page("error.html", 403, message="The form did not come from this page.")
    page = RedirectResponse("/ui/login", status_code=303)
    page.delete_cookie(SESSION_COOKIE, path="/ui", secure=_secure(), httponly=True, samesite="strict")
    page.delete_cookie(DOCS_COOKIE, path="/ui/data-docs", secure=_secure(), httponly=True, samesite="lax")
    return page


def _allowed(user, action: str, brands, jurisdictions, every: bool = False) -> bool:
    """``action`` allowed on one (``every``: each) of ``brands`` in ``jurisdictions``; none given
    counts as ``*`` (every brand or jurisdiction): only a user of all of them."""
    if not all(isinstance(x, list) and all(isinstance(v, str) for v in x) for x in (brands or [], jurisdictions or [])):
        return False  # not a spec's shape (an old version's record): fail closed
    scopes = (can(user, action, b, r) for b in (brands or ["*"]) for r in (jurisdictions or ["*"]))
    return all(scopes) if every else any(scopes)


def _in_scope(user, action: str, spec, every: bool = False) -> bool:
    """``action`` allowed on one (``every``: each) of the brands and jurisdictions ``spec`` reaches. A
    campaign for every brand (or jurisdiction) counts as ``*``: only a user of all of them, since it
    reaches players the others may not see."""
    return _allowed(user, action, list(spec.brands), list(spec.jurisdictions), every)


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
                 csrf=_csrf(request, user.name), may_draft=_may_draft(user))


# ------------------------------------------------------------------------------------ drafting

def _may_draft(user) -> bool:
    """Whether the user may draft a campaign for one of their brands at all."""
    return any(can(user, "campaign.draft", b) for b in user.brands)


def _draftable(user, spec) -> bool:
    """Whether the user may change ``spec``: see it, and draft on each of its brands and jurisdictions."""
    return _campaign_visible(user, spec) and _in_scope(user, "campaign.draft", spec, every=True)


def _known_brands(request: Request, specs) -> list[str]:
    """Brands a user of every brand may pick: those of the profile copy and of the campaigns."""
    import sqlalchemy as sa

    from crm.store.schema import profiles

    with request.app.state.engine.connect() as conn:
        found = set(conn.execute(sa.select(profiles.c.brand_id).distinct().limit(200)).scalars())
    return sorted(found | {b for s in specs for b in s.brands})[:200]


def _draft_setting(request: Request, user):
    """(the campaign folder, its valid campaigns, its offer catalogue, the user's choices)."""
    from crm.campaigns.spec import load_campaigns, offer_catalogue
    from crm.service.draft_form import choices_for

    folder = campaigns_dir()
    specs, _ = load_campaigns(folder)
    catalogue = offer_catalogue(folder)
    intents = [] if isinstance(catalogue, Exception) else sorted(catalogue.intents)
    known = _known_brands(request, specs) if "*" in user.brands else []
    return folder, specs, catalogue, choices_for(user, known, intents)


def _edited(user, specs, campaign_id: str | None):
    """The campaign an Edit form is for: one the user may change and the form can show (None: none)."""
    from crm.service.draft_form import editable

    found = [s for s in specs if s.id == campaign_id] if campaign_id else []
    return found[0] if found and _draftable(user, found[0]) and editable(found[0]) else None


def _draft_page(request: Request, user, choices, values: dict, *, status: int = 200, errors: dict | None = None,
                dry=None, base=None, notice: str = "") -> HTMLResponse:
    def first(name: str) -> str:  # a field's value as text (a macro's output would be markup, escaped again)
        return (values.get(name) or [""])[0]

    from crm.campaigns.lists import FUNNEL_LABELS

    return _page("draft.html", status, user=user, csrf=_csrf(request, user.name), ch=choices, values=values,
                 first=first, errors=errors or {}, dry=dry, base=base, notice=notice,
                 labels=FUNNEL_LABELS | {"holdout": "Holdout (never contacted)"})


@router.get("/campaigns/new")
def draft_form(request: Request) -> Response:
    """The campaign form: empty, or (``?from=ID``) showing a campaign the user may change."""
    from crm.service.draft_form import values_of

    user, away = _signed_in(request)
    if away:
        return away
    if not _may_draft(user):
        return _page("error.html", 403, message="Your role does not draft campaigns.")
    _, specs, _, choices = _draft_setting(request, user)
    source = request.query_params.get("from")
    base = _edited(user, specs, source) if source is not None else None
    if source is not None and base is None:  # unknown, another brand's, or not one the form can show
        return _page("error.html", 404, message="No such campaign to edit here.")
    values = values_of(base) | ({"version": [base.spec_hash()]} if base is not None else {})
    return _draft_page(request, user, choices, values, base=base)


@router.post("/campaigns/new")
async def draft_submit(request: Request) -> Response:
    """*Dry run* (``action=dry_run``: the list on the profile copy, nothing saved) or *Submit for
    approval* (``action=submit``: the file written, audited; then the campaign's page)."""
    from starlette.concurrency import run_in_threadpool

    from crm.campaigns.audit import AuditError
    from crm.campaigns.drafts import DraftRefused, save_campaign, spec_data
    from crm.campaigns.dry_run import Busy, dry_run
    from crm.service import draft_form as df

    user, away = _signed_in(request)
    if away:
        return away
    form = await _fields(request, df.MAX_FORM_BYTES, df.MAX_FORM_FIELDS)
    if form is None:
        return _page("error.html", 413, message="The form is too big, or not a form.")
    if not _same((form.get("csrf") or [""])[0], _csrf(request, user.name)):
        return _page("error.html", 403, message="The form did not come from this page.")
    if not _may_draft(user):
        return _page("error.html", 403, message="Your role does not draft campaigns.")
    action = (form.get("action") or [""])[0]
    if action not in ("dry_run", "submit"):
        return _page("error.html", 400, message="Choose Dry run or Submit for approval.")
    folder, specs, catalogue, choices = await run_in_threadpool(_draft_setting, request, user)
    source = (form.get("from") or [""])[0]
    base = _edited(user, specs, source) if source else None
    if source and base is None:
        return _page("error.html", 404, message="No such campaign to edit here.")
    values = {k: v for k, v in form.items() if k in df.FIELDS or k == "version"}  # version: the one edited
    data, errors, rows = df.campaign_data(form, choices, user.person, spec_data(base) if base else None)
    spec, invalid = df.validate(data, catalogue, rows)
    errors = df.merge(errors, invalid)
    if spec is not None and not _in_scope(user, "campaign.draft", spec, every=True):
        errors = df.merge(errors, {"brands": ["outside the brands and regions you may draft for"]})
    if errors:
        return _draft_page(request, user, choices, values, status=422, errors=errors, base=base)
    paths, engine = request.app.state.paths, request.app.state.engine
    if action == "dry_run":
        try:
            result = await run_in_threadpool(dry_run, paths, engine, spec, specs, folder)
        except Busy as e:
            return _draft_page(request, user, choices, values, status=429, base=base, notice=str(e))
        return _draft_page(request, user, choices, values, dry=result, base=base)
    if not _in_scope(user, "campaign.submit", spec, every=True):
        return _draft_page(request, user, choices, values, status=403, base=base,
                           errors={"form": ["your role, brands or regions do not allow submitting this campaign"]})
    try:
        await run_in_threadpool(
            save_campaign, paths, folder, spec, by=user.person, user=user.name,
            may_replace=lambda old: _draftable(user, old),
            base_hash=(form.get("version") or [""])[0][:64] if base is not None and base.id == spec.id else None)
    except DraftRefused as e:
        return _draft_page(request, user, choices, values, status=409, base=base,
                           errors={e.field or "form": [str(e)]})
    except AuditError as e:
        return _draft_page(request, user, choices, values, status=409, base=base,
                           errors={"form": [f"nothing saved: {e}"]})
    return RedirectResponse(f"/ui/campaigns/{spec.id}", status_code=303)


# ------------------------------------------------------------------------------------ a campaign

@router.get("/campaigns/{campaign_id}")
def campaign_page(request: Request, campaign_id: str) -> Response:
    from crm.campaigns.drafts import spec_diff
    from crm.service.draft_form import editable

    user, away = _signed_in(request)
    if away:
        return away
    found = [r for r in _campaign_rows(request, user) if r["id"] == campaign_id]
    if not found:  # unknown, or another brand's: the same answer
        return _page("error.html", 404, message="No such campaign.")
    spec = found[0]["spec"]
    import yaml

    text = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    diff = spec_diff(request.app.state.paths, spec, lambda old: _allowed(
        user, "campaign.view", old.get("brands"), old.get("jurisdictions")))
    return _page("campaign.html", user=user, c=found[0], spec_yaml=text, csrf=_csrf(request, user.name),
                 may_approve=may_approve(user, spec), may_download=_in_scope(user, "list.download", spec, every=True),
                 lists=_lists_of(request.app.state.paths, campaign_id) if _in_scope(user, "list.view", spec) else [],
                 diff=diff, may_edit=_draftable(user, spec) and editable(spec),
                 may_explain=_in_scope(user, "player.explain", spec), author=_same_person(user, spec),
                 may_readout=_in_scope(user, "readout.view", spec, every=True),
                 may_gates=_in_scope(user, "gate.view", spec, every=True))


def _same_person(user, spec) -> bool:
    from crm.campaigns.approvals import same_person

    return same_person(user.person, spec.owner)


MAX_PLAYER_ID_CHARS = 64


@router.get("/campaigns/{campaign_id}/explain")
def explain_page(request: Request, campaign_id: str) -> Response:
    """Why is this player out (or in)? Every rule's verdict for a player of the user's brands and
    regions, on the profile copy; an unknown id and another brand's get the same answer."""
    from crm.campaigns.dry_run import Busy, explain_online
    from crm.campaigns.spec import load_campaigns

    user, away = _signed_in(request)
    if away:
        return away
    found = [r for r in _campaign_rows(request, user) if r["id"] == campaign_id]
    if not found:
        return _page("error.html", 404, message="No such campaign.")
    spec = found[0]["spec"]
    if not _in_scope(user, "player.explain", spec):
        return _page("error.html", 403, message="Your role, brands or regions do not allow explaining players.")
    player = request.query_params.get("player", "").strip()
    context = {"user": user, "c": found[0], "csrf": _csrf(request, user.name), "player": player[:200]}
    if not player:
        return _page("explain.html", **context, result=None, message="")
    if len(player) > MAX_PLAYER_ID_CHARS or not player.isprintable():
        return _page("explain.html", 422, **context, result=None,
                     message=f"A player id is at most {MAX_PLAYER_ID_CHARS} printable characters.")
    folder = campaigns_dir()
    specs, _ = load_campaigns(folder)
    brands = [b for b in spec.brands if can(user, "player.explain", b)] if spec.brands else (
        None if "*" in user.brands else list(user.brands))
    try:
        result = explain_online(request.app.state.paths, request.app.state.engine, player, spec, specs, brands, folder,
                                lambda b, country: can(user, "player.explain", b, country or ""))
    except Busy as e:
        return _page("explain.html", 429, **context, result=None, message=str(e))
    if result is None:  # unknown, another brand's or region's: the same answer
        return _page("explain.html", 404, **context, result=None,
                     message="No player with this id in the profile of your brands and regions.")
    return _page("explain.html", **context, result=result, message="")


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
    if form is None or not _same(form.get("csrf", ""), _csrf(request, user.name)):
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
