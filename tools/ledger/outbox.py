"""A durable outbox for notifications (Slack messages): an audit enqueues, a sender delivers.

Enqueuing happens in the audit's own transaction, so a notification is never lost when Slack is down
or rate-limits: it stays ``pending`` and the sender tries again. Each message has a ``dedupe_key``
(e.g. ``incident:<id>:new``) so an audit re-run, or two replicas, cannot announce the same thing twice.
Once posted, the row keeps the Slack channel and message ts, which is how a reply in that thread is
traced back to its pixel and incident.

Replicas share the outbox: a sender claims a row (a short lease, taken by a conditional update) before
posting it, so two replicas do not post the same message. A transient failure (Slack down,
rate-limited) keeps the row pending for as long as ``GIVE_UP_AFTER``: an outage of hours delays
messages, it does not lose them. Emails go through the same table (``kind`` ``email_*``, ``channel``
``email:<address>``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Index, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlmodel import Field, SQLModel, col

from tools.ledger.db import rowcount
from tools.ledger.models import RowId, UtcDateTime, table_of
from tools.ledger.rollups import dialect_insert
from tools.timeutil import as_utc

JsonType = JSON().with_variant(JSONB(), "postgresql")
ERROR_MAX_CHARS = 200
GIVE_UP_AFTER = timedelta(days=3)  # a message still undelivered after this is marked failed
DELIVERY_LEASE = timedelta(minutes=2)  # a sender that died mid-post frees its rows after this


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_kind_status", "kind", "status"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=RowId)
    dedupe_key: str = Field(max_length=300, unique=True)
    channel: str = Field(max_length=200)
    kind: str = Field(max_length=32)  # incident | summary_day | summary | digest | email_incident | email_summary
    pixel_id: str | None = Field(default=None, max_length=64, index=True)
    incident_id: str | None = Field(default=None, max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JsonType)
    status: str = Field(default="pending", max_length=16, index=True)  # pending | sent | failed
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=ERROR_MAX_CHARS)
    created_at: datetime = Field(sa_type=UtcDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    message_ts: str | None = Field(default=None, max_length=64, index=True)
    lease_until: datetime | None = Field(default=None, sa_type=UtcDateTime)


def enqueue(session: Session, *, dedupe_key: str, channel: str, kind: str, payload: dict[str, Any],
            at: datetime, pixel_id: str | None = None, incident_id: str | None = None) -> bool:
    """Queue a message; False when one with the same key exists already. No commit."""
    table = table_of(OutboxMessage)
    stmt = dialect_insert(session, table).values(
        dedupe_key=dedupe_key, channel=channel, kind=kind, payload=payload, pixel_id=pixel_id,
        incident_id=incident_id, status="pending", attempts=0, created_at=as_utc(at),
    ).on_conflict_do_nothing(index_elements=["dedupe_key"])
    return bool(rowcount(session.execute(stmt)))


def pending(session: Session, *, limit: int = 50, kinds: Iterable[str] | None = None,
            now: datetime | None = None) -> list[OutboxMessage]:
    """Messages still to post, oldest first (of ``kinds``; with ``now``, not leased by a sender)."""
    query = select(OutboxMessage).where(col(OutboxMessage.status) == "pending")
    if kinds is not None:
        query = query.where(col(OutboxMessage.kind).in_(list(kinds)))
    if now is not None:
        query = query.where(or_(col(OutboxMessage.lease_until).is_(None),
                                col(OutboxMessage.lease_until) <= as_utc(now)))
    query = query.order_by(col(OutboxMessage.created_at), col(OutboxMessage.id)).limit(limit)
    return list(session.scalars(query.execution_options(populate_existing=True)))


def claim_for_delivery(session: Session, message_id: int, *, now: datetime,
                       lease: timedelta = DELIVERY_LEASE) -> bool:
    """Take a pending row for one post; True for exactly one of several concurrent senders. Commits."""
    table = table_of(OutboxMessage)
    now = as_utc(now)
    stmt = update(table).where(
        table.c.id == message_id, table.c.status == "pending",
        or_(table.c.lease_until.is_(None), table.c.lease_until <= now),
    ).values(lease_until=now + lease).returning(table.c.id)
    won = session.execute(stmt).first() is not None
    session.commit()
    return won


def release(session: Session, message_id: int) -> None:
    """Give a claimed row back untouched (it could not be sent yet, e.g. its thread is not posted)."""
    session.execute(update(table_of(OutboxMessage)).where(
        col(OutboxMessage.id) == message_id).values(lease_until=None))


def sent_by_key(session: Session, dedupe_key: str) -> OutboxMessage | None:
    """The row queued under ``dedupe_key`` (whatever its status), read fresh."""
    query = select(OutboxMessage).where(col(OutboxMessage.dedupe_key) == dedupe_key)
    return session.scalars(query.execution_options(populate_existing=True)).first()


def existing_keys(session: Session, keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` are queued already (any status)."""
    wanted = sorted(set(keys))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        found.update(session.scalars(select(col(OutboxMessage.dedupe_key)).where(
            col(OutboxMessage.dedupe_key).in_(chunk))))
    return found


def incident_posts(session: Session, incident_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``incident id -> (channel, ts)`` of the first Slack message that announced each incident."""
    ids = sorted(set(incident_ids))
    if not ids:
        return {}
    rows = session.execute(select(col(OutboxMessage.incident_id), col(OutboxMessage.channel),
                                  col(OutboxMessage.message_ts))
                           .where(col(OutboxMessage.incident_id).in_(ids), col(OutboxMessage.kind) == "incident",
                                  col(OutboxMessage.status) == "sent")
                           .order_by(col(OutboxMessage.id)))
    posts: dict[str, tuple[str, str]] = {}
    for incident_id, channel, ts in rows:
        if incident_id and ts:
            posts.setdefault(incident_id, (channel, ts))
    return posts


def mark_sent(session: Session, message_id: int, *, channel: str, ts: str, at: datetime) -> None:
    session.execute(update(table_of(OutboxMessage)).where(
        col(OutboxMessage.id) == message_id).values(status="sent", channel=channel, message_ts=ts,
                                               sent_at=as_utc(at), last_error=None, lease_until=None))


def mark_failed(session: Session, message_id: int, *, error: str, retryable: bool,
                now: datetime | None = None) -> None:
    """Count a failed attempt; the message stays pending while it may succeed later (a transient
    error, for up to ``GIVE_UP_AFTER`` after it was queued)."""
    # Read fresh: the sender's claim changed the row behind this session's identity map.
    row = session.get(OutboxMessage, message_id, populate_existing=True)
    if row is None:
        return
    row.attempts += 1
    row.last_error = error[:ERROR_MAX_CHARS]
    row.lease_until = None
    too_old = now is not None and as_utc(now) - as_utc(row.created_at) > GIVE_UP_AFTER
    if not retryable or too_old:
        row.status = "failed"


def thread_origin(session: Session, *, channel: str, ts: str) -> OutboxMessage | None:
    """The posted message that starts the thread ``ts`` in ``channel``, if capi-agent posted it."""
    return session.scalars(select(OutboxMessage).where(
        col(OutboxMessage.channel) == channel, col(OutboxMessage.message_ts) == ts)).first()
