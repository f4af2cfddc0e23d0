"""Synthetic event stream of an online casino: vectorized, deterministic, chunked.

:func:`simulate` writes raw contract files (one per chunk of players) to
``paths.incoming``, the simulator's ground truth to ``paths.truth`` and the
operator's export of past campaign assignments to ``paths.exports``.

The world it simulates, in short:

* players of two brands in five jurisdictions (local time zones, currencies,
  evening peaks); casual / regular / VIP players with different visit rates,
  stakes and deposits; part of the base registered before the period;
* churn driven by a latent daily hazard: visit probability and stakes decline
  over the last weeks before a player stops, so recency and frequency trends
  predict churn;
* sessions with one ``bet.settled`` per game played (``rounds``, total stake and
  win, RTP 0.96), payments (intent -> authorized -> captured, ~8% failed),
  withdrawals, refunds, wallet adjustments, bonuses with their lifecycle;
* responsible gambling: limits and limit hits, reality checks, self-exclusions
  (brand / operator, some indefinite) and cooling-off periods; nobody gambles
  while excluded;
* consents per channel (granted at registration, later revoked / re-granted);
* four past CRM campaigns with a 20% holdout and heterogeneous true effects
  (positive / none / negative responders) that change the generated behaviour; a
  player's response type leans on a lasting promo sensitivity (``promo_sensitivity``
  in the truth), which also raises their take-up of reload, cashback and free-spin
  bonuses and how often they wager a bonus through, so past bonus behaviour tells
  something of how they will respond;
* optional dirty records (``dirty_rate``) to exercise quarantine;
* identities and planted abuse (:mod:`crm.simulator.abuse`, rates ``abuse``, default
  :data:`~crm.simulator.world.ABUSE`): names, addresses and payment instruments for everyone;
  multi-account rings registered in bursts, bonus hunters (the smallest deposit, the welcome
  bonus, its wagering on low-edge games, a withdrawal), self-excluded players' new accounts, and
  innocent sharing (families, offices, a carrier's NAT) that defeats linking on any one
  identifier. Its truth: ``truth/abuse_accounts.parquet``.

Everything is drawn from ``np.random.default_rng([seed, chunk])`` (and
``[seed, chunk, 1]`` for dirty records, so the clean events do not depend on
``dirty_rate``; ``[seed, chunk, 19]`` for identities and abuse, which change values only, so a
player outside every abuse or sharing group lives the same life whatever the rates): the same
arguments give byte-identical files. Payload JSON is
serialised by DuckDB (``json_object``); rows are written in ``occurred_at`` order.

Encoding notes for the pipeline:

* ids: ``event_id`` ``ev_{seed}_{chunk:04d}_{n}`` (dirty copies ``..._x{j}``),
  ``player_id`` ``p_{index:07d}``, ``trace_id`` ``tr_{seed}_{chunk}_{k}``, shared by
  the events of one session (``s``), payment attempt (``p``: intent -> authorized ->
  captured | failed, and its refund), bonus (``b``), delivery (``d``), exclusion
  (``x``) or registration (``r``: player.registered + its consent grants).
* only ``player.registered`` and its ``consent.granted`` (source ``registration``)
  may precede ``start_date``; everything else lies in ``[start_date, end_date]``.
* payload keys beyond the contract: ``bonus_id`` on bonus.* (links issued ->
  consumed | expired); ``first_name``, ``last_name``, ``address``, ``postcode`` on
  player.registered and ``payment_instrument`` (``card_`` / ``bank_`` / ``wallet_`` / ``voucher_``
  + 12 hex digits) on payment.intent, payment.withdraw and payment.refund: PII keys
  (:data:`crm.contract.PII_FIELDS`), in clear here, pseudonymised at landing. Optional keys
  are omitted, never null: ``until`` is absent for an indefinite self-exclusion,
  ``reason_code`` only on payment.failed / payment.refund, ``campaign_id`` only on campaign
  bonuses, ``duration_s`` only on session.ended.
* money: minor units of the player's currency (GBP, EUR, SEK); ``bet.settled``
  aggregates one game of a session (``rounds``, total ``stake`` and ``win``).
  ``bet.placed`` is rare (live/table), repeats the stake of the following
  bet.settled with ``win`` 0: count money from bet.settled only.
* self-exclusion: rg.self_exclusion.started ``scope`` brand | operator (``until``
  30 days .. 5 years, or absent), rg.self_exclusion.ended at ``until`` if that is
  within the period. Cooling-off: scope ``cooling_off`` with ``until`` 1-42 days
  later, then ended. No sessions, bets, payments, bonuses, messages, limit or
  e-mail changes while excluded; after the end some players return, some never do.
* consents: consent.granted at registration per channel (email, push, sms,
  in_app, profiling; purpose marketing | profiling, product casino), later
  revocations / re-grants (source preference_centre | support). A
  crm.unsubscribe or crm.complaint is *not* followed by a consent.revoked: it
  withdraws the channel by itself (no later delivery or consent change there).
* rg.limit.set ``value``: minor units for deposit / loss limits, minutes for
  session limits. player.updated carries ``age_verified`` (late KYC) or a new
  ``email``. Under-18 players register with ``age_verified`` false and never play.
* past campaigns ``hist_c01..04`` (email, push, email, push; c02 / c04 carry a
  bonus): crm.* events for the treatment arm only; the export
  ``campaign_assignments`` has both arms, ``sent_at`` being the scheduled send
  time (for control: when it would have been sent).
* truth: ``churned_on`` is the day activity stops for good (latent churn, or an
  exclusion without return), null if the player is still active at the end;
  a churned player may come back briefly if a campaign reactivates them.
  ``true_effect_ngr`` is the expected change in NGR (EUR cents, 7 days) including
  the bonus cost, so it is negative for non-responders of bonus campaigns.
  Truth files describe the last run only (one seed). ``abuse_accounts``: a row per (player,
  role) of :data:`crm.simulator.abuse.ROLES`, ``ring_id`` (unique in the run), ``linked_to`` (a
  re-registration's excluded player), ``shared_attributes`` (see :mod:`crm.simulator.abuse`).
  Bonus hunters' main-stream lives are not in the events, nor in the campaign truth and export.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import numpy as np
from tqdm import tqdm

from crm.config import Paths
from crm.contract import EVENT_TYPES
from crm.simulator.chunk import Chunk
from crm.simulator.files import TruthWriters, write_chunk
from crm.simulator.world import (
    ABUSE,
    DIRTY_KINDS,
    Abuse,
    World,
)


@dataclass
class SimulationSummary:
    players: int
    days: int
    seed: int
    start_date: dt.date
    end_date: dt.date  # last simulated day (inclusive)
    events: int  # valid events written (dirty records not included)
    files: list[Path]
    seconds: float
    dirty_records: int  # extra bad records in the files (including exact duplicates)
    events_by_type: dict[str, int] = field(default_factory=dict)
    dirty_by_kind: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["start_date"] = self.start_date.isoformat()
        d["end_date"] = self.end_date.isoformat()
        d["files"] = [str(f) for f in self.files]
        return d


def simulate(
    paths: Paths,
    players: int = 20_000,
    days: int = 120,
    seed: int = 42,
    start_date: dt.date = dt.date(2025, 6, 1),
    fmt: str = "parquet",
    chunk_players: int = 50_000,
    dirty_rate: float = 0.0005,
    progress: bool = True,
    abuse: Abuse = ABUSE,
) -> SimulationSummary:
    """Simulate ``players`` over ``days`` days from ``start_date`` and write raw event files
    (``abuse``: the rates of planted abuse and sharing; :data:`~crm.simulator.world.NO_ABUSE` for none)."""
    if fmt not in ("parquet", "jsonl"):
        raise ValueError(f"fmt must be 'parquet' or 'jsonl', not {fmt!r}")
    if players < 1 or days < 1 or chunk_players < 1:
        raise ValueError("players, days and chunk_players must be positive")
    if not 0.0 <= dirty_rate < 1.0:
        raise ValueError("dirty_rate must be in [0, 1)")
    t0 = time.perf_counter()
    world = World(seed, days, start_date, players, abuse)
    for d in (paths.incoming, paths.truth, paths.exports):
        d.mkdir(parents=True, exist_ok=True)
    for old in sorted(paths.incoming.glob(f"events_s{seed}_c*")):
        if old.suffix in (".parquet", ".jsonl", ".tmp"):
            old.unlink()

    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    n_chunks = math.ceil(players / chunk_players)
    files: list[Path] = []
    by_type = np.zeros(len(EVENT_TYPES), np.int64)
    dirty_by_kind = dict.fromkeys(DIRTY_KINDS, 0)
    events = 0
    truth_w = TruthWriters(paths)
    bar = tqdm(total=n_chunks, desc=f"simulate s{seed}", unit="chunk", disable=not progress,
               file=sys.stderr)
    try:
        for c in range(n_chunks):
            first = c * chunk_players
            chunk = Chunk(world, c, first, min(chunk_players, players - first))
            out = paths.incoming / f"events_s{seed}_c{c:04d}.{fmt}"
            n_ev, counts, kinds = write_chunk(chunk, con, out, fmt, dirty_rate)
            truth_w.write(chunk)
            files.append(out)
            events += n_ev
            by_type += counts
            for k, v in kinds.items():
                dirty_by_kind[k] += v
            bar.update(1)
            bar.set_postfix(events=events)
            del chunk
    finally:
        bar.close()
        truth_w.close()
        con.close()
    summary = SimulationSummary(
        players=players, days=days, seed=seed, start_date=start_date,
        end_date=start_date + dt.timedelta(days=days - 1), events=events, files=files,
        seconds=round(time.perf_counter() - t0, 3), dirty_records=sum(dirty_by_kind.values()),
        events_by_type={t: int(v) for t, v in zip(EVENT_TYPES, by_type, strict=True) if v},
        dirty_by_kind={k: v for k, v in dirty_by_kind.items() if v},
    )
    # the home holds history: dispatch sends its lists on time, not at today's wall clock
    # (crm.config.dispatch_clock)
    paths.simulation_file.write_text(json.dumps(
        {"players": players, "days": days, "seed": seed, "start_date": start_date.isoformat(),
         "end_date": summary.end_date.isoformat()}, indent=2) + "\n")
    return summary


