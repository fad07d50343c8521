"""Orders carry their customer's hashed information (``orders.user_data``), so a Purchase lost on its
way to Meta can be rebuilt from the order (fix kind ``backfill_from_orders``).

Only what ``prepare_user_data`` returns is stored: hashed identity fields and the must-not-hash
ones (ip, user agent, fbc, fbp); raw values are hashed at ingest and never kept. NULL for orders
recorded before this revision or sent without customer information.

Revision ID: 0010_order_customer
Revises: 0009_payload_quality
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010_order_customer"
down_revision = "0009_payload_quality"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("user_data", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("user_data")
