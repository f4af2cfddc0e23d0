"""Contacts hold the address's pseudonym, not the address: the clear value lives in the PII vault
(crm.store.vault) and is read at send time only. The stored addresses are dropped with the column and
the contact sync is reset, so the next ``crm profiles sync`` re-reads the landed files: identifiers a
file landed before the vault still holds in clear are moved into the vault then.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM contacts")
    op.execute("DELETE FROM synced_files WHERE purpose = 'contacts'")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("address")
        batch.add_column(sa.Column("address_pseudonym", sa.String(40), nullable=False))


def downgrade() -> None:
    op.execute("DELETE FROM contacts")
    op.execute("DELETE FROM synced_files WHERE purpose = 'contacts'")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("address_pseudonym")
        batch.add_column(sa.Column("address", sa.String(320), nullable=False))
