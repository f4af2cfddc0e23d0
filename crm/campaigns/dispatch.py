"""Dispatch: hand a gated list to the channel outbox, exactly once per message.

Each message carries an idempotency key derived from (campaign, as-of date, player,
channel), so re-running dispatch never sends a message twice. Holdout rows are never
dispatched. The outbox file is rewritten atomically (temp file + rename).

Every dispatch also records its randomized assignment, so our own campaigns get readouts
like the operator's past ones: ``landing/exports/campaign_assignments_<campaign>_<as_of>.parquet``
in the export's schema (campaign_id, player_id, arm, channel, sent_at), read by dbt with the
operator's files (``campaign_assignments*.parquet``). See :func:`write_assignments`.

Four-eyes approval (:mod:`crm.campaigns.approvals`): a gated list whose campaign needs approval and has
none for the spec version the list was built from, or whose version was rejected, is not sent:
:func:`dispatch_list` returns a report with ``status`` ``awaiting_approval`` / ``rejected``, no
new messages and no assignment export. That is a normal state, not an error; the gate guard
(:class:`DispatchBlocked`) comes first and still raises.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crm.campaigns.approvals import status as approval_status
from crm.campaigns.budget import record_sent
from crm.campaigns.eligibility import quiet_hours_at
from crm.campaigns.enqueue import enqueue_outbox
from crm.campaigns.experiments import HOLDOUT
from crm.campaigns.history import outbox_file
from crm.campaigns.lists import gate_verdict, list_dir, read_manifest
from crm.campaigns.spec import CampaignError, CampaignSpec, load_campaign
from crm.config import Paths, campaigns_dir, dispatch_clock
from crm.contract import ALL_CHANNELS, SELF_EXCLUSION_START, WITHDRAWALS
from crm.ingest.landing import landed_glob

# The operator export's schema (crm/simulator/casino.py writes the same; stg_exports__campaign_assignments reads it).
ASSIGNMENT_SCHEMA = pa.schema([
    ("campaign_id", pa.string()), ("player_id", pa.string()), ("arm", pa.string()),
    ("channel", pa.string()), ("sent_at", pa.timestamp("s")),
])
# Send-time suppression. The list was built on what had landed then; a stop event can land after
# that (a list sent later than it was built: an approval days later, a backfill run after newer
# events landed) or arrive late (an event of the evening before, landed after the morning's
# build). At send time the landed events from STOP_LOOKBACK_DAYS before the list's as-of date on
# are read again: a self-exclusion suppresses the player; on the list's channel (and
# ``profiling`` for ML-targeted campaigns) the latest of consent.granted / consent.revoked /
# crm.unsubscribe / crm.complaint decides, as in the warehouse (a withdrawal holds until a later
# grant; at the same instant the withdrawal wins; a withdrawal landed with channel '*' counts on
# every channel); and for the campaign's product, the latest grant naming it or withdrawal naming
# it (or no product) decides too. Events arriving more than the window late are seen by the next
# day's lists only.
SELF_EXCLUSION = SELF_EXCLUSION_START
STOP_EVENTS = (SELF_EXCLUSION, *WITHDRAWALS)
STOP_LOOKBACK_DAYS = 7
QUIET_HOURS_AT_SEND = "quiet_hours_at_send"  # held: the send runs late, into the player's quiet hours
# held: the player already has a message of a later as-of date. A list sees the messages before its
# date only; sending it after a later date's messages (a backfill, an approval that came late) could
# break the dedup, cooldown and caps of those messages, so its players who have one are not sent.
LATER_MESSAGE_SENT = "later_message_sent"
SUPPRESSED_FILE = "suppressed_at_send.json"  # beside the list: who was not sent and why
MESSAGE_FIELDS = ("idempotency_key", "campaign_id", "channel", "player_id", "variant", "as_of_date",
                  "locale", "timezone", "offer_template", "offer_cost_eur_cents", "offer_wagering", "offer_expiry_days",
                  "offer_name", "recommended_game")


class DispatchBlocked(RuntimeError):
    """The list may not be dispatched (its gate failed, never ran, or it changed since)."""


@dataclass
class DispatchReport:
    campaign_id: str
    as_of_date: str
    outbox_file: str
    listed: int
    holdout: int
    new_messages: int
    already_in_outbox: int
    assignments_file: str = ""
    assigned_treatment: int = 0
    assigned_control: int = 0
    assignments_written: bool = False
    status: str = "dispatched"  # dispatched | awaiting_approval | rejected (crm.campaigns.approvals)
    approval: str = ""  # the approval state in words: who approved which version, or why it waits
    spec_hash: str = ""  # the campaign version the list was built from (its manifest)
    suppressed_at_send: int = 0  # treated rows not sent: a stop event at send time (send_time_suppressions)
    suppressed_reasons: dict = field(default_factory=dict)  # event type -> players
    queued: int = 0  # messages newly queued for delivery (crm.campaigns.enqueue; the worker sends them)

    def to_dict(self) -> dict:
        return asdict(self)


def idempotency_key(campaign_id: str, as_of: str, player_id: str, channel: str) -> str:
    return hashlib.sha256(f"{campaign_id}|{as_of}|{player_id}|{channel}".encode()).hexdigest()[:32]


def read_outbox(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assignments_file(paths: Paths, campaign_id: str, as_of: dt.date) -> Path:
    return paths.exports / f"campaign_assignments_{campaign_id}_{as_of.isoformat()}.parquet"


def _earlier_assignments(paths: Paths, campaign_id: str, as_of: dt.date) -> set[str]:
    """Players already assigned by this campaign's dispatches of as-of dates before ``as_of``."""
    name = re.compile(rf"campaign_assignments_{re.escape(campaign_id)}_(\d{{4}}-\d{{2}}-\d{{2}})\.parquet")
    seen: set[str] = set()
    for f in paths.exports.glob(f"campaign_assignments_{campaign_id}_*.parquet"):
        m = name.fullmatch(f.name)
        if m and m.group(1) < as_of.isoformat():
            seen.update(pq.read_table(f, columns=["player_id"]).column("player_id").to_pylist())
    return seen


def assignment_table(campaign_id: str, as_of: dt.date, channel: str, treated: set[str], control: set[str],
                     already_assigned: set[str] = frozenset()) -> pa.Table:
    """The export rows of one dispatch, sorted by player (deterministic).

    ``sent_at`` is the as-of date at 00:00 UTC: a list of as-of D is built from data strictly
    before D and sent on D, so its outcome windows start on D (S = D) and the first run that
    can see any of them, as-of D + 1, is also the first whose staging cut (sent_at < as-of)
    admits the rows. Control players get the same time (when they would have been sent).
    A player keeps their first assignment to a campaign: players in ``already_assigned``
    (earlier dispatches of the campaign; the hash puts them in the same arm every day) are
    left out, so (campaign_id, player_id) stays a key and readouts measure from the first send.
    """
    sent_at = dt.datetime.combine(as_of, dt.time())
    rows = sorted([(p, "treatment") for p in treated - already_assigned]
                  + [(p, "control") for p in control - treated - already_assigned])
    return pa.table({
        "campaign_id": [campaign_id] * len(rows), "player_id": [p for p, _ in rows], "arm": [a for _, a in rows],
        "channel": [channel] * len(rows), "sent_at": [sent_at] * len(rows),
    }, schema=ASSIGNMENT_SCHEMA)


def _same_rows(path: Path, table: pa.Table) -> bool:
    try:  # Parquet keeps timestamps in ms at the finest: compare in the export's schema
        return pq.read_table(path).cast(ASSIGNMENT_SCHEMA).equals(table)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, OSError):
        return False


def write_assignments(paths: Paths, campaign_id: str, as_of: dt.date, channel: str, treated: set[str],
                      control: set[str]) -> tuple[Path, pa.Table, bool]:
    """Write (or keep) this dispatch's assignment export; returns (path, table, written).

    Idempotent: an existing file with the same rows is left untouched; otherwise the file is
    replaced atomically (temp file + rename). Nothing is written when no one was assigned.
    """
    target = assignments_file(paths, campaign_id, as_of)
    table = assignment_table(campaign_id, as_of, channel, treated, control,
                             _earlier_assignments(paths, campaign_id, as_of))
    if target.exists() and _same_rows(target, table):
        return target, table, False
    if table.num_rows == 0:
        return target, table, False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, target)
    return target, table, True


def send_time_suppressions(paths: Paths, as_of: dt.date, player_ids, channels: tuple[str, ...] | list[str],
                           product: str | None = None) -> dict[str, dict]:
    """Players among ``player_ids`` to leave out at send time (see :data:`STOP_EVENTS`): a
    self-exclusion, or a withdrawal on one of ``channels`` not followed by a grant, or (with
    ``product``) a withdrawal of that product on ``channels[0]`` not followed by a grant naming it,
    with an event time at or after ``as_of`` - :data:`STOP_LOOKBACK_DAYS` (00:00 UTC) in the
    landed events. Returns player id -> the first such event (type, channel, event time)."""
    import duckdb

    glob = landed_glob(paths)
    if glob is None:
        return {}
    ids = pd.DataFrame({"player_id": pd.Series(list(player_ids), dtype="string")})
    chans = pd.DataFrame({"channel": pd.Series(list(channels), dtype="string")})
    cutoff = dt.datetime.combine(as_of - dt.timedelta(days=STOP_LOOKBACK_DAYS), dt.time())
    kinds = (SELF_EXCLUSION, "consent.granted", *WITHDRAWALS)
    with duckdb.connect() as con:
        con.register("ids", ids)
        con.register("chans", chans)
        rows = con.execute(f"""
            WITH ev AS (
                SELECT e.player_id, e.event_type, e.occurred_at,
                       json_extract_string(e.payload, '$.channel') AS channel,
                       json_extract_string(e.payload, '$.product') AS product
                FROM read_parquet(?) e JOIN ids USING (player_id)
                WHERE e.occurred_at >= ? AND e.event_type IN ({", ".join("?" * len(kinds))})
            ),
            changes AS (  -- consent changes on a requested channel ('*': on every channel)
                SELECT ev.player_id, ev.event_type, ev.occurred_at, c.channel, ev.product
                FROM ev JOIN chans c
                  ON ev.channel = c.channel OR (ev.channel = ? AND ev.event_type <> 'consent.granted')
                WHERE ev.event_type <> ?
            ),
            latest AS (  -- per player and channel, the latest consent change (a withdrawal wins a tie)
                SELECT player_id, channel,
                       arg_max(event_type, [epoch_us(occurred_at), (event_type <> 'consent.granted')::INT]) AS kind,
                       max(occurred_at) AS changed_at
                FROM changes GROUP BY player_id, channel
            ),
            product_latest AS (  -- the campaign's product on its channel: grants naming it, withdrawals of it or all
                SELECT player_id, channel,
                       arg_max(event_type, [epoch_us(occurred_at), (event_type <> 'consent.granted')::INT]) AS kind,
                       max(occurred_at) AS changed_at
                FROM changes
                WHERE ? IS NOT NULL AND channel = ?
                  AND (product = ? OR (product IS NULL AND event_type <> 'consent.granted'))
                GROUP BY player_id, channel
            ),
            stops AS (  -- rank: at the same instant an exclusion, then a channel, then a product reason
                SELECT player_id, event_type AS kind, NULL AS channel, occurred_at AS changed_at, 0 AS rank FROM ev
                WHERE event_type = ?
                UNION ALL
                SELECT player_id, kind, channel, changed_at, 1 FROM latest WHERE kind <> 'consent.granted'
                UNION ALL
                SELECT player_id, kind, channel || ' (' || ? || ')', changed_at, 2 FROM product_latest
                WHERE kind <> 'consent.granted'
            )
            SELECT player_id, kind, channel, changed_at FROM (  -- the first reason: one row, ties broken
                SELECT *, row_number() OVER (PARTITION BY player_id
                                             ORDER BY changed_at, rank, channel NULLS FIRST, kind) AS n
                FROM stops)
            WHERE n = 1
        """, [glob, cutoff, *kinds, ALL_CHANNELS, SELF_EXCLUSION, product, channels[0] if channels else None,
              product, SELF_EXCLUSION, product]).fetchall()
    return {str(p): {"event_type": t, "channel": c, "occurred_at": str(at)} for p, t, c, at in rows}


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _load_spec(campaign_id: str) -> CampaignSpec:
    path = campaigns_dir() / f"{campaign_id}.yaml"
    try:
        return load_campaign(path)
    except (CampaignError, OSError) as e:
        raise DispatchBlocked(f"{campaign_id}: not dispatched: its campaign file is needed to check approval "
                              f"and cannot be read: {e}") from e


def dispatch_list(paths: Paths, campaign_id: str, as_of: dt.date, spec: CampaignSpec | None = None,
                  now: dt.datetime | None = None) -> DispatchReport:
    """Write the non-holdout rows of a published list to the outbox, once.

    Refuses (:class:`DispatchBlocked`) unless the list's quality gate passed on exactly
    these bytes: this guard holds whatever runs dispatch, in the same run or a later one.

    Then checks approval (:func:`crm.campaigns.approvals.status`) for the spec version the list was built
    from (``spec_hash`` in its manifest) and its cost: when that version needs approval and has
    none, or was rejected, nothing is sent and the report says so (``status``). ``spec`` is the
    campaign; when omitted it is loaded from ``$CRM_CAMPAIGNS_DIR/<campaign_id>.yaml`` (default
    ``campaigns/``), and a missing or broken file blocks dispatch (fail closed). An audit log that
    does not verify blocks dispatch as well: its approvals and rejections cannot be trusted.

    At send time, treated players with a self-exclusion, or an opt-out / complaint on the list's
    channel not followed by a grant, from :data:`STOP_LOOKBACK_DAYS` before the list's as-of date
    on, are not sent (:func:`send_time_suppressions`: late arrivals and events after the build);
    they are listed in ``suppressed_at_send.json`` beside the list and counted in the report.

    Each message records its ``planned_send_at`` (the campaign's send time on the as-of date, the
    instant the list's quiet-hours rule checked) and its ``sent_at``: the planned time, or ``now``
    when the dispatch runs later than planned (``now``: naive UTC; default
    :func:`crm.config.dispatch_clock`). A late send is checked again against the quiet-hours rule
    (:func:`crm.campaigns.eligibility.quiet_hours_at`) at ``sent_at``: a player in their quiet hours then is
    held (``quiet_hours_at_send`` in ``suppressed_at_send.json``, not sent, no assignment) and is
    sent by a later dispatch outside them (the idempotency key keeps it to one message).
    Transactional campaigns bypass quiet hours, as in the list.
    """
    directory = list_dir(paths, campaign_id, as_of)
    ok, why = gate_verdict(directory)
    if not ok:
        raise DispatchBlocked(f"{campaign_id} {as_of}: not dispatched: {why}")
    rows = pd.read_parquet(directory / "list.parquet")
    channel = str(rows["channel"].iloc[0]) if len(rows) else "email"
    target = outbox_file(paths, channel, campaign_id, as_of)
    existing = read_outbox(target)
    # the count of players to contact comes from the gated rows themselves, never the manifest's
    # word: an empty list needs no approval (crm.campaigns.approvals.nothing_to_send)
    manifest = read_manifest(directory) | {"to_contact": int((rows["variant"] != HOLDOUT).sum())}
    spec = spec if spec is not None else _load_spec(campaign_id)
    if spec.id != campaign_id:
        raise ValueError(f"dispatch_list: spec {spec.id!r} given for campaign {campaign_id!r}")
    approval = approval_status(paths, spec, manifest, spec_hash=manifest.get("spec_hash") or spec.spec_hash())
    if approval.state == "audit_broken":
        raise DispatchBlocked(f"{campaign_id} {as_of}: not dispatched: {approval.summary()}; run `crm audit verify`")
    if not approval.dispatchable:
        return DispatchReport(campaign_id, as_of.isoformat(), str(target), len(rows),
                              int((rows["variant"] == HOLDOUT).sum()), 0, len(existing),
                              status=approval.dispatch_status, approval=approval.summary(),
                              spec_hash=approval.spec_hash)
    sent = {m["idempotency_key"] for m in existing}
    to_send = rows[rows["variant"] != HOLDOUT]
    keys = [idempotency_key(campaign_id, as_of.isoformat(), str(p), str(c))
            for p, c in zip(to_send["player_id"], to_send["channel"], strict=True)]
    to_send = to_send[np.array([k not in sent for k in keys], dtype=bool)]  # sent before: nothing to decide
    stopped, planned, send_at = _held_at_send(paths, spec, as_of, to_send, now)
    if stopped:
        to_send = to_send[~to_send["player_id"].astype(str).isin(stopped)]
        tmp = directory / f".{SUPPRESSED_FILE}.tmp"
        tmp.write_text(json.dumps(stopped, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, directory / SUPPRESSED_FILE)
    reasons = dict(Counter(v["event_type"] for v in stopped.values()))
    new = _messages(campaign_id, as_of, to_send, sent, planned, send_at)
    if new:
        _rewrite_outbox(target, existing + new)
    # the spend ledger: the date's sent cost is what its outbox holds (a re-dispatch replaces it)
    record_sent(paths, campaign_id, as_of)
    # the delivery queue: every message of the date's outbox, queued once (a re-dispatch queues what is missing)
    queued = enqueue_outbox(paths, spec, existing + new, dict(zip(rows["player_id"].astype(str),
                                                                  rows["brand_id"].astype(str), strict=True)),
                            list_sha256=hashlib.sha256((directory / "list.parquet").read_bytes()).hexdigest(),
                            spec_hash=approval.spec_hash)
    # the randomized assignment: who was sent (the outbox) and the holdout, for readouts
    treated = {m["player_id"] for m in existing + new}
    control = set(rows.loc[rows["variant"] == HOLDOUT, "player_id"].astype(str))
    export, table, written = write_assignments(paths, campaign_id, as_of, channel, treated, control)
    arms = table.column("arm").to_pylist()
    return DispatchReport(campaign_id, as_of.isoformat(), str(target), len(rows),
                          int((rows["variant"] == HOLDOUT).sum()), len(new), len(existing),
                          str(export) if table.num_rows else "", arms.count("treatment"), arms.count("control"),
                          written, status="dispatched", approval=approval.summary(), spec_hash=approval.spec_hash,
                          suppressed_at_send=len(stopped), suppressed_reasons=reasons, queued=queued)


def _held_at_send(paths: Paths, spec: CampaignSpec, as_of: dt.date, to_send: pd.DataFrame,
                  now: dt.datetime | None) -> tuple[dict[str, dict], dt.datetime, dt.datetime]:
    """(player -> why held at send, the planned send instant, the real one): the players' own
    latest word (opt-out, complaint, self-exclusion) beats the list, and a late send meets the
    quiet hours of the list's rule again, at the instant it really goes out."""
    channels = (spec.channel, "profiling") if spec.uses_ml else (spec.channel,)
    players = to_send["player_id"].astype(str)
    stopped = send_time_suppressions(paths, as_of, players, channels, spec.product)
    for pid, why in later_messages(paths, as_of, players).items():
        stopped.setdefault(pid, why)
    planned = spec.schedule.send_at(as_of)
    clock = dispatch_clock(paths) if now is None else now
    send_at = max(planned, clock) if clock is not None else planned
    if send_at > planned and not spec.transactional and len(to_send):
        pending = to_send[~to_send["player_id"].astype(str).isin(stopped)]
        inside, local = quiet_hours_at(pending, send_at)
        for pid, when in zip(pending["player_id"].astype(str)[inside], local[inside], strict=True):
            stopped[pid] = {"event_type": QUIET_HOURS_AT_SEND, "channel": spec.channel,
                            "occurred_at": f"{_iso(send_at)} = {when} (planned {_iso(planned)})"}
    return stopped, planned, send_at


def later_messages(paths: Paths, as_of: dt.date, player_ids) -> dict[str, dict]:
    """Players among ``player_ids`` with a message in the outbox of an as-of date after ``as_of``
    (any campaign, any channel): player id -> the earliest such message (type, channel, when)."""
    wanted = set(player_ids)
    found: dict[str, tuple[str, dict]] = {}
    for f in paths.outbox.glob("*/*/*.jsonl"):
        try:
            day = dt.date.fromisoformat(f.stem)
        except ValueError:
            continue
        if day <= as_of:
            continue
        for m in read_outbox(f):
            pid = str(m.get("player_id"))
            if pid in wanted and (pid not in found or day.isoformat() < found[pid][0]):
                found[pid] = (day.isoformat(), m)
    return {pid: {"event_type": LATER_MESSAGE_SENT, "channel": str(m.get("channel")),
                  "occurred_at": f"{m.get('campaign_id')} as of {day} (sent {m.get('sent_at')})"}
            for pid, (day, m) in found.items()}


def _messages(campaign_id: str, as_of: dt.date, to_send: pd.DataFrame, sent: set[str],
              planned: dt.datetime, send_at: dt.datetime) -> list[dict]:
    """The outbox messages of the rows not sent before (by idempotency key)."""
    new = []
    for r in to_send.itertuples(index=False):
        key = idempotency_key(campaign_id, as_of.isoformat(), r.player_id, r.channel)
        if key in sent:
            continue
        msg = {"idempotency_key": key, **{f: getattr(r, f, None) for f in MESSAGE_FIELDS[1:]}}
        msg["offer_cost_eur_cents"] = int(msg["offer_cost_eur_cents"])
        if not isinstance(msg["recommended_game"], str):  # none (NaN, or a list from before the column)
            msg["recommended_game"] = None
        msg["planned_send_at"], msg["sent_at"] = _iso(planned), _iso(send_at)
        new.append(msg)
    return new


def _rewrite_outbox(target: Path, messages: list[dict]) -> None:
    """The outbox file with every message, replaced in one step (never half-written)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".jsonl.tmp")
    with tmp.open("w") as f:
        for m in messages:
            f.write(json.dumps(m, sort_keys=True, default=str) + "\n")
    os.replace(tmp, target)
