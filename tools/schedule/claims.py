"""The ``audit_claims`` table: who audits which pixel-hour, so that every hour is audited once even
with several replicas on one database.

A claim is taken with ``INSERT .. ON CONFLICT DO NOTHING`` (SQLite and Postgres), so exactly one
worker wins a free hour. A claim that is still ``running`` after its lease expired belonged to a
worker that died mid-audit and may be taken over; a ``failed`` one may be retried until it has used
``max_attempts``. Only the worker that holds a claim can finish it, so a slow worker whose claim was
taken over cannot overwrite the newer outcome.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session
from sqlmodel import Field, SQLModel, col

from tools.ledger.models import UtcDateTime, table_of
from tools.ledger.rollups import dialect_insert
from tools.timeutil import as_utc

ClaimStatus = Literal["running", "done", "failed"]
DEFAULT_LEASE = timedelta(minutes=30)
DEFAULT_MAX_ATTEMPTS = 3
ERROR_MAX_CHARS = 200


class AuditClaim(SQLModel, table=True):
    """One pixel-hour's audit: who took it, when, and how it ended.

    ``window_end`` is the end of the audited hour (the audit runs "at" it)."""

    __tablename__ = "audit_claims"

    pixel_id: str = Field(primary_key=True, max_length=64)
    window_end: datetime = Field(primary_key=True, sa_type=UtcDateTime)
    claimed_by: str = Field(max_length=200)
    claimed_at: datetime = Field(sa_type=UtcDateTime)
    lease_expires_at: datetime = Field(sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    status: str = Field(default="running", max_length=16)  # running | done | failed
    attempts: int = 1
    error: str | None = Field(default=None, max_length=ERROR_MAX_CHARS)


def claim(session: Session, *, pixel_id: str, window_end: datetime, worker: str, now: datetime,
          lease: timedelta = DEFAULT_LEASE, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> bool:
    """Take the pixel-hour for ``worker``; True when this call won it. Commits.

    Wins a free hour, a ``running`` claim whose lease expired at or before ``now`` (its worker died),
    or a ``failed`` one with fewer than ``max_attempts`` attempts. Atomic across processes: of several
    concurrent callers exactly one gets True."""
    now = as_utc(now)
    window_end = as_utc(window_end)
    table = table_of(AuditClaim)
    insert = dialect_insert(session, table).values(
        pixel_id=pixel_id, window_end=window_end, claimed_by=worker, claimed_at=now,
        lease_expires_at=now + lease, status="running", attempts=1,
    ).on_conflict_do_nothing(index_elements=["pixel_id", "window_end"]).returning(table.c.pixel_id)
    # RETURNING, not rowcount: psycopg 3 does not report a row count for every statement.
    if session.execute(insert).first() is not None:
        session.commit()
        return True
    # The row exists: take it over only if it is stale or retryable. The WHERE clause is the guard,
    # so two workers racing for the same stale claim cannot both win (one UPDATE sees the other's).
    take_over = update(table).where(
        table.c.pixel_id == pixel_id, table.c.window_end == window_end,
        table.c.attempts < max_attempts,
        or_(and_(table.c.status == "running", table.c.lease_expires_at <= now),
            table.c.status == "failed"),
    ).values(claimed_by=worker, claimed_at=now, lease_expires_at=now + lease, status="running",
             finished_at=None, error=None, attempts=table.c.attempts + 1).returning(table.c.pixel_id)
    won = session.execute(take_over).first() is not None
    session.commit()
    return won


def finish(session: Session, *, pixel_id: str, window_end: datetime, worker: str, now: datetime,
           status: Literal["done", "failed"], error: str | None = None) -> bool:
    """Record how ``worker``'s audit of the pixel-hour ended; commits.

    False (and nothing written) when ``worker`` no longer holds a running claim on it, e.g. its lease
    expired and another worker took the hour over."""
    table = table_of(AuditClaim)
    stmt = update(table).where(
        table.c.pixel_id == pixel_id, table.c.window_end == as_utc(window_end),
        table.c.claimed_by == worker, table.c.status == "running",
    ).values(status=status, finished_at=as_utc(now),
             error=short_text(error) if error else None).returning(table.c.pixel_id)
    done = session.execute(stmt).first() is not None
    session.commit()
    return done


def get_claim(session: Session, *, pixel_id: str, window_end: datetime) -> AuditClaim | None:
    """The claim row of one pixel-hour, if any (read fresh from the database)."""
    stmt = select(AuditClaim).where(col(AuditClaim.pixel_id) == pixel_id,
                                    col(AuditClaim.window_end) == as_utc(window_end))
    return session.execute(stmt.execution_options(populate_existing=True)).scalars().first()


def is_held(row: AuditClaim, *, now: datetime) -> bool:
    """True while another worker's audit of the hour may still be running (its lease is live)."""
    return row.status == "running" and as_utc(row.lease_expires_at) > as_utc(now)


def last_done(session: Session, pixel_id: str) -> datetime | None:
    """End of the latest hour audited successfully for the pixel, or None when there is none."""
    return last_done_by_pixel(session, [pixel_id]).get(pixel_id)


def last_done_by_pixel(session: Session, pixel_ids: list[str]) -> dict[str, datetime]:
    """``last_done`` for several pixels in one query; pixels never audited are absent."""
    if not pixel_ids:
        return {}
    stmt = (select(col(AuditClaim.pixel_id), func.max(col(AuditClaim.window_end)))
            .where(col(AuditClaim.status) == "done", col(AuditClaim.pixel_id).in_(pixel_ids))
            .group_by(col(AuditClaim.pixel_id)))
    return {pixel_id: as_utc(end) for pixel_id, end in session.execute(stmt).all() if end is not None}


# Exception messages can carry a URL with a token or a user's data: strip what looks like either.
_SECRETS = [
    (re.compile(r"(?i)(access_token|appsecret_proof|token|secret|password|key)=[^&\s'\"]+"), r"\1=***"),
    (re.compile(r"(?i)\b(bearer|basic)\s+\S+"), r"\1 ***"),
    (re.compile(r"[^\s@'\"<>]+@[^\s@'\"<>]+\.[A-Za-z]{2,}"), "<email>"),
    (re.compile(r"\+?\d[\d ()-]{7,}\d"), "<number>"),
    (re.compile(r"[A-Za-z0-9_\-]{24,}"), "<redacted>"),
]


def short_text(text: str) -> str:
    """One line of at most ``ERROR_MAX_CHARS`` characters with token- and PII-like parts masked."""
    line = " ".join(text.split())
    for pattern, replacement in _SECRETS:
        line = pattern.sub(replacement, line)
    return line if len(line) <= ERROR_MAX_CHARS else line[:ERROR_MAX_CHARS - 1] + "…"


def describe_error(exc: BaseException) -> str:
    """A short, secret-free description of a failed audit for the claim row and the logs."""
    message = str(exc).strip()
    return short_text(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
