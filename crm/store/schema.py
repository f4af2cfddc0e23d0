"""The store's tables (SQLAlchemy Core). The migrations in ``crm/store/migrations`` create them;
this module is what the code reads and writes through (tests check the two agree)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Sizes of what is stored: names and ids as the contract bounds them (crm.contract.MAX_ID_CHARS),
# records as landing bounds them (crm.contract.MAX_RECORD_BYTES, cut to it in quarantine).
NAME_CHARS = 100
ID_CHARS = 128
REASON_CHARS = 1000

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(NAME_CHARS), nullable=False, unique=True),
    sa.Column("brand_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("scopes", sa.String(200), nullable=False),  # space-separated, sorted
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),  # sha256 hex of the key
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("revoked_at", sa.DateTime, nullable=True),
)

accepted_events = sa.Table(
    "accepted_events", metadata,
    sa.Column("event_id", sa.String(ID_CHARS), primary_key=True),
    sa.Column("brand_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("envelope", sa.Text, nullable=False),  # JSON: the envelope as landing lands it
    sa.Column("key_id", sa.Integer, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("handed_off_at", sa.DateTime, nullable=True),
    sa.Column("handoff_batch", sa.String(64), nullable=True),
    sa.Index("ix_accepted_events_pending", "handed_off_at", "received_at"),
)

quarantined_events = sa.Table(
    "quarantined_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("key_id", sa.Integer, nullable=False),
    sa.Column("raw", sa.Text, nullable=False),  # the record as received, cut to MAX_RECORD_BYTES
    sa.Column("raw_size", sa.Integer, nullable=False),  # its size in bytes before any cut
    sa.Column("raw_sha256", sa.String(64), nullable=False),  # of the whole record
    sa.Column("reason", sa.String(REASON_CHARS), nullable=False),
)
