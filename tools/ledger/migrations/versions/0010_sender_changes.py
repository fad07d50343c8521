"""Sender fingerprints and their changes (``tools.senders``): per pixel, each sender identity (plugin,
SDK, agent) with the hour it is counting and its usual fields and match keys, each version of its
software with first/last seen, and the changes (version, new dominant sender, fields, match keys,
event names) that the audit names beside an incident starting after them.

Names and versions only: no customer data, no tokens.

Revision ID: 0010_sender_changes
Revises: 0010_order_customer
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010_sender_changes"
# After 0010_order_customer, written at the same time from 0009: one linear chain.
down_revision = "0010_order_customer"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sender_identities",
        sa.Column("pixel_id", sa.String(length=64), primary_key=True),
        sa.Column("identity", sa.String(length=200), primary_key=True),
        sa.Column("label", sa.String(length=400), nullable=False),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("first_seen", UTC, nullable=False),
        sa.Column("last_seen", UTC, nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("state", JSON, nullable=False),
    )
    op.create_table(
        "sender_fingerprints",
        sa.Column("pixel_id", sa.String(length=64), primary_key=True),
        sa.Column("fingerprint", sa.String(length=32), primary_key=True),
        sa.Column("identity", sa.String(length=200), nullable=False),
        sa.Column("label", sa.String(length=400), nullable=False),
        sa.Column("info", JSON, nullable=False),
        sa.Column("first_seen", UTC, nullable=False),
        sa.Column("last_seen", UTC, nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
    )
    op.create_table(
        "sender_changes",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("pixel_id", sa.String(length=64), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("sender", sa.String(length=200), nullable=False),
        sa.Column("event_name", sa.String(length=200), nullable=False),
        sa.Column("before", sa.String(length=1000), nullable=False),
        sa.Column("after", sa.String(length=1000), nullable=False),
        sa.Column("recorded_at", UTC, nullable=False),
        sa.UniqueConstraint("pixel_id", "at", "kind", "sender", "event_name", name="uq_sender_changes"),
    )
    op.create_index("ix_sender_changes_pixel_at", "sender_changes", ["pixel_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_sender_changes_pixel_at", table_name="sender_changes")
    op.drop_table("sender_changes")
    op.drop_table("sender_fingerprints")
    op.drop_table("sender_identities")
