"""Asset keys of the per-campaign assets: ``campaigns/<id>/<id>_<kind>``.

The lineage graph labels a node with the last part of its key; a bare ``list`` / ``dispatch`` /
``readout`` told nobody which campaign it was. The last part carries the campaign id, the
folder (``campaigns/<id>``) groups a campaign's assets in the catalog. Build and parse them here
only (campaign assets, readouts, the run summary, tests).
"""

from dagster import AssetKey

PREFIX = "campaigns"
KINDS = ("list", "dispatch", "readout")


def campaign_key(campaign_id: str, kind: str) -> AssetKey:
    """The asset key of a campaign's ``kind`` (one of :data:`KINDS`) asset."""
    if kind not in KINDS:
        raise ValueError(f"unknown campaign asset kind {kind!r} (one of {', '.join(KINDS)})")
    return AssetKey([PREFIX, campaign_id, f"{campaign_id}_{kind}"])


def parse_campaign_key(key: AssetKey) -> tuple[str, str] | None:
    """(campaign id, kind) of a campaign asset key, or None for any other asset."""
    path = list(key.path)
    if len(path) != 3 or path[0] != PREFIX:
        return None
    campaign_id, last = path[1], path[2]
    kind = last[len(campaign_id) + 1:] if last.startswith(f"{campaign_id}_") else ""
    return (campaign_id, kind) if kind in KINDS else None
