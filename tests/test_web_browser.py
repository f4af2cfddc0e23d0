"""The web page in a real browser (issue 18): headless Chromium (Debian's package, driven by Playwright)
signs in as a brand-A marketer, drafts a campaign with a dry run, submits it, is refused approving it, a
compliance officer with the same person's name is refused too (four-eyes), another compliance officer
signs in with a TOTP code and approves it, the marketer downloads its published list, edits it (the
page shows the diff against the approved version), explains a player, and is denied brand B's pages and
files (404). The stylesheet loads (the pages' CSP refuses inline styles) and nothing comes from another host.
A brand-A analyst then reads a campaign's readout (its inline SVG plot), its list's gate, follows the link
to the gate's Data Docs (a real Great Expectations site holding a ``<script>`` value: it runs in the
sandbox's opaque origin, no dialog) and the triggers page.

With ``CRM_SCREENSHOTS=docs/img`` the main pages are saved there as PNG for docs/web.md (not on every run).
Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``; ``.ci/run`` installs it); Playwright never
downloads a browser here (``playwright install`` is not run: the system Chromium is launched by path).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse, urlsplit

import pyotp
import pytest
from _service import running_server
from _web import AS_OF, PW, players, put_players

from crm.campaigns.dry_run import online_audience
from crm.campaigns.lists import build_list, publish
from crm.campaigns.spec import load_campaign
from crm.config import CAMPAIGNS_DIR, Paths
from crm.service import create_app
from crm.store import users as u

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = os.environ.get("CRM_SCREENSHOTS")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The app on a home with brand A's and brand B's campaigns (B's with a published list), a profile
    copy of both brands, a marketer of A, a compliance officer of A, and a compliance account of the
    marketer's own person; served by uvicorn with plain-HTTP cookies (127.0.0.1)."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: apt-get install -y chromium (Debian's package; never `playwright install`)")
    pytest.importorskip("playwright.sync_api", reason="playwright is in requirements.lock: make venv")
    home = tmp_path_factory.mktemp("browser")
    folder = home / "campaigns"
    folder.mkdir()
    shutil.copy(CAMPAIGNS_DIR / "_offers.yaml", folder / "_offers.yaml")
    (folder / "welcome_a.yaml").write_text("id: welcome_a\nname: Welcome spins (A)\nowner: Ana Lopez\n"
                                           "channel: in_app\nbrands: [A]\npriority: 10\nsegment: {named: newcomers}\n"
                                           "offer: {template: free_spins, value_eur: 5, wagering: 10}\n")
    (folder / "b_only.yaml").write_text("id: b_only\nname: Brand B reactivation\nowner: Bo Berg\nchannel: email\n"
                                        "brands: [B]\n")
    mp = pytest.MonkeyPatch()
    mp.setenv("CRM_CAMPAIGNS_DIR", str(folder))
    mp.setenv("CRM_UI_INSECURE_COOKIES", "1")  # plain HTTP on 127.0.0.1, as `make serve`
    app = create_app(Paths(home))
    engine = app.state.engine
    put_players(engine, players())
    publish(build_list(load_campaign(folder / "b_only.yaml"), online_audience(engine, ["B"]).frame, AS_OF),
            Paths(home))
    u.add_user(engine, "mia.a", "marketing", ["A"], ["*"], PW, person="Mia Marketer")
    u.add_user(engine, "mia.review", "compliance", ["A"], ["*"], PW, person="Mia Marketer")
    u.add_user(engine, "cleo.a", "compliance", ["A"], ["*"], PW, person="Cleo Compliance")
    u.add_user(engine, "rita", "compliance", ["*"], ["*"], PW, person="Rita Reviewer")  # texts serve every brand
    secrets = {n: parse_qs(urlsplit(u.enroll_totp(engine, n)[1]).query)["secret"][0]
               for n in ("mia.review", "cleo.a", "rita")}
    with running_server(Paths(home), app=app) as url:
        yield url, home, folder, secrets, engine
    mp.undo()
    engine.dispose()


def _shot(page, name: str) -> None:
    if SCREENSHOTS:
        out = Path(SCREENSHOTS)
        out = out if out.is_absolute() else REPO / out
        out.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out / f"{name}.png"), full_page=True)


def _sign_in(page, base: str, name: str, code: str | None = None, shot: str | None = None) -> None:
    page.goto(f"{base}/ui/login")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PW)
    if code:
        page.get_by_label("Code from your authenticator app").fill(code)
    if shot:
        _shot(page, shot)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/ui/campaigns")


def _sign_out(page, base: str) -> None:
    page.goto(f"{base}/ui/campaigns")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/ui/login$"))


def test_draft_approve_download_explain_and_be_denied_brand_b_in_a_browser(site):
    from playwright.sync_api import expect, sync_playwright

    base, home, folder, secrets, engine = site
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))

            # a brand-A marketer signs in and sees brand A's campaigns only, styled by the stylesheet
            _sign_in(page, base, "mia.a", shot="signin")
            expect(page.get_by_role("link", name="Welcome spins (A)")).to_be_visible()
            expect(page.get_by_role("link", name="Brand B reactivation")).to_have_count(0)
            assert page.locator("header").evaluate("e => getComputedStyle(e).display") == "flex"
            _shot(page, "campaigns")

            # drafts a campaign and dry-runs it: the audience and who is left out by which rule, nothing saved
            page.get_by_role("link", name="Draft a campaign").click()
            page.get_by_label("Id").fill("autumn_reload")
            page.get_by_label("Name", exact=True).fill("Autumn reload bonus")
            page.get_by_label("Channel").select_option("email")
            page.get_by_label("A", exact=True).check()
            page.get_by_label("MT", exact=True).check()
            page.get_by_label("active", exact=True).check()
            page.get_by_label("rule 1 field").select_option("net_loss_eur_7d")
            page.get_by_label("rule 1 operator").select_option(">=")
            page.get_by_label("rule 1 value").fill("1000")
            page.get_by_label("Template").select_option("bonus")
            page.get_by_label("Value EUR").fill("10")
            page.get_by_label("Wagering (times)").fill("10")
            page.get_by_label("Holdout share").fill("0.2")
            page.get_by_label("Total budget EUR").fill("2000")
            page.get_by_role("button", name="Dry run").click()
            dry = page.locator("#dry-run")
            expect(dry).to_contain_text("players to contact")
            to_contact = int(dry.locator(".to-contact").inner_text().replace(",", ""))
            assert 0 < to_contact <= 30
            expect(dry.locator("table.suppression")).to_contain_text("no_channel_consent")
            expect(dry.locator("table.suppression")).to_contain_text("self_excluded")
            # the 4 newcomers get the higher-priority welcome message at the same time: the cooldown keeps them out
            expect(dry.locator("table.suppression tr", has_text="cooldown")).to_contain_text("4")
            assert not (folder / "autumn_reload.yaml").exists()
            _shot(page, "draft-dry-run")

            # submits it: the file the pipeline reads, awaiting a second person's approval
            page.get_by_role("button", name="Submit for approval").click()
            page.wait_for_url(f"{base}/ui/campaigns/autumn_reload")
            expect(page.locator("#approval-state")).to_contain_text("awaiting approval")
            expect(page.locator("#author-note")).to_be_visible()
            expect(page.get_by_role("button", name="Approve this version")).to_have_count(0)
            assert load_campaign(folder / "autumn_reload.yaml").owner == "Mia Marketer"
            token = page.locator('input[name="csrf"]').first.get_attribute("value")
            refused = page.request.post(f"{base}/ui/campaigns/autumn_reload/approve",
                                        form={"csrf": token, "reason": "my own"}, max_redirects=0)
            assert refused.status == 403  # a marketer approves nothing
            _sign_out(page, base)

            # the same person under a compliance account: four-eyes refuses the author
            _sign_in(page, base, "mia.review", pyotp.TOTP(secrets["mia.review"]).now())
            page.goto(f"{base}/ui/campaigns/autumn_reload")
            page.get_by_label("Reason").fill("looks right to me")
            with page.expect_response(f"{base}/ui/campaigns/autumn_reload/approve") as answer:
                page.get_by_role("button", name="Approve this version").click()
            assert answer.value.status == 409
            expect(page.locator("p.error")).to_contain_text("is the author")
            _sign_out(page, base)

            # a compliance officer (TOTP second factor) approves it
            _sign_in(page, base, "cleo.a", pyotp.TOTP(secrets["cleo.a"]).now())
            page.goto(f"{base}/ui/campaigns/autumn_reload")
            page.get_by_label("Reason").fill("budget signed off")
            page.get_by_role("button", name="Approve this version").click()
            page.wait_for_url(f"{base}/ui/campaigns/autumn_reload")
            expect(page.locator("#approval-state")).to_contain_text("approved by Cleo Compliance")
            assert page.goto(f"{base}/ui/templates/bonus/en").status == 404  # texts are every brand's
            _sign_out(page, base)

            # a compliance officer of every brand reviews a message text: the sample, placeholders filled
            _sign_in(page, base, "rita", pyotp.TOTP(secrets["rita"]).now())
            page.goto(f"{base}/ui/templates/bonus/en")
            expect(page.locator("#review-state")).to_have_text("unreviewed")
            expect(page.locator("#sample-text")).to_contain_text("EUR 20 bonus")
            expect(page.locator("#sample-text")).not_to_contain_text("{{")
            _shot(page, "template-review")
            _sign_out(page, base)

            # the pipeline publishes the approved campaign's list; the marketer downloads it
            spec = load_campaign(folder / "autumn_reload.yaml")
            publish(build_list(spec, online_audience(engine, ["A"]).frame, AS_OF), Paths(home))
            _sign_in(page, base, "mia.a")
            page.goto(f"{base}/ui/campaigns/autumn_reload")
            with page.expect_download() as got:
                page.get_by_role("link", name="XLSX").click()
            download = got.value
            assert download.suggested_filename == f"autumn_reload_{AS_OF}_list.xlsx"
            assert Path(download.path()).read_bytes()[:2] == b"PK"  # an XLSX (a zip)

            # edits it: a new version, and the page shows what changed since the approved one
            page.get_by_role("link", name=re.compile("^Edit")).click()
            page.get_by_label("Value EUR").fill("15")
            page.get_by_role("button", name="Submit for approval").click()
            page.wait_for_url(f"{base}/ui/campaigns/autumn_reload")
            expect(page.locator("#approval-state")).to_contain_text("awaiting approval")
            diff = page.locator("#diff")
            expect(diff).to_contain_text("approved version")
            expect(diff.locator("span.del", has_text="value_eur: 10.0")).to_have_count(1)
            expect(diff.locator("span.add", has_text="value_eur: 15.0")).to_have_count(1)
            _shot(page, "campaign-diff")

            # why is this player out? every rule's verdict
            page.get_by_label("Player id").fill("a_nomail_1")
            page.get_by_role("button", name="Explain").click()
            expect(page.locator("#decision")).to_contain_text("NOT LISTED")
            expect(page.locator('tr[data-rule="no_channel_consent"] td').first).to_have_text("FAIL")
            _shot(page, "explain")
            page.goto(f"{base}/ui/campaigns/autumn_reload/explain?player=b_001")  # brand B's player
            expect(page.locator("#explain-message")).to_contain_text("No player with this id")

            # brand B's pages and files: not found, as if they did not exist
            for path in ("/ui/campaigns/b_only", f"/ui/campaigns/b_only/lists/{AS_OF}/list.xlsx",
                         f"/ui/campaigns/b_only/lists/{AS_OF}/list_with_holdout.csv",
                         "/ui/campaigns/b_only/explain?player=b_001", "/ui/campaigns/new?from=b_only"):
                assert page.goto(base + path).status == 404, path
            assert (Path(home) / "lists" / "b_only" / AS_OF.isoformat() / "list.xlsx").exists()
            context.close()
        finally:
            browser.close()
    local = urlparse(base).netloc
    assert all(urlparse(r).netloc == local for r in requests if urlparse(r).scheme in ("http", "https")), requests



@pytest.fixture(scope="module")
def pages_site(tmp_path_factory):
    """A brand-A campaign with a readout, a published list with its gate and a real GX Data Docs site
    (one of its values is a script), brand A's and B's triggers and journeys with firings and runs."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: apt-get install -y chromium (Debian's package; never `playwright install`)")
    pytest.importorskip("playwright.sync_api", reason="playwright is in requirements.lock: make venv")
    import json

    import great_expectations as gx
    import pandas as pd
    from test_readout import _rows
    from test_web_pages import JOURNEY, TRIGGER, _stores

    from crm.campaigns.overrides import record_list_gate
    from crm.measurement.readout import campaign_readout, write_readout
    from expectations.validate import validate

    home = tmp_path_factory.mktemp("browser_pages")
    folder = home / "campaigns"
    for sub in ("triggers", "journeys"):
        (folder / sub).mkdir(parents=True)
    (folder / "autumn_a.yaml").write_text("id: autumn_a\nname: Autumn reload (A)\nowner: Ana Lopez\nchannel: email\n"
                                          "brands: [A]\n")
    for tid, name, brands in (("trig_a", "Help after a failed deposit (A)", "brands: [A]\n"),
                              ("trig_b", "Help after a failed deposit (B)", "brands: [B]\n"), ("trig_all", "All", "")):
        (folder / "triggers" / f"{tid}.yaml").write_text(TRIGGER.format(id=tid, name=name, brands=brands))
    for jid, brands in (("journey_a", "brands: [A]\n"), ("journey_b", "brands: [B]\n")):
        (folder / "journeys" / f"{jid}.yaml").write_text(JOURNEY.format(id=jid, brands=brands))
    mp = pytest.MonkeyPatch()
    mp.setenv("CRM_CAMPAIGNS_DIR", str(folder))
    mp.setenv("CRM_UI_INSECURE_COOKIES", "1")
    paths = Paths(home)
    app = create_app(paths)
    engine = app.state.engine
    put_players(engine, players())
    spec = load_campaign(folder / "autumn_a.yaml")
    publish(build_list(spec, online_audience(engine, ["A"]).frame, AS_OF), paths)
    listed = pd.read_parquet(paths.lists / "autumn_a" / AS_OF.isoformat() / "list.parquet")
    hostile = pd.concat([listed[["player_id"]], pd.DataFrame({"player_id": ["<script>alert(9)</script>"]})])
    result = validate(hostile, "autumn_a", [
        gx.expectations.ExpectColumnValuesToBeUnique(column="player_id"),
        gx.expectations.ExpectColumnValuesToMatchRegex(column="player_id", regex=r"^a_[a-z0-9_]+$"),
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=1, max_value=1000)],
        id_column="player_id", docs_dir=home / "gx" / "data_docs")
    record_list_gate(paths, "autumn_a", AS_OF, result)
    readout = campaign_readout(_rows(n_t=800, n_c=200, campaign="autumn_a"), "autumn_a", expected_control_share=0.2)
    write_readout(paths, json.loads(json.dumps(readout, default=str)))
    _stores(engine)
    u.add_user(engine, "ana.a", "analytics", ["A"], ["*"], PW)
    with running_server(paths, app=app) as url:
        yield url
    mp.undo()
    engine.dispose()


def test_readout_gates_data_docs_and_triggers_in_a_browser(pages_site):
    """A brand-A analyst reads a campaign's readout (the inline SVG plot), its list's gate, follows
    the link to its Data Docs (a hostile value there runs no script, links inside the site work)
    and the triggers page; brand B's trigger is not found."""
    from playwright.sync_api import expect, sync_playwright

    base = pages_site
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            _sign_in(page, base, "ana.a")
            page.goto(f"{base}/ui/campaigns/autumn_a")
            page.get_by_role("link", name="Readout").click()
            expect(page.locator("#readout-summary")).to_contain_text("treatment 800 / control 200")
            plot = page.locator("#readout-plot")
            expect(plot.locator("circle")).to_have_count(9)  # 5 effects and 4 guardrails
            assert plot.bounding_box()["width"] > 600
            _shot(page, "readout")
            page.get_by_role("link", name="Gates of its lists").click()
            gate = page.locator(f"#gate-{AS_OF}")
            expect(gate).to_contain_text("failed")
            row = gate.locator("tr", has_text="expect_column_values_to_match_regex(player_id)")
            expect(row).to_contain_text("FAIL")
            expect(gate.locator("tr", has_text="expect_column_values_to_be_unique(player_id)")).to_contain_text("pass")
            _shot(page, "gates")
            page.get_by_role("link", name="Data Docs of its list gate").click()
            validation = page.get_by_role("cell", name="pandas-autumn_a")
            expect(validation).to_be_visible()  # a table drawn by GX's scripts: they run, in the sandbox
            validation.click()  # its row links the validation: the Data Docs cookie goes with it
            page.wait_for_url(re.compile(r".*/ui/data-docs/autumn_a/validations/.*\.html$"))
            expect(page.get_by_role("heading", name="Expectation Validation Result")).to_be_visible()
            assert "<script>alert(9)</script>" in page.content()  # GX pasted the value as markup
            _shot(page, "data-docs")
            # the value <script>alert(9)</script>, written unescaped by GX, ran in an opaque origin: no
            # dialog (no allow-modals), no cookie, nothing of the page's origin
            assert dialogs == [] and page.evaluate("() => self.origin") == "null"
            page.goto(f"{base}/ui/triggers")
            expect(page.locator("#trigger-trig_a .n-sent")).to_have_text("2")
            expect(page.locator("#journey-journey_a .n-converted")).to_have_text("1")
            expect(page.locator("#trigger-trig_b")).to_have_count(0)
            _shot(page, "triggers")
            assert page.goto(f"{base}/ui/triggers/trig_b").status == 404
        finally:
            browser.close()
