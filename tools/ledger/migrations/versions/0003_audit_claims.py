"""Audit claims: one row per pixel-hour so that several replicas audit each hour once
(tools.schedule.claims).

Revision ID: 0003_audit_claims
Revises: 0002_fixes
Create Date: 2026-11-27 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_audit_claims"
down_revision = "0002_fixes"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit_claims",
        sa.Column("pixel_id", sa.String(length=64), nullable=False),
        sa.Column("window_end", UTC, nullable=False),
        sa.Column("claimed_by", sa.String(length=200), nullable=False),
        sa.Column("claimed_at", UTC, nullable=False),
        sa.Column("lease_expires_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("pixel_id", "window_end"),
    )


def downgrade() -> None:
    op.drop_table("audit_claims")
