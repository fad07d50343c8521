"""Initial ledger schema: every table, explicitly.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 11:53:30.967729
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# JSON on SQLite, JSONB on Postgres (as tools.ledger.models.JsonType).
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
OPEN_ONLY = sa.text("status = 'open'")


def upgrade() -> None:
    op.create_table("audits",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("pixel_id", sa.String(length=64), nullable=False),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("findings", sa.Integer(), nullable=False),
    sa.Column("critical", sa.Integer(), nullable=False),
    sa.Column("warning", sa.Integer(), nullable=False),
    sa.Column("tokens_used", sa.Integer(), nullable=False),
    sa.Column("result", JSON_TYPE, nullable=False),
    sa.PrimaryKeyConstraint("id")
    )
    op.create_index("ix_audits_pixel_window", "audits", ["pixel_id", "window_end"], unique=False)

    op.create_table("deliveries",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("pixel_id", sa.String(length=64), nullable=False),
    sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("http_status", sa.Integer(), nullable=True),
    sa.Column("events_sent", sa.Integer(), nullable=False),
    sa.Column("events_received", sa.Integer(), nullable=False),
    sa.Column("error_code", sa.Integer(), nullable=True),
    sa.Column("error_subcode", sa.Integer(), nullable=True),
    sa.Column("fbtrace_id", sa.String(length=100), nullable=True),
    sa.Column("retry_number", sa.Integer(), nullable=False),
    sa.Column("fix_id", sa.String(length=100), nullable=True),
    sa.PrimaryKeyConstraint("id")
    )
    op.create_index("ix_deliveries_fix_id", "deliveries", ["fix_id"], unique=False)
    op.create_index("ix_deliveries_pixel_attempted", "deliveries", ["pixel_id", "attempted_at"], unique=False)

    op.create_table("delivery_hours",
    sa.Column("pixel_id", sa.String(length=64), nullable=False),
    sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("events_sent", sa.Integer(), nullable=False),
    sa.Column("events_received", sa.Integer(), nullable=False),
    sa.Column("failed_attempts", sa.Integer(), nullable=False),
    sa.Column("retried_attempts", sa.Integer(), nullable=False),
    sa.Column("transport_errors", sa.Integer(), nullable=False),
    sa.Column("errors", JSON_TYPE, nullable=False),
    sa.PrimaryKeyConstraint("pixel_id", "hour")
    )
    op.create_table("event_hours",
    sa.Column("pixel_id", sa.String(length=64), nullable=False),
    sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event_name", sa.String(length=200), nullable=False),
    sa.Column("events", sa.Integer(), nullable=False),
    sa.Column("with_event_id", sa.Integer(), nullable=False),
    sa.Column("duplicate_event_ids", sa.Integer(), nullable=False),
    sa.Column("too_old", sa.Integer(), nullable=False),
    sa.Column("future_time", sa.Integer(), nullable=False),
    sa.Column("undelivered", sa.Integer(), nullable=False),
    sa.Column("detail", JSON_TYPE, nullable=False),
    sa.PrimaryKeyConstraint("pixel_id", "hour", "event_name")
    )
    op.create_table("events",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("pixel_id", sa.String(length=64), nullable=False),
    sa.Column("event_name", sa.String(length=200), nullable=False),
    sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event_id", sa.String(length=400), nullable=True),
    sa.Column("order_ref", sa.String(length=400), nullable=True),
    sa.Column("action_source", sa.String(length=50), nullable=True),
    sa.Column("payload", JSON_TYPE, nullable=True),
    sa.Column("flags", JSON_TYPE, nullable=False),
    sa.Column("delivery_status", sa.String(length=16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("first_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error_code", sa.Integer(), nullable=True),
    sa.Column("last_error_subcode", sa.Integer(), nullable=True),
    sa.Column("content_hash", sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("pixel_id", "content_hash", name="uq_events_pixel_content")
    )
    op.create_index("ix_events_pixel_event_time", "events", ["pixel_id", "event_time"], unique=False)
    op.create_index("ix_events_pixel_name_event_id", "events",
                    ["pixel_id", "event_name", "event_id"], unique=False)
    op.create_index("ix_events_pixel_order_ref", "events", ["pixel_id", "order_ref"], unique=False)
    op.create_index("ix_events_pixel_status_time", "events",
                    ["pixel_id", "delivery_status", "event_time"], unique=False)
    op.create_index("ix_events_received_at", "events", ["received_at"], unique=False)

    op.create_table("incidents",
    sa.Column("id", sa.String(length=64), nullable=False),
    sa.Column("pixel_id", sa.String(length=64), nullable=False),
    sa.Column("fingerprint", sa.String(length=64), nullable=False),
    sa.Column("root_cause", sa.String(length=64), nullable=False),
    sa.Column("severity", sa.String(length=16), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("body", JSON_TYPE, nullable=False),
    sa.PrimaryKeyConstraint("id")
    )
    op.create_index("ix_incidents_pixel_status", "incidents", ["pixel_id", "status"], unique=False)
    op.create_index("uq_incidents_open_fingerprint", "incidents", ["pixel_id", "fingerprint"], unique=True,
                    sqlite_where=OPEN_ONLY, postgresql_where=OPEN_ONLY)

    op.create_table("meta_snapshots",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("pixel_id", sa.String(length=64), nullable=False),
    sa.Column("kind", sa.String(length=32), nullable=False),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
    sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("body", JSON_TYPE, nullable=False),
    sa.PrimaryKeyConstraint("id")
    )
    op.create_index("ix_meta_snapshots_pixel_kind_fetched", "meta_snapshots",
                    ["pixel_id", "kind", "fetched_at"], unique=False)

    op.create_table("order_hours",
    sa.Column("pixel_id", sa.String(length=64), nullable=False),
    sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
    sa.Column("orders", sa.Integer(), nullable=False),
    sa.Column("matched", sa.Integer(), nullable=False),
    sa.Column("value", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("pixel_id", "hour")
    )
    op.create_table("orders",
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("pixel_id", sa.String(length=64), nullable=False),
    sa.Column("order_id", sa.String(length=400), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("value", sa.Float(), nullable=False),
    sa.Column("currency", sa.String(length=8), nullable=True),
    sa.Column("matched", sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("pixel_id", "order_id", name="uq_orders_pixel_order")
    )
    op.create_index("ix_orders_pixel_created", "orders", ["pixel_id", "created_at"], unique=False)

    op.create_table("pixels",
    sa.Column("id", sa.String(length=64), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("settings", JSON_TYPE, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id")
    )
    op.create_table("delivery_events",
    sa.Column("delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("event_row_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["event_row_id"], ["events.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("delivery_id", "event_row_id")
    )
    op.create_index("ix_delivery_events_event_row_id", "delivery_events", ["event_row_id"], unique=False)

    op.create_table("findings",
    sa.Column("id", sa.String(length=64), nullable=False),
    sa.Column("audit_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
    sa.Column("pixel_id", sa.String(length=64), nullable=False),
    sa.Column("check", sa.String(length=32), nullable=False),
    sa.Column("code", sa.String(length=100), nullable=False),
    sa.Column("event_name", sa.String(length=200), nullable=True),
    sa.Column("severity", sa.String(length=16), nullable=False),
    sa.Column("fingerprint", sa.String(length=64), nullable=False),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("body", JSON_TYPE, nullable=False),
    sa.ForeignKeyConstraint(["audit_id"], ["audits.id"], ondelete="SET NULL"),
    sa.PrimaryKeyConstraint("id")
    )
    op.create_index("ix_findings_audit_id", "findings", ["audit_id"], unique=False)
    op.create_index("ix_findings_pixel_fingerprint", "findings", ["pixel_id", "fingerprint"], unique=False)
    op.create_index("ix_findings_pixel_window", "findings", ["pixel_id", "window_end"], unique=False)



def downgrade() -> None:
    op.drop_index("ix_findings_pixel_window", table_name="findings")
    op.drop_index("ix_findings_pixel_fingerprint", table_name="findings")
    op.drop_index("ix_findings_audit_id", table_name="findings")

    op.drop_table("findings")
    op.drop_index("ix_delivery_events_event_row_id", table_name="delivery_events")

    op.drop_table("delivery_events")
    op.drop_table("pixels")
    op.drop_index("ix_orders_pixel_created", table_name="orders")

    op.drop_table("orders")
    op.drop_table("order_hours")
    op.drop_index("ix_meta_snapshots_pixel_kind_fetched", table_name="meta_snapshots")

    op.drop_table("meta_snapshots")
    op.drop_index("uq_incidents_open_fingerprint", table_name="incidents",
                    sqlite_where=OPEN_ONLY, postgresql_where=OPEN_ONLY)
    op.drop_index("ix_incidents_pixel_status", table_name="incidents")

    op.drop_table("incidents")
    op.drop_index("ix_events_received_at", table_name="events")
    op.drop_index("ix_events_pixel_status_time", table_name="events")
    op.drop_index("ix_events_pixel_order_ref", table_name="events")
    op.drop_index("ix_events_pixel_name_event_id", table_name="events")
    op.drop_index("ix_events_pixel_event_time", table_name="events")

    op.drop_table("events")
    op.drop_table("event_hours")
    op.drop_table("delivery_hours")
    op.drop_index("ix_deliveries_pixel_attempted", table_name="deliveries")
    op.drop_index("ix_deliveries_fix_id", table_name="deliveries")

    op.drop_table("deliveries")
    op.drop_index("ix_audits_pixel_window", table_name="audits")

    op.drop_table("audits")
