"""Payload quality rollups (``payload_hours``): per pixel, hour of event_time and event name, how many
events carried each "accepted but useless" defect (test_event_code in production, event_time in
milliseconds, Purchase without currency, missing action_source, ...), a few masked examples per
defect, and small mergeable summaries (client IP fingerprints, event_id shapes) for the checks that
need a distribution rather than a count.

Raw values are never stored here: counts, masked examples and truncated hash prefixes only.
Events recorded before this revision are not counted (``rebuild_rollups`` fills them in).

Revision ID: 0009_payload_quality
Revises: 0008_arrival_hours
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009_payload_quality"
down_revision = "0008_arrival_hours"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "payload_hours",
        sa.Column("pixel_id", sa.String(length=64), primary_key=True),
        sa.Column("hour", UTC, primary_key=True),
        sa.Column("event_name", sa.String(length=200), primary_key=True),
        sa.Column("events", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("detail", JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("payload_hours")
