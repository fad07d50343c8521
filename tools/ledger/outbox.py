"""A durable outbox for notifications (Slack messages): an audit enqueues, a sender delivers.

Enqueuing happens in the audit's own transaction, so a notification is never lost when Slack is down
or rate-limits: it stays ``pending`` and the sender tries again. Each message has a ``dedupe_key``
(e.g. ``incident:<id>:new``) so an audit re-run, or two replicas, cannot announce the same thing twice.
Once posted, the row keeps the Slack channel and message ts, which is how a reply in that thread is
traced back to its pixel and incident.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlmodel import Field, SQLModel

from tools.ledger.models import RowId, UtcDateTime
from tools.ledger.rollups import dialect_insert
from tools.timeutil import as_utc

JsonType = JSON().with_variant(JSONB(), "postgresql")
MAX_ATTEMPTS = 8
ERROR_MAX_CHARS = 200


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True, sa_type=RowId)
    dedupe_key: str = Field(max_length=300, unique=True)
    channel: str = Field(max_length=200)
    kind: str = Field(max_length=32)  # incident | summary | digest
    pixel_id: str | None = Field(default=None, max_length=64, index=True)
    incident_id: str | None = Field(default=None, max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)
    status: str = Field(default="pending", max_length=16, index=True)  # pending | sent | failed
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=ERROR_MAX_CHARS)
    created_at: datetime = Field(sa_type=UtcDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    message_ts: str | None = Field(default=None, max_length=64, index=True)


def enqueue(session: Session, *, dedupe_key: str, channel: str, kind: str, payload: dict[str, Any],
            at: datetime, pixel_id: str | None = None, incident_id: str | None = None) -> bool:
    """Queue a message; False when one with the same key exists already. No commit."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    stmt = dialect_insert(session, table).values(
        dedupe_key=dedupe_key, channel=channel, kind=kind, payload=payload, pixel_id=pixel_id,
        incident_id=incident_id, status="pending", attempts=0, created_at=as_utc(at),
    ).on_conflict_do_nothing(index_elements=["dedupe_key"])
    return bool(session.execute(stmt).rowcount)


def pending(session: Session, *, limit: int = 50) -> list[OutboxMessage]:
    """Messages still to post, oldest first."""
    query = (select(OutboxMessage).where(OutboxMessage.status == "pending")
             .order_by(OutboxMessage.created_at, OutboxMessage.id).limit(limit))
    return list(session.scalars(query))


def mark_sent(session: Session, message_id: int, *, channel: str, ts: str, at: datetime) -> None:
    session.execute(update(OutboxMessage.__table__).where(  # type: ignore[attr-defined]
        OutboxMessage.id == message_id).values(status="sent", channel=channel, message_ts=ts,
                                               sent_at=as_utc(at), last_error=None))


def mark_failed(session: Session, message_id: int, *, error: str, retryable: bool) -> None:
    """Count a failed attempt; the message stays pending while it may succeed later."""
    row = session.get(OutboxMessage, message_id)
    if row is None:
        return
    row.attempts += 1
    row.last_error = error[:ERROR_MAX_CHARS]
    if not retryable or row.attempts >= MAX_ATTEMPTS:
        row.status = "failed"


def thread_origin(session: Session, *, channel: str, ts: str) -> OutboxMessage | None:
    """The posted message that starts the thread ``ts`` in ``channel``, if capi-agent posted it."""
    return session.scalars(select(OutboxMessage).where(
        OutboxMessage.channel == channel, OutboxMessage.message_ts == ts)).first()
