"""Offers issued by ``POST /v1/offers/generate`` (their ids join the casino's bonus.* events back
to them) and what each intent spent per day (its budget, locked while an offer is decided).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "offers",
        sa.Column("offer_id", sa.String(128), primary_key=True),
        sa.Column("brand_id", sa.String(128), nullable=False),
        sa.Column("player_id", sa.String(128), nullable=False),
        sa.Column("intent", sa.String(64), nullable=False),
        sa.Column("offer_name", sa.String(64), nullable=False),
        sa.Column("template", sa.String(40), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("channel", sa.String(40), nullable=False),
        sa.Column("product", sa.String(40), nullable=False),
        sa.Column("cost_cents", sa.BigInteger, nullable=False),
        sa.Column("predicted_value_cents", sa.BigInteger, nullable=True),
        sa.Column("issued_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("key_id", sa.Integer, nullable=False),
    )
    op.create_index("ix_offers_player", "offers", ["brand_id", "player_id", "issued_at"])
    op.create_index("ix_offers_issued", "offers", ["issued_at"])
    op.create_table(
        "offer_spend",
        sa.Column("brand_id", sa.String(128), primary_key=True),
        sa.Column("intent", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("spent_cents", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("offer_spend")
    op.drop_index("ix_offers_issued", "offers")
    op.drop_index("ix_offers_player", "offers")
    op.drop_table("offers")
