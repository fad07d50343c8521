"""Fix proposals, their execution journal and audit trail (tools.fixes.models).

Revision ID: 0002_fixes
Revises: 0001
Create Date: 2026-11-26 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_fixes"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "fix_proposals",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("pixel_id", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=True),
        sa.Column("incident_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("params", JSON_TYPE, nullable=False),
        sa.Column("preview", JSON_TYPE, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", UTC, nullable=True),
        sa.Column("result", JSON_TYPE, nullable=True),
        sa.Column("verification", JSON_TYPE, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_fix_proposals_pixel_status", "fix_proposals", ["pixel_id", "status"], unique=False)
    op.create_index("ix_fix_proposals_fingerprint", "fix_proposals", ["incident_fingerprint"], unique=False)

    op.create_table(
        "fix_chunks",
        sa.Column("proposal_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("event_ids", JSON_TYPE, nullable=False),
        sa.Column("sent_ids", JSON_TYPE, nullable=False),
        sa.Column("skipped", JSON_TYPE, nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("error_key", sa.String(length=64), nullable=True),
        sa.Column("delivery_id", ROW_ID, nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["proposal_id"], ["fix_proposals.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("proposal_id", "seq"),
    )

    op.create_table(
        "fix_trail",
        sa.Column("id", ROW_ID, nullable=False),
        sa.Column("proposal_id", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.Column("detail", JSON_TYPE, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_fix_trail_proposal_at", "fix_trail", ["proposal_id", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_fix_trail_proposal_at", table_name="fix_trail")
    op.drop_table("fix_trail")
    op.drop_table("fix_chunks")
    op.drop_index("ix_fix_proposals_fingerprint", table_name="fix_proposals")
    op.drop_index("ix_fix_proposals_pixel_status", table_name="fix_proposals")
    op.drop_table("fix_proposals")
