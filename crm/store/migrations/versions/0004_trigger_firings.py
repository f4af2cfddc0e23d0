"""Trigger firings: one row per (trigger, accepted event) the API queued for the trigger worker;
the queue, its durable timers (a message held until quiet hours end) and the record of what became
of each firing, in one table.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trigger_firings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trigger_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("event_type", sa.String(60), nullable=False),
        sa.Column("brand_id", sa.String(128), nullable=False),
        sa.Column("player_id", sa.String(128), nullable=False),
        sa.Column("occurred_at", sa.DateTime, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("due_at", sa.DateTime, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("held", sa.Boolean, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_until", sa.DateTime, nullable=True),
        sa.Column("trigger_version", sa.String(64), nullable=True),
        sa.Column("arm", sa.String(20), nullable=True),
        sa.Column("rule", sa.String(60), nullable=True),
        sa.Column("detail", sa.String(1000), nullable=True),
        sa.Column("delivery_id", sa.String(128), nullable=True),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("trigger_id", "event_id", name="uq_trigger_firings_event"),
    )
    op.create_index("ix_trigger_firings_due", "trigger_firings", ["status", "due_at"])
    op.create_index("ix_trigger_firings_player", "trigger_firings", ["brand_id", "player_id", "trigger_id",
                                                                    "updated_at"])


def downgrade() -> None:
    op.drop_table("trigger_firings")
