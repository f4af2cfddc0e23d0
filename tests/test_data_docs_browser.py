"""Data Docs in a real browser: headless Chromium (Debian's package, driven by Playwright) opens the docs
server's index and a validation page the way a person would, and the page loads nothing from another host,
nothing fails to load, Bootstrap styles it and Font Awesome draws its status icon.

tests/test_data_docs.py checks the rewritten links in the HTML; this checks what a browser makes of them.
Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``; ``.ci/run`` installs it). Playwright never
downloads a browser here: ``playwright install`` is not run, the system Chromium is launched by path.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest

from expectations.data_docs import data_docs_url, docs_root

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]

# Bootstrap 4's values for what the validation page uses: an unstyled page has none of them
BOOTSTRAP_DANGER = "rgb(220, 53, 69)"  # .text-danger (#dc3545), the colour of the failed-status icon


def _validate(suite: str, docs: Path, ok: bool):
    import great_expectations as gx

    from expectations.validate import validate

    df = pd.DataFrame({"player_id": ["a", "b"], "x": [1, 2 if ok else None]})
    return validate(df, suite, [gx.expectations.ExpectColumnValuesToNotBeNull(column="x")],
                    id_column="player_id", docs_dir=docs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A docs root with a passing suite and a failing one (its latest page shows the failed icon), served by
    ``python -m expectations.data_docs serve`` on a free port. Yields (root, base URL, failing result)."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: apt-get install -y chromium (Debian's package; never `playwright install`)")
    pytest.importorskip("playwright.sync_api", reason="playwright is in requirements.lock: make venv")
    root = docs_root(tmp_path_factory.mktemp("home"))
    _validate("marts_dim_player", root, ok=True)
    failed = _validate("scores_values", root, ok=False)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "expectations.data_docs", "serve", "--root", str(root), "--port", str(port)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"docs server exited: {proc.stderr.read().decode()}")
                if time.monotonic() > deadline:
                    pytest.fail("docs server did not answer within 30 s")
                time.sleep(0.1)
        yield root, base, failed
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        try:
            yield b
        finally:
            b.close()


class Loads:
    """Every request a page makes, the ones that failed and the responses with an error status."""

    def __init__(self, page):
        self.requests: list[str] = []
        self.failed: list[tuple[str, str | None]] = []
        self.bad_status: list[tuple[str, int]] = []
        self.ok: set[str] = set()
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("requestfailed", lambda r: self.failed.append((r.url, r.failure)))
        page.on("response", self._response)

    def _response(self, r):
        if r.status >= 400:
            self.bad_status.append((r.url, r.status))
        else:
            self.ok.add(r.url)

    def assert_all_local_and_loaded(self, base: str) -> None:
        local = urlparse(base).netloc
        remote = [u for u in self.requests
                  if urlparse(u).scheme not in ("data", "blob", "about") and urlparse(u).netloc != local]
        assert not remote, f"requests to another host (or scheme): {remote}"
        assert not self.failed, f"requests that failed: {self.failed}"
        assert not self.bad_status, f"responses >= 400: {self.bad_status}"


def test_index_and_validation_page_render_offline_with_bootstrap_and_font_awesome(site, browser):
    root, base, failed = site
    page = browser.new_page()
    loads = Loads(page)

    # the index: one self-contained page listing each suite's latest validation
    page.goto(base + "/", wait_until="load")
    assert page.title() == "casino-crm Data Docs"
    row = page.locator("tr", has_text="scores_values")
    assert row.locator("td.failed").inner_text().strip().endswith("failed")
    assert page.locator("tr", has_text="marts_dim_player").locator("td.passed").count() == 1

    # follow its link to the failing suite's latest validation, as a person would
    with page.expect_navigation(wait_until="load"):
        row.get_by_role("link", name="latest validation").click()
    expected = data_docs_url(failed.docs[0], root, base)
    assert unquote(page.url) == unquote(expected)
    page.wait_for_load_state("networkidle")
    page.evaluate("document.fonts.ready.then(() => true)")

    loads.assert_all_local_and_loaded(base)
    path = lambda u: urlparse(u).path  # noqa: E731
    loaded = {path(u) for u in loads.ok}
    for vendored in ("bootstrap/bootstrap.min.css", "bootstrap/bootstrap.bundle.min.js", "jquery/jquery.min.js",
                     "bootstrap-table/bootstrap-table.min.js", "fontawesome/css/all.min.css"):
        assert any(p.endswith("/static/vendor/" + vendored) for p in loaded), (vendored, sorted(loaded))

    # Bootstrap's styles are applied (an unstyled page: navbar display block, table auto width and no margin)
    nav = page.locator("nav.navbar").first
    assert nav.evaluate("e => getComputedStyle(e).display") == "flex"
    assert nav.evaluate("e => getComputedStyle(e).position") == "sticky"  # .sticky-top
    # .table / .table-sm: full width, cells padded .3rem with a #dee2e6 rule (unstyled: auto width, 1px padding)
    table = page.locator("table.table.table-sm").first
    styles = table.evaluate("e => { const td = e.querySelector('td'), s = getComputedStyle(td);"
                            " return {padding: s.paddingLeft, rule: s.borderTopWidth + ' ' + s.borderTopColor,"
                            " width: e.getBoundingClientRect().width,"
                            " parent: e.parentElement.getBoundingClientRect().width} }")
    assert styles["padding"] == "4.8px" and styles["rule"] == "1px rgb(222, 226, 230)", styles
    assert styles["width"] > 0 and abs(styles["width"] - styles["parent"]) < 1, styles
    # the scripts ran: bootstrap-table (on jQuery) wrapped the data-toggle="table" tables in its container
    assert page.locator("div.bootstrap-table table.table").count() > 0

    # the failed-status icon: Font Awesome's glyph, its font file fetched from the site and loaded
    icon = page.locator("i.fas.fa-times").first
    icon.wait_for(state="visible")
    assert icon.evaluate("e => getComputedStyle(e).color") == BOOTSTRAP_DANGER  # .text-danger
    before = icon.evaluate("e => { const s = getComputedStyle(e, '::before');"
                           " return {family: s.fontFamily, content: s.content, weight: s.fontWeight} }")
    assert "Font Awesome" in before["family"], before
    assert before["content"] not in ("", "none", "normal"), before
    box = icon.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0, box
    assert any(p.endswith("/static/vendor/fontawesome/webfonts/fa-solid-900.woff2") for p in loaded), sorted(loaded)
    faces = page.evaluate("() => [...document.fonts].map(f => ({family: f.family, weight: f.weight,"
                          " status: f.status}))")
    assert any("Font Awesome" in f["family"] and f["weight"] == "900" and f["status"] == "loaded" for f in faces), faces
    assert page.evaluate("document.fonts.check('900 16px \"Font Awesome 6 Free\"', '\\uf00d')")
    page.close()
