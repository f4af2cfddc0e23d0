"""Back up a data home to one archive and restore it into a new home.

What a home holds goes into the archive: the landed events and quarantine, the warehouse, the
service store, the MLflow registry and artifacts, the Dagster instance, the audit log, the spend
ledger, the published lists and outbox, the Data Docs and the logs. Left out: what is rebuilt or
scratch (``tmp/``, ``bench/``, ``dbt/target``, ``dbt/logs``, the run lock).

Consistency: the backup holds the home's run lock (:mod:`crm.run_lock`), so no refresh, landing or
import writes while it reads; SQLite databases (the service store, MLflow, Dagster's storage), which
``crm serve`` may write at any time, are copied with SQLite's online backup API, a consistent
snapshot of each. A store or MLflow on PostgreSQL is not a file of the home: back it up with
``pg_dump`` (the manifest says so).

The archive is a tar (gzip with ``.tar.gz``) whose first member, ``MANIFEST.json``, lists every file
with its size and SHA-256. Restore checks every member against it, refuses paths that leave the
home, links and devices (``tarfile``'s ``data`` filter), extracts beside the target and renames into
place only when all is well: a bad archive leaves nothing half-written.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from crm.config import DAGSTER_DATABASE_ENV, MLFLOW_DATABASE_ENV, Paths
from crm.ingest.landing import file_digest
from crm.run_lock import run_lock
from crm.sql import ident

MANIFEST = "MANIFEST.json"
FORMAT = 1
# scratch and rebuilt things under the home, relative paths (a directory covers all below it)
EXCLUDED = ("tmp", "bench", "dbt/target", "dbt/logs", ".run.lock", ".run.lock.json")
SQLITE_MAGIC = b"SQLite format 3\x00"


class BackupError(RuntimeError):
    """The archive cannot be written or restored; the message says why and where."""


@dataclass(frozen=True)
class BackupReport:
    archive: Path
    files: int
    bytes: int
    sqlite_snapshots: int
    external: list[str]


def _excluded(rel: str) -> bool:
    return any(rel == e or rel.startswith(e + "/") for e in EXCLUDED)


def _files(home: Path) -> Iterator[tuple[Path, str]]:
    for root, dirs, names in os.walk(home):
        rel_root = os.path.relpath(root, home)
        dirs[:] = sorted(d for d in dirs if not _excluded(os.path.normpath(os.path.join(rel_root, d))))
        for name in sorted(names):
            path = Path(root) / name
            rel = os.path.normpath(os.path.join(rel_root, name))
            if path.is_file() and not path.is_symlink() and not _excluded(rel):
                yield path, rel


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def _sqlite_snapshot(path: Path, to: Path) -> None:
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    dst = sqlite3.connect(to)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _external_stores() -> list[str]:
    out = []
    for env, what in (("CRM_DATABASE_URL", "the service store"), (MLFLOW_DATABASE_ENV, "MLflow tracking"),
                      (DAGSTER_DATABASE_ENV, "the Dagster instance")):
        if (os.environ.get(env) or "").strip().startswith("postgres"):
            out.append(f"{what} is on PostgreSQL ({env}): back it up with pg_dump")
    return out


def backup(paths: Paths, archive: Path) -> BackupReport:
    """Write ``paths.home`` to ``archive`` (``.tar`` or ``.tar.gz``) while holding the run lock."""
    home = paths.home.resolve()
    archive = Path(archive).resolve()
    if not home.is_dir():
        raise BackupError(f"no data home at {home}")
    if archive.is_relative_to(home):
        raise BackupError(f"the archive {archive} must be outside the data home {home}")
    if archive.exists():
        raise BackupError(f"{archive} exists: choose a new file name")
    if not (archive.name.endswith(".tar") or archive.name.endswith(".tar.gz")):
        raise BackupError(f"{archive.name}: the archive name must end in .tar or .tar.gz")
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(archive.name + ".partial")
    entries, snapshots, total = [], 0, 0
    with run_lock(paths, f"crm backup to {archive}"), tempfile.TemporaryDirectory(dir=archive.parent) as scratch:
        staged: list[tuple[Path, str]] = []
        for path, rel in _files(home):
            source = path
            if _is_sqlite(path):  # a consistent copy even while crm serve writes it
                source = Path(scratch) / f"{len(staged)}.sqlite"
                _sqlite_snapshot(path, source)
                snapshots += 1
            size = source.stat().st_size
            entries.append({"path": rel, "bytes": size, "sha256": file_digest(source)})
            staged.append((source, rel))
            total += size
        manifest = {"format": FORMAT, "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    "home": str(home), "files": entries, "external": _external_stores()}
        body = json.dumps(manifest, indent=1).encode()
        with tarfile.open(tmp, "w:gz" if archive.name.endswith(".gz") else "w") as tar:
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime = len(body), int(dt.datetime.now().timestamp())
            tar.addfile(info, io.BytesIO(body))
            for source, rel in staged:
                tar.add(source, arcname=f"home/{rel}", recursive=False)
    tmp.replace(archive)
    return BackupReport(archive, len(entries), total, snapshots, manifest["external"])


def read_manifest(archive: Path) -> dict:
    try:
        with tarfile.open(archive) as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST:
                raise BackupError(f"{archive}: not a casino-crm backup (its first member is not {MANIFEST})")
            manifest = json.loads(tar.extractfile(first).read())
    except (tarfile.TarError, OSError, json.JSONDecodeError) as e:
        raise BackupError(f"{archive}: cannot read the archive: {e}") from e
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{archive}: backup format {manifest.get('format')!r}, this version reads {FORMAT}")
    return manifest


# MLflow keeps absolute artifact locations (file URIs of the home) in its tracking database
MLFLOW_LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                           ("model_versions", "storage_location"), ("model_versions", "source"),
                           ("logged_models", "artifact_location"))


def relocate_mlflow(restored: Path, old_home: Path, new_home: Path) -> int:
    """Point the restored MLflow registry's artifact locations from ``old_home`` to ``new_home``
    (``restored``: where the home's files are now). Returns the number of values changed."""
    changed = 0
    for db in sorted((restored / "mlflow").glob("*.db")):
        con = sqlite3.connect(db)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            with con:
                for table, column in MLFLOW_LOCATION_COLUMNS:
                    if table not in tables or column not in {r[1] for r in con.execute(
                            "SELECT * FROM pragma_table_info(?)", [table])}:
                        continue
                    # file URIs, then plain paths (each value once, even when the new home is inside the old)
                    for old, new, uri in ((old_home.as_uri() + "/", new_home.as_uri() + "/", 1),
                                          (str(old_home) + "/", str(new_home) + "/", 0)):
                        # names from the constant list above, quoted anyway
                        cur = con.execute(
                            f"UPDATE {ident(table)} SET {ident(column)} = replace({ident(column)}, ?, ?) "
                            f"WHERE instr({ident(column)}, ?) > 0 AND ({ident(column)} LIKE 'file:%') = ?",
                            [old, new, old, uri])
                        changed += cur.rowcount
        finally:
            con.close()
    return changed


def restore(archive: Path, target: Path) -> dict:
    """Restore ``archive`` into ``target``, a new (missing or empty) data home. Returns the manifest."""
    archive, target = Path(archive).resolve(), Path(target).resolve()
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty: restore into a new data home")
    manifest = read_manifest(archive)
    expected = {e["path"]: e for e in manifest["files"]}
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.restoring-", dir=target.parent))
    try:
        with tarfile.open(archive) as tar:
            seen = set()
            for member in tar:
                if member.name == MANIFEST:
                    continue
                rel = member.name.removeprefix("home/")
                if not member.name.startswith("home/") or rel not in expected:
                    raise BackupError(f"{archive}: member {member.name!r} is not in the manifest")
                tar.extract(member, staging, filter="data")  # no absolute paths, '..', links or devices
                got = staging / member.name
                if file_digest(got) != expected[rel]["sha256"]:
                    raise BackupError(f"{archive}: {rel} does not match its checksum (damaged archive)")
                seen.add(rel)
        missing = sorted(set(expected) - seen)
        if missing:
            raise BackupError(f"{archive}: {len(missing)} files of the manifest are missing, e.g. {missing[0]}")
        relocate_mlflow(staging / "home", Path(manifest["home"]), target)
        if target.exists():
            target.rmdir()
        (staging / "home").replace(target)
    except (tarfile.TarError, OSError) as e:
        raise BackupError(f"{archive}: cannot restore: {e}") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
