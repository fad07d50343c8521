"""Duplicate counters: ``events.purchase_key`` (with its index) and the ``event_hours`` counters of
Purchases counted twice under different event_ids (tools.ledger.rollups.PurchaseIndex).

Existing rows keep NULL / 0: events recorded before this revision take part in neither side of the
comparison, exactly as a rebuild of the rollups would count them.

Revision ID: 0006_duplicate_counters
Revises: 0005_summaries
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_duplicate_counters"
down_revision = "0005_summaries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("purchase_key", sa.String(length=32), nullable=True))
    op.create_index("ix_events_pixel_purchase_key", "events", ["pixel_id", "purchase_key"])
    with op.batch_alter_table("event_hours") as batch:
        batch.add_column(sa.Column("double_order_ids", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("double_purchase_keys", sa.Integer(), nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("event_hours") as batch:
        batch.drop_column("double_purchase_keys")
        batch.drop_column("double_order_ids")
    op.drop_index("ix_events_pixel_purchase_key", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("purchase_key")
