"""Great Expectations Data Docs, offline and over http.

GX 1.x writes one HTML site per suite (``expectations.validate.validate(..., docs_dir=D)`` builds
``D/<suite>``; the gates use ``$CRM_HOME/gx/data_docs``, a campaign's list gate
``$CRM_HOME/gx/data_docs/<campaign>``). Its pages load Bootstrap, jQuery, Font Awesome and
bootstrap-table from CDNs and its links are ``file://`` URLs, which a browser refuses from the
Dagster UI's http page. Here:

- :func:`localize_site` copies the vendored files (``data_docs_static/vendor``, see its README)
  into a site's ``static/vendor/`` and points the pages at them (CDN tags this project does not
  need are removed), so a page loads nothing from the network;
- :func:`render_index` is one page listing every suite's site under the docs root and its
  latest validation (status, time, link);
- :func:`serve` serves the docs root over http (``python -m expectations.data_docs serve``,
  started by ``make ui``: ``crm.cli.ui``), the index at ``/``;
- :func:`data_docs_url` turns a page's ``file://`` URL (``GateResult.docs``) into its http URL on
  that server: the link to show in the Dagster UI. Base: ``$CRM_DATA_DOCS_URL``, default
  ``http://127.0.0.1:3001``.

No Dagster here; standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import os
import re
import shutil
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

DEFAULT_BASE_URL = "http://127.0.0.1:3001"
BASE_URL_ENV = "CRM_DATA_DOCS_URL"
DOCS_SUBDIR = Path("gx") / "data_docs"  # under the data home
VENDOR = Path(__file__).parent / "data_docs_static" / "vendor"

# CDN URL (regex) -> vendored file under static/vendor/, or None: the tag is removed
_CDN: list[tuple[re.Pattern, str | None]] = [(re.compile(p), f) for p, f in [
    (r"bootstrap-table@[\d.]+/dist/bootstrap-table(\.min)?\.css", "bootstrap-table/bootstrap-table.min.css"),
    (r"bootstrap-table@[\d.]+/dist/bootstrap-table(\.min)?\.js", "bootstrap-table/bootstrap-table.min.js"),
    (r"filter-control/bootstrap-table-filter-control(\.min)?\.css",
     "bootstrap-table/bootstrap-table-filter-control.min.css"),
    (r"filter-control/bootstrap-table-filter-control(\.min)?\.js",
     "bootstrap-table/bootstrap-table-filter-control.min.js"),
    (r"bootstrap/4\.[\d.]+/css/bootstrap(\.min)?\.css", "bootstrap/bootstrap.min.css"),
    (r"bootstrap/4\.[\d.]+/js/bootstrap(\.bundle)?(\.min)?\.js", "bootstrap/bootstrap.bundle.min.js"),
    (r"bootstrap-datepicker/[\d.]+/css/bootstrap-datepicker(\.min)?\.css",
     "bootstrap-datepicker/bootstrap-datepicker.min.css"),
    (r"bootstrap-datepicker/[\d.]+/js/bootstrap-datepicker(\.min)?\.js",
     "bootstrap-datepicker/bootstrap-datepicker.min.js"),
    (r"font-awesome/[\d.]+/css/all(\.min)?\.css", "fontawesome/css/all.min.css"),
    (r"jquery-3[\d.]*(\.min)?\.js", "jquery/jquery.min.js"),
    (r"popper", None),  # in bootstrap.bundle.min.js
    (r"vega", None),  # profiling charts: not built here
    (r"bootstrap-dark", None),
]]
_TAG = re.compile(r"""<link\b[^>]*?\bhref=["'](https?://[^"']+)["'][^>]*>"""
                  r"""|<script\b[^>]*?\bsrc=["'](https?://[^"']+)["'][^>]*>\s*</script>""", re.I)
_GX_ASSETS = re.compile(r"https?://great-expectations-web-assets\.[^\s\"')]+")
_LOCAL_IMAGES = re.compile(r"""(["'(])(?:\.\./)*static/images/""")
_SRI = re.compile(r"""\s+(integrity|crossorigin)=["'][^"']*["']""", re.I)
_MARKER = "<!-- crm: localized data docs -->"


def docs_root(home: str | Path) -> Path:
    """The Data Docs root of a data home: ``<home>/gx/data_docs`` (what ``make ui`` serves)."""
    return Path(home) / DOCS_SUBDIR


def _as_path(page: str | Path) -> Path:
    s = str(page)
    return Path(unquote(urlparse(s).path)) if s.startswith("file:") else Path(s)


def _find_root(path: Path) -> Path | None:
    for parent in path.parents:
        if parent.name == DOCS_SUBDIR.name and parent.parent.name == DOCS_SUBDIR.parent.name:
            return parent
    return None


def data_docs_url(page: str | Path, root: str | Path | None = None, base: str | None = None) -> str:
    """The http URL of a Data Docs page (a ``file://`` URL from ``GateResult.docs``, or a path) on the
    docs server of ``make ui``.

    ``root``: the directory the server serves (default: the page's nearest ``gx/data_docs`` ancestor);
    ``base``: the server's URL (default ``$CRM_DATA_DOCS_URL``, else ``http://127.0.0.1:3001``). A page
    outside the root is returned as given.
    """
    path = _as_path(page).absolute()
    root_path = Path(root).absolute() if root is not None else _find_root(path)
    if root_path is None:
        return str(page)
    try:
        rel = path.relative_to(root_path)
    except ValueError:
        try:
            rel = path.resolve().relative_to(root_path.resolve())
        except ValueError:
            return str(page)
    base = (base or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
    return f"{base}/{quote(rel.as_posix())}"


# ---------------------------------------------------------------------------------------------- offline pages

def _copy_vendor(site: Path) -> Path:
    dest = site / "static" / "vendor"
    for src in VENDOR.rglob("*"):
        if src.is_file() and src.name != "README.md":
            out = dest / src.relative_to(VENDOR)
            if not out.exists() or out.stat().st_size != src.stat().st_size:
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, out)
    return dest


def localize_html(text: str, vendor_rel: str, images_rel: str) -> str:
    """``text`` (a GX page) with its CDN stylesheets and scripts pointed at ``vendor_rel`` (the relative
    URL of ``static/vendor`` from the page) or removed, and GX's remote logo at ``images_rel``."""
    def tag(m: re.Match) -> str:
        url = m.group(1) or m.group(2)
        for pattern, local in _CDN:
            if pattern.search(url):
                if local is None:
                    return ""
                return _SRI.sub("", m.group(0)).replace(url, f"{vendor_rel}/{local}")
        return ""  # an unknown remote script or stylesheet: never loaded from the network

    text = _TAG.sub(tag, text)
    text = _GX_ASSETS.sub(f"{images_rel}/logo-long.png", text)
    # GX's own relative links miss a level on validation pages (favicon): from the page, not GX's guess
    text = _LOCAL_IMAGES.sub(lambda m: f"{m.group(1)}{images_rel}/", text)
    if _MARKER not in text:
        text = text.replace("<head>", f"<head>\n{_MARKER}", 1)
    return text


def localize_site(site: str | Path) -> int:
    """Make a GX Data Docs site work offline: vendored files in ``static/vendor/``, every page pointed
    at them. Idempotent (a page already localized is left alone). Returns the pages rewritten."""
    site = Path(site)
    vendor = _copy_vendor(site)
    rewritten = 0
    for page in site.rglob("*.html"):
        if vendor in page.parents:
            continue
        text = page.read_text(encoding="utf-8")
        if _MARKER in text and not _TAG.search(text):
            continue
        rel = Path(os.path.relpath(site / "static", page.parent)).as_posix()
        new = localize_html(text, f"{rel}/vendor", f"{rel}/images")
        if new != text:
            tmp = page.with_suffix(".html.tmp")
            tmp.write_text(new, encoding="utf-8")
            tmp.replace(page)
            rewritten += 1
    return rewritten


# ---------------------------------------------------------------------------------------------- index page

@dataclass(frozen=True)
class SiteEntry:
    name: str  # the site's path under the root: "<suite>" or "<campaign>/<suite>"
    index: str  # relative URL of the site's own index
    latest: str | None  # relative URL of the latest validation page
    run_time: dt.datetime | None
    status: str  # passed | failed | unknown


_RUN_TIME = re.compile(r"^\d{8}T\d{6}(\.\d+)?Z$")
_STATUS = re.compile(r"Status:</span>\s*<i class=\"fas fa-(check-circle|times)")


def _run_time(page: Path) -> dt.datetime | None:
    for part in reversed(page.parts):
        if _RUN_TIME.match(part):
            fmt = "%Y%m%dT%H%M%S.%fZ" if "." in part else "%Y%m%dT%H%M%SZ"
            return dt.datetime.strptime(part, fmt).replace(tzinfo=dt.UTC)
    return None


def sites(root: str | Path) -> list[SiteEntry]:
    """Every GX site under ``root`` (a folder with ``index.html`` and ``validations/``), with its latest
    validation page, sorted by name."""
    root = Path(root)
    out = []
    for index in sorted(root.rglob("index.html")):
        site = index.parent
        if not (site / "validations").is_dir() or site == root:
            continue
        pages = [(_run_time(p) or dt.datetime.fromtimestamp(p.stat().st_mtime, dt.UTC), p)
                 for p in (site / "validations").rglob("*.html")]
        latest = max(pages, key=lambda tp: (tp[0], str(tp[1]))) if pages else None
        status = "unknown"
        if latest is not None:
            m = _STATUS.search(latest[1].read_text(encoding="utf-8", errors="replace"))
            status = {"check-circle": "passed", "times": "failed"}.get(m.group(1), "unknown") if m else "unknown"
        out.append(SiteEntry(
            name=site.relative_to(root).as_posix(), index=quote(index.relative_to(root).as_posix()),
            latest=quote(latest[1].relative_to(root).as_posix()) if latest else None,
            run_time=latest[0] if latest else None, status=status))
    return sorted(out, key=lambda s: s.name)


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem; color: #212529; }
h1 { font-size: 1.5rem; } p { color: #6c757d; }
table { border-collapse: collapse; min-width: 60%; }
th, td { text-align: left; padding: .45rem .9rem; border-bottom: 1px solid #dee2e6; }
th { background: #f8f9fa; }
a { color: #0d6efd; text-decoration: none; } a:hover { text-decoration: underline; }
.passed { color: #198754; font-weight: 600; } .failed { color: #dc3545; font-weight: 600; }
.unknown { color: #6c757d; }
"""
_BADGE = {"passed": "&#10004; passed", "failed": "&#10008; failed", "unknown": "?"}


def _row(e: SiteEntry) -> str:
    when = e.run_time.strftime("%Y-%m-%d %H:%M:%S UTC") if e.run_time else ""
    latest = f'<a href="{e.latest}">latest validation</a>' if e.latest else "(none)"
    return (f'<tr><td><a href="{e.index}">{html.escape(e.name)}</a></td>'
            f'<td class="{e.status}">{_BADGE[e.status]}</td><td>{when}</td><td>{latest}</td></tr>')


def render_index(root: str | Path) -> str:
    """One self-contained HTML page (no external stylesheet, script or image) listing every suite's
    Data Docs site under ``root`` and its latest validation."""
    entries = sites(root)
    rows = "\n".join(_row(e) for e in entries)
    body = (f"<table><thead><tr><th>suite (site)</th><th>status</th><th>validated</th><th>page</th></tr></thead>"
            f"<tbody>\n{rows}\n</tbody></table>" if entries else
            "<p>No Data Docs yet: they are written by the quality gates of a run (<code>make demo</code>, "
            "<code>crm run</code>).</p>")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>casino-crm Data Docs</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>Data Docs: the latest validation of every gate</h1>\n"
            f"<p>{html.escape(str(root))}: one Great Expectations site per suite "
            f"(a campaign's list gate under its campaign id).</p>\n{body}\n</body></html>\n")


# ---------------------------------------------------------------------------------------------- server

def make_server(root: str | Path, host: str = "127.0.0.1", port: int = 3001) -> ThreadingHTTPServer:
    """An http server of the docs root (not started): files as they are, :func:`render_index` at ``/``.
    Sites built before pages were localized are localized first."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for e in sites(root):
        localize_site(root / e.name)

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):  # noqa: N802 - http.server's name
            if urlparse(self.path).path in ("/", "/index.html"):
                body = render_index(root).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

        def log_message(self, format, *args):  # noqa: A002 - http.server's signature
            pass  # quiet: the UI supervisor's terminal shows the three servers' URLs, not every request

    return ThreadingHTTPServer((host, port), Handler)


def serve(root: str | Path, host: str = "127.0.0.1", port: int = 3001) -> None:
    """Serve the Data Docs root until the process is stopped."""
    server = make_server(root, host, port)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m expectations.data_docs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve the Data Docs root over http (index at /)")
    s.add_argument("--root", help="the Data Docs root (default: $CRM_HOME/gx/data_docs)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=3001)
    loc = sub.add_parser("localize", help="point every site's pages under ROOT at the vendored files")
    loc.add_argument("root")
    args = parser.parse_args(argv)
    if args.cmd == "localize":
        print(sum(localize_site(Path(args.root) / e.name) for e in sites(args.root)), "pages rewritten")
        return
    root = args.root
    if root is None:
        from crm.config import crm_home

        root = docs_root(crm_home())
    serve(root, args.host, args.port)


if __name__ == "__main__":
    main()
