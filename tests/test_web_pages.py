"""The web page's readout, gates, Data Docs and triggers pages (issue 18), over the real app served
by uvicorn, the real store and files the test writes with the pipeline's own functions: each page
shows the numbers of its data to an allowed user, nothing of another brand (404 by URL), hostile
file contents escaped and broken files reported (never a 500), Data Docs paths kept under the docs
root (``..``, encoded, absolute, symlinks), and no query a server error."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from urllib.parse import quote

import pytest
from _service import running_server
from _web import PW, Browser
from _web import sign_in as _sign_in
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_readout import _rows

from crm.campaigns.lists import GATE_FILE, list_dir
from crm.campaigns.overrides import record_list_gate
from crm.config import Paths
from crm.gate_result import GateResult, outcome
from crm.measurement.readout import campaign_readout, effects_table, write_readout
from crm.service import create_app
from crm.store import journeys as J
from crm.store import triggers as T
from crm.store import users as u
from crm.store.deliveries import now as store_now

DAY = dt.date(2025, 10, 1)
CAMPAIGNS = {"a_only": "brands: [A]\n", "b_only": "brands: [B]\n", "every_brand": "",
             "a_script": "brands: [A]\n"}
TRIGGER = """id: {id}
name: '{name}'
owner: payments-team
event: payment.failed
channel: email
template: payment_failure_help
transactional: true
holdout: 0.1
{brands}"""
JOURNEY = """id: {id}
name: Win back {id}
owner: crm-team
entry:
  - {{field: profile.churn_score, op: ">", value: 0.7}}
holdout: 0.1
{brands}steps:
  - id: push
    send: {{channel: push, template: we_miss_you}}
"""
HOSTILE = "<script>alert(1)</script>"

WEB_EXAMPLES = int(os.environ.get("CRM_WEB_EXAMPLES", "30"))  # hostile inputs per fuzz test; raise it locally


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    home = tmp_path_factory.mktemp("webpages")
    folder = home / "campaigns"
    (folder / "triggers").mkdir(parents=True)
    (folder / "journeys").mkdir()
    for cid, extra in CAMPAIGNS.items():
        name = HOSTILE if cid == "a_script" else cid.replace("_", " ")
        (folder / f"{cid}.yaml").write_text(f"id: {cid}\nname: '{name}'\nowner: Ana Lopez\nchannel: email\n{extra}")
    for tid, brands in (("trig_a", "brands: [A]\n"), ("trig_b", "brands: [B]\n"), ("trig_all", "")):
        name = HOSTILE if tid == "trig_a" else tid
        (folder / "triggers" / f"{tid}.yaml").write_text(TRIGGER.format(id=tid, name=name, brands=brands))
    for jid, brands in (("journey_a", "brands: [A]\n"), ("journey_b", "brands: [B]\n")):
        (folder / "journeys" / f"{jid}.yaml").write_text(JOURNEY.format(id=jid, brands=brands))
    mp = pytest.MonkeyPatch()
    mp.setenv("CRM_CAMPAIGNS_DIR", str(folder))
    paths = Paths(home)
    app = create_app(paths)
    engine = app.state.engine
    u.add_user(engine, "ana.a", "marketing", ["A"], ["*"], PW)
    u.add_user(engine, "uma.a", "marketing", ["A"], ["UK"], PW)
    u.add_user(engine, "bo.b", "marketing", ["B"], ["*"], PW)
    u.add_user(engine, "sam.a", "support", ["A"], ["*"], PW)
    u.add_user(engine, "ada.all", "analytics", ["*"], ["*"], PW)
    _publish(home, folder / "a_only.yaml")
    _stores(engine)
    with running_server(paths, app=app) as url:
        app.state.url = url
        yield app, home
    mp.undo()
    engine.dispose()


def sign_in(app, name: str) -> Browser:
    c, r = _sign_in(app, name, {})
    assert r.status_code == 303, r.text
    return c


def _publish(home, spec_file) -> None:
    """A published list of ``a_only`` with its gate recorded as the pipeline records it."""
    import pandas as pd

    from crm.campaigns.lists import build_list, publish
    from crm.campaigns.spec import load_campaign

    aud = pd.DataFrame([{"player_id": f"p_{i}", "brand_id": "A", "country": "MT", "locale": "en", "timezone":
                         "Europe/Malta", "age_years": 40, "age_verified": True, "self_excluded_now": False,
                         "ever_self_excluded": False, "returned_after_exclusion": False, "cooling_off_now": False,
                         "harm_risk_flag": False, "consent_email": True, "consent_profiling": True} for i in range(3)])
    publish(build_list(load_campaign(spec_file), aud, DAY), Paths(home))
    result = GateResult("campaign_list", False, 3, [
        outcome("expect_column_values_to_be_unique", True, 0, column="player_id", unexpected_count=0),
        outcome("expect_table_row_count_to_be_between", False, 3, unexpected_count=None,
                description="list size 3 outside the band of recent runs [18, 22]"),
        outcome("expect_column_values_to_be_in_set", True, None, column="compliance_violation", unexpected_count=0)])
    record_list_gate(Paths(home), "a_only", DAY, result)


def _stores(engine) -> None:
    """Firings and journey runs, written with the store's own functions: trig_a (brand A) 2 sent,
    3 suppressed (2 by self_excluded, 1 by frequency_cap), 1 held, 1 holdout, and 4 sent 10 days ago
    (outside 7 days); trig_b (brand B) 5 sent; trig_all 1 sent of A and 2 of B. journey_a: 2 active,
    1 converted, 1 holdout; journey_b: 3 active."""
    now = store_now()
    old = now - dt.timedelta(days=10)
    subs = {"payment.failed": [("trig_a", ("A",)), ("trig_b", ("B",)), ("trig_all", ())]}
    envs = [{"event_id": f"e{i}", "event_type": "payment.failed", "brand_id": brand, "player_id": f"{brand}_{i}",
             "occurred_at": now.isoformat()} for i, brand in enumerate("A" * 11 + "B" * 5)]
    with engine.begin() as conn:
        T.queue_firings(conn, envs, subs, now)
    plan = {"trig_a": ["queued"] * 2 + ["refused:self_excluded"] * 2 + ["refused:frequency_cap", "held", "holdout"]
            + ["old"] * 4,
            "trig_b": ["queued"] * 5, "trig_all": ["queued"] * 3 + ["dropped"] * 13}
    for f in T.claim_firings(engine, 100, now=now):
        step = plan[f["trigger_id"]].pop(0)
        with engine.begin() as conn:
            assert T.own(conn, f, now)
            if step == "held":
                T.hold(conn, f, now + dt.timedelta(hours=8), now, "quiet hours")
            elif step == "old":
                T.decide(conn, f, "queued", old)
            elif step.startswith("refused"):
                T.decide(conn, f, "refused", now, rule=step.split(":")[1])
            else:
                T.decide(conn, f, step, now)
    with engine.begin() as conn:
        J.enter(conn, "journey_a", [("A", "p1", "A"), ("A", "p2", "A"), ("A", "p3", "A"), ("A", "p4", "holdout")],
                "scan:1", now, "v1")
        J.enter(conn, "journey_b", [("B", f"q{i}", "A") for i in range(3)], "scan:1", now, "v1")
    run = J.runs_of(engine, journey_id="journey_a", player_id="p1")[0]
    with engine.begin() as conn:
        J.end(conn, run, J.CONVERTED, "goal: payment.captured", now)


def _cells(html: str, row_id: str) -> dict[str, str]:
    row = re.search(rf'<tr id="{row_id}">(.*?)</tr>', html, re.S).group(1)
    cells = re.findall(r'<td class="n-([a-z]+)">(.*?)</td>', row, re.S)
    return {k: re.sub(r"<[^>]+>", " ", v).split()[0] for k, v in cells}


# ------------------------------------------------------------------------------------ readout

def test_a_readout_shows_its_effects_table_and_plot_and_none_yet_before(site):
    app, home = site
    c = sign_in(app, "ana.a")
    none = c.get("/ui/campaigns/a_only/readout")
    assert none.status_code == 200 and "No readout yet." in none.text
    result = campaign_readout(_rows(n_t=800, n_c=200, campaign="a_only"), "a_only", expected_control_share=0.2)
    write_readout(Paths(home), json.loads(json.dumps(result, default=str)))
    page = c.get("/ui/campaigns/a_only/readout")
    assert page.status_code == 200
    for row in effects_table(result).to_dict("records"):  # every metric's numbers, as `crm readout` shows them
        for key in ("metric", "difference", "95% CI", "n (T/C)"):
            assert f"<td>{row[key]}</td>" in page.text, (key, row[key])
    svg = re.search(r'<svg id="readout-plot".*?</svg>', page.text, re.S).group(0)
    assert svg.count("<circle") == len(result["effects"]) + len(result["guardrails"])
    assert "treatment 800 / control 200" in page.text
    assert "<img" not in page.text and "<script" not in page.text.lower()
    assert 'href="/ui/campaigns/a_only/readout"' in c.get("/ui/campaigns/a_only").text


def test_a_hostile_or_broken_readout_is_escaped_or_reported(site):
    app, home = site
    c = sign_in(app, "ana.a")
    readouts = home / "readouts"
    readouts.mkdir(exist_ok=True)
    effect = {"metric": "x", "label": HOSTILE, "kind": "<b>", "n_treatment": "many", "n_control": 5,
              "treatment_mean": 0.2, "control_mean": float("nan"), "diff": 1e308, "ci_low": "-1", "ci_high": [2],
              "p_value": True, "relative_lift": None, "incremental_total": None}
    (readouts / "a_script.json").write_text(json.dumps({"campaign_id": HOSTILE, "status": HOSTILE, "arms": [],
                                                        "effects": [effect, 7, None], "guardrails": "no"}))
    broken = c.get("/ui/campaigns/a_script/readout")
    assert broken.status_code == 200 and "broken" in broken.text  # guardrails not a list
    (readouts / "a_script.json").write_text(json.dumps({"campaign_id": HOSTILE, "status": HOSTILE, "arms": [],
                                                        "effects": [effect, 7, None], "guardrails": []}))
    page = c.get("/ui/campaigns/a_script/readout")
    assert page.status_code == 200 and HOSTILE not in page.text and "&lt;script&gt;" in page.text
    for content in (b"{not json", b"\xff\xfe", b"[1, 2]", b"null", b"1" * 10, b"[" * 100_000):
        (readouts / "a_script.json").write_bytes(content)
        r = c.get("/ui/campaigns/a_script/readout")
        assert r.status_code == 200 and "The readout file is broken" in r.text, content[:10]
    (readouts / "a_script.json").write_bytes(b" " * (5 * 1024 * 1024 + 1))
    assert "over 5 MB" in c.get("/ui/campaigns/a_script/readout").text


# ------------------------------------------------------------------------------------ gates and Data Docs

def test_the_gates_of_a_campaigns_lists_with_each_expectation(site):
    app, home = site
    c = sign_in(app, "ana.a")
    page = c.get("/ui/campaigns/a_only/gates")
    assert page.status_code == 200
    section = re.search(rf'<section class="gate" id="gate-{DAY}">(.*?)</section>', page.text, re.S).group(1)
    assert ">failed<" in section
    verdicts = dict(re.findall(r"<tr><td>([^<]+)</td><td class=\"[^\"]+\">(pass|FAIL)</td>", section))
    assert verdicts == {"expect_column_values_to_be_unique(player_id)": "pass",
                        "expect_table_row_count_to_be_between": "FAIL",
                        "expect_column_values_to_be_in_set(compliance_violation)": "pass"}
    assert "list size 3 outside the band of recent runs [18, 22]" in section
    assert c.get(f"/ui/campaigns/a_only/gates?as_of={DAY}").status_code == 200
    assert c.get("/ui/campaigns/a_only/gates?as_of=2020-01-01").status_code == 404
    overview = c.get("/ui/gates")
    assert overview.status_code == 200 and "1 of 3" in overview.text and "Data gates" not in overview.text
    # the list changed after its gate ran: no longer a pass, even with success in gate.json
    directory = list_dir(Paths(home), "a_only", DAY)
    record = json.loads((directory / GATE_FILE).read_text())
    (directory / GATE_FILE).write_text(json.dumps(record | {"success": True}))
    (directory / "list.parquet").write_bytes((directory / "list.parquet").read_bytes() + b"x")
    assert "the list changed after its gate ran" in c.get("/ui/campaigns/a_only/gates").text


def test_hostile_and_broken_gate_files_are_escaped_or_reported(site):
    app, home = site
    c = sign_in(app, "ana.a")
    day = list_dir(Paths(home), "a_script", dt.date(2025, 10, 2))
    day.mkdir(parents=True)
    (day / GATE_FILE).write_text(json.dumps({
        "suite": HOSTILE, "success": "yes", "summary": HOSTILE, "overrides": [{"by": HOSTILE}, 3],
        "outcomes": [{"expectation": HOSTILE, "success": 1, "observed": {"x": HOSTILE}, "unexpected_count": "9"},
                     "text", None]}))
    broken = list_dir(Paths(home), "a_script", dt.date(2025, 10, 3))
    broken.mkdir()
    (broken / GATE_FILE).write_bytes(b"\x00{{{")
    (list_dir(Paths(home), "a_script", dt.date(2025, 10, 1)).parent / "not-a-date").mkdir()
    page = c.get("/ui/campaigns/a_script/gates")
    assert page.status_code == 200 and HOSTILE not in page.text and "&lt;script&gt;alert(1)" in page.text
    assert "broken gate file" in page.text and "gate.json is not valid JSON" in page.text
    assert ">FAIL<" in page.text  # success 1 is not True


@pytest.fixture(scope="module")
def docs(site):
    """Data Docs sites of a_only (with a static file, a symlink out of the root and one to b_only's
    site), b_only and a data gate (landing_events); a secret file beside the docs root."""
    _, home = site
    root = home / "gx" / "data_docs"
    for name in ("a_only", "b_only", "landing_events"):
        (root / name / "validations").mkdir(parents=True)
        (root / name / "index.html").write_text(f"<html><body>site {name}</body></html>")
    (root / "a_only" / "static" / "vendor").mkdir(parents=True)
    (root / "a_only" / "static" / "vendor" / "x.css").write_text("body{}")
    (root / "a_only" / "static" / "page.html").write_text("<html>static html</html>")
    secret = home / "gx" / "secret.html"
    secret.write_text("SECRET")
    (root / "a_only" / "evil.html").symlink_to(secret)
    (root / "a_only" / "other").symlink_to(root / "b_only")
    (root / "a_link").symlink_to(root / "b_only")
    (root / "a_only" / "notes.key").write_text("SECRET")
    return root


def test_data_docs_are_served_read_only_by_scope(site, docs):
    app, _ = site
    ana, bo, ada, sam = (sign_in(app, n) for n in ("ana.a", "bo.b", "ada.all", "sam.a"))
    r = ana.get("/ui/data-docs/a_only/index.html")
    assert r.status_code == 200 and "site a_only" in r.text
    assert r.headers["content-security-policy"].startswith("sandbox")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert 'href="/ui/data-docs/a_only/index.html"' in ana.get("/ui/campaigns/a_only/gates").text
    assert bo.get("/ui/data-docs/a_only/index.html").status_code == 404
    assert sam.get("/ui/data-docs/a_only/index.html").status_code == 404  # support: no gate.view / list.view
    assert ana.get("/ui/data-docs/landing_events/index.html").status_code == 404  # every brand's data
    assert ada.get("/ui/data-docs/landing_events/index.html").status_code == 200
    assert 'href="/ui/data-docs/landing_events/index.html"' in ada.get("/ui/gates").text
    # a link followed inside a sandboxed page is a cross-site navigation: the session (SameSite=Strict) stays
    # behind, the Data Docs cookie (Lax, /ui/data-docs only, the same user) goes
    (docs_cookie,) = [x for x in r.set_cookies if x.startswith("crm_docs=")]
    assert "HttpOnly" in docs_cookie and "samesite=lax" in docs_cookie.lower() and "Path=/ui/data-docs" in docs_cookie
    alone = Browser(app.state.url)
    alone.cookies = {"crm_docs": ana.cookies["crm_docs"]}
    assert alone.get("/ui/data-docs/a_only/index.html").status_code == 200
    assert alone.get("/ui/data-docs/b_only/index.html").status_code == 404
    assert alone.get("/ui/campaigns").status_code == 303  # nothing else
    forged = Browser(app.state.url)
    forged.cookies = {"crm_docs": ana.cookies["crm_session"]}  # the session's signature is not the docs cookie's
    assert forged.get("/ui/data-docs/a_only/index.html").status_code == 303
    ana.post("/ui/logout", data={"csrf": re.search(r'name="csrf" value="([0-9a-f]{64})"',
                                                   ana.get("/ui/campaigns").text).group(1)})
    assert "crm_docs" not in ana.cookies
    signed_out = Browser(app.state.url)
    assert signed_out.get("/ui/data-docs/a_only/index.html").status_code == 303
    # the pages' static files (no data) need no session; they come from what the sites are built from,
    # never from a site, so the answer does not say whether a site exists
    for site in ("a_only", "b_only", "no_such_site"):
        js = signed_out.get(f"/ui/data-docs/{site}/static/vendor/jquery/jquery.min.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript"), site
        logo = signed_out.get(f"/ui/data-docs/{site}/static/images/short-logo.png")
        assert logo.status_code == 200 and logo.body.startswith(b"\x89PNG"), site
        assert logo.headers["content-security-policy"].startswith("sandbox")
    font = signed_out.get("/ui/data-docs/x/static/vendor/fontawesome/webfonts/fa-solid-900.woff2")
    assert font.status_code == 200 and font.headers["access-control-allow-origin"] == "*"
    for path in ("a_only/static/vendor/x.css", "a_only/static/page.html", "x/static/vendor/README.md",
                 "x/static/vendor/../../../secret.html", "x/static/vendor/%2e%2e/%2e%2e/%2e%2e/secret.html",
                 "x/static/other/a.css", "x/static/", "x/static/vendor"):
        assert signed_out.get("/ui/data-docs/" + path).status_code == 404, path


@pytest.mark.parametrize("path", [
    "../secret.html", "a_only/../../secret.html", "%2e%2e/secret.html", "a_only/%2e%2e/%2e%2e/secret.html",
    "a_only/..%2f..%2fsecret.html", "%2e%2e%2fsecret.html", "a_only%2f..%2f..%2fsecret.html",
    "/etc/passwd", "%2fetc%2fpasswd", "%2F" + "etc/hostname", "a_only/evil.html", "a_only/other/index.html",
    "a_link/index.html", "a_only/notes.key", "a_only/", "a_only", "a_only//index.html", "./a_only/index.html",
    "a_only/index.html%00.css", "a_only\\..\\..\\secret.html", "a_only/static/vendor/../../evil.html",
])
def test_data_docs_refuse_paths_out_of_the_root_and_symlinks(site, docs, path):
    app, _ = site
    for who in ("ana.a", "ada.all"):
        r = sign_in(app, who).get("/ui/data-docs/" + path)
        assert r.status_code == 404 and "SECRET" not in r.text and "site b_only" not in r.text, (who, path)


def test_the_landing_gate_for_a_user_of_every_brand_and_region(site):
    from crm.ingest.landing import record_landing_gate

    app, home = site
    paths = Paths(home)
    paths.ingest_log.parent.mkdir(parents=True, exist_ok=True)
    record_landing_gate(paths, ["batch_1", "batch_2"], True, "landing: all 12 expectations passed")
    record_landing_gate(paths, ["batch_2"], False, f"landing: 1 of 12 failed: {HOSTILE}")
    with paths.ingest_log.with_name("gate_log.jsonl").open("a") as f:
        f.write('not json\n{"batch_id": ["x"]}\n')
    page = sign_in(app, "ada.all").get("/ui/gates").text
    rows = re.findall(r"<tr><td>(batch_\d)</td><td class=\"[^\"]+\">(passed|failed)</td>", page)
    assert rows == [("batch_2", "failed"), ("batch_1", "passed")]  # the last verdict of a batch counts
    assert HOSTILE not in page and "2 line(s) of the gate ledger are not verdicts" in page
    assert "Landing gate" not in sign_in(app, "ana.a").get("/ui/gates").text  # every brand's events


def test_the_campaign_page_links_the_pages_the_role_may_open(site):
    app, _ = site
    page = sign_in(app, "ana.a").get("/ui/campaigns/a_only").text
    assert 'href="/ui/campaigns/a_only/readout"' in page and 'href="/ui/campaigns/a_only/gates"' in page
    support = sign_in(app, "sam.a").get("/ui/campaigns/a_only").text
    assert "a_only/readout" not in support and "a_only/gates" not in support


# ------------------------------------------------------------------------------------ triggers and journeys

def test_triggers_and_journeys_with_their_counts_by_brand(site):
    app, _ = site
    page = sign_in(app, "ana.a").get("/ui/triggers")
    assert page.status_code == 200
    assert _cells(page.text, "trigger-trig_a") == {"sent": "2", "suppressed": "3", "held": "1", "holdout": "1",
                                                   "other": "0"}
    assert "frequency_cap 1, self_excluded 2" in page.text
    assert _cells(page.text, "journey-journey_a") == {"active": "2", "completed": "0", "converted": "1",
                                                      "exited": "0", "holdout": "1"}
    assert "trig_b" not in page.text and "trig_all" not in page.text and "journey_b" not in page.text
    assert HOSTILE not in page.text and "&lt;script&gt;" in page.text
    month = sign_in(app, "ana.a").get("/ui/triggers?days=30")
    assert _cells(month.text, "trigger-trig_a")["sent"] == "6"  # the 4 of 10 days ago
    ada = sign_in(app, "ada.all").get("/ui/triggers").text
    assert _cells(ada, "trigger-trig_all") == {"sent": "3", "suppressed": "0", "held": "0", "holdout": "0",
                                               "other": "13"}
    assert _cells(ada, "trigger-trig_b")["sent"] == "5" and _cells(ada, "journey-journey_b")["active"] == "3"
    # brand A in the UK only: a trigger or journey reaches every region
    uma = sign_in(app, "uma.a").get("/ui/triggers").text
    assert "trig_a" not in uma and "journey_a" not in uma
    one = sign_in(app, "ana.a").get("/ui/triggers/trig_a")
    assert one.status_code == 200 and _cells(one.text, "trigger-trig_a")["sent"] == "2" and "journey_a" not in one.text


def test_another_brands_pages_are_404_by_url(site):
    app, _ = site
    bo = sign_in(app, "bo.b")
    for path in ("/ui/campaigns/a_only/readout", "/ui/campaigns/a_only/gates",
                 f"/ui/campaigns/a_only/gates?as_of={DAY}", "/ui/campaigns/every_brand/readout",
                 "/ui/campaigns/nothing/gates", "/ui/triggers/trig_a",
                 "/ui/triggers/journey_a", "/ui/triggers/trig_all", "/ui/triggers/nothing"):
        assert bo.get(path).status_code == 404, path
    assert bo.get("/ui/triggers/trig_b").status_code == 200
    assert "a only" not in bo.get("/ui/gates").text
    sam = sign_in(app, "sam.a")
    assert sam.get("/ui/campaigns/a_only/readout").status_code == 403  # support: no readout.view
    assert sam.get("/ui/campaigns/a_only/gates").status_code == 403
    out = Browser(app.state.url)
    for path in ("/ui/campaigns/a_only/readout", "/ui/gates", "/ui/triggers", "/ui/triggers/trig_a"):
        assert out.get(path).headers.get("location") == "/ui/login", path


@settings(max_examples=WEB_EXAMPLES + 10,
          deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(value=st.one_of(st.text(max_size=40), st.sampled_from(["0", "-1", "91", "1e3", "٣", "7 ", "2025-10-01",
                                                              "..", "%00", "999999999999999999999"])),
       page=st.sampled_from(["/ui/triggers?days=", "/ui/triggers/trig_a?days=", "/ui/campaigns/a_only/gates?as_of=",
                             "/ui/campaigns/a_only/readout?x=", "/ui/data-docs/", "/ui/data-docs/a_only/",
                             "/ui/triggers/", "/ui/campaigns/a_only/gates?as_of=2025-10-01&as_of="]))
def test_no_query_makes_a_server_error(site, value, page):
    app, _ = site
    r = CLIENT.setdefault("ada", sign_in(app, "ada.all")).get(page + quote(value, safe=""))
    assert r.status_code < 500, (page, value, r.status_code)


CLIENT: dict[str, Browser] = {}
