"""Accepting one Conversions API request: validate, prepare, record, forward, record Meta's answer.

``accept_batch`` promises, in order:
1. More than 1000 events, or an empty ``data``: Meta's 400, nothing recorded.
2. Validation by Meta's rules (``tools.meta.validate``) on what would be sent: in ``repair`` mode the
   prepared events (payload repairs of ``tools.relay.payload_repair``, which are recorded too: event_time
   in milliseconds, value as text, a Purchase's missing currency; raw PII normalized and hashed,
   placeholders and malformed fbc/fbp dropped), in
   ``observe`` mode the events as received. Any error: Meta rejects the whole batch, so the relay does
   not forward it; it answers Meta's 400 body (code 100 + subcode) and records the events as a
   *failed* delivery with that code, so the hashing and delivery checks and the ``repair_and_replay``
   fix see them exactly as if Meta had refused them. Events lacking an event_name or an integer
   event_time cannot be kept in the ledger and are left out of that record.
3. No client (a relay key for a pixel with no Meta token configured): nothing is recorded and the
   caller gets a transient 503 (Graph error code 2) to retry later. Queuing would be a promise the
   relay cannot keep: ``forward_pending`` sends only with the pixel's configured token.
4. Otherwise the events are recorded (user_data hashed before anything is written) as in flight
   (``sending``) in one short transaction, committed, then forwarded with no transaction or session
   open, and Meta's answer is recorded in another short transaction. Both writes go through
   ``writes`` (``tools.relay.writer``: grouped with other requests' under load); the caller gets its
   answer only after they are committed.
5. Meta accepts: a ``delivered`` delivery; Meta's body is returned. Meta refuses (190, 100, ...): a
   ``failed`` delivery; Meta's error is returned with its status. Meta unreachable, 5xx, 429 or a
   rate-limit/transient code: a ``pending`` delivery, the events wait for ``forward_pending`` and the
   caller gets 200 "queued" so that it does not resend; but only when ``forward_pending`` will be able
   to send them. A request with ``test_event_code`` (a later delivery would lose the code and count
   test traffic as real) or accepted for an unconfigured pixel with the caller's own token (never
   stored, so never available later) is not queued: the events are recorded failed and Meta's
   error is returned for the caller to retry. Meta silent past the timeout: the request may have
   reached it, so the events become ``uncertain`` (reported, never re-sent, as in ``forward_pending``)
   and the caller gets a 200 that says so (a retry would risk counting them twice).
The caller's token is used for this one request and never stored. Who may call: ``tools.relay.access``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from tools.fixes.rehash import pixel_default_country, pixel_default_currency, relay_mode
from tools.ledger.store import DeliveryOutcome, IncomingEvent, prepare_events
from tools.meta.client import GraphClient
from tools.meta.errors import MetaApiError, MetaUnreachableError
from tools.meta.userdata import prepare_user_data
from tools.meta.validate import MAX_EVENTS_PER_REQUEST, validate_batch
from tools.relay.answers import (
    RelayAnswer,
    accepted,
    bad_request,
    meta_error,
    no_token,
    queued,
    rejected_batch,
    unanswered,
)
from tools.relay.limits import MAX_EVENT_TIME
from tools.relay.payload_repair import repair_payload
from tools.relay.sending import send_batch
from tools.relay.writer import AfterRecord, AnswerWrite, DirectWrites, RecordWrite, SenderNote, Writes
from tools.senders.fingerprint import event_shape, sender_from_request
from tools.timeutil import as_utc

RelayMode = Literal["observe", "repair"]
PIXEL_ID_RE = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


@dataclass(frozen=True)
class RelayRequest:
    """One ``POST /{api_version}/{pixel_id}/events`` after parsing (events decoded, token set apart)."""

    pixel_id: str
    events: Sequence[Any]
    params: Mapping[str, str] = field(default_factory=dict)  # pass-through parameters
    # Accepted only through the opt-in for unconfigured pixels (tools.relay.access): mark the pixel.
    unconfigured: bool = False
    # The sender's HTTP User-Agent (its software, e.g. fbbizsdk-php-v17.0.0), for tools.senders.
    user_agent: str | None = None


@dataclass(frozen=True)
class PixelPolicy:
    mode: RelayMode = "observe"
    default_country: str = "US"
    default_currency: str | None = None  # for Purchases sent without currency, in repair mode


def pixel_policy(session: Session, pixel_id: str) -> PixelPolicy:
    """The pixel's relay mode, default country and currency (defaults for a pixel only seen in data)."""
    mode = relay_mode(session, pixel_id)
    return PixelPolicy(mode="repair" if mode == "repair" else "observe",
                       default_country=pixel_default_country(session, pixel_id),
                       default_currency=pixel_default_currency(session, pixel_id))


def repaired_events(events: Sequence[Any], policy: PixelPolicy) -> list[Any]:
    """In repair mode, the events with their payload repairs (``tools.relay.payload_repair``), which are
    both recorded and sent: the ledger keeps what Meta got. Unchanged in observe mode."""
    if policy.mode != "repair":
        return list(events)
    return [repair_payload(event, default_currency=policy.default_currency)[0] for event in events]


class PolicyCache:
    """Pixel policies read at most every ``ttl`` seconds per pixel. Under load, two reads per request
    cost about a tenth of the relay's CPU; a switch to repair mode (an approved fix) applies within
    ``ttl``. Thread-safe; bounded by forgetting everything past ``max_pixels``."""

    def __init__(self, *, ttl: float = 2.0, max_pixels: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.max_pixels, self.clock = ttl, max_pixels, clock
        self._policies: dict[str, tuple[float, PixelPolicy]] = {}
        self._lock = threading.Lock()

    def get(self, session_factory: Callable[[], Session], pixel_id: str) -> PixelPolicy:
        with self._lock:
            known = self._policies.get(pixel_id)
        if known is not None and self.clock() - known[0] <= self.ttl:
            return known[1]
        with session_factory() as session:
            policy = pixel_policy(session, pixel_id)
        with self._lock:
            if len(self._policies) >= self.max_pixels:
                self._policies.clear()
            self._policies[pixel_id] = (self.clock(), policy)
        return policy


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


def _record(writes: Writes, request: RelayRequest, policy: PixelPolicy, now: datetime,
            after: AfterRecord, received: Sequence[Any]) -> list[int]:
    """Record the keepable events of ``received`` (the request's, repaired in repair mode; committed on
    return); their new ledger row ids (repeats of stored events leave none)."""
    events = [kept for kept in (recordable(event) for event in received) if kept is not None]
    code = request.params.get("test_event_code")
    if code:
        # Meta takes the code once per request; the ledger keeps it on each event, as an ingest line
        # carries it, so the payload check counts relay traffic sent to Test Events like imported traffic.
        events = [{**event, "test_event_code": code} for event in events]
    repair = policy.mode == "repair"
    # Hashed and made into rows here, on the request's thread: the one writer thread only writes.
    prepared = prepare_events([IncomingEvent(pixel_id=request.pixel_id, received_at=now, event=event)
                               for event in events], default_country=policy.default_country, repair=repair)
    return writes.record(RecordWrite(pixel_id=request.pixel_id, events=events, received_at=now,
                                     default_country=policy.default_country, repair=repair,
                                     after=after, unconfigured=request.unconfigured,
                                     sender=sender_note(request, events), prepared=prepared))


def sender_note(request: RelayRequest, events: Sequence[Mapping[str, Any]]) -> SenderNote | None:
    """Who sent the request and the shape of its events, for ``tools.senders`` (as
    ``record_request_sender`` reads them), worked out on the request's thread, not the writer's.
    None when the request names no software at all: it is not fingerprinted."""
    info = sender_from_request(request.user_agent, request.params)
    if not info.as_json():
        return None
    return SenderNote(info, [shape for shape in (event_shape(event) for event in events) if shape is not None])


def _outcome_for(exc: MetaApiError, status: Literal["failed", "pending"], at: datetime) -> DeliveryOutcome:
    return DeliveryOutcome(status=status, attempted_at=at, http_status=exc.http_status, error_code=exc.code,
                           error_subcode=exc.subcode, fbtrace_id=exc.fbtrace_id, events_received=0,
                           attempts=exc.attempts)


def accept_batch(session_factory: Callable[[], Session], request: RelayRequest, *,
                 client: GraphClient | None, now: datetime, writes: Writes | None = None,
                 policies: PolicyCache | None = None) -> RelayAnswer:
    """Handle one request end to end (see the module docstring); returns what to answer the caller.
    ``writes`` defaults to one transaction per write on this thread (``DirectWrites``); ``policies``
    to reading the pixel's policy for this request."""
    now = as_utc(now)
    writes = writes if writes is not None else DirectWrites(session_factory)
    events = list(request.events)
    if len(events) > MAX_EVENTS_PER_REQUEST:
        return bad_request(f"data has {len(events)} events; at most {MAX_EVENTS_PER_REQUEST} are accepted "
                           "per request")
    if not events:
        return bad_request("param data must contain at least one event")
    if policies is not None:
        policy = policies.get(session_factory, request.pixel_id)
    else:
        with session_factory() as session:
            policy = pixel_policy(session, request.pixel_id)
    events = repaired_events(events, policy)
    to_send = [prepare_for_sending(event, policy) for event in events]
    errors = [problem for problem in validate_batch(to_send, now=now) if problem.severity == "error"]
    if errors:
        answer = rejected_batch(errors[0])
        _record(writes, request, policy, now, DeliveryOutcome(
            status="failed", attempted_at=now, http_status=answer.status, error_code=answer.error.get("code"),
            error_subcode=answer.error.get("error_subcode"), fbtrace_id=answer.error.get("fbtrace_id"),
            events_received=0), events)
        return answer
    if client is None:
        return no_token()
    row_ids = _record(writes, request, policy, now, "sending", events)
    # No session and no transaction is open from here until Meta answers.
    try:
        result = send_batch(client, request.pixel_id, to_send, request.params)
    except MetaApiError as exc:
        if isinstance(exc, MetaUnreachableError) and "timed out" in exc.message and not any(
                never_sent in exc.message for never_sent in ("ConnectTimeout", "PoolTimeout")):
            # The request may have reached Meta (as in forward_pending): never re-sent, reported.
            writes.answer(AnswerWrite(request.pixel_id, row_ids, "uncertain"))
            return unanswered(len(events))
        queue = exc.retryable and not request.params.get("test_event_code") and not request.unconfigured
        writes.answer(AnswerWrite(request.pixel_id, row_ids, _outcome_for(exc, "pending" if queue else "failed",
                                                                         now)))
        return queued(len(events)) if queue else meta_error(exc)
    writes.answer(AnswerWrite(request.pixel_id, row_ids, DeliveryOutcome(
        status="delivered", attempted_at=now, http_status=200, fbtrace_id=result.fbtrace_id,
        events_received=result.events_received, attempts=result.attempts)))
    return accepted(result)
