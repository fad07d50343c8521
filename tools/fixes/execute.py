"""Executing an approved fix: journaled chunk by chunk, resumable, idempotent by proposal id.

How it runs (``execute_fix``):
1. Claim: an ``approved`` proposal becomes ``executing`` atomically, its events are planned into
   chunks of at most 1000 (``fix_chunks``, status ``planned``), and for ``rehash`` the pixel's relay is
   switched to repair mode, all in one commit.
2. Each chunk: re-check its events (delivered since? older than 7 days by now? payload purged?),
   mark it ``sending`` and commit, make the request, then record the attempt as a ledger delivery
   (linked to the proposal, so rollups see it) and mark it ``sent``/``failed`` in one commit.
3. Finish: when no chunk is left ``planned`` the proposal becomes ``executed`` (``failed`` if Meta
   rejected a chunk) with its ``ExecutionResult``. Running it again returns that result, sends nothing.

A crash leaves the proposal ``executing``: calling ``execute_fix`` again resumes with the chunks still
``planned``. A chunk found ``sending`` on resume crashed between the request and its commit: Meta may
or may not have it, so it is marked ``uncertain`` and NOT re-sent (re-sending real conversions could
count them twice). The same holds for a request that timed out. To resend uncertain chunks, a person
first checks Meta (Events Manager > the dataset's overview, or the events' event_ids in Test Events),
then calls ``release_uncertain(...)`` (trail entry with their name), and runs ``execute_fix`` again.

Rate limits: the client retries with backoff; if a ``RateLimitedError`` (or Meta unreachable, or a
token error) remains, the attempt is recorded, the chunk goes back to ``planned`` and execution stops
with ``finished=False``, leaving the rest for a later resume.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tools.fixes.models import FixChunk, FixProposalRow
from tools.fixes.preview import parse_params
from tools.fixes.rehash import REPAIR_MODE, pixel_default_country, set_relay_mode
from tools.fixes.replay import (
    current_rows,
    load_payloads,
    payload_to_send,
    select_events,
    too_old_cutoff,
)
from tools.fixes.trail import record, trail
from tools.fixes.types import (
    ExecutionResult,
    FixParams,
    ProposalAlreadyDecided,
    ProposalNotApproved,
    ProposalNotFound,
)
from tools.ledger.deliveries import record_delivery
from tools.ledger.store import DeliveryOutcome
from tools.meta.client import MAX_EVENTS_PER_REQUEST, GraphClient
from tools.meta.errors import InvalidParameterError, MetaApiError, MetaUnreachableError
from tools.timeutil import as_utc

ChunkOutcome = Literal["continue", "stop"]


@dataclass(frozen=True)
class ChunkProgress:
    """Reported after each chunk is committed (for a CLI progress line or a Slack update)."""

    proposal_id: str
    seq: int
    chunks: int
    status: str
    events: int


@dataclass(frozen=True)
class _Run:
    proposal_id: str
    pixel_id: str
    kind: str
    params: FixParams
    country: str
    actor: str


def execute_fix(session_factory: Callable[[], Session], *, proposal_id: str, client: GraphClient,
                at: datetime, actor: str = "agent", batch_size: int = MAX_EVENTS_PER_REQUEST,
                on_chunk: Callable[[ChunkProgress], None] | None = None) -> ExecutionResult:
    """Run an approved proposal (or resume an ``executing`` one); see the module docstring.

    ``at`` is when the run starts; send times advance from it by the wall time elapsed. Raises
    ``ProposalNotFound`` / ``ProposalNotApproved``. Running an executed proposal again changes nothing.
    """
    if not 1 <= batch_size <= MAX_EVENTS_PER_REQUEST:
        raise ValueError(f"batch_size must be between 1 and {MAX_EVENTS_PER_REQUEST}")
    started = time.monotonic()

    def now() -> datetime:
        return as_utc(at) + timedelta(seconds=time.monotonic() - started)

    with session_factory() as session:
        row = session.get(FixProposalRow, proposal_id)
        if row is None:
            raise ProposalNotFound(f"no fix proposal {proposal_id}")
        if row.status in ("executed", "failed") and row.result is not None:
            return ExecutionResult.model_validate(row.result)
        if row.status not in ("approved", "executing"):
            raise ProposalNotApproved(f"proposal {proposal_id} is {row.status}; only an approved "
                                      "proposal runs")
        run = _Run(proposal_id, row.pixel_id, row.kind, parse_params(row.kind, row.params),
                   pixel_default_country(session, row.pixel_id), actor)
        if row.status == "approved":
            _start(session, run, at=now(), batch_size=batch_size)
        else:
            _resume(session, run, at=now())
        seqs = list(session.scalars(select(FixChunk.seq).where(
            FixChunk.proposal_id == proposal_id, FixChunk.status == "planned").order_by(FixChunk.seq)))
        total_chunks = len(session.scalars(select(FixChunk.seq).where(
            FixChunk.proposal_id == proposal_id)).all())
    for seq in seqs:
        with session_factory() as session:
            outcome, status, events = _run_chunk(session, run, seq=seq, client=client, now=now)
        if on_chunk is not None:
            on_chunk(ChunkProgress(proposal_id, seq, total_chunks, status, events))
        if outcome == "stop":
            break
    with session_factory() as session:
        return _finish(session, run, at=now())


def _start(session: Session, run: _Run, *, at: datetime, batch_size: int) -> None:
    """Claim an approved proposal and plan its chunks, in one commit."""
    claimed = session.execute(update(FixProposalRow).where(
        FixProposalRow.id == run.proposal_id, FixProposalRow.status == "approved").values(
        status="executing"), execution_options={"synchronize_session": False})
    if claimed.rowcount != 1:
        session.rollback()
        raise ProposalAlreadyDecided(f"proposal {run.proposal_id} is being executed elsewhere")
    selection = select_events(session, pixel_id=run.pixel_id, kind=run.kind, params=run.params, at=at)
    ids = [candidate.id for candidate in selection.eligible]
    for seq, start in enumerate(range(0, len(ids), batch_size)):
        session.add(FixChunk(proposal_id=run.proposal_id, seq=seq, status="planned",
                             event_ids=ids[start:start + batch_size], updated_at=at))
    if run.kind == "rehash":
        set_relay_mode(session, pixel_id=run.pixel_id, mode=REPAIR_MODE, actor=run.actor, at=at,
                       proposal_id=run.proposal_id)
    record(session, proposal_id=run.proposal_id, actor=run.actor, action="execution_started", at=at,
           detail={"events": len(ids), "chunks": -(-len(ids) // batch_size),
                   "skipped": dict(selection.skipped)})
    session.commit()


def _resume(session: Session, run: _Run, *, at: datetime) -> None:
    """Chunks caught in ``sending`` by a crash become ``uncertain`` (never re-sent automatically)."""
    stuck = session.scalars(select(FixChunk).where(FixChunk.proposal_id == run.proposal_id,
                                                   FixChunk.status == "sending")).all()
    for chunk in stuck:
        chunk.status, chunk.updated_at = "uncertain", as_utc(at)
        record(session, proposal_id=run.proposal_id, actor=run.actor, action="chunk_uncertain", at=at,
               detail={"seq": chunk.seq, "events": len(chunk.sent_ids),
                       "why": "interrupted between the request and its record"})
    record(session, proposal_id=run.proposal_id, actor=run.actor, action="execution_resumed", at=at,
           detail={"uncertain_chunks": [chunk.seq for chunk in stuck]})
    session.commit()


def _send_skip_reason(row: Mapping[str, Any], cutoff: datetime) -> str | None:
    """Checked again right before sending: the plan may be hours old."""
    if row["delivery_status"] == "delivered":
        return "already_delivered"
    if row["delivery_status"] in ("sending", "uncertain"):  # the relay's forwarder holds or held them
        return "in_flight_elsewhere"
    if as_utc(row["event_time"]) < cutoff:
        return "too_old"
    if not row["has_payload"]:
        return "no_payload"
    return None


def _prepare_chunk(session: Session, run: _Run, chunk: FixChunk, send_at: datetime
                   ) -> tuple[list[int], list[dict[str, Any]], Counter[str]]:
    rows = current_rows(session, pixel_id=run.pixel_id, event_ids=chunk.event_ids)
    skipped: Counter[str] = Counter()
    skipped["missing"] = len(chunk.event_ids) - len(rows)
    cutoff = too_old_cutoff(send_at)
    wanted = []
    for row in rows:
        reason = _send_skip_reason(row, cutoff)
        if reason is None:
            wanted.append(row["id"])
        else:
            skipped[reason] += 1
    payloads = load_payloads(session, wanted)
    ids: list[int] = []
    events: list[dict[str, Any]] = []
    for event_id in wanted:
        payload = payloads.get(event_id)
        if payload is None:
            skipped["no_payload"] += 1
            continue
        event, _ = payload_to_send(run.kind, run.params, payload, default_country=run.country)
        ids.append(event_id)
        events.append(event)
    return ids, events, +skipped


def _run_chunk(session: Session, run: _Run, *, seq: int, client: GraphClient,
               now: Callable[[], datetime]) -> tuple[ChunkOutcome, str, int]:
    chunk = session.get(FixChunk, (run.proposal_id, seq))
    if chunk is None or chunk.status != "planned":
        return "continue", chunk.status if chunk else "missing", 0
    send_at = now()
    ids, events, skipped = _prepare_chunk(session, run, chunk, send_at)
    key = (FixChunk.proposal_id == run.proposal_id, FixChunk.seq == seq, FixChunk.status == "planned")
    if not ids:
        session.execute(update(FixChunk).where(*key).values(status="skipped", skipped=dict(skipped),
                                                            updated_at=send_at))
        session.commit()
        return "continue", "skipped", 0
    # Journal before the request: a crash from here on leaves "sending" -> uncertain on resume.
    claimed = session.execute(update(FixChunk).where(*key).values(
        status="sending", sent_ids=ids, skipped=dict(skipped), updated_at=send_at),
        execution_options={"synchronize_session": False})
    if claimed.rowcount != 1:  # another executor took it
        session.rollback()
        return "continue", "taken", 0
    session.commit()
    session.refresh(chunk)
    try:
        answer = client.send_events(run.pixel_id, events)
    except MetaApiError as exc:
        return _record_failure(session, run, chunk, ids, exc, send_at)
    outcome = DeliveryOutcome(status="delivered", attempted_at=send_at, http_status=200,
                              fbtrace_id=answer.fbtrace_id, events_received=answer.events_received)
    chunk.delivery_id = record_delivery(session, pixel_id=run.pixel_id, event_row_ids=ids,
                                        outcome=outcome, fix_id=run.proposal_id)
    chunk.status, chunk.received, chunk.updated_at = "sent", answer.events_received, send_at
    chunk.requests += answer.attempts
    session.commit()
    return "continue", "sent", len(ids)


def _record_failure(session: Session, run: _Run, chunk: FixChunk, ids: Sequence[int], exc: MetaApiError,
                    send_at: datetime) -> tuple[ChunkOutcome, str, int]:
    """Meta refused the chunk, or could not be reached: record what is known and decide what next."""
    chunk.requests += exc.attempts
    chunk.error_key, chunk.updated_at = exc.error_key, send_at
    if isinstance(exc, MetaUnreachableError) and ("timed out" in exc.message or exc.attempts > 1):
        # A request that timed out may have reached Meta: same as a crash after sending.
        chunk.status = "uncertain"
        record(session, proposal_id=run.proposal_id, actor=run.actor, action="chunk_uncertain",
               at=send_at, detail={"seq": chunk.seq, "events": len(ids), "why": exc.error_key})
        session.commit()
        return "stop", "uncertain", len(ids)
    rejected = isinstance(exc, InvalidParameterError) or not (exc.retryable or exc.kind in (
        "token_invalid", "permission"))
    if not isinstance(exc, MetaUnreachableError):
        chunk.delivery_id = record_delivery(
            session, pixel_id=run.pixel_id, event_row_ids=ids, fix_id=run.proposal_id,
            outcome=DeliveryOutcome(status="failed" if rejected or not exc.retryable else "pending",
                                    attempted_at=send_at, http_status=exc.http_status,
                                    error_code=exc.code, error_subcode=exc.subcode,
                                    fbtrace_id=exc.fbtrace_id, events_received=0))
    if rejected:
        # Meta rejected this batch as a whole; the other chunks may be fine.
        chunk.status = "failed"
        session.commit()
        return "continue", "failed", len(ids)
    # Rate limited, Meta unreachable, or the token: nothing was processed; leave it for a resume.
    chunk.status, chunk.sent_ids = "planned", []
    record(session, proposal_id=run.proposal_id, actor=run.actor, action="execution_paused", at=send_at,
           detail={"seq": chunk.seq, "error": exc.error_key, "kind": exc.kind})
    session.commit()
    return "stop", "planned", 0


def summarize(session: Session, proposal_id: str) -> ExecutionResult:
    """The result so far, from the journal (plus what the plan skipped)."""
    chunks = session.scalars(select(FixChunk).where(FixChunk.proposal_id == proposal_id)).all()
    result = ExecutionResult(finished=not any(c.status in ("planned", "sending") for c in chunks))
    reasons: Counter[str] = Counter()
    for entry in trail(session, proposal_id):
        if entry.action == "execution_started":
            reasons.update({k: v for k, v in entry.detail.get("skipped", {}).items()
                            if k not in ("already_delivered", "status_not_selected",
                                         "not_rejected_for_parameter")})
    for chunk in chunks:
        reasons.update(chunk.skipped or {})
        result.requests += chunk.requests
        if chunk.status == "sent":
            result.sent += len(chunk.sent_ids)
            result.received += chunk.received
        elif chunk.status == "failed":
            result.failed += len(chunk.sent_ids)
        elif chunk.status == "uncertain":
            result.uncertain += len(chunk.sent_ids)
        if chunk.error_key and chunk.status != "sent":
            result.errors[chunk.error_key] = result.errors.get(chunk.error_key, 0) + 1
    result.skipped_by_reason = dict(sorted(reasons.items()))
    result.skipped = sum(reasons.values())
    return result


def _finish(session: Session, run: _Run, *, at: datetime) -> ExecutionResult:
    result = summarize(session, run.proposal_id)
    row = session.get(FixProposalRow, run.proposal_id)
    assert row is not None
    row.result = result.model_dump(mode="json")
    if result.finished and row.status == "executing":
        row.status = "failed" if result.failed and not result.sent else "executed"
        record(session, proposal_id=run.proposal_id, actor=run.actor, action=row.status, at=at,
               detail=result.model_dump(mode="json"))
    session.commit()
    return result


def release_uncertain(session: Session, *, proposal_id: str, actor: str, at: datetime,
                      seqs: Sequence[int] | None = None) -> list[int]:
    """A person's choice to resend uncertain chunks (after checking Meta did not get them): they go
    back to ``planned`` and the proposal to ``executing``; run ``execute_fix`` again. Commits."""
    row = session.get(FixProposalRow, proposal_id)
    if row is None:
        raise ProposalNotFound(f"no fix proposal {proposal_id}")
    query = select(FixChunk).where(FixChunk.proposal_id == proposal_id, FixChunk.status == "uncertain")
    if seqs is not None:
        query = query.where(FixChunk.seq.in_(list(seqs)))
    chunks = session.scalars(query).all()
    for chunk in chunks:
        chunk.status, chunk.sent_ids, chunk.updated_at = "planned", [], as_utc(at)
    if chunks:
        row.status = "executing"
        record(session, proposal_id=proposal_id, actor=actor, action="uncertain_released", at=at,
               detail={"seqs": sorted(chunk.seq for chunk in chunks)})
    session.commit()
    return sorted(chunk.seq for chunk in chunks)
