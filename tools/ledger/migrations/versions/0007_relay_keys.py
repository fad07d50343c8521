"""Relay access: ``relay_keys`` (hashed keys the relay accepts for a pixel), ``relay_refusals``
(refused requests per pixel, hour, sender address and reason), and the index ingest's duplicate
look-up needs (``pixel_id, event_id``: the one led by ``pixel_id, event_name`` made each batch walk
the pixel's whole history).

Revision ID: 0007_relay_keys
Revises: 0006_duplicate_counters
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_relay_keys"
down_revision = "0006_duplicate_counters"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "relay_keys",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("pixel_id", sa.String(length=64), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_index("ix_relay_keys_pixel_id", "relay_keys", ["pixel_id"])
    op.create_table(
        "relay_refusals",
        sa.Column("pixel_id", sa.String(length=64), nullable=False),
        sa.Column("hour", UTC, nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("last_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("pixel_id", "hour", "source", "reason"),
    )
    op.create_index("ix_events_pixel_event_id", "events", ["pixel_id", "event_id"])


def downgrade() -> None:
    op.drop_index("ix_events_pixel_event_id", table_name="events")
    op.drop_table("relay_refusals")
    op.drop_table("relay_keys")
