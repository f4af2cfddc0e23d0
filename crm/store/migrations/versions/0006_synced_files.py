"""Landed batch files already read by the profile sync (contact addresses), so that each daily sync
reads only the newer files.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "synced_files",
        sa.Column("purpose", sa.String(40), primary_key=True),
        sa.Column("file_name", sa.String(128), primary_key=True),
        sa.Column("synced_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("synced_files")
