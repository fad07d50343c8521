"""Accepting one Conversions API request: validate, prepare, record, forward, record Meta's answer.

``accept_batch`` promises, in order:
1. More than 1000 events, or an empty ``data``: Meta's 400, nothing recorded.
2. Validation by Meta's rules (``tools.meta.validate``) on what would be sent: in ``repair`` mode the
   prepared events (raw PII normalized and hashed, placeholders and malformed fbc/fbp dropped), in
   ``observe`` mode the events as received. Any error: Meta rejects the whole batch, so the relay does
   not forward it; it answers Meta's 400 body (code 100 + subcode) and records the events as a
   *failed* delivery with that code, so the hashing and delivery checks and the ``repair_and_replay``
   fix see them exactly as if Meta had refused them. Events lacking an event_name or an integer
   event_time cannot be kept in the ledger and are left out of that record.
3. Otherwise the events are recorded (user_data hashed before anything is written) as in flight
   (``sending``), committed, then forwarded with the caller's token.
4. Meta accepts: a ``delivered`` delivery; Meta's body is returned. Meta refuses (190, 100, ...): a
   ``failed`` delivery; Meta's error is returned with its status. Meta unreachable, 5xx, 429 or a
   rate-limit/transient code: a ``pending`` delivery, the events wait for ``forward_pending`` and the
   caller gets 200 "queued" so that it does not resend. Exception: a request with ``test_event_code``
   is never queued (a later delivery would lose the code and count test traffic as real); the
   events are recorded failed and Meta's error is returned.
5. No client (a relay key for a pixel with no Meta token configured): the events are recorded
   ``pending`` and wait for ``forward_pending`` (which sends only with the pixel's configured token).
The caller's token is used for this one request and never stored. Who may call: ``tools.relay.access``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import update
from sqlalchemy.orm import Session

from tools.fixes.rehash import pixel_default_country, relay_mode
from tools.ledger.deliveries import record_delivery
from tools.ledger.models import Event
from tools.ledger.pixels import ensure_pixels, mark_relay_unconfigured
from tools.ledger.store import DeliveryOutcome, record_events
from tools.meta.client import GraphClient
from tools.meta.errors import MetaApiError
from tools.meta.userdata import prepare_user_data
from tools.meta.validate import MAX_EVENTS_PER_REQUEST, validate_batch
from tools.relay.answers import RelayAnswer, accepted, bad_request, meta_error, queued, rejected_batch
from tools.relay.limits import MAX_EVENT_TIME
from tools.relay.sending import send_batch
from tools.timeutil import as_utc

RelayMode = Literal["observe", "repair"]
IN_FLIGHT = "sending"
PIXEL_ID_RE = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


@dataclass(frozen=True)
class RelayRequest:
    """One ``POST /{api_version}/{pixel_id}/events`` after parsing (events decoded, token set apart)."""

    pixel_id: str
    events: Sequence[Any]
    params: Mapping[str, str] = field(default_factory=dict)  # pass-through parameters
    # Accepted only through the opt-in for unconfigured pixels (tools.relay.access): mark the pixel.
    unconfigured: bool = False


@dataclass(frozen=True)
class PixelPolicy:
    mode: RelayMode = "observe"
    default_country: str = "US"


def pixel_policy(session: Session, pixel_id: str) -> PixelPolicy:
    """The pixel's relay mode and default country (defaults for a pixel only seen in data)."""
    mode = relay_mode(session, pixel_id)
    return PixelPolicy(mode="repair" if mode == "repair" else "observe",
                       default_country=pixel_default_country(session, pixel_id))


def prepare_for_sending(event: Any, policy: PixelPolicy) -> Any:
    """The event as it leaves for Meta: unchanged in observe mode; in repair mode with its user_data
    prepared (raw PII hashed, unusable values dropped). Non-objects are left for validation to report."""
    if policy.mode != "repair" or not isinstance(event, Mapping) or not isinstance(
            event.get("user_data"), Mapping):
        return event
    prepared = prepare_user_data(event["user_data"], default_country=policy.default_country, repair=True)
    return {**event, "user_data": prepared.user_data}


def recordable(event: Any) -> dict[str, Any] | None:
    """A copy the ledger can keep (event_time as an int, user_data an object), or None when the event
    lacks what every ledger row needs."""
    if not isinstance(event, Mapping):
        return None
    name, event_time = event.get("event_name"), event.get("event_time")
    if isinstance(event_time, str) and event_time.strip().isdigit():
        event_time = int(event_time.strip())
    if isinstance(event_time, float) and event_time.is_integer():
        event_time = int(event_time)
    if not isinstance(name, str) or not name or isinstance(event_time, bool) or not isinstance(
            event_time, int) or not 0 <= event_time < MAX_EVENT_TIME:
        return None
    user_data = event.get("user_data")
    return {**event, "event_time": event_time,
            "user_data": user_data if isinstance(user_data, Mapping) else {}}


def _record(session: Session, request: RelayRequest, policy: PixelPolicy, now: datetime) -> list[int]:
    """Record the keepable events; returns their new ledger row ids (repeats within the request once)."""
    ensure_pixels(session, [request.pixel_id], default_country=policy.default_country, now=now)
    if request.unconfigured:
        mark_relay_unconfigured(session, request.pixel_id)
    events = [kept for kept in (recordable(event) for event in request.events) if kept is not None]
    if not events:
        return []
    stored = record_events(session, pixel_id=request.pixel_id, events=events, received_at=now,
                           default_country=policy.default_country, repair=policy.mode == "repair")
    return [row_id for row_id in stored.event_row_ids if row_id is not None]


def _outcome_for(exc: MetaApiError, status: Literal["failed", "pending"], at: datetime) -> DeliveryOutcome:
    return DeliveryOutcome(status=status, attempted_at=at, http_status=exc.http_status, error_code=exc.code,
                           error_subcode=exc.subcode, fbtrace_id=exc.fbtrace_id, events_received=0,
                           attempts=exc.attempts)


def accept_batch(session_factory: Callable[[], Session], request: RelayRequest, *,
                 client: GraphClient | None, now: datetime) -> RelayAnswer:
    """Handle one request end to end (see the module docstring); returns what to answer the caller."""
    now = as_utc(now)
    events = list(request.events)
    if len(events) > MAX_EVENTS_PER_REQUEST:
        return bad_request(f"data has {len(events)} events; at most {MAX_EVENTS_PER_REQUEST} are accepted "
                           "per request")
    if not events:
        return bad_request("param data must contain at least one event")
    with session_factory() as session:
        policy = pixel_policy(session, request.pixel_id)
    to_send = [prepare_for_sending(event, policy) for event in events]
    errors = [problem for problem in validate_batch(to_send, now=now) if problem.severity == "error"]
    if errors:
        answer = rejected_batch(errors[0])
        with session_factory() as session:
            row_ids = _record(session, request, policy, now)
            if row_ids:
                record_delivery(session, pixel_id=request.pixel_id, event_row_ids=row_ids,
                                outcome=DeliveryOutcome(
                                    status="failed", attempted_at=now, http_status=answer.status,
                                    error_code=answer.error.get("code"),
                                    error_subcode=answer.error.get("error_subcode"),
                                    fbtrace_id=answer.error.get("fbtrace_id"), events_received=0))
            session.commit()
        return answer
    if client is None:  # a relay key for a pixel with no Meta token configured (yet): the events wait
        if request.params.get("test_event_code"):
            return bad_request("test events cannot wait for a token: no access token is configured for "
                               "this pixel")
        with session_factory() as session:
            row_ids = _record(session, request, policy, now)
            if row_ids:
                session.execute(update(Event).where(Event.id.in_(row_ids)).values(delivery_status="pending"),
                                execution_options={"synchronize_session": False})
            session.commit()
        return queued(len(events))
    with session_factory() as session:
        row_ids = _record(session, request, policy, now)
        # Journal before the request: rows left "sending" by a crash become "uncertain", never resent.
        if row_ids:
            session.execute(update(Event).where(Event.id.in_(row_ids)).values(
                delivery_status=IN_FLIGHT, last_attempt_at=now),
                execution_options={"synchronize_session": False})
        session.commit()
        try:
            result = send_batch(client, request.pixel_id, to_send, request.params)
        except MetaApiError as exc:
            queue = exc.retryable and not request.params.get("test_event_code")
            if row_ids:
                record_delivery(session, pixel_id=request.pixel_id, event_row_ids=row_ids,
                                outcome=_outcome_for(exc, "pending" if queue else "failed", now))
            session.commit()
            return queued(len(events)) if queue else meta_error(exc)
        if row_ids:
            record_delivery(session, pixel_id=request.pixel_id, event_row_ids=row_ids,
                            outcome=DeliveryOutcome(status="delivered", attempted_at=now, http_status=200,
                                                    fbtrace_id=result.fbtrace_id,
                                                    events_received=result.events_received,
                                                    attempts=result.attempts))
        session.commit()
        return accepted(result)
