"""API keys, accepted events, quarantined events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("brand_id", sa.String(128), nullable=False),
        sa.Column("scopes", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("revoked_at", sa.DateTime, nullable=True),
    )
    op.create_table(
        "accepted_events",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("brand_id", sa.String(128), nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("key_id", sa.Integer, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("handed_off_at", sa.DateTime, nullable=True),
        sa.Column("handoff_batch", sa.String(64), nullable=True),
    )
    op.create_index("ix_accepted_events_pending", "accepted_events", ["handed_off_at", "received_at"])
    op.create_table(
        "quarantined_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("key_id", sa.Integer, nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("raw_size", sa.Integer, nullable=False),
        sa.Column("raw_sha256", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("quarantined_events")
    op.drop_index("ix_accepted_events_pending", table_name="accepted_events")
    op.drop_table("accepted_events")
    op.drop_table("api_keys")
