"""Campaign files written from the web page, and the versions of a campaign (issue 18).

**Writing** (:func:`save_campaign`): the YAML is made from data with ``yaml.safe_dump``
(:func:`yaml_text`), never from a text template, into the campaign folder the pipeline reads
(:func:`crm.config.campaigns_dir`). Under the audit log's lock (one writer at a time, and the chain
verified before anything is written): the file is written to a fresh hidden folder inside the
campaign folder (``.draft-*``, which no loader reads), read back with the pipeline's own loader
(:func:`crm.campaigns.spec.load_campaign`, the offer catalogue included) and must give the very spec
that was checked (same spec hash); then it is renamed over ``<id>.yaml`` (atomic on one file
system). An existing campaign of that id is replaced only when the caller's ``may_replace`` allows
it (the web page: a user who may draft on every brand and jurisdiction of it) and the caller
names the version it edited (``base_hash``: a version changed meanwhile is not overwritten);
its version is recorded in the log first, so no version is lost. The write is a
``campaign_changed`` entry by the person, with the whole spec, the user and the file. If the
entry cannot be written, the old file is put back (or the new one removed): nothing is written
without its entry. Ids are the spec's own pattern (``[a-z0-9_]{3,64}``, no device name), so a file
name never leaves the folder.

**Versions** (:func:`versions`, :func:`spec_diff`): every version of a campaign the platform has
seen is in the audit log already: ``campaign_changed`` entries (by the pipeline when it notices a
changed file, by an approval or rejection, by this module) hold the whole spec in ``details.spec``.
So the text of an old version is rebuilt from there (the spec as the loader reads it, every
default spelled out, as the campaign page shows it; the YAML's comments are not kept), nothing
new is stored.
"""

from __future__ import annotations

import difflib
import hmac
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from crm.campaigns import approvals, audit
from crm.campaigns.spec import CampaignError, CampaignSpec, load_campaign, offer_catalogue
from crm.config import Paths

ID_PATTERN = re.compile(r"[a-z0-9_]{3,64}")
HEADER = ("# Written by the web page (/ui/campaigns/new). Who wrote each version, and the version itself,\n"
          "# are in the audit log (crm audit show --campaign ID).\n")


class DraftRefused(ValueError):
    """A campaign that may not be written; ``field`` names the form field at fault (None: the whole form)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def spec_data(spec: CampaignSpec) -> dict:
    """What a campaign's file holds: the fields that differ from their defaults; an offer chosen
    from the catalogue as its intent only (loading resolves it again)."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    if spec.offer.intent is not None:
        data["offer"] = {"intent": spec.offer.intent}
    return data


def yaml_text(spec: CampaignSpec) -> str:
    """The campaign's file: a fixed header and :func:`spec_data` dumped by ``yaml.safe_dump``."""
    return HEADER + yaml.safe_dump(spec_data(spec), sort_keys=False, allow_unicode=True, default_flow_style=False)


def campaign_file(folder: Path, campaign_id: str) -> Path:
    """``<folder>/<id>.yaml``; :class:`DraftRefused` for an id that is not a safe file name."""
    if not isinstance(campaign_id, str) or not ID_PATTERN.fullmatch(campaign_id):
        raise DraftRefused("an id of 3 to 64 lowercase letters, digits or _ is expected", "id")
    return folder / f"{campaign_id}.yaml"


def _existing(folder: Path, campaign_id: str) -> Path | None:
    """The file holding ``campaign_id`` in ``folder``, if any; refused when it is not one plain file."""
    found = [p for p in (folder / f"{campaign_id}.yaml", folder / f"{campaign_id}.yml")
             if p.exists() or p.is_symlink()]
    odd = any(p.is_symlink() or not p.is_file() or p.suffix != ".yaml" for p in found)
    if len(found) > 1 or odd:
        raise DraftRefused("a file of this id exists that the web page does not replace: choose another id", "id")
    return found[0] if found else None


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@dataclass
class Saved:
    spec: CampaignSpec
    path: Path
    entry: dict  # the audit log's campaign_changed entry
    replaced: str | None  # the spec hash of the version replaced (None: a new campaign)


def save_campaign(paths: Paths, folder: Path, spec: CampaignSpec, *, by: str, user: str,
                  may_replace: Callable[[CampaignSpec], bool], base_hash: str | None = None) -> Saved:
    """Write ``spec`` as ``<folder>/<id>.yaml`` (see the module's docstring); :class:`DraftRefused`
    says why not, naming the form field."""
    folder = Path(folder)
    target = campaign_file(folder, spec.id)
    data = yaml_text(spec).encode("utf-8")
    with audit.transaction(paths) as tx:
        existing = _existing(folder, spec.id)
        old, old_bytes = None, None
        if existing is not None:
            try:
                old = load_campaign(existing)
            except CampaignError:
                raise DraftRefused("a campaign file of this id exists and cannot be read: choose another id",
                                   "id") from None
            if not may_replace(old):
                raise DraftRefused("this id is taken: choose another", "id")
            if base_hash is None or not hmac.compare_digest(base_hash.encode(), old.spec_hash().encode()):
                raise DraftRefused("a campaign of this id exists" + (
                    " and was changed since you opened it: open it again" if base_hash else
                    ": open it and choose Edit to change it, or choose another id"), "id")
            if old.spec_hash() == spec.spec_hash():
                raise DraftRefused("nothing changed: this version is the one saved")
            old_bytes = existing.read_bytes()
        scratch = Path(tempfile.mkdtemp(prefix=".draft-", dir=folder))
        try:
            tmp = scratch / target.name
            _write_new(tmp, data)
            try:
                written = load_campaign(tmp, offer_catalogue(folder))
            except CampaignError as e:
                raise DraftRefused(str(e).replace(str(tmp), target.name)) from None
            if written.spec_hash() != spec.spec_hash():
                raise DraftRefused("the file would not read back as the campaign checked (a value YAML cannot "
                                   "hold as written): nothing saved")
            if old is not None:  # the version replaced is kept in the log (the pipeline may not have seen it)
                approvals.record_changes(tx, [old], by=by)
            previous = next((e["spec_hash"] for e in reversed(tx.entries) if e.get("kind") == "campaign_changed"
                             and e.get("campaign_id") == spec.id), None)
            os.replace(tmp, target)
            _fsync_dir(folder)
            try:
                entry = tx.append("campaign_changed", by=by, campaign_id=spec.id, spec_hash=spec.spec_hash(),
                                  reason="written on the web page and submitted for approval",
                                  details={"previous_spec_hash": previous, "spec": spec.model_dump(mode="json"),
                                           "user": user, "file": target.name, "source": "web",
                                           "replaced_spec_hash": None if old is None else old.spec_hash()})
            except Exception:
                _undo(target, old_bytes, scratch)
                raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return Saved(spec, target, entry, None if old is None else old.spec_hash())


def _undo(target: Path, old_bytes: bytes | None, scratch: Path) -> None:
    """Put back the file a write replaced (or remove the new one)."""
    if old_bytes is None:
        target.unlink(missing_ok=True)
        return
    back = scratch / ("back-" + target.name)
    _write_new(back, old_bytes)
    os.replace(back, target)


# ------------------------------------------------------------------------------------------ versions

def versions(paths: Paths, campaign_id: str) -> list[dict]:
    """The versions of a campaign the audit log holds: spec hash, when and by whom it was last
    recorded, and its spec (``details.spec``); one per hash, in the order of their last record (a
    version brought back after another one comes after it)."""
    out: dict[str, dict] = {}
    for e in audit.read_entries(paths):
        if e.get("kind") != "campaign_changed" or e.get("campaign_id") != campaign_id:
            continue
        spec = (e.get("details") or {}).get("spec")
        if isinstance(spec, dict) and isinstance(e.get("spec_hash"), str) and isinstance(e.get("seq"), int):
            out.pop(e["spec_hash"], None)
            out[e["spec_hash"]] = {"spec_hash": e["spec_hash"], "seq": e["seq"], "ts": e.get("ts"),
                                   "by": e.get("by"), "spec": spec}
    return list(out.values())


def spec_text(spec: dict) -> str:
    """A version's spec as YAML, every field, keys sorted: the log keeps specs as canonical JSON (keys
    sorted), so both sides of a diff are in one order and only what changed differs."""
    return yaml.safe_dump(spec, sort_keys=True, allow_unicode=True, default_flow_style=False)


def approved_hashes(paths: Paths, spec: CampaignSpec) -> list[str]:
    """The versions of ``spec``'s campaign approved (by someone who may approve it), in the order of
    their latest approval."""
    st = approvals.status(paths, spec)
    valid = set(st.other_versions_approved) | ({st.spec_hash} if st.approvals else set())
    order: dict[str, int] = {}
    for e in audit.read_entries(paths):
        if e.get("kind") == "approved" and e.get("campaign_id") == spec.id and e.get("spec_hash") in valid:
            order[e["spec_hash"]] = e.get("seq") or 0
    return sorted(order, key=order.get)


@dataclass
class SpecDiff:
    from_label: str
    to_label: str
    lines: list[str]  # a unified diff (difflib), without its two header lines
    note: str = ""  # why there is nothing to compare, or what was left out


def spec_diff(paths: Paths, spec: CampaignSpec, visible: Callable[[dict], bool]) -> SpecDiff:
    """The current version of ``spec`` against the one to compare it with: the version approved last
    when the current one is not it; else the version recorded before the current one. Old versions
    ``visible`` refuses (another brand's or region's) are never shown."""
    current = spec.spec_hash()
    known = {v["spec_hash"]: v for v in versions(paths, spec.id)}
    approved = [h for h in approved_hashes(paths, spec) if h in known]
    base, what = None, ""
    if approved and approved[-1] != current:
        base, what = known[approved[-1]], "approved version"
    else:  # the version recorded last before the current one (all of them: the current one is not recorded yet)
        cut = known[current]["seq"] if current in known else None
        earlier = [v for h, v in known.items() if h != current and (cut is None or v["seq"] < cut)]
        if earlier:
            base, what = earlier[-1], "previous version"
    to_label = f"current version {current[:12]}"
    if base is None:
        return SpecDiff("", to_label, [], "no earlier version is recorded: this is the first one the platform has seen")
    if not visible(base["spec"]):
        return SpecDiff("", to_label, [], f"the {what} reached brands or regions outside yours: not shown")
    from_label = f"{what} {base['spec_hash'][:12]} (recorded {base['ts']} by {base['by']})"
    old, new = spec_text(base["spec"]), spec_text(spec.model_dump(mode="json"))
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=3))[2:]
    return SpecDiff(from_label, to_label, lines)
