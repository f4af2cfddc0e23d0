"""Three more pages of the web page (issue 18): a campaign's readout, the gate results of its lists
(with the Great Expectations Data Docs served read-only), and the real-time triggers and journeys
with their counts. Sign-in, sessions and pages as in :mod:`crm.service.web`; access by
:func:`crm.access.can`, scoped by the user's brands and regions.

* Readout (``/ui/campaigns/<id>/readout``, ``readout.view``): the latest readout the pipeline wrote
  (``$CRM_HOME/readouts/<id>.json``, :func:`crm.measurement.readout.write_readout`), its effects and
  guardrails with their 95 % intervals as a table and as an inline SVG drawn here from the numbers
  (point estimate and interval per metric, each row on its own scale with zero at the centre).
* Gates (``/ui/campaigns/<id>/gates``, ``gate.view``; ``/ui/gates`` for every campaign the user may
  see): each published list's ``gate.json`` (:func:`crm.campaigns.overrides.record_list_gate`): the
  verdict, whether the list still has the bytes the gate judged, each expectation's pass or fail,
  the overrides; and a link to the campaign's Data Docs.
* Data Docs (``/ui/data-docs/<site>/...``): the GX sites under ``$CRM_HOME/gx/data_docs`` (the
  path :func:`expectations.data_docs.docs_root` names; the layering keeps ``crm`` from importing
  ``expectations``). A campaign's site (``<campaign id>/``) for a user allowed ``gate.view`` and
  ``list.view`` on each of its brands and jurisdictions (the pages name failing rows by player id,
  as a list does: the analytics, compliance and marketing roles); any other site (landing, marts,
  scores: every brand) for such a user of every brand and region. The path is resolved (symlinks
  included) and must stay under the docs root. GX writes the values it shows (ids, observed values)
  into its pages without escaping them and draws its tables with inline scripts, so a hostile value
  in the data is a script there: the pages are served under :data:`DOC_CSP`, a sandbox that runs
  them in an opaque origin (they read no cookie and nothing of this origin, fetch nothing, post no
  form). Requests made from such a page are cross-site: a link followed inside the site carries the
  SameSite=Lax :data:`DOCS_COOKIE` (set beside the session when a signed-in user opens a page; it
  opens Data Docs only, for the same user, and ends with the session). A page's ``static/`` files
  (Bootstrap, jQuery, Font Awesome, GX's styles and images: no data) need no session: they are
  served from what the sites are built from (:func:`public_static`), never from a site, so the
  answer is the same whether a site exists or not.
* Triggers and journeys (``/ui/triggers``, ``campaign.view``): the triggers and journeys of the
  folder the pipeline reads (``campaigns/triggers``, ``campaigns/journeys``) that the user may see,
  and over the last ``days`` (default 7) from the store: firings by outcome (sent, suppressed by
  rule, held, holdout, other) and journey runs by state, of the user's brands only. A trigger or
  journey has brands but no jurisdictions: it reaches every region, so (as a campaign for every
  jurisdiction) only a user of every region sees it; one for every brand only a user of every brand.

Every file read from the data home is treated as hostile: at most :data:`MAX_JSON_BYTES`, parsed
into the expected shape (numbers finite, texts bounded) or reported as broken, never a 500.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
from pathlib import Path

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import URLSafeTimedSerializer

from crm.config import REPO_ROOT, Paths, campaigns_dir
from crm.service.web import (
    DOCS_COOKIE,
    SESSION_HOURS,
    _allowed,
    _campaign_rows,
    _csrf,
    _in_scope,
    _page,
    _secure,
    _signed_in,
    current_user,
    user_of_cookie,
)

router = APIRouter(prefix="/ui", include_in_schema=False)

MAX_JSON_BYTES = 5 * 1024 * 1024
MAX_DOC_BYTES = 20 * 1024 * 1024
MAX_LISTS = 30
FONTS = (".woff", ".woff2", ".ttf", ".eot", ".otf")
VENDOR = REPO_ROOT / "expectations" / "data_docs_static" / "vendor"  # what the sites' static/vendor holds
# the Data Docs pages: GX writes values (player ids, observed values) into them unescaped and renders
# its tables with inline scripts, so a hostile value in the data is a script there. The pages run in
# a sandbox without allow-same-origin (an opaque origin: no cookie, no storage, no read of this
# origin; no modal dialog, form or plugin) and may fetch nothing (connect-src 'none').
DOC_CSP = ("sandbox allow-scripts allow-popups; default-src 'self'; script-src 'self' 'unsafe-inline'; "
           "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'none'; "
           "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
DOCS_SUBDIR = Path("gx") / "data_docs"  # under the data home: expectations.data_docs.DOCS_SUBDIR
DOC_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
             ".js": "text/javascript; charset=utf-8", ".json": "application/json", ".png": "image/png",
             ".jpg": "image/jpeg", ".gif": "image/gif", ".svg": "image/svg+xml", ".ico": "image/x-icon",
             ".woff": "font/woff", ".woff2": "font/woff2", ".ttf": "font/ttf", ".otf": "font/otf",
             ".eot": "application/vnd.ms-fontobject",
             ".map": "application/json", ".txt": "text/plain; charset=utf-8"}


class Broken(ValueError):
    """A file of the data home that is not what the pipeline writes."""


def read_json(path: Path, limit: int = MAX_JSON_BYTES):
    """The JSON in ``path``; FileNotFoundError without one, Broken when too big, unreadable or not JSON."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise Broken(f"cannot read {path.name}: {e.strerror or e}") from None
    if len(data) > limit:
        raise Broken(f"{path.name} is over {limit // (1024 * 1024)} MB")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=lambda c: None)  # NaN / Infinity: no number
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Broken(f"{path.name} is not valid JSON") from None


def _num(v) -> float | None:
    """A finite number or None (a bool, text or anything else is no number)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _int(v) -> int:
    n = _num(v)
    return int(n) if n is not None and abs(n) < 1e15 else 0


def _text(v, limit: int = 200) -> str:
    return str(v)[:limit] if isinstance(v, str | int | float) and not isinstance(v, bool) else ""


def _found(request: Request, user, campaign_id: str):
    """The campaign's row when the user may see it (None: unknown or another brand's: 404)."""
    found = [r for r in _campaign_rows(request, user) if r["id"] == campaign_id]
    return found[0] if found else None


# ------------------------------------------------------------------------------------ readout

KINDS = ("share", "count", "eur")
NUMBERS = ("diff", "ci_low", "ci_high", "treatment_mean", "control_mean", "p_value", "relative_lift",
           "incremental_total", "incremental_ci_low", "incremental_ci_high", "p_value_rise")


def _metric(e) -> dict | None:
    """One effect or guardrail of a readout file in the shape :func:`effects_table` reads."""
    if not isinstance(e, dict):
        return None
    out = {k: _num(e.get(k)) for k in NUMBERS}
    kind = e.get("kind") if e.get("kind") in KINDS else "count"
    return out | {"label": _text(e.get("label")) or _text(e.get("metric")) or "?", "metric": _text(e.get("metric")),
                  "kind": kind, "unit": _text(e.get("unit"), 60), "n_treatment": _int(e.get("n_treatment")),
                  "n_control": _int(e.get("n_control")), "significant": e.get("significant") is True,
                  "flagged": e.get("flagged") is True}


def normalise_readout(data, campaign_id: str) -> dict:
    """A readout file's content as the page shows it; Broken when it is not a readout."""
    if not isinstance(data, dict) or not isinstance(data.get("effects", []), list) \
            or not isinstance(data.get("guardrails", []), list):
        raise Broken("the readout file is not a readout")
    arms = data.get("arms") if isinstance(data.get("arms"), dict) else {}
    bonus = data.get("bonus") if isinstance(data.get("bonus"), dict) else None
    effects = [m for m in map(_metric, data.get("effects", [])[:50]) if m]
    guards = [m for m in map(_metric, data.get("guardrails", [])[:50]) if m]
    return {"campaign_id": _text(data.get("campaign_id")) or campaign_id, "status": _text(data.get("status")) or "?",
            "channel": _text(data.get("channel")), "sent_from": _text(data.get("sent_from"), 40),
            "sent_to": _text(data.get("sent_to"), 40),
            "arms": {"treatment": _int(arms.get("treatment")), "control": _int(arms.get("control"))},
            "srm_pvalue": _num(data.get("srm_pvalue")), "srm_mismatch": data.get("srm_mismatch") is True,
            "effects": effects, "guardrails": guards,
            "roi": _num(bonus.get("roi")) if bonus else None,
            "cost_eur": _num(bonus.get("cost_eur")) if bonus else None}


PLOT_WIDTH, LABEL_WIDTH, ROW_HEIGHT, VALUE_WIDTH = 860, 270, 30, 250


def plot_rows(result: dict) -> dict:
    """Coordinates of the inline SVG: per metric a point (the difference) and a bar (its 95 %
    interval), each row on its own symmetric scale with zero at the centre of the plot area."""
    from crm.measurement.readout import _fmt

    left, right = LABEL_WIDTH, PLOT_WIDTH - VALUE_WIDTH
    zero, half = (left + right) / 2, (right - left) / 2 - 6
    rows = []
    items = [("effect", e) for e in result["effects"]] + [("guardrail", g) for g in result["guardrails"]]
    for i, (section, e) in enumerate(items):
        y = 20 + i * ROW_HEIGHT + ROW_HEIGHT / 2
        d = e["diff"]
        row = {"y": y, "label": e["label"][:42], "section": section, "point": None,
               "css": "flagged" if e["flagged"] else section}
        if d is not None:
            lo = e["ci_low"] if e["ci_low"] is not None else d
            hi = e["ci_high"] if e["ci_high"] is not None else d
            span = max(abs(lo), abs(hi), abs(d)) or 1.0
            x = lambda v, span=span: round(zero + v / span * half, 1)  # noqa: E731
            dk = "pp" if e["kind"] == "share" else e["kind"]
            row |= {"point": x(d), "lo": x(min(lo, d)), "hi": x(max(hi, d)),
                    "text": f"{_fmt(d, dk)} [{_fmt(e['ci_low'], dk)}, {_fmt(e['ci_high'], dk)}]"}
        rows.append(row)
    return {"rows": rows, "width": PLOT_WIDTH, "height": 30 + len(rows) * ROW_HEIGHT, "zero": zero,
            "left": left, "right": right, "value_x": right + 8}


@router.get("/campaigns/{campaign_id}/readout")
def readout_page(request: Request, campaign_id: str) -> Response:
    """The campaign's latest readout, or "no readout yet"."""
    from crm.measurement.readout import effects_table, readouts_dir, summary_line

    user, away = _signed_in(request)
    if away:
        return away
    c = _found(request, user, campaign_id)
    if c is None:
        return _page("error.html", 404, message="No such campaign.")
    if not _in_scope(user, "readout.view", c["spec"], every=True):
        return _page("error.html", 403, message="Your role, brands or regions do not allow this campaign's readout.")
    context = {"user": user, "c": c, "csrf": _csrf(request, user.name)}
    path = readouts_dir(request.app.state.paths) / f"{c['id']}.json"
    try:
        data = read_json(path)
    except FileNotFoundError:
        return _page("readout.html", **context, result=None, message="No readout yet.")
    except Broken as e:
        return _page("readout.html", **context, result=None, message=f"The readout file is broken: {e}.")
    try:
        result = normalise_readout(data, c["id"])
        table = effects_table(result).to_dict("records")
        summary = summary_line(result | {"bonus": None, "attribution": None})
        written = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (Broken, KeyError, TypeError, ValueError, OSError) as e:
        message = str(e) if isinstance(e, Broken) else "the readout file is not a readout"
        return _page("readout.html", **context, result=None, message=f"The readout file is broken: {message}.")
    return _page("readout.html", **context, result=result, table=table, summary=summary, written=written,
                 plot=plot_rows(result), message="")


# ------------------------------------------------------------------------------------ gates

def docs_root(paths: Paths) -> Path:
    return paths.home / DOCS_SUBDIR


def _sha256(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def _outcome(o) -> dict | None:
    if not isinstance(o, dict):
        return None
    severity = o.get("severity") if o.get("severity") in ("error", "warning", "overridden") else "error"
    return {"expectation": _text(o.get("expectation"), 300) or "?", "success": o.get("success") is True,
            "severity": severity, "description": _text(o.get("description"), 500),
            "unexpected": _int(o.get("unexpected_count")) if o.get("unexpected_count") is not None else None,
            "observed": _text(o.get("observed"), 200)}


def list_gate(directory: Path) -> dict:
    """One published list's gate as the page shows it (read as hostile data)."""
    from crm.campaigns.lists import GATE_FILE, LIST_FILE

    row = {"as_of": directory.name, "state": "no gate result: the quality gate has not run on this list",
           "passed": False, "suite": "", "summary": "", "outcomes": [], "overrides": [], "broken": ""}
    try:
        record = read_json(directory / GATE_FILE)
    except FileNotFoundError:
        return row
    except Broken as e:
        return row | {"state": "broken gate file", "broken": str(e)}
    if not isinstance(record, dict):
        return row | {"state": "broken gate file", "broken": f"{GATE_FILE} is not a gate result"}
    outcomes = record.get("outcomes") if isinstance(record.get("outcomes"), list) else []
    overrides = record.get("overrides") if isinstance(record.get("overrides"), list) else []
    intact = record.get("list_sha256") == _sha256(directory / LIST_FILE)
    passed = record.get("success") is True
    state = ("passed" if intact else "passed, but the list changed after its gate ran") if passed else "failed"
    return row | {"passed": passed and intact, "state": state, "suite": _text(record.get("suite")),
                  "summary": _text(record.get("summary"), 2000),
                  "outcomes": [x for x in map(_outcome, outcomes[:200]) if x],
                  "overrides": [{k: _text(v.get(k), 300) for k in ("expectation", "by", "reason")}
                                for v in overrides[:50] if isinstance(v, dict)]}


def _dates(paths: Paths, campaign_id: str) -> list[Path]:
    """The campaign's list folders (named by an ISO date), newest first."""
    folder = paths.lists / campaign_id
    out = []
    for d in folder.glob("*") if folder.is_dir() else []:
        try:
            if len(d.name) == 10 and dt.date.fromisoformat(d.name) and d.is_dir():
                out.append(d)
        except ValueError:
            continue
    return sorted(out, key=lambda d: d.name, reverse=True)[:MAX_LISTS]


def _docs_allowed(user, spec) -> bool:
    """Data Docs of a campaign's list gate: gate.view and list.view on each of its brands and jurisdictions."""
    return all(_in_scope(user, a, spec, every=True) for a in ("gate.view", "list.view"))


def _all_scope(user) -> bool:
    """Data Docs of the data gates (every brand): gate.view and list.view on every brand and region."""
    return all(_allowed(user, a, [], [], every=True) for a in ("gate.view", "list.view"))


def _site_index(root: Path, site: str) -> str | None:
    index = root / site / "index.html"
    return f"/ui/data-docs/{site}/index.html" if index.is_file() else None


@router.get("/campaigns/{campaign_id}/gates")
def gates_page(request: Request, campaign_id: str) -> Response:
    """The gate results of the campaign's published lists (``?as_of=YYYY-MM-DD``: that list only)."""
    user, away = _signed_in(request)
    if away:
        return away
    c = _found(request, user, campaign_id)
    if c is None:
        return _page("error.html", 404, message="No such campaign.")
    if not _in_scope(user, "gate.view", c["spec"], every=True):
        return _page("error.html", 403, message="Your role, brands or regions do not allow this campaign's gates.")
    as_of = request.query_params.get("as_of", "")
    dirs = _dates(request.app.state.paths, c["id"])
    if as_of:
        dirs = [d for d in dirs if d.name == as_of]
        if not dirs:
            return _page("error.html", 404, message="No published list of this campaign on that date.")
    docs = _site_index(docs_root(request.app.state.paths), c["id"]) if _docs_allowed(user, c["spec"]) else None
    return _page("gates.html", user=user, c=c, csrf=_csrf(request, user.name), gates=[list_gate(d) for d in dirs],
                 docs=docs)


@router.get("/gates")
def all_gates_page(request: Request) -> Response:
    """The latest list gate of every campaign the user may see the gates of, and the data gates' Data
    Docs for a user of every brand and region."""
    user, away = _signed_in(request)
    if away:
        return away
    paths = request.app.state.paths
    rows = []
    for c in _campaign_rows(request, user):
        if not _in_scope(user, "gate.view", c["spec"], every=True):
            continue
        dirs = _dates(paths, c["id"])
        rows.append({"c": c, "gate": list_gate(dirs[0]) if dirs else None})
    root = docs_root(paths)
    sites = []
    if _all_scope(user) and root.is_dir():
        ids = {r["c"]["id"] for r in rows}  # a campaign's site is linked from its gates page
        for d in sorted(root.iterdir())[:200]:
            if d.is_dir() and d.name not in ids and (link := _site_index(root, d.name)):
                sites.append({"name": d.name, "link": link})
    every = _allowed(user, "gate.view", [], [], every=True)
    return _page("all_gates.html", user=user, csrf=_csrf(request, user.name), rows=rows, sites=sites,
                 may_docs=_all_scope(user), landing=landing_gates(paths) if every else None)


LANDING_TAIL_BYTES = 1024 * 1024
LANDING_ROWS = 20


def landing_gates(paths: Paths) -> dict:
    """The landing gate's latest verdicts (its ledger ``landing/gate_log.jsonl``, the last line of a
    batch counts: :func:`crm.ingest.landing.batches_to_gate`), newest first, from the ledger's last
    megabyte; a line that is not a verdict is counted, not shown."""
    ledger = paths.ingest_log.with_name("gate_log.jsonl")
    try:
        with open(ledger, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - LANDING_TAIL_BYTES))
            tail = f.read(LANDING_TAIL_BYTES)
    except FileNotFoundError:
        return {"rows": [], "broken": 0, "exists": False}
    except OSError:
        return {"rows": [], "broken": 1, "exists": True}
    lines = tail.split(b"\n")[1:] if size > LANDING_TAIL_BYTES else tail.split(b"\n")
    latest: dict[str, dict] = {}
    broken = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            e = json.loads(line.decode("utf-8"))
            batch = _text(e["batch_id"], 128)
        except (UnicodeDecodeError, ValueError, KeyError, TypeError):
            broken += 1
            continue
        if not batch:
            broken += 1
            continue
        latest.pop(batch, None)  # the last verdict of a batch counts, in its place
        latest[batch] = {"batch_id": batch, "passed": e.get("passed") is True,
                         "checked_at": _text(e.get("checked_at"), 40), "summary": _text(e.get("summary"), 500)}
    rows = list(latest.values())[::-1][:LANDING_ROWS]
    return {"rows": rows, "broken": broken, "exists": True}


def _doc_response(path: Path, html: bool) -> Response:
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}
    # GX pages paste the data they show without escaping: they run in the sandbox; any other file
    # opened by itself (an SVG is a document) runs nothing
    headers["Content-Security-Policy"] = DOC_CSP if html else "sandbox; default-src 'none'; frame-ancestors 'none'"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_DOC_BYTES + 1)
    except OSError:
        return _page("error.html", 404, message="No such Data Docs page.")
    if len(data) > MAX_DOC_BYTES:
        return _page("error.html", 413, message="This Data Docs file is too big to serve here.")
    return Response(data, media_type=DOC_TYPES[path.suffix.lower()], headers=headers)


def resolve_doc(root: Path, rel: str) -> Path | None:
    """The file ``rel`` names under ``root``, or None: empty, absolute, any ``..`` or odd character,
    outside the root once resolved (symlinks followed), not a regular file, or a type not served."""
    if not rel or len(rel) > 500 or "\\" in rel or not rel.isprintable() or rel.startswith("/"):
        return None
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    try:
        base = root.resolve(strict=True)
        target = (base / rel).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if not target.is_relative_to(base) or target == base or not target.is_file():
        return None
    if target.suffix.lower() not in DOC_TYPES:
        return None
    return target


def _gx_static() -> Path | None:
    import importlib.util

    found = importlib.util.find_spec("great_expectations")
    return Path(found.origin).parent / "render" / "view" / "static" if found and found.origin else None


def public_static(rest: list[str]) -> Path | None:
    """A file of a site's ``static/`` folder, taken from what the sites are built from, never from
    a site: ``vendor/...`` from the vendored copies (expectations/data_docs_static/vendor), ``images``,
    ``styles`` and ``fonts`` from GX's package. Not HTML; the path checked as :func:`resolve_doc` does."""
    if not rest or rest[0] not in ("vendor", "images", "styles", "fonts"):
        return None
    base = VENDOR if rest[0] == "vendor" else _gx_static()
    inner = "/".join(rest[1:] if rest[0] == "vendor" else rest)
    if base is None or not base.is_dir() or inner.lower().endswith((".html", ".htm", ".md")):
        return None
    return resolve_doc(base, inner)


@router.get("/data-docs/{rel:path}")
def data_docs(request: Request, rel: str) -> Response:
    """A Data Docs file, read-only (see the module docstring for who sees which site)."""
    from crm.campaigns.spec import load_campaigns

    parts = rel.split("/")
    if len(parts) > 2 and parts[1] == "static":  # whatever the site, existing or not: it is not told
        shipped = public_static(parts[2:])
        if shipped is None:
            return _page("error.html", 404, message="No such Data Docs page.")
        page = _doc_response(shipped, html=False)
        if shipped.suffix.lower() in FONTS:  # a font loads in CORS mode, and a sandboxed page's origin is null
            page.headers["Access-Control-Allow-Origin"] = "*"
        return page
    root = docs_root(request.app.state.paths)
    path = resolve_doc(root, rel)
    if path is None:
        return _page("error.html", 404, message="No such Data Docs page.")
    site = parts[0]
    inner = path.relative_to(root.resolve()).parts
    user = current_user(request)
    signed_in = user is not None
    if user is None:
        user = _docs_user(request)
    if user is None:
        return RedirectResponse("/ui/login", status_code=303)
    specs, _ = load_campaigns(campaigns_dir())
    spec = next((s for s in specs if s.id == site), None)
    if spec is not None:
        visible = [r for r in _campaign_rows(request, user) if r["id"] == site]
        allowed = bool(visible) and _docs_allowed(user, spec)
    else:
        allowed = _all_scope(user)
    if not allowed or inner[0] != site:  # a site reached through another's symlink: refused
        return _page("error.html", 404, message="No such Data Docs page.")
    page = _doc_response(path, html=path.suffix.lower() == ".html")
    if signed_in:  # the docs cookie: the same user and password time as the session, its own signature
        token = _docs_serializer(request).dumps({"name": user.name, "since": user.password_changed_at.isoformat()})
        page.set_cookie(DOCS_COOKIE, token, max_age=SESSION_HOURS * 3600, httponly=True, samesite="lax",
                        secure=_secure(), path="/ui/data-docs")
    return page


def _docs_serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app.state.ui_key, salt="crm-ui-data-docs")


def _docs_user(request: Request):
    """The user of the Data Docs cookie, checked as a session is; None otherwise."""
    return user_of_cookie(request, DOCS_COOKIE, _docs_serializer(request))


# ------------------------------------------------------------------------------------ triggers and journeys

SENT, SUPPRESSED, HELD, HOLDOUT_COL, OTHER = "sent", "suppressed", "held", "holdout", "other"
MAX_DAYS = 90


def _brand_filter(column, user, spec_brands) -> list:
    """WHERE terms: the rows of the user's brands (and of the spec's, when it names some)."""
    terms = []
    if "*" not in user.brands:
        terms.append(column.in_(list(user.brands)))
    if spec_brands:
        terms.append(column.in_(list(spec_brands)))
    return terms


def trigger_counts(engine: sa.Engine, user, triggers: list, since: dt.datetime) -> dict[str, dict]:
    """Per trigger: firings decided (or held) since ``since`` of the user's brands by outcome, and
    the suppressed ones by rule. SQLAlchemy Core, values bound."""
    from crm.store.schema import trigger_firings
    from crm.store.triggers import HOLDOUT, PENDING, QUEUED, REFUSED

    c = trigger_firings.c
    out = {}
    with engine.connect() as conn:
        for t in triggers:
            counts = {SENT: 0, SUPPRESSED: 0, HELD: 0, HOLDOUT_COL: 0, OTHER: 0}
            rules: dict[str, int] = {}
            others: dict[str, int] = {}
            q = (sa.select(c.status, c.rule, c.held, sa.func.count().label("n"))
                 .where(c.trigger_id == t.id, c.updated_at >= since, *_brand_filter(c.brand_id, user, t.brands))
                 .group_by(c.status, c.rule, c.held))
            for status, rule, held, n in conn.execute(q):
                if status == QUEUED:
                    counts[SENT] += n
                elif status == REFUSED:
                    counts[SUPPRESSED] += n
                    rules[rule or "unknown"] = rules.get(rule or "unknown", 0) + n
                elif status == PENDING and held:
                    counts[HELD] += n
                elif status == HOLDOUT:
                    counts[HOLDOUT_COL] += n
                else:
                    counts[OTHER] += n
                    others[status] = others.get(status, 0) + n
            out[t.id] = {"counts": counts, "rules": dict(sorted(rules.items())), "others": dict(sorted(others.items()))}
    return out


def journey_counts(engine: sa.Engine, user, journeys: list, since: dt.datetime) -> dict[str, dict[str, int]]:
    """Per journey: its runs of the user's brands entered or changed since ``since``, by state."""
    from crm.store.journeys import ACTIVE, COMPLETED, CONVERTED, EXITED, HOLDOUT
    from crm.store.schema import journey_runs

    c = journey_runs.c
    out = {}
    with engine.connect() as conn:
        for j in journeys:
            counts = dict.fromkeys((ACTIVE, COMPLETED, CONVERTED, EXITED, HOLDOUT), 0)
            q = (sa.select(c.status, sa.func.count().label("n"))
                 .where(c.journey_id == j.id, sa.or_(c.entered_at >= since, c.updated_at >= since),
                        *_brand_filter(c.brand_id, user, j.brands))
                 .group_by(c.status))
            for status, n in conn.execute(q):
                counts[status] = counts.get(status, 0) + n
            out[j.id] = counts
    return out


def _spec_visible(user, spec) -> bool:
    """A trigger or journey (brands, no jurisdictions: every region) the user may see."""
    return _allowed(user, "campaign.view", list(spec.brands), [])


@router.get("/triggers")
def triggers_page(request: Request) -> Response:
    """The triggers and journeys of the user's brands with their counts over the last ``days`` (1-90, default 7)."""
    return _triggers(request, None)


@router.get("/triggers/{spec_id}")
def trigger_page(request: Request, spec_id: str) -> Response:
    """One trigger or journey: 404 when unknown or not the user's (another brand's, or every region's)."""
    return _triggers(request, spec_id)


def _triggers(request: Request, only: str | None) -> Response:
    from crm.store.deliveries import now as store_now
    from crm.triggers.journeys import load_journeys
    from crm.triggers.spec import load_triggers

    user, away = _signed_in(request)
    if away:
        return away
    raw = request.query_params.get("days", "7")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3 and 1 <= int(raw) <= MAX_DAYS):
        return _page("error.html", 422, message=f"days: a whole number of days from 1 to {MAX_DAYS}.")
    days = int(raw)
    folder = campaigns_dir()
    triggers, t_problems = load_triggers(folder)
    journeys, j_problems = load_journeys(folder)
    triggers = sorted((t for t in triggers if _spec_visible(user, t)), key=lambda t: t.id)
    journeys = sorted((j for j in journeys if _spec_visible(user, j)), key=lambda j: j.id)
    if only is not None:
        triggers, journeys = [t for t in triggers if t.id == only], [j for j in journeys if j.id == only]
        if not triggers and not journeys:
            return _page("error.html", 404, message="No such trigger or journey.")
    since = store_now() - dt.timedelta(days=days)
    engine = request.app.state.engine
    return _page("triggers.html", user=user, csrf=_csrf(request, user.name), days=days, since=since,
                 triggers=triggers, journeys=journeys, fired=trigger_counts(engine, user, triggers, since),
                 runs=journey_counts(engine, user, journeys, since),
                 problems=len(t_problems) + len(j_problems) if "*" in user.brands and only is None else 0,
                 only=only)

