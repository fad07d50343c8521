"""Arrival rollups (``arrival_hours``): events by the hour they were received, with the histogram of
received_at - event_time, so an audit tells a wrong clock from a backlog in its first hour.

Events recorded before this revision are not counted here (``rebuild_rollups`` fills them in when
run); the clock check compares an hour with the arrivals it has, so it needs nothing older.

Revision ID: 0008_arrival_hours
Revises: 0007_relay_keys
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008_arrival_hours"
down_revision = "0007_relay_keys"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "arrival_hours",
        sa.Column("pixel_id", sa.String(length=64), primary_key=True),
        sa.Column("hour", UTC, primary_key=True),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("offsets", JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("arrival_hours")
