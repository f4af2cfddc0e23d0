"""The online profile (profiles, stops, contacts, address suppressions), deliveries with their
status history, and idempotency keys.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("brand_id", sa.String(128), primary_key=True),
        sa.Column("player_id", sa.String(128), primary_key=True),
        sa.Column("profile", sa.Text, nullable=False),
        sa.Column("as_of_date", sa.Date, nullable=False),
        sa.Column("synced_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "profile_stops",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("brand_id", sa.String(128), nullable=False),
        sa.Column("player_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("channel", sa.String(40), nullable=True),
        sa.Column("product", sa.String(40), nullable=True),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("event_type", sa.String(60), nullable=False),
        sa.Column("occurred_at", sa.DateTime, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("retired_at", sa.DateTime, nullable=True),
    )
    op.create_index("ix_profile_stops_player", "profile_stops", ["brand_id", "player_id"])
    op.create_table(
        "contacts",
        sa.Column("brand_id", sa.String(128), primary_key=True),
        sa.Column("player_id", sa.String(128), primary_key=True),
        sa.Column("channel", sa.String(40), primary_key=True),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "address_suppressions",
        sa.Column("brand_id", sa.String(128), primary_key=True),
        sa.Column("player_id", sa.String(128), primary_key=True),
        sa.Column("channel", sa.String(40), primary_key=True),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("delivery_id", sa.String(128), nullable=True),
        sa.Column("at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "deliveries",
        sa.Column("delivery_id", sa.String(128), primary_key=True),
        sa.Column("brand_id", sa.String(128), nullable=False),
        sa.Column("player_id", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(40), nullable=False),
        sa.Column("template_id", sa.String(100), nullable=False),
        sa.Column("locale", sa.String(40), nullable=True),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("transactional", sa.Boolean, nullable=False),
        sa.Column("campaign_id", sa.String(100), nullable=False),
        sa.Column("frequency_policy_id", sa.String(100), nullable=True),
        sa.Column("dedup_key", sa.String(100), nullable=False),
        sa.Column("product", sa.String(40), nullable=False),
        sa.Column("is_bonus", sa.Boolean, nullable=False),
        sa.Column("cost_cents", sa.Integer, nullable=False),
        sa.Column("offer_ends_at", sa.DateTime, nullable=True),
        sa.Column("basis", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=True),
        sa.Column("lease_until", sa.DateTime, nullable=True),
        sa.Column("provider_id", sa.String(1000), nullable=True),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_deliveries_player", "deliveries", ["brand_id", "player_id", "created_at"])
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])
    op.create_table(
        "delivery_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("detail", sa.String(1000), nullable=False),
    )
    op.create_index("ix_delivery_events_delivery", "delivery_events", ["delivery_id", "id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("key_id", sa.Integer, primary_key=True),
        sa.Column("idempotency_key", sa.String(200), primary_key=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("delivery_events")
    op.drop_table("deliveries")
    op.drop_table("address_suppressions")
    op.drop_table("contacts")
    op.drop_table("profile_stops")
    op.drop_table("profiles")
