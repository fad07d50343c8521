"""The audit trail of fixes: who proposed, edited, approved, rejected, executed and verified what,
when, and with what result. Entries are append-only; details never hold customer data."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.fixes.models import FixTrailRow
from tools.fixes.types import TrailEntry
from tools.timeutil import as_utc


def record(session: Session, *, proposal_id: str, actor: str, action: str, at: datetime,
           detail: dict[str, Any]) -> None:
    """Append one entry (flushed, not committed: it commits with the change it describes)."""
    session.add(FixTrailRow(proposal_id=proposal_id, actor=actor, action=action, at=as_utc(at),
                            detail=detail))
    session.flush()


def trail(session: Session, proposal_id: str) -> list[TrailEntry]:
    """A proposal's entries, oldest first."""
    rows = session.scalars(select(FixTrailRow).where(col(FixTrailRow.proposal_id) == proposal_id)
                           .order_by(col(FixTrailRow.at), col(FixTrailRow.id)))
    return [TrailEntry(proposal_id=row.proposal_id, actor=row.actor, action=row.action,
                       at=as_utc(row.at), detail=dict(row.detail or {})) for row in rows]
