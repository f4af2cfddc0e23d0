"""A self-exclusion applies to every account linked to the excluded player (issue 19), over random
histories, through the real landing, dbt (identifiers, links), the linking step (clusters), the
list builder, the gate's recomputation and dispatch.

Hypothesis draws the random histories of the compliance property test (consents, exclusions of
every scope and brand spelled as casinos spell them, cooling-off, sessions; values we do not
know; impossible times) and then groups the accounts into people: the accounts of one person
share identifiers of two or three independent kinds (device, card, home network and address,
name), each account spelling the shared ones its own way (case, spaces, abbreviations: what the
derived keys exist for); accounts of different people share at most one kind (an office
network), which must link nobody. The oracle: no account may be on a list or in the outbox if the
account itself must be suppressed, or if another account of the same person is self-excluded,
cooling off, or was excluded and has not played since (read from the meanings of its raw
history, consents aside).
"""

from __future__ import annotations

import copy
import json
import os

import pytest
from _dbt import dbt_build
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from test_compliance_histories import AS_OF, CHANNELS, _events, histories, must_be_suppressed

from crm.campaigns import approvals
from crm.campaigns.dispatch import dispatch_list, outbox_file, read_outbox
from crm.campaigns.lists import build_list, list_dir, publish, record_gate
from crm.campaigns.spec import CampaignSpec
from crm.config import Paths
from crm.ingest.landing import ingest_file
from crm.risk.linking import build_clusters
from crm.warehouse import read_audience
from expectations.campaign_list import recompute_violations

pytestmark = pytest.mark.slow

KINDS = ("device", "card", "home", "name")  # independent kinds of evidence a person's accounts share
# one per person (histories have at most 20 accounts: at most 11 people), no two with one Soundex code
LAST_NAMES = ("Smith", "Novak", "Borg", "Camilleri", "Jansen", "Müller", "O'Brien", "Zammit", "Lindqvist",
              "Kowalski", "Rossi")


def _spell(text: str, way: int) -> str:
    """One account's way of writing a shared value (the derived keys read through these)."""
    return [text, text.upper(), text.lower(), f"  {text} ", text.replace(" ", "  ")][way % 5]


@st.composite
def people(draw, n: int) -> list[tuple[int, tuple[str, ...], int]]:
    """Per account: its person, the kinds of identifiers that person's accounts share, and how the
    account spells them."""
    owners = draw(st.lists(st.integers(0, max(1, n // 2)), min_size=n, max_size=n))
    shares = {o: tuple(draw(st.lists(st.sampled_from(KINDS), min_size=2, max_size=3, unique=True)))
              for o in set(owners)}
    return [(o, shares[o], draw(st.integers(0, 4))) for o in owners]


def identifiers(i: int, person: int, kinds: tuple[str, ...], way: int) -> tuple[dict, dict]:
    """Registration identifiers of account ``i`` of ``person``, and its deposit's card."""
    same = {k: k in kinds for k in KINDS}
    first = ("John", "Maria", "Ahmed", "Li", "Zoë", "Jean-Luc")[person % 6]
    reg = {
        "email": f"acct{i}@probe.example",  # every account its own mailbox
        "phone": f"+4470000{i:05d}",
        "device_id": f"dev-person-{person}" if same["device"] else f"dev-acct-{i}",
        # a person's home network and street line; else the office network everybody shares (one kind only)
        "ip": f"10.{person}.0.{i % 200 + 1}" if same["home"] else f"172.16.9.{i % 250 + 1}",
        "address": _spell(f"{person} Home Street", way) if same["home"] else f"{i} Own Road",
        "postcode": _spell(f"HP{person} 1AA", way) if same["home"] else f"AP{i} 2BB",
    }
    if same["name"]:  # alone, an account gives no name: the name form is coarse on purpose (strangers share it)
        reg |= {"first_name": _spell(first, way), "last_name": _spell(LAST_NAMES[person], way)}
    return reg, {"payment_instrument": f"card-person-{person}" if same["card"] else f"card-acct-{i}"}


def _stopped_by_rg(p: dict) -> bool:
    """Whether the account's own history stops it for responsible-gambling reasons (exclusion now,
    ended and not returned, cooling off): the oracle on the account with every consent given."""
    q = copy.deepcopy(p)
    q["age"], q["country"] = 40, "MT"
    q["grant_at_registration"] = set(CHANNELS)
    q["products_at_registration"] = ("casino", "sports")
    q["steps"] = [(d, s) for d, s in q["steps"] if not s[0].startswith(("consent.", "crm."))]
    return must_be_suppressed(q, "email", "casino") is not None


def _with_identifiers(players: list[dict], owners: list[tuple[int, tuple[str, ...], int]]) -> list[dict]:
    records = _events(players)
    regs = {r["player_id"]: r for r in records if r["event_type"] == "player.registered"}
    for i, (p, (person, kinds, way)) in enumerate(zip(players, owners, strict=True)):
        reg, pay = identifiers(i, person, kinds, way)
        regs[p["player_id"]]["payload"].update(reg)
        records.append({"event_id": f"dep_{i}", "event_type": "payment.captured", "player_id": p["player_id"],
                        "brand_id": "A", "occurred_at": "2025-02-20T12:00:00Z",
                        "payload": {"amount": 2000, "currency": "EUR", **pay}})
    return records


# The probe's case, always run: two accounts of one person (device and card); the other one is
# excluded operator-wide, the listed one never was.
_TWO = [{"player_id": f"h_{i:03d}", "age": 40, "country": "MT", "grant_at_registration": {"email"},
         "products_at_registration": ("casino",),
         "steps": [(1, ("rg.self_exclusion.started", ("operator", "Operator "), "A", None, "ok"))] if i == 1 else []}
        for i in range(5)]


@st.composite
def worlds(draw) -> tuple[list[dict], list[tuple[int, tuple[str, ...], int]]]:
    players = draw(histories())
    return players, draw(people(len(players)))


# Each example is a real landing + dbt build + linking + dispatch (~15 s): few examples, no shrinking.
@settings(max_examples=int(os.environ.get("CRM_LINKED_EXAMPLES", "3")), deadline=None,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(world=worlds(), channel=st.sampled_from(CHANNELS))
@example(world=(_TWO, [(0, ("device", "card"), 1), (0, ("device", "card"), 3)] + [(i, (), 0) for i in range(2, 5)]),
         channel="email")
def test_no_account_of_a_stopped_person_reaches_a_list_or_the_outbox(tmp_path_factory, monkeypatch, world, channel):
    players, owners = world
    monkeypatch.setenv(approvals.THRESHOLD_ENV, "1000000000")  # four-eyes is not what this test is about
    home = tmp_path_factory.mktemp("linked")
    paths = Paths(home).ensure()
    src = home / "events.jsonl"
    src.write_text("\n".join(json.dumps(e) for e in _with_identifiers(players, owners)) + "\n")
    assert ingest_file(src, paths).balanced
    dbt_build(home, AS_OF, "--select", "+dim_player", "+player_features", "+fct_identity_links",
              "--exclude", "test_type:unit", "--indirect-selection", "cautious")
    build_clusters(paths)

    person_of = {p["player_id"]: owners[i][0] for i, p in enumerate(players)}
    accounts: dict[int, list[dict]] = {}
    for p in players:
        accounts.setdefault(person_of[p["player_id"]], []).append(p)

    def reason(p: dict) -> str | None:
        own = must_be_suppressed(p, channel, "casino")
        if own:
            return own
        others = [q["player_id"] for q in accounts[person_of[p["player_id"]]]
                  if q is not p and len(accounts[person_of[p["player_id"]]]) > 1 and _stopped_by_rg(q)]
        return f"linked account(s) {others} stopped" if others else None

    campaign = CampaignSpec.model_validate({"id": "everyone", "name": "everyone", "channel": channel,
                                            "product": "casino", "experiment": {"holdout": 0.1}})
    audience = read_audience(paths, AS_OF)
    built = build_list(campaign, audience, AS_OF)
    by_id = {p["player_id"]: p for p in players}
    for pid in set(built.rows["player_id"]):
        why = reason(by_id[pid])
        assert why is None, f"{pid} (person {person_of[pid]}) is on the {channel} list but {why}: {owners}"
    assert recompute_violations(built.rows, audience).isna().all()
    # accounts of different people never link (they share the office network only)
    linked = audience.dropna(subset=["linked_self_excluded"])
    for pid, other in zip(linked["player_id"], linked["linked_excluded_player"], strict=True):
        if isinstance(other, str):
            assert person_of[other] == person_of[pid], f"{pid} linked to {other} of another person"

    publish(built, paths)
    record_gate(list_dir(paths, campaign.id, AS_OF), "campaign_list", True, {"summary": "test"})
    dispatch_list(paths, campaign.id, AS_OF, spec=campaign)
    for m in read_outbox(outbox_file(paths, channel, campaign.id, AS_OF)):
        why = reason(by_id[m["player_id"]])
        assert why is None, f"{m['player_id']} was sent a {channel} message but {why}"

