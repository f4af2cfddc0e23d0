"""Journeys: a run per player in a journey (its step, its timer, its outcome) and the log of what
each step did (for the daily counts and readouts).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journey_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("journey_id", sa.String(64), nullable=False),
        sa.Column("brand_id", sa.String(128), nullable=False),
        sa.Column("player_id", sa.String(128), nullable=False),
        sa.Column("entry_key", sa.String(128), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("due_at", sa.DateTime, nullable=False),
        sa.Column("waiting_since", sa.DateTime, nullable=True),
        sa.Column("entered_at", sa.DateTime, nullable=False),
        sa.Column("ended_at", sa.DateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_until", sa.DateTime, nullable=True),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("arm", sa.String(20), nullable=True),
        sa.Column("last_delivery_id", sa.String(128), nullable=True),
        sa.Column("last_sent_at", sa.DateTime, nullable=True),
        sa.Column("outcome", sa.String(80), nullable=True),
        sa.Column("detail", sa.String(1000), nullable=True),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("journey_id", "brand_id", "player_id", "entry_key", name="uq_journey_runs_entry"),
    )
    op.create_index("ix_journey_runs_due", "journey_runs", ["status", "due_at"])
    op.create_index("ix_journey_runs_player", "journey_runs", ["brand_id", "player_id", "status"])
    op.create_index("ux_journey_runs_active", "journey_runs", ["journey_id", "brand_id", "player_id"], unique=True,
                    sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))
    op.create_table(
        "journey_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("journey_id", sa.String(64), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("what", sa.String(40), nullable=False),
        sa.Column("rule", sa.String(60), nullable=True),
        sa.Column("delivery_id", sa.String(128), nullable=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("detail", sa.String(1000), nullable=True),
    )
    op.create_index("ix_journey_log_run", "journey_log", ["run_id", "id"])
    op.create_index("ix_journey_log_journey", "journey_log", ["journey_id", "at"])


def downgrade() -> None:
    op.drop_table("journey_log")
    op.drop_table("journey_runs")
