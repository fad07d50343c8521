"""Store and forward: deliver the events the relay queued while Meta was unavailable.

``forward_pending`` runs anywhere (the scheduler, a CLI, several replicas at once) and promises:
- per pixel, oldest event_time first, at most ``batch_size`` (<= 1000) events a request, each event
  sent as stored (its event_id and event_time kept, user_data already hashed);
- never an event older than Meta's 7 days: those become ``failed`` (100/2804003, reported ``too_old``);
- nothing sent twice: a chunk is claimed and committed as in flight (``sending``) before its request,
  and its answer recorded (a ledger delivery, rollups included) in the commit after. Rows still in
  flight ``in_flight_lease`` after their claim belonged to a sender that died between the request and
  its commit: they become ``uncertain`` and are reported, never re-sent. So is a chunk whose request
  timed out (Meta may have it). A person who has checked Events Manager can replay them with a fix.
- the pixel's configured token: ``client_for_pixel`` returns None when none is configured, and the
  pixel's events keep waiting (reported with the reason). Meta unreachable (connection refused), 5xx
  or rate limited: the attempt is recorded, the chunk goes back to ``pending`` and that pixel stops for
  this run. Meta refusing the batch (100, 190, ...): the events become ``failed`` with Meta's code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.ledger.deliveries import record_delivery
from tools.ledger.models import Event
from tools.ledger.store import DeliveryOutcome
from tools.meta.client import MAX_EVENTS_PER_REQUEST, GraphClient
from tools.meta.errors import MetaApiError, MetaUnreachableError
from tools.relay.claims import (
    IN_FLIGHT,
    claim_chunk,
    count_by_pixel,
    fail_too_old,
    mark_stale_in_flight,
    pending_pixels,
    set_uncertain,
)
from tools.timeutil import as_utc

# Longer than any one request can take with the client's retries and backoff.
IN_FLIGHT_LEASE = timedelta(minutes=15)
NO_TOKEN = ("no access token configured for this pixel (access_token / access_token_env in its "
            "configuration, or META_ACCESS_TOKEN); its events wait")


@dataclass
class PixelForward:
    """What one run did for one pixel."""

    pixel_id: str
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    too_old: int = 0
    uncertain: int = 0
    in_flight: int = 0  # claimed by another sender right now (not touched)
    still_pending: int = 0
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    waiting_reason: str | None = None


@dataclass
class ForwardReport:
    pixels: list[PixelForward] = field(default_factory=list)

    def total(self, name: str) -> int:
        """Sum of one ``PixelForward`` counter over all pixels."""
        return sum(getattr(pixel, name) for pixel in self.pixels)

    @property
    def sent(self) -> int:
        return self.total("sent")

    @property
    def uncertain(self) -> int:
        return self.total("uncertain")


def forward_pending(session_factory: Callable[[], Session], *,
                    client_for_pixel: Callable[[str], GraphClient | None], now: datetime,
                    batch_size: int = MAX_EVENTS_PER_REQUEST,
                    in_flight_lease: timedelta = IN_FLIGHT_LEASE) -> ForwardReport:
    """Deliver queued events (see the module docstring). Clients are the caller's to close."""
    if not 1 <= batch_size <= MAX_EVENTS_PER_REQUEST:
        raise ValueError(f"batch_size must be between 1 and {MAX_EVENTS_PER_REQUEST}")
    now = as_utc(now)
    with session_factory() as session:
        uncertain = mark_stale_in_flight(session, older_than=now - in_flight_lease)
        too_old = fail_too_old(session, now=now)
        session.commit()
        pixels = sorted(set(pending_pixels(session)) | set(uncertain) | set(too_old))
    report = ForwardReport()
    for pixel_id in pixels:
        line = PixelForward(pixel_id, too_old=too_old[pixel_id], uncertain=uncertain[pixel_id])
        report.pixels.append(line)
        client = client_for_pixel(pixel_id)
        if client is None:
            line.waiting_reason = NO_TOKEN
        else:
            while _forward_chunk(session_factory, client, line, batch_size=batch_size, now=now):
                pass
        with session_factory() as session:
            line.still_pending = count_by_pixel(session, "pending")[pixel_id]
            line.in_flight = count_by_pixel(session, IN_FLIGHT)[pixel_id]
    return report


def _payloads(session: Session, ids: list[int]) -> tuple[list[int], list[dict[str, Any]], list[int]]:
    """(ids to send, their stored events in claim order, ids whose payload was purged)."""
    stored = {row_id: payload for row_id, payload in session.execute(
        select(col(Event.id), col(Event.payload)).where(col(Event.id).in_(ids)))}
    kept = [row_id for row_id in ids if stored.get(row_id)]
    purged = [row_id for row_id in ids if not stored.get(row_id)]
    return kept, [dict(stored[row_id]) for row_id in kept], purged


def _forward_chunk(session_factory: Callable[[], Session], client: GraphClient, line: PixelForward, *,
                   batch_size: int, now: datetime) -> bool:
    """Claim, send and record one chunk; True when the pixel may go on with the next one."""
    with session_factory() as session:
        ids = claim_chunk(session, pixel_id=line.pixel_id, limit=batch_size, now=now)
        if not ids:
            return False
        ids, events, purged = _payloads(session, ids)
        if purged:  # nothing left to send for these: failed, as a replay would report them
            session.execute(update(Event).where(col(Event.id).in_(purged)).values(delivery_status="failed"),
                            execution_options={"synchronize_session": False})
            line.failed += len(purged)
            session.commit()
        if not ids:
            return True
        try:
            result = client.send_events(line.pixel_id, events)
        except MetaApiError as exc:
            return _record_failure(session, line, ids, exc, now)
        line.requests += result.attempts
        line.sent += len(ids)
        line.delivered += result.events_received
        record_delivery(session, pixel_id=line.pixel_id, event_row_ids=ids, outcome=DeliveryOutcome(
            status="delivered", attempted_at=now, http_status=200, fbtrace_id=result.fbtrace_id,
            events_received=result.events_received, attempts=result.attempts))
        session.commit()
        return True


def _record_failure(session: Session, line: PixelForward, ids: list[int], exc: MetaApiError,
                    now: datetime) -> bool:
    line.requests += exc.attempts
    line.errors[exc.error_key] = line.errors.get(exc.error_key, 0) + 1
    if isinstance(exc, MetaUnreachableError) and ("timed out" in exc.message or exc.attempts > 1):
        # A request that timed out may have reached Meta: same as a crash after sending.
        set_uncertain(session, ids)
        line.uncertain += len(ids)
        session.commit()
        return False
    outcome_status: Literal["pending", "failed"] = "pending" if exc.retryable else "failed"
    record_delivery(session, pixel_id=line.pixel_id, event_row_ids=ids, outcome=DeliveryOutcome(
        status=outcome_status, attempted_at=now, http_status=exc.http_status, error_code=exc.code,
        error_subcode=exc.subcode, fbtrace_id=exc.fbtrace_id, events_received=0, attempts=exc.attempts))
    session.commit()
    if exc.retryable:
        return False  # unavailable or rate limited: leave the rest for a later run
    line.failed += len(ids)
    return exc.kind == "invalid_parameter"  # another chunk may be fine; a token/permission error is not
