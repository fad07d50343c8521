"""Notification outbox (tools.ledger.outbox): Slack messages survive Slack outages and restarts.

Revision ID: 0004_outbox
Revises: 0003_audit_claims
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004_outbox"
down_revision = "0003_audit_claims"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("dedupe_key", sa.String(length=300), nullable=False),
        sa.Column("channel", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("pixel_id", sa.String(length=64), nullable=True),
        sa.Column("incident_id", sa.String(length=64), nullable=True),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("sent_at", UTC, nullable=True),
        sa.Column("message_ts", sa.String(length=64), nullable=True),
        sa.UniqueConstraint("dedupe_key"),
    )
    op.create_index("ix_outbox_pixel_id", "outbox", ["pixel_id"])
    op.create_index("ix_outbox_status", "outbox", ["status"])
    op.create_index("ix_outbox_message_ts", "outbox", ["message_ts"])


def downgrade() -> None:
    op.drop_table("outbox")
