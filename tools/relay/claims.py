"""Claiming queued events for delivery, safely across replicas, and sweeping what cannot be sent.

Statuses used on ``events.delivery_status`` beside the ledger's own: ``sending`` (in flight: claimed,
request under way) and ``uncertain`` (in flight when its sender died: Meta may or may not have the
events, so they are never re-sent automatically).
Claims: ``SELECT ... FOR UPDATE SKIP LOCKED`` on Postgres (replicas take disjoint rows without waiting);
on SQLite, where writers are serialised, an ``UPDATE ... WHERE delivery_status = 'pending'`` whose row
count must match what was selected (else another writer got there first: roll back and try again).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.ledger.db import rowcount
from tools.ledger.models import Event
from tools.meta.validate import SUBCODE_EVENT_TOO_OLD
from tools.timeutil import META_MAX_EVENT_AGE, as_utc

PENDING = "pending"
IN_FLIGHT = "sending"
UNCERTAIN = "uncertain"
CLAIM_TRIES = 5


def pending_pixels(session: Session) -> list[str]:
    """Pixels with events waiting for delivery, by id."""
    return list(session.scalars(select(col(Event.pixel_id)).where(col(Event.delivery_status) == PENDING)
                                .distinct().order_by(col(Event.pixel_id))))


def count_by_pixel(session: Session, status: str) -> Counter[str]:
    query = (select(col(Event.pixel_id), func.count()).where(col(Event.delivery_status) == status)
             .group_by(col(Event.pixel_id)))
    return Counter({pixel_id: count for pixel_id, count in session.execute(query)})


def fail_too_old(session: Session, *, now: datetime) -> Counter[str]:
    """Pending events older than Meta's 7-day limit become ``failed`` with Meta's too-old code (100 /
    2804003): sending one would make Meta reject its whole batch. Returns counts per pixel. No commit."""
    cutoff = as_utc(now) - META_MAX_EVENT_AGE
    where = (col(Event.delivery_status) == PENDING, col(Event.event_time) < cutoff)
    counts = Counter({pixel_id: count for pixel_id, count in session.execute(
        select(col(Event.pixel_id), func.count()).where(*where).group_by(col(Event.pixel_id)))})
    if counts:
        session.execute(update(Event).where(*where).values(
            delivery_status="failed", last_error_code=100, last_error_subcode=SUBCODE_EVENT_TOO_OLD),
            execution_options={"synchronize_session": False})
    return counts


def mark_stale_in_flight(session: Session, *, older_than: datetime) -> Counter[str]:
    """Events claimed (``sending``) before ``older_than`` whose sender never recorded an answer become
    ``uncertain``. Returns counts per pixel. No commit."""
    where = (col(Event.delivery_status) == IN_FLIGHT, col(Event.last_attempt_at) < as_utc(older_than))
    counts = Counter({pixel_id: count for pixel_id, count in session.execute(
        select(col(Event.pixel_id), func.count()).where(*where).group_by(col(Event.pixel_id)))})
    if counts:
        session.execute(update(Event).where(*where).values(delivery_status=UNCERTAIN),
                        execution_options={"synchronize_session": False})
    return counts


def claim_chunk(session: Session, *, pixel_id: str, limit: int, now: datetime) -> list[int]:
    """Claim up to ``limit`` of the pixel's oldest pending events (by event_time) for sending: they
    become ``sending`` with ``last_attempt_at = now``, committed. Returns their row ids (maybe none)."""
    query = (select(col(Event.id)).where(col(Event.pixel_id) == pixel_id, col(Event.delivery_status) == PENDING)
             .order_by(col(Event.event_time), col(Event.id)).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    for _ in range(CLAIM_TRIES):
        ids = [row_id for row_id in session.scalars(query) if row_id is not None]  # primary keys: never None
        if not ids:
            session.rollback()
            return []
        claimed = session.execute(
            update(Event).where(col(Event.id).in_(ids), col(Event.delivery_status) == PENDING).values(
                delivery_status=IN_FLIGHT, last_attempt_at=as_utc(now)),
            execution_options={"synchronize_session": False})
        if rowcount(claimed) == len(ids):
            session.commit()
            return ids
        session.rollback()  # another replica claimed some of them in between
    return []


def release(session: Session, ids: list[int]) -> None:
    """Claimed events go back to ``pending`` (nothing was sent). No commit."""
    session.execute(update(Event).where(col(Event.id).in_(ids), col(Event.delivery_status) == IN_FLIGHT)
                    .values(delivery_status=PENDING), execution_options={"synchronize_session": False})


def set_uncertain(session: Session, ids: list[int]) -> None:
    session.execute(update(Event).where(col(Event.id).in_(ids), col(Event.delivery_status) == IN_FLIGHT)
                    .values(delivery_status=UNCERTAIN), execution_options={"synchronize_session": False})
