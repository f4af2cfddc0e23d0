"""Messages the casino reported as sent (``crm.delivery`` events in the warehouse), copied into the
store by the profile sync so the send check counts them in caps, cooldown and dedup as the lists do.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reported_messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("brand_id", sa.String(128), nullable=False),
        sa.Column("player_id", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(40), nullable=True),
        sa.Column("campaign_id", sa.String(128), nullable=True),
        sa.Column("dedup_key", sa.String(128), nullable=True),
        sa.Column("sent_at", sa.DateTime, nullable=False),
        sa.Column("synced_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_reported_messages_player", "reported_messages", ["brand_id", "player_id", "sent_at"])


def downgrade() -> None:
    op.drop_table("reported_messages")
