"""The profile copy names each player's cluster of linked accounts (issue 19: the same person's
accounts, ``player_clusters``), so that a self-exclusion or cooling-off received over the API for one
account stops the others' sends at once, before the warehouse has seen it.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("cluster_id", sa.String(257), nullable=True))
    op.create_index("ix_profiles_cluster", "profiles", ["brand_id", "cluster_id"])


def downgrade() -> None:
    op.drop_index("ix_profiles_cluster", table_name="profiles")
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("cluster_id")
