"""Content review on the web page (/ui/templates): each template locale's version and review, the
text rendered with sample values, approve / reject by a reviewer of every brand (never the author,
never a stale version), over the real app served by uvicorn; an approval lets the worker send."""

from __future__ import annotations

import shutil
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from _service import running_server
from _web import PW, csrf_of
from _web import sign_in as _sign_in

from crm.campaigns.audit import read_entries
from crm.campaigns.template_reviews import ApprovedTemplates
from crm.channels.templates import TemplateStore
from crm.config import Paths
from crm.service import create_app
from crm.store import users as u

SECRETS: dict[str, str] = {}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    home = tmp_path_factory.mktemp("web_templates")
    templates = home / "templates"
    shutil.copytree(TemplateStore().root, templates)
    data = yaml.safe_load((templates / "bonus.yaml").read_text())
    data["owner"] = "Ana Lopez"
    (templates / "bonus.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    mp = pytest.MonkeyPatch()
    mp.setenv("CRM_TEMPLATES_DIR", str(templates))
    app = create_app(Paths(home))
    engine = app.state.engine
    u.add_user(engine, "cleo.all", "compliance", ["*"], ["*"], PW, person="Cleo Reviewer")
    u.add_user(engine, "ana.author", "compliance", ["*"], ["*"], PW, person="Ana Lopez")
    u.add_user(engine, "cai.a", "compliance", ["A"], ["*"], PW, person="Cai Ng")
    u.add_user(engine, "mark.all", "marketing", ["*"], ["*"], PW, person="Mark Marketer")
    u.add_user(engine, "sup.all", "support", ["*"], ["*"], PW)
    for name in ("cleo.all", "ana.author", "cai.a"):
        SECRETS[name] = parse_qs(urlsplit(u.enroll_totp(engine, name)[1]).query)["secret"][0]
    with running_server(Paths(home), app=app) as url:
        app.state.url = url
        yield app, home, templates
    mp.undo()
    engine.dispose()


def sign_in(app, name):
    c, r = _sign_in(app, name, SECRETS)
    assert r.status_code in (200, 303), r.text
    return c


def test_who_sees_the_templates(site):
    app, _, _ = site
    page = sign_in(app, "cleo.all").get("/ui/templates")
    assert page.status_code == 200 and "bonus" in page.text and "unreviewed" in page.text
    assert sign_in(app, "mark.all").get("/ui/templates").status_code == 200  # reads them, cannot review
    for name in ("cai.a", "sup.all"):  # a brand-scoped reviewer (templates serve every brand), support
        c = sign_in(app, name)
        assert c.get("/ui/templates").status_code == 404 and c.get("/ui/templates/bonus/en").status_code == 404
    review = sign_in(app, "mark.all").get("/ui/templates/bonus/en")
    assert review.status_code == 200 and 'id="approve"' not in review.text


def test_review_shows_the_rendered_text_and_records_the_decision(site):
    app, home, templates = site
    c = sign_in(app, "cleo.all")
    page = c.get("/ui/templates/free_spins/de")
    assert page.status_code == 200 and 'id="sample-subject"' in page.text and "{{" not in page.text.split("<h2>")[1]
    store = TemplateStore(templates)
    version = store.get("free_spins").version("de")
    form = {"csrf": csrf_of(page.text), "version": version, "reason": "RG line and terms checked"}
    assert ("free_spins", "de", version) not in ApprovedTemplates(Paths(home))
    r = c.post("/ui/templates/free_spins/de/approve", data=form)
    assert r.status_code == 303
    assert ("free_spins", "de", version) in ApprovedTemplates(Paths(home))
    assert 'id="review-state">approved' in c.get("/ui/templates/free_spins/de").text
    [entry] = [e for e in read_entries(Paths(home)) if e["kind"] == "template_reviewed"
               and e["details"]["template_id"] == "free_spins" and e["details"]["locale"] == "de"]
    assert entry["by"] == "Cleo Reviewer" and entry["details"]["texts"] == dict(store.get("free_spins").sources["de"])
    # a rejection withdraws it
    r = c.post("/ui/templates/free_spins/de/reject", data=form | {"reason": "second thoughts"})
    assert r.status_code == 303 and ("free_spins", "de", version) not in ApprovedTemplates(Paths(home))


def test_refusals(site):
    app, _, _ = site
    c = sign_in(app, "cleo.all")
    page = c.get("/ui/templates/cashback/en")
    good = {"csrf": csrf_of(page.text), "version": TemplateStore().get("cashback").version("en"), "reason": "ok"}
    assert c.post("/ui/templates/cashback/en/approve", data=good | {"csrf": "0" * 64}).status_code == 403
    assert c.post("/ui/templates/cashback/en/approve", data=good | {"version": "f" * 64}).status_code == 409  # stale
    assert c.post("/ui/templates/cashback/en/approve", data=good | {"reason": " "}).status_code == 422
    for path in ("/ui/templates/nope/en", "/ui/templates/cashback/xx", "/ui/templates/..%2Fbonus/en",
                 "/ui/templates/cashback/en/publish"):
        assert c.get(path).status_code == 404 or c.post(path, data=good).status_code in (404, 405)
    # the author cannot review their own template; a marketer cannot review at all
    a = sign_in(app, "ana.author")
    own = a.get("/ui/templates/bonus/en")
    assert "a second person reviews it" in own.text and 'id="approve"' not in own.text
    r = a.post("/ui/templates/bonus/en/approve", data={
        "csrf": csrf_of(own.text), "version": TemplateStore(site[2]).get("bonus").version("en"), "reason": "mine"})
    assert r.status_code == 409 and "cannot review" in r.text
    m = sign_in(app, "mark.all")
    mp = m.get("/ui/templates/cashback/en")
    assert m.post("/ui/templates/cashback/en/approve", data=good | {"csrf": csrf_of(mp.text)}).status_code == 403
