"""The spend ledger (crm.campaigns.budget): one table of what each campaign committed (publish) and
sent (dispatch) per as-of date, read by the list builder, the list gate and approvals.

* publish commits the list's treated cost; dispatch records what the outbox sent;
* a re-run of a date replaces the date's values, never adds to them;
* the remaining total budget decreases across dates, and the builder caps by it;
* the gate's cost limit is the budget less what earlier dates spent: a list built blind to
  that spend is refused;
* an old data home (outbox and lists, no ledger) is backfilled once;
* concurrent writers (processes and threads) take turns: nothing is lost or corrupted;
* approvals compute the cost from the spec's typed fields.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import shutil
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from test_rerun_day import MAIL, _players, _warehouse

from crm.campaigns import approvals, budget
from crm.campaigns.day import build_all
from crm.campaigns.dispatch import dispatch_list, read_outbox
from crm.campaigns.lists import build_list, list_dir, publish, record_gate
from crm.campaigns.spec import CampaignSpec
from crm.config import Paths

DAY1 = dt.date(2025, 8, 30)
DAY2 = dt.date(2025, 9, 13)  # two weeks on: no cooldown, dedup or bonus expiry from the first day
DAY3 = dt.date(2025, 9, 27)
EUR10 = 1_000  # MAIL's bonus offer, EUR cents per treated player


def _spec(total_eur: float | None = 250) -> CampaignSpec:
    """MAIL (EUR 10 bonus by email, no holdout) with a total budget over its life."""
    return MAIL.model_copy(update={"budget": MAIL.budget.model_copy(update={"total_eur": total_eur})})


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv(approvals.THRESHOLD_ENV, "1000000000")  # no second person needed
    monkeypatch.setenv("CRM_NOW", "planned")
    monkeypatch.setenv("CRM_CAMPAIGNS_DIR", str(tmp_path / "campaigns"))


def _home(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "home").ensure()


def _publish_and_dispatch(paths: Paths, spec: CampaignSpec, as_of: dt.date, n_players: int = 12) -> dict:
    """Build the day on the home (the ledger's spend counts), publish, pass the gate, dispatch."""
    (b,) = build_all(paths, [spec], as_of, audience=_players(n_players))
    manifest = publish(b, paths)
    record_gate(list_dir(paths, spec.id, as_of), "campaign_list", True, {"summary": "ok"})
    assert dispatch_list(paths, spec.id, as_of, spec=spec).status == "dispatched"
    return manifest


def _row(paths: Paths, campaign: str, as_of: dt.date) -> dict:
    (row,) = [e for e in budget.entries(paths, campaign) if e["as_of_date"] == as_of]
    return row


def test_publish_commits_and_dispatch_marks_sent(tmp_path):
    paths = _home(tmp_path)
    spec = _spec(None)
    manifest = publish(build_list(spec, _players(6), DAY1), paths)
    row = _row(paths, spec.id, DAY1)
    assert row["committed_cents"] == manifest["total_offer_cost_eur_cents"] == 6 * EUR10
    assert row["sent_cents"] == 0 and row["spec_hash"] == spec.spec_hash()
    assert budget.ledger_file(paths) == paths.home / "ledger" / "spend.duckdb"

    record_gate(list_dir(paths, spec.id, DAY1), "campaign_list", True, {"summary": "ok"})
    report = dispatch_list(paths, spec.id, DAY1, spec=spec)
    sent = sum(m["offer_cost_eur_cents"] for m in read_outbox(Path(report.outbox_file)))
    assert sent == 6 * EUR10 and _row(paths, spec.id, DAY1)["sent_cents"] == sent


def test_rerun_of_a_date_replaces_never_adds(tmp_path):
    paths = _home(tmp_path)
    spec = _spec(None)
    for _ in range(2):
        _publish_and_dispatch(paths, spec, DAY1, n_players=5)
    row = _row(paths, spec.id, DAY1)
    assert (row["committed_cents"], row["sent_cents"]) == (5 * EUR10, 5 * EUR10)
    # a smaller list re-published for the date: the commitment is the new list's; what was sent stays sent
    publish(build_list(spec, _players(3), DAY1), paths)
    record_gate(list_dir(paths, spec.id, DAY1), "campaign_list", True, {"summary": "ok"})
    dispatch_list(paths, spec.id, DAY1, spec=spec)
    row = _row(paths, spec.id, DAY1)
    assert (row["committed_cents"], row["sent_cents"]) == (3 * EUR10, 5 * EUR10)
    assert len(budget.entries(paths)) == 1


def test_remaining_decreases_across_dates_and_caps_the_list(tmp_path):
    paths = _home(tmp_path)
    spec = _spec(250)  # EUR 250: 12 + 12 + 1 bonuses of EUR 10
    assert budget.remaining(paths, spec, DAY1) == 25_000
    first = _publish_and_dispatch(paths, spec, DAY1)
    assert first["counts"]["listed"] == 12
    assert budget.remaining(paths, spec, DAY1) == 25_000  # a date's own sends are not "earlier"
    assert budget.remaining(paths, spec, DAY2) == 25_000 - 12 * EUR10
    second = _publish_and_dispatch(paths, spec, DAY2)
    assert second["counts"]["listed"] == 12
    assert budget.remaining(paths, spec, DAY3) == 25_000 - 24 * EUR10
    third = _publish_and_dispatch(paths, spec, DAY3)
    assert third["targeting"]["spent_before_eur_cents"] == 24 * EUR10
    assert third["counts"]["listed"] == 1 and third["total_offer_cost_eur_cents"] == EUR10  # what is left
    assert budget.spent_before(paths, [spec.id, "other"], DAY3 + dt.timedelta(days=1)) == {spec.id: 25_000, "other": 0}
    assert budget.remaining(paths, _spec(None), DAY3) is None


def test_gate_refuses_a_list_whose_cost_exceeds_the_remaining_budget(tmp_path):
    """The behaviour fix: the gate's limit was the whole budget, whatever earlier dates spent."""
    from orchestration.assets.campaigns import gate_published_list

    paths = _home(tmp_path)
    spec = _spec(200)
    audience = _players(12)
    _warehouse(paths, audience)
    _publish_and_dispatch(paths, spec, DAY1)  # EUR 120 spent
    assert budget.gate_limit(paths, spec, DAY2) == 20_000 - 12 * EUR10
    # a list built blind to the spend (as if the builder did not read the ledger): EUR 120 more
    blind = build_list(spec, audience, DAY2)
    assert int(blind.rows["offer_cost_eur_cents"].sum()) == 12 * EUR10 <= spec.budget.total_cents
    publish(blind, paths)
    result = gate_published_list(paths, spec, [spec], DAY2)
    assert not result.success
    failed = {o.name for o in result.failed}
    assert any("sum" in name and "treated_cost" in name for name in failed), failed
    # the list the builder makes on the home fits what is left, and passes
    (fits,) = build_all(paths, [spec], DAY2, audience=audience)
    assert int(fits.rows["offer_cost_eur_cents"].sum()) == 8 * EUR10
    publish(fits, paths)
    assert gate_published_list(paths, spec, [spec], DAY2).success


def test_gate_limit_is_the_smaller_of_the_list_budget_and_what_is_left():
    spec = _spec(200)
    assert budget.gate_limit_cents(spec, 0) == 20_000
    assert budget.gate_limit_cents(spec, 15_000) == 5_000
    assert budget.gate_limit_cents(_spec(None), 15_000) is None


def test_an_old_home_is_backfilled_once_from_its_outbox_and_lists(tmp_path):
    paths = _home(tmp_path)
    spec = _spec(None)
    _publish_and_dispatch(paths, spec, DAY1, n_players=4)
    _publish_and_dispatch(paths, spec, DAY2, n_players=7)
    publish(build_list(spec, _players(3), DAY3), paths)  # published, not dispatched
    before = budget.entries(paths)
    shutil.rmtree(paths.ledger)  # a home written before the ledger existed
    assert budget.entries(paths) == before
    assert [(e["as_of_date"], e["committed_cents"], e["sent_cents"]) for e in before] == [
        (DAY1, 4 * EUR10, 4 * EUR10),
        (DAY2, 7 * EUR10, 7 * EUR10),
        (DAY3, 3 * EUR10, 0),
    ]
    assert budget.spent_before(paths, [spec.id], DAY3) == {spec.id: 11 * EUR10}
    # once: a later outbox change is not re-read, the ledger is the record
    for f in paths.outbox.glob("*/*/*.jsonl"):
        f.unlink()
    assert budget.entries(paths) == before


def _write(home: str, worker: int, rounds: int) -> None:
    paths = Paths(Path(home))
    for r in range(rounds):
        day = DAY1 + dt.timedelta(days=r)
        budget.record_committed(paths, f"c{worker}", day, 100 * worker + r)
        budget.record_committed(paths, "shared", day, 7)  # every writer writes the same row: one row


def test_concurrent_writers_do_not_corrupt_the_ledger(tmp_path):
    paths = _home(tmp_path)
    workers, rounds = 4, 10
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for f in [pool.submit(_write, str(paths.home), w, rounds) for w in range(workers)]:
            f.result()
    threads = [threading.Thread(target=_write, args=(str(paths.home), w, rounds)) for w in range(workers, 2 * workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = budget.entries(paths)
    assert len(rows) == (2 * workers + 1) * rounds
    for e in rows:
        expected = 7 if e["campaign"] == "shared" else 100 * int(e["campaign"][1:]) + (e["as_of_date"] - DAY1).days
        assert e["committed_cents"] == expected


def test_approval_cost_reads_the_typed_budget_fields(monkeypatch):
    monkeypatch.setenv(approvals.THRESHOLD_ENV, "1000")
    spec = _spec(2_500)
    assert budget.spec_budget_cents(spec) == (250_000, "budget.total_eur")
    assert budget.approval_cost_cents(spec) == (250_000, "budget budget.total_eur")
    assert budget.approval_cost_cents(spec, {"total_offer_cost_eur_cents": 300_000, "as_of_date": "2025-08-30"}) == (
        300_000,
        "offer cost of the list of 2025-08-30",
    )
    assert budget.approval_cost_cents(_spec(None)) == (None, "")
    required, why = approvals.approval_required(spec)
    assert required and "budget.total_eur" in why
