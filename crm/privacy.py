"""The right to be forgotten: ``crm privacy forget PLAYER --brand B --by NAME --reason TEXT``.

:func:`forget` does, in this order:

1. reads what the PII vault holds for the player (to find the same values in raw files), then
   **crypto-shreds** them: the player's data key and sealed values are deleted and a tombstone
   kept, so identifiers that arrive later for the player are dropped (:meth:`Vault.forget`);
2. **clears the raw files** still holding identifiers: every file under ``landing/`` (incoming
   files as the casino sent them, quarantined records, landed batches from before the vault): in
   each record of the player every :data:`~crm.contract.PII_FIELDS` value (and its pseudonym) is
   set to null; in records that cannot be read as the player's or another's (malformed lines, a
   record without a player id) the player's known values are replaced by ``[forgotten]``. A landed
   incoming file rewritten this way is recorded so it is never landed again
   (:func:`crm.ingest.landing.record_rewritten`);
3. **clears the store**: quarantined API records likewise, accepted events of the player, the
   contact ledger's pseudonyms; a SQLite store is vacuumed (no freed page keeps the bytes);
4. records the request in the audit log (``player_forgotten``: who, why, what was cleared; never
   the values).

What stays: the player's pseudonymous id and their events without identifiers (bets, deposits,
consents), so aggregates and the RG and consent history still add up and a later event for the
id is still refused marketing. The warehouse and lists never held identifiers (staging drops the
keys), nor do MLflow, Data Docs and logs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from crm.campaigns import audit
from crm.config import Paths
from crm.contract import PII_FIELDS
from crm.ingest.landing import SUPPORTED_SUFFIXES, file_digest, record_rewritten
from crm.store.schema import accepted_events, contacts, quarantined_events
from crm.store.vault import Vault, compact

FORGOTTEN = "[forgotten]"
MIN_VALUE_CHARS = 5  # shorter values are not searched for as text (they would match unrelated bytes)


@dataclass
class ForgetReport:
    brand_id: str
    player_id: str
    fields_shredded: list[str] = field(default_factory=list)  # names only, never values
    files_rewritten: list[str] = field(default_factory=list)
    records_cleared: int = 0
    store_rows_cleared: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class _Scrubber:
    """Clears one player's identifiers from records, given the values known for them."""

    def __init__(self, brand_id: str, player_id: str, values: set[str]) -> None:
        self.brand_id, self.player_id = brand_id, player_id
        self.values = {v for v in values if len(v) >= MIN_VALUE_CHARS}

    def learn(self, record: object) -> None:
        """Add the identifiers found in one of the player's records (older addresses, say)."""
        if self._mine(record) is True:
            self.values |= {str(v).strip() for v in _pii_values(record.get("payload"))
                            if len(str(v).strip()) >= MIN_VALUE_CHARS}

    def _mine(self, record: object) -> bool | None:
        """True: the player's record; False: another player's; None: cannot tell."""
        if not isinstance(record, dict) or not isinstance(record.get("player_id"), str):
            return None
        if record["player_id"].strip() != self.player_id:
            return False
        brand = record.get("brand_id")
        return not isinstance(brand, str) or brand.strip() == self.brand_id

    def text(self, text: str) -> str:
        """One record's JSON text (a line, a quarantined record), cleared."""
        try:
            record = json.loads(text)
        except (ValueError, RecursionError):
            record = None
        mine = self._mine(record)
        if mine is True:
            cleared = dict(record)
            if "payload" in cleared:
                cleared["payload"] = _without_pii(cleared["payload"])
            out = self.replace(json.dumps(cleared, ensure_ascii=False, separators=(",", ":")))
            return out if out != json.dumps(record, ensure_ascii=False, separators=(",", ":")) else text
        if mine is None:
            return self.replace(text)
        return text

    def mentions(self, text: str) -> bool:
        """Whether ``text`` may need clearing (names the player or holds one of their values): the
        cheap test that spares parsing every record of a big file."""
        return self.player_id in text or any(v in text for v in self.values)

    def replace(self, text: str) -> str:
        for v in sorted(self.values, key=len, reverse=True):
            if v in text:
                text = text.replace(v, FORGOTTEN)
        return text

    def payload(self, payload: object) -> object:
        """A landed payload (JSON text) of the player, cleared."""
        if isinstance(payload, str):
            try:
                return json.dumps(_without_pii(json.loads(payload)), ensure_ascii=False, separators=(",", ":"))
            except (ValueError, RecursionError):
                return self.replace(payload)
        return _without_pii(payload)


def _pii_values(obj: object) -> list:
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except (ValueError, RecursionError):
            return []
    out: list = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in PII_FIELDS and isinstance(v, str | int | float) and not isinstance(v, bool):
                out.append(v)
            else:
                out += _pii_values(v) if isinstance(v, dict | list) else []
    elif isinstance(obj, list):
        for v in obj:
            out += _pii_values(v)
    return out


def _without_pii(obj: object) -> object:
    if isinstance(obj, str):
        try:
            inner = json.loads(obj)
        except (ValueError, RecursionError):
            return obj
        return json.dumps(_without_pii(inner), ensure_ascii=False) if isinstance(inner, dict | list) else obj
    if isinstance(obj, dict):
        return {k: (None if k in PII_FIELDS else _without_pii(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_without_pii(v) for v in obj]
    return obj


def _raw_files(paths: Paths) -> list[Path]:
    landing = paths.home / "landing"
    return sorted(p for p in landing.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)


def _text_records(path: Path):
    """Each line of a JSON-lines file (bytes, with their end)."""
    with path.open("rb") as f:
        yield from f


def _learn_from(scrub: _Scrubber, path: Path, landed: bool = False) -> None:
    if path.suffix.lower() == ".parquet":
        table = pq.read_table(path, filters=[("player_id", "=", scrub.player_id)] if landed else None)
        if "player_id" in table.column_names and "payload" in table.column_names:
            mask = pc.equal(pc.utf8_trim_whitespace(table["player_id"].cast(pa.string())), scrub.player_id)
            for row in table.filter(pc.fill_null(mask, False)).to_pylist():
                scrub.learn(row)
        if "raw" in table.column_names:
            for raw in table["raw"].to_pylist():
                if raw and scrub.player_id in raw:
                    try:
                        scrub.learn(json.loads(raw))
                    except (ValueError, RecursionError):
                        pass
        return
    for line in _text_records(path):
        if scrub.player_id.encode() in line:
            try:
                scrub.learn(json.loads(line))
            except (ValueError, RecursionError, UnicodeDecodeError):
                pass


def _rewrite_text_file(scrub: _Scrubber, path: Path) -> int:
    changed, out = 0, []
    for line in _text_records(path):
        end = b"\n" if line.endswith(b"\n") else b""
        body = line[:-1] if end else line
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            new = body
            for v in scrub.values:
                new = new.replace(v.encode(), FORGOTTEN.encode())
        else:
            new = scrub.text(text).encode("utf-8") if scrub.mentions(text) else body
        changed += new != body
        out.append(new + end)
    if changed:
        _replace_file(path, lambda tmp: tmp.write_bytes(b"".join(out)))
    return changed


def _rewrite_parquet(scrub: _Scrubber, path: Path, landed: bool = False) -> int:
    if landed and not pq.read_table(path, columns=["player_id"], filters=[("player_id", "=", scrub.player_id)]):
        return 0  # a landed batch without the player (ids are trimmed at landing): nothing to clear
    table = pq.read_table(path)
    columns, changed = {}, 0
    owner = None
    if "player_id" in table.column_names:
        owner = [scrub._mine({"player_id": p, "brand_id": b}) for p, b in zip(
            table["player_id"].to_pylist(),
            table["brand_id"].to_pylist() if "brand_id" in table.column_names else [None] * table.num_rows,
            strict=True)]
    for name in table.column_names:
        col = table[name]
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            values = col.to_pylist()
            new = []
            for i, v in enumerate(values):
                if v is None or not scrub.mentions(v):
                    new.append(v)
                elif name == "payload" and owner is not None and owner[i] is True:
                    new.append(scrub.payload(v))
                elif name == "raw":
                    new.append(scrub.text(v))
                elif owner is None or owner[i] is not False:
                    new.append(scrub.replace(v))
                else:
                    new.append(v)
            if new != values:
                changed += sum(a != b for a, b in zip(new, values, strict=True))
                columns[name] = pa.array(new, type=col.type)
        elif pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
            values = col.to_pylist()
            new = []
            for v in values:
                if v is not None:
                    for s in scrub.values:
                        v = v.replace(s.encode(), FORGOTTEN.encode())
                new.append(v)
            if new != values:
                changed += sum(a != b for a, b in zip(new, values, strict=True))
                columns[name] = pa.array(new, type=col.type)
    if columns:
        for name, arr in columns.items():
            table = table.set_column(table.column_names.index(name), name, arr)
        _replace_file(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return changed


def _replace_file(path: Path, write: Callable[[Path], None]) -> None:
    """Write the new content beside ``path`` and rename it over (never a half-written file), then
    overwrite nothing else: the old inode's blocks are freed by the file system."""
    tmp = path.with_name(path.name + ".forget.tmp")
    write(tmp)
    os.chmod(tmp, path.stat().st_mode & 0o777)
    os.replace(tmp, path)


def _clear_store(scrub: _Scrubber, engine: sa.Engine) -> int:
    cleared = 0
    with engine.begin() as conn:
        q = quarantined_events.c
        patterns = [scrub.player_id, *scrub.values]
        for pattern in patterns:
            like = "%" + pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            for r in conn.execute(sa.select(q.id, q.raw).where(q.raw.like(like, escape="\\"))).all():
                new = scrub.text(r.raw)
                if new != r.raw:
                    conn.execute(quarantined_events.update().where(q.id == r.id).values(raw=new))
                    cleared += 1
        a = accepted_events.c
        for r in conn.execute(sa.select(a.event_id, a.envelope).where(a.brand_id == scrub.brand_id)).all():
            if scrub.player_id not in r.envelope:
                continue
            new = scrub.text(r.envelope)
            if new != r.envelope:
                conn.execute(accepted_events.update().where(a.event_id == r.event_id).values(envelope=new))
                cleared += 1
        cleared += conn.execute(contacts.delete().where(contacts.c.brand_id == scrub.brand_id,
                                                        contacts.c.player_id == scrub.player_id)).rowcount
    compact(engine)
    return cleared


def forget(paths: Paths, engine: sa.Engine, brand_id: str, player_id: str, *, by: str, reason: str,
           progress: bool = False) -> ForgetReport:
    """Forget one player of one brand (see the module's doc). Idempotent: forgetting again finds
    nothing left to clear and records the request again."""
    brand_id, player_id = brand_id.strip(), player_id.strip()
    if not brand_id or not player_id:
        raise ValueError("forget needs a brand and a player id")
    if not by.strip() or not reason.strip():
        raise ValueError("forget needs --by (who asks) and --reason (the request, e.g. its ticket)")
    report = ForgetReport(brand_id, player_id)
    vault = Vault(paths)
    try:
        held = vault.forget(brand_id, player_id)
    finally:
        vault.dispose()
    report.fields_shredded = sorted(held)
    scrub = _Scrubber(brand_id, player_id, {v for v in held.values()})
    files = _raw_files(paths)
    for f in files:  # the player's older identifiers too (an address they changed since)
        _learn_from(scrub, f, landed=f.parent == paths.events)
    if progress and files:
        from tqdm import tqdm
        files = tqdm(files, desc="clearing raw files", unit="file")
    landed_digests = {}
    for f in files:
        before = file_digest(f)
        n = (_rewrite_parquet(scrub, f, landed=f.parent == paths.events) if f.suffix.lower() == ".parquet"
             else _rewrite_text_file(scrub, f))
        if n:
            report.files_rewritten.append(str(f.relative_to(paths.home)))
            report.records_cleared += n
            landed_digests[f] = before
    for f, before in landed_digests.items():
        if f.parent == paths.incoming:
            record_rewritten(paths, before, f)
    report.store_rows_cleared = _clear_store(scrub, engine)
    audit.append(paths, "player_forgotten", by=by, reason=reason,
                 details={"brand_id": brand_id, "player_id": player_id, **{
                     k: v for k, v in report.to_dict().items() if k not in ("brand_id", "player_id")}})
    return report
