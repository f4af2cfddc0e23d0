"""What a model or list was built from: the warehouse definition it read.

(The code revision is recorded by ``ml.train.git_revision``.)
"""

from __future__ import annotations

import hashlib
import json

from crm.config import DBT_PROJECT_DIR


def dbt_manifest_sha256() -> str:
    """A hash of the dbt project's definition (every node's file checksum), or 'unknown'.

    Hashing the node checksums rather than manifest.json itself keeps it stable across
    re-parses of unchanged SQL (the manifest carries timestamps).
    """
    manifest = DBT_PROJECT_DIR / "target" / "manifest.json"
    if not manifest.exists():
        return "unknown"
    nodes = json.loads(manifest.read_text()).get("nodes", {})
    digest = hashlib.sha256()
    for uid in sorted(nodes):
        digest.update(f"{uid}:{nodes[uid].get('checksum', {}).get('checksum', '')}\n".encode())
    return digest.hexdigest()


def lineage(**extra: str) -> dict[str, str]:
    """Tags for a training run: the dbt definition hash plus what the caller knows."""
    return {"dbt_manifest_sha256": dbt_manifest_sha256(), **extra}
