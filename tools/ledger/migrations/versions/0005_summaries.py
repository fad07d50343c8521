"""Outbox delivery leases (tools.ledger.outbox): replicas share the senders of summaries, incident
messages and emails without posting a message twice.

Revision ID: 0005_summaries
Revises: 0004_outbox
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_summaries"
down_revision = "0004_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_outbox_kind_status", "outbox", ["kind", "status"])


def downgrade() -> None:
    op.drop_index("ix_outbox_kind_status", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("lease_until")
