"""Data Docs offline and over http (expectations/data_docs.py): pages load nothing from a CDN, one
index lists every suite's site and its latest validation, gate links are http URLs."""

from __future__ import annotations

import re
import threading
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest

from expectations.data_docs import DEFAULT_BASE_URL, data_docs_url, docs_root, make_server, render_index, sites

# a stylesheet, script or image fetched from the network (plain <a href> links are not loads)
REMOTE_LOAD = re.compile(r"""<(link|script|img)\b[^>]*\b(href|src)=["']?https?://|url\(['"]?https?://""", re.I)


def _validate(suite: str, docs: Path, ok: bool):
    import great_expectations as gx

    from expectations.validate import validate

    df = pd.DataFrame({"player_id": ["a", "b"], "x": [1, 2 if ok else None]})
    return validate(df, suite, [gx.expectations.ExpectColumnValuesToNotBeNull(column="x")],
                    id_column="player_id", docs_dir=docs)


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> tuple[Path, dict]:
    """A data home's docs root with two suites and a campaign's list gate (nested one level),
    one of them validated twice: its site keeps the latest."""
    root = docs_root(tmp_path_factory.mktemp("home"))
    results = {"marts_dim_player": _validate("marts_dim_player", root, ok=True)}
    _validate("scores_values", root, ok=True)
    results["scores_values"] = _validate("scores_values", root, ok=False)
    results["campaign_list"] = _validate("campaign_list", root / "reengage_vip", ok=True)
    return root, results


def test_pages_load_nothing_from_the_network_and_vendored_files_exist(docs):
    root, results = docs
    pages = [p for p in root.rglob("*.html") if "vendor" not in p.parts]
    assert len(pages) >= 9  # index, expectation suite, validation page per site
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not REMOTE_LOAD.search(text), (page, REMOTE_LOAD.search(text).group(0))
        for ref in re.findall(r"""(?:href|src)=["']([^"'#?]+static/[^"'#?]+)""", text):
            assert (page.parent / ref).resolve().exists(), (page, ref)
    page = Path(unquote(urlparse(results["scores_values"].docs[0]).path))
    text = page.read_text(encoding="utf-8")
    assert "static/vendor/bootstrap/bootstrap.min.css" in text
    assert "static/vendor/fontawesome/css/all.min.css" in text  # the status icons
    assert "integrity=" not in text  # the CDN's subresource hashes do not fit the vendored bundle


def test_index_lists_every_suite_with_its_latest_validation_and_no_cdn(docs):
    root, results = docs
    entries = {e.name: e for e in sites(root)}
    assert set(entries) == {"marts_dim_player", "scores_values", "reengage_vip/campaign_list"}
    assert entries["scores_values"].status == "failed" and entries["marts_dim_player"].status == "passed"
    # the latest validation is the page the gate links (the site keeps only the latest)
    latest = root / unquote(entries["scores_values"].latest)
    assert latest == Path(unquote(urlparse(results["scores_values"].docs[0]).path))
    page = render_index(root)
    for name in entries:
        assert name in page
        assert f'href="{entries[name].latest}"' in page
    assert not re.search(r"https?://", page)


def test_data_docs_url_is_the_http_url_of_a_page_under_the_docs_root(docs, monkeypatch):
    root, results = docs
    monkeypatch.delenv("CRM_DATA_DOCS_URL", raising=False)
    url = results["campaign_list"].docs[0]
    rel = Path(unquote(urlparse(url).path)).relative_to(root).as_posix()
    assert data_docs_url(url) == f"{DEFAULT_BASE_URL}/{rel}"  # root found from the page (gx/data_docs)
    assert data_docs_url(url, root) == f"{DEFAULT_BASE_URL}/{rel}"
    monkeypatch.setenv("CRM_DATA_DOCS_URL", "http://docs.example:8080/")
    assert data_docs_url(url).startswith("http://docs.example:8080/reengage_vip/campaign_list/validations/")
    assert data_docs_url("file:///elsewhere/page.html") == "file:///elsewhere/page.html"  # not under a root
    assert data_docs_url("/h/gx/data_docs/a b/index.html", base="http://x") == "http://x/a%20b/index.html"


def test_server_serves_the_index_and_the_pages(docs):
    root, results = docs
    server = make_server(root, port=0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = urllib.request.urlopen(base + "/", timeout=10).read().decode()
        assert "reengage_vip/campaign_list" in index
        url = data_docs_url(results["scores_values"].docs[0], root, base)
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "scores_values" in page
        css = urllib.request.urlopen(base + "/scores_values/static/vendor/bootstrap/bootstrap.min.css", timeout=10)
        assert css.status == 200
    finally:
        server.shutdown()
        server.server_close()
