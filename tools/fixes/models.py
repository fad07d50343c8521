"""Tables of the fixes, in the ledger's SQLModel metadata (created by the Alembic revision
``0002_fixes`` in ``tools/ledger/migrations/versions``, never by ``create_all``).

- ``fix_proposals``: one proposal, its preview, decision, result and verification.
- ``fix_chunks``: the execution journal, one row per request-sized chunk of events
  (planned -> sending -> sent | failed | uncertain | skipped), committed chunk by chunk.
- ``fix_trail``: who did what to a proposal, when, and the outcome (append-only).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from tools.ledger.models import JsonType, RowId, UtcDateTime


class FixProposalRow(SQLModel, table=True):
    __tablename__ = "fix_proposals"
    __table_args__ = (
        Index("ix_fix_proposals_pixel_status", "pixel_id", "status"),
        Index("ix_fix_proposals_fingerprint", "incident_fingerprint"),
    )

    id: str = Field(primary_key=True, max_length=64)
    pixel_id: str = Field(max_length=64)
    incident_id: str | None = Field(default=None, max_length=64)
    incident_fingerprint: str | None = Field(default=None, max_length=64)
    kind: str = Field(max_length=32)
    status: str = Field(max_length=16)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)
    preview: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)
    created_at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime)
    created_by: str = Field(default="agent", max_length=200)
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    result: dict[str, Any] | None = Field(default=None, sa_type=JsonType)
    verification: dict[str, Any] | None = Field(default=None, sa_type=JsonType)


class FixChunk(SQLModel, table=True):
    """One request's worth of events of a proposal's execution."""

    __tablename__ = "fix_chunks"

    proposal_id: str = Field(foreign_key="fix_proposals.id", primary_key=True, ondelete="CASCADE",
                             max_length=64)
    seq: int = Field(primary_key=True)
    status: str = Field(default="planned", max_length=16)
    # Ledger event row ids planned for this chunk; ``sent_ids`` those actually put in the request.
    event_ids: list[int] = Field(default_factory=list, sa_type=JsonType)
    sent_ids: list[int] = Field(default_factory=list, sa_type=JsonType)
    skipped: dict[str, int] = Field(default_factory=dict, sa_type=JsonType)  # reason -> events
    received: int = 0
    requests: int = 0  # HTTP requests made for this chunk (retries included)
    error_key: str | None = Field(default=None, max_length=64)
    delivery_id: int | None = Field(default=None, sa_type=RowId)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class FixTrailRow(SQLModel, table=True):
    __tablename__ = "fix_trail"
    __table_args__ = (Index("ix_fix_trail_proposal_at", "proposal_id", "at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=RowId)
    proposal_id: str = Field(max_length=64)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=64)
    at: datetime = Field(sa_type=UtcDateTime)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)


FIX_TABLES = ("fix_proposals", "fix_chunks", "fix_trail")
