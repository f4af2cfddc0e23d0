"""The audit log: an append-only, hash-chained JSON-lines file of who decided what about a campaign.

``$CRM_HOME/audit/audit.jsonl`` holds one entry per line::

    {"by":"alice","campaign_id":"reengage_dormant_vip","details":{...},"hash":"<64 hex>","kind":"approved",
     "prev_hash":"<64 hex>","reason":"budget signed off","seq":7,"spec_hash":"<64 hex>",
     "ts":"2025-10-23T11:21:05.123456Z"}

* ``seq`` counts from 1 with no gaps; ``ts`` is UTC ISO-8601; ``kind`` is one of :data:`KINDS`
  (``gate_override``: :mod:`crm.campaigns.overrides`; ``user_changed``: ``crm users``, with the user,
  role, brands and regions in ``details``); ``campaign_id`` / ``spec_hash`` say which campaign
  version the entry is about; ``by`` and ``reason`` who and why; ``details`` anything else (a JSON object).
* ``hash`` = sha256 of the canonical JSON of the entry without ``hash`` (so it covers
  ``prev_hash``); ``prev_hash`` = the previous entry's ``hash`` (:data:`GENESIS` for seq 1).
* Canonical JSON = ``json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
  in UTF-8. Each line *is* the canonical JSON of its entry (with ``hash``), so any change to a
  line's bytes, even whitespace, is detected. Any tool that reproduces this serialization can
  check the chain (floats, e.g. in a campaign spec kept in details, are Python's shortest repr;
  money is in integer cents).
* ``audit/HEAD`` holds ``{"seq": N, "hash": "<hash of entry N>"}`` of the last append, rewritten
  atomically after each one. It is what makes deleting the *last* entries detectable.

**What** :func:`verify` **detects.** Any edit of a line (hash mismatch, or not canonical, or not
JSON), a deleted line in the middle (seq gap, broken chain), reordered or duplicated lines, a
truncated line, an inserted line whose hash was recomputed but does not chain, deleting the
last line(s) or emptying/removing the file (HEAD is ahead of the log), and a HEAD that was
removed while the log was not. Verification stops at the first bad line and names it and why.

**The store's copy.** Each entry is also written to the store's ``audit_entries`` table, which the
database keeps append-only (triggers refuse UPDATE and DELETE; :mod:`crm.store.audit_entries`), and
:func:`verify` compares the two: a log rewritten with recomputed hashes, or cut at its end with HEAD
rewritten to match, no longer verifies. Where the store is a SQLite file beside the log, whoever can
replace both files can still rewrite history; PostgreSQL with a service role that does not own the
table cannot.

**What it cannot detect** (without the store's copy, or with it replaced). There is no secret:
someone who can write both ``audit.jsonl`` and
``HEAD`` can rewrite the whole tail with recomputed hashes, or truncate the log and rewrite HEAD
to match, or append well-formed entries. The chain makes tampering *evident*, not impossible. To
close that gap, keep the head (``crm audit verify`` prints ``seq:hash``) somewhere the writer of
this folder cannot change (a ticket, a git commit, another system) and check against it later
with ``verify(paths, anchor="seq:hash")`` / ``crm audit verify --anchor seq:hash``: every entry up
to that seq is then fixed. A log one entry ahead of HEAD with a valid chain is what an append
interrupted between its two writes leaves; it verifies with a warning, and the next append
brings HEAD up to date.

Why hand-written: the chain is ~100 lines over hashlib and json, and no maintained library on
the package index does "hash-chained JSONL on a local file" (the candidates are abandoned
single-release packages, or clients for servers such as immudb that this embedded platform
must not need). Locking does use a well-kept library: ``filelock`` (tox-dev; already in the
lock file through Dagster). It takes an OS lock (``fcntl.flock`` on POSIX, ``msvcrt`` on
Windows) on ``audit/audit.jsonl.lock``, so two processes never interleave appends (verify,
write the line, fsync, update HEAD), a crashed holder releases it automatically, and a waiter
gives up after :data:`LOCK_TIMEOUT_S` with a clear error rather than hanging.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from crm.config import Paths
from crm.store.audit_entries import witness, witnessed

GENESIS = "0" * 64  # prev_hash of the first entry
KINDS = ("campaign_changed", "approved", "rejected", "gate_override", "user_changed", "list_downloaded",
         "player_forgotten", "template_reviewed", "config_changed", "risk_reviewed")
FIELDS = ("seq", "ts", "kind", "campaign_id", "spec_hash", "by", "reason", "details", "prev_hash", "hash")
LOCK_TIMEOUT_S = 30.0


class AuditError(RuntimeError):
    """The audit log cannot be appended to (broken tail, lock timeout, bad entry)."""


def log_file(paths: Paths) -> Path:
    return paths.audit / "audit.jsonl"


def head_file(paths: Paths) -> Path:
    return paths.audit / "HEAD"


def canonical(obj: dict) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(entry: dict) -> str:
    """sha256 of the canonical JSON of ``entry`` without its ``hash`` field."""
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k != "hash"}).encode()).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _read_head(paths: Paths) -> dict | None:
    try:
        head = json.loads(head_file(paths).read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"seq": None, "hash": None, "broken": True}
    return head if isinstance(head, dict) else {"seq": None, "hash": None, "broken": True}


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows): the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_head(paths: Paths, seq: int, hash_: str) -> None:
    tmp = paths.audit / ".HEAD.tmp"
    with tmp.open("w") as f:
        f.write(json.dumps({"seq": seq, "hash": hash_}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, head_file(paths))
    _fsync_dir(paths.audit)


def read_entries(paths: Paths) -> list[dict]:
    """Every entry as written, without checking the chain (see :func:`verify`).

    Lines that are not JSON objects are skipped; use :func:`verify` to know whether to trust them.
    """
    path = log_file(paths)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(e, dict):
            out.append(e)
    return out


class Transaction:
    """The log under its lock: read the entries, append new ones (see :func:`transaction`)."""

    def __init__(self, paths: Paths, entries: list[dict]):
        self.paths = paths
        self.entries = entries

    def append(self, kind: str, *, by: str, reason: str = "", campaign_id: str | None = None,
               spec_hash: str | None = None, details: dict | None = None) -> dict:
        """Write one entry: the full line in one write on an O_APPEND descriptor, fsync, then HEAD."""
        if kind not in KINDS:
            raise AuditError(f"unknown audit entry kind {kind!r}; expected one of: {', '.join(KINDS)}")
        if not by or not by.strip():
            raise AuditError("an audit entry needs 'by' (who)")
        last = self.entries[-1] if self.entries else None
        entry = {
            "seq": (last["seq"] + 1) if last else 1, "ts": _now(), "kind": kind, "campaign_id": campaign_id,
            "spec_hash": spec_hash, "by": by.strip(), "reason": reason.strip(), "details": details or {},
            "prev_hash": last["hash"] if last else GENESIS,
        }
        entry["hash"] = entry_hash(entry)
        try:
            line = (canonical(entry) + "\n").encode("utf-8")
            plain = json.loads(line) == entry  # a tuple, NaN or non-str key would not read back the same
        except (TypeError, ValueError):
            plain = False
        if not plain:
            raise AuditError("audit entry details must be plain JSON that reads back unchanged "
                             "(str, int, float, bool, null, lists, objects with text keys)")
        fd = os.open(log_file(self.paths), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):  # a regular local file writes all or fails; never leave half a line unsaid
                raise AuditError(f"short write to the audit log ({written} of {len(line)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)
        _write_head(self.paths, entry["seq"], entry["hash"])
        witness(self.paths, [(entry, canonical(entry))])  # the store's append-only copy
        self.entries.append(entry)
        return entry


@contextmanager
def transaction(paths: Paths) -> Iterator[Transaction]:
    """Hold the audit lock; yields the current entries and an :meth:`Transaction.append`.

    Read-then-append decisions (e.g. "log a change unless already logged") are race-free inside
    one transaction. Refuses (:class:`AuditError`) to extend a log that does not :func:`verify`:
    appending would bury the damage under valid-looking new entries. The whole chain is checked
    on every transaction (linear in the log: about 40 ms per thousand 1 KB entries here), which a
    log of decisions, not events, easily affords.
    """
    paths.audit.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(log_file(paths)) + ".lock", timeout=LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout as e:
        raise AuditError(f"could not lock the audit log within {LOCK_TIMEOUT_S:.0f} s ({lock.lock_file}): "
                         "another process holds it") from e
    try:
        checked = verify(paths)
        if not checked.ok:
            raise AuditError(f"the audit log does not verify, nothing appended: {checked.problem} "
                             "(run `crm audit verify`)")
        entries = read_entries(paths)
        head = _read_head(paths)
        if entries and (head is None or head.get("seq") != entries[-1]["seq"]):
            _write_head(paths, entries[-1]["seq"], entries[-1]["hash"])  # an append interrupted before HEAD
        if (checked.store_copy or 0) < len(entries):  # an append that missed the store, or a log from before it
            witness(paths, [(e, canonical(e)) for e in entries])
        yield Transaction(paths, entries)
    finally:
        lock.release()


def append(paths: Paths, kind: str, *, by: str, reason: str = "", campaign_id: str | None = None,
           spec_hash: str | None = None, details: dict | None = None) -> dict:
    """Append one entry under the lock and return it (with seq and hash)."""
    with transaction(paths) as tx:
        return tx.append(kind, by=by, reason=reason, campaign_id=campaign_id, spec_hash=spec_hash,
                         details=details)


@dataclass
class VerifyResult:
    ok: bool
    entries: int  # lines read before the first problem (all of them when ok)
    head_seq: int = 0  # the last good entry's seq
    head_hash: str = GENESIS
    first_bad_line: int | None = None  # 1-based line number in audit.jsonl
    first_bad_seq: int | None = None
    problem: str = ""
    warnings: list[str] = field(default_factory=list)
    log_file: str = ""
    store_copy: int | None = None  # entries in the store's append-only copy (None: no store yet)

    @property
    def anchor(self) -> str:
        """``seq:hash`` of the last good entry: keep it elsewhere and pass it back to :func:`verify`."""
        return f"{self.head_seq}:{self.head_hash}"

    def to_dict(self) -> dict:
        return asdict(self) | {"anchor": self.anchor}


def _shape_problem(e: object) -> str:
    if not isinstance(e, dict):
        return "not a JSON object"
    missing = [f for f in FIELDS if f not in e]
    extra = sorted(set(e) - set(FIELDS))
    if missing or extra:
        return f"fields differ from the format (missing {missing}, unexpected {extra})"
    if not isinstance(e["seq"], int) or isinstance(e["seq"], bool):
        return "seq is not an integer"
    if not all(isinstance(e[k], str) for k in ("ts", "kind", "by", "reason", "prev_hash", "hash")):
        return "a text field has the wrong type"
    if not isinstance(e["details"], dict):
        return "details is not an object"
    return ""


def _parse_anchor(anchor: str) -> tuple[int, str]:
    seq, sep, h = anchor.partition(":")
    if not sep or not seq.isdigit() or len(h) != 64:
        raise ValueError(f"anchor must be 'SEQ:HASH' as printed by `crm audit verify`, got {anchor!r}")
    return int(seq), h.lower()


def verify(paths: Paths, anchor: str | None = None) -> VerifyResult:
    """Check the whole chain and HEAD; stop at the first bad line and say why.

    ``anchor`` (``"seq:hash"``, kept outside the data home) additionally requires the entry with
    that seq to have that hash, which fixes every entry up to it even against a full rewrite.
    """
    path = log_file(paths)
    res = VerifyResult(ok=True, entries=0, log_file=str(path))
    raw = path.read_bytes() if path.exists() else b""
    lines = raw.split(b"\n")
    complete = lines[-1] == b""
    if complete:
        lines.pop()
    anchor_seq, anchor_hash = _parse_anchor(anchor) if anchor else (None, None)

    def bad(i: int, why: str, seq: int | None = None) -> VerifyResult:
        res.ok, res.first_bad_line, res.first_bad_seq = False, i, seq
        res.problem = f"line {i}" + (f" (seq {seq})" if seq is not None else "") + f": {why}"
        return res

    prev_hash, expected, hashes = GENESIS, 1, {}
    for i, line in enumerate(lines, 1):
        if i == len(lines) and not complete:
            return bad(i, "the last line has no newline: a truncated write or an edit")
        try:
            e = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            return bad(i, f"not valid JSON ({err}): the line was truncated or edited")
        seq = e.get("seq") if isinstance(e, dict) and isinstance(e.get("seq"), int) else None
        why = _entry_problem(e, line, expected, prev_hash, anchor, anchor_seq, anchor_hash)
        if why:
            return bad(i, why, seq)
        prev_hash, expected = e["hash"], expected + 1
        res.entries, res.head_seq, res.head_hash = i, seq, e["hash"]
        hashes[seq] = e["hash"]

    if anchor_seq is not None and anchor_seq > res.head_seq:
        return bad(res.entries + 1, f"the log ends at seq {res.head_seq} but the anchor records seq {anchor_seq}: "
                                    "entries were deleted from the end (or the log rewritten)")
    res = _check_head(paths, res, lines, bad)
    return _check_store_copy(paths, res, hashes, bad) if res.ok else res


def _check_store_copy(paths: Paths, res: VerifyResult, hashes: dict[int, str], bad) -> VerifyResult:
    """The sound chain against the store's append-only copy (:mod:`crm.store.audit_entries`): every
    entry there must be in the log with the same hash, and the log must reach its last one."""
    copied = witnessed(paths)
    res.store_copy = None if copied is None else len(copied)
    if copied is None:
        if hashes:
            res.warnings.append("no store copy of the audit log to compare with (no store yet, or it "
                                "cannot be reached)")
        return res
    for seq in sorted(copied):
        if seq > res.head_seq:
            gone = max(copied) - res.head_seq
            return bad(res.entries + 1, f"the log ends at seq {res.head_seq} but the store's append-only copy "
                                        f"holds seq {max(copied)}: the last {gone} entr"
                                        f"{'y was' if gone == 1 else 'ies were'} deleted (or the log rewritten)")
        if hashes.get(seq) != copied[seq]:
            return bad(seq, "the entry differs from the store's append-only copy: the log was rewritten "
                            "(with recomputed hashes) up to here", seq)
    missing = len(hashes) - len(copied)
    if missing:
        res.warnings.append(f"{missing} entr{'y is' if missing == 1 else 'ies are'} not yet in the store's "
                            "append-only copy (an append that did not reach the store, or a log from before it): "
                            "the next append copies them")
    return res


def _entry_problem(e, line: bytes, expected: int, prev_hash: str, anchor: str | None,
                   anchor_seq: int | None, anchor_hash: str | None) -> str | None:
    """Why one parsed log line breaks the chain, or None."""
    shape = _shape_problem(e)
    if shape:
        return f"{shape}: the entry was edited"
    if e["hash"] != entry_hash(e):
        return "its hash does not match its content: the entry was edited"
    if canonical(e).encode("utf-8") != line:
        return "not in canonical form (same content, different bytes): the line was edited"
    seq = e["seq"]
    if seq > expected:
        return (f"expected seq {expected}: entr{'y' if seq == expected + 1 else 'ies'} "
                f"{expected}{'' if seq == expected + 1 else f'..{seq - 1}'} deleted, or lines reordered")
    if seq < expected:
        return f"expected seq {expected}: lines reordered or an entry duplicated"
    if e["prev_hash"] != prev_hash:
        return ("prev_hash does not match the hash of the entry before it: an entry was inserted "
                "or replaced (with a recomputed hash)")
    if anchor_seq == seq and e["hash"] != anchor_hash:
        return f"its hash differs from the anchor {anchor}: the log was rewritten up to here"
    return None


def _check_head(paths: Paths, res: VerifyResult, lines: list[bytes], bad) -> VerifyResult:
    """The end of a sound chain against HEAD: nothing deleted from, replaced at or appended to the end."""
    head = _read_head(paths)
    after = res.entries + 1
    if head is None:
        if res.entries == 1:
            res.warnings.append("HEAD is missing after the first entry: the first append was interrupted before "
                                "its HEAD update (the next append completes it)")
        elif res.entries:
            return bad(after, f"{head_file(paths).name} is missing while the log has {res.entries} entries: "
                              "it was deleted (the end of the log cannot be checked)")
        return res
    if head.get("broken") or not isinstance(head.get("seq"), int):
        return bad(after, f"{head_file(paths).name} is unreadable: it was edited")
    if head["seq"] > res.head_seq:
        gone = head["seq"] - res.head_seq
        return bad(after, f"the log ends at seq {res.head_seq} but HEAD records seq {head['seq']}: "
                          f"the last {gone} entr{'y was' if gone == 1 else 'ies were'} deleted")
    if head["seq"] == res.head_seq and head.get("hash") != res.head_hash:
        return bad(res.entries, "the last entry's hash differs from HEAD's: it was replaced", res.head_seq)
    if head["seq"] < res.head_seq:
        behind = res.head_seq - head["seq"]
        entry_at_head = json.loads(lines[head["seq"] - 1]) if head["seq"] > 0 else {"hash": GENESIS}
        if entry_at_head["hash"] != head.get("hash"):
            return bad(max(head["seq"], 1), "the entry at HEAD's seq has a different hash than HEAD: "
                                            "the log was rewritten", head["seq"] or None)
        if behind > 1:
            return bad(head["seq"] + 1, f"{behind} entries after HEAD (seq {head['seq']}): entries were appended "
                                        "without the audit tool", head["seq"] + 1)
        res.warnings.append(f"the last entry (seq {res.head_seq}) is not yet in HEAD: an append was interrupted "
                            "before its HEAD update (the next append completes it)")
    return res
