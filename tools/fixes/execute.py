"""Executing an approved fix: journaled chunk by chunk, resumable, idempotent by proposal id.

How it runs (``execute_fix``), the same for every kind; what differs comes from the proposal's kind
(``tools/fixes/registry.py``: which items, what is sent for each, a step before the first request):
1. Claim: an ``approved`` proposal becomes ``executing`` atomically, the kind's selection is planned
   into chunks of at most 1000 ids (``fix_chunks``, status ``planned``), and the kind's pre-execution
   step runs (``rehash``: the pixel's relay switched to repair mode), all in one commit.
2. Each chunk: the kind re-checks its items (delivered since? older than 7 days by now? payload
   purged? an order's Purchase arrived?) and builds the events, the chunk is marked ``sending`` and
   committed, the request is made, then the attempt is recorded as a ledger delivery of the kind's
   ledger rows (linked to the proposal, so rollups see it) and the chunk marked ``sent``/``failed``,
   in one commit.
3. Finish: when no chunk is left ``planned`` the proposal becomes ``executed`` (``failed`` if Meta
   rejected every chunk it answered) with its ``ExecutionResult``. Running it again returns that
   result and sends nothing.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.fixes.kinds.base import FixKindSpec
from tools.fixes.models import FixChunk, FixProposalRow
from tools.fixes.registry import fix_kind
from tools.fixes.rehash import pixel_default_country
from tools.fixes.trail import record, trail
from tools.fixes.types import (
    ExecutionResult,
    FixParams,
    ProposalAlreadyDecided,
    ProposalNotApproved,
    ProposalNotFound,
)
from tools.ledger.db import rowcount
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
    kind: FixKindSpec
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
        spec = fix_kind(row.kind)
        run = _Run(proposal_id, row.pixel_id, spec, spec.parse_params(row.params),
                   pixel_default_country(session, row.pixel_id), actor)
        if row.status == "approved":
            _start(session, run, at=now(), batch_size=batch_size)
        else:
            _resume(session, run, at=now())
        seqs = list(session.scalars(select(col(FixChunk.seq)).where(
            col(FixChunk.proposal_id) == proposal_id, col(FixChunk.status) == "planned").order_by(col(FixChunk.seq))))
        total_chunks = len(session.scalars(select(col(FixChunk.seq)).where(
            col(FixChunk.proposal_id) == proposal_id)).all())
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
        col(FixProposalRow.id) == run.proposal_id, col(FixProposalRow.status) == "approved").values(
        status="executing"), execution_options={"synchronize_session": False})
    if rowcount(claimed) != 1:
        session.rollback()
        raise ProposalAlreadyDecided(f"proposal {run.proposal_id} is being executed elsewhere")
    selection = run.kind.select(session, pixel_id=run.pixel_id, params=run.params, at=at)
    ids = [candidate.id for candidate in selection.eligible]
    for seq, start in enumerate(range(0, len(ids), batch_size)):
        session.add(FixChunk(proposal_id=run.proposal_id, seq=seq, status="planned",
                             event_ids=ids[start:start + batch_size], updated_at=at))
    session.flush()  # the kind's step and later selections see this plan
    run.kind.before_execution(session, pixel_id=run.pixel_id, params=run.params, actor=run.actor, at=at,
                              proposal_id=run.proposal_id)
    record(session, proposal_id=run.proposal_id, actor=run.actor, action="execution_started", at=at,
           detail={"events": len(ids), "chunks": -(-len(ids) // batch_size),
                   "skipped": dict(selection.skipped)})
    session.commit()


def _resume(session: Session, run: _Run, *, at: datetime) -> None:
    """Chunks caught in ``sending`` by a crash become ``uncertain`` (never re-sent automatically)."""
    stuck = session.scalars(select(FixChunk).where(col(FixChunk.proposal_id) == run.proposal_id,
                                                   col(FixChunk.status) == "sending")).all()
    for chunk in stuck:
        chunk.status, chunk.updated_at = "uncertain", as_utc(at)
        record(session, proposal_id=run.proposal_id, actor=run.actor, action="chunk_uncertain", at=at,
               detail={"seq": chunk.seq, "events": len(chunk.sent_ids),
                       "why": "interrupted between the request and its record"})
    record(session, proposal_id=run.proposal_id, actor=run.actor, action="execution_resumed", at=at,
           detail={"uncertain_chunks": [chunk.seq for chunk in stuck]})
    session.commit()


def _run_chunk(session: Session, run: _Run, *, seq: int, client: GraphClient,
               now: Callable[[], datetime]) -> tuple[ChunkOutcome, str, int]:
    chunk = session.get(FixChunk, (run.proposal_id, seq))
    if chunk is None or chunk.status != "planned":
        return "continue", chunk.status if chunk else "missing", 0
    send_at = now()
    prepared = run.kind.prepare_chunk(session, pixel_id=run.pixel_id, params=run.params, ids=chunk.event_ids,
                                      send_at=send_at, country=run.country, proposal_id=run.proposal_id)
    ids, events, skipped = prepared.ids, prepared.events, prepared.skipped
    key = (col(FixChunk.proposal_id) == run.proposal_id, col(FixChunk.seq) == seq, col(FixChunk.status) == "planned")
    if not ids:
        session.execute(update(FixChunk).where(*key).values(status="skipped", skipped=dict(skipped),
                                                            updated_at=send_at))
        session.commit()
        return "continue", "skipped", 0
    # Journal before the request: a crash from here on leaves "sending" -> uncertain on resume.
    claimed = session.execute(update(FixChunk).where(*key).values(
        status="sending", sent_ids=ids, skipped=dict(skipped), updated_at=send_at),
        execution_options={"synchronize_session": False})
    if rowcount(claimed) != 1:  # another executor took it
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
    rows = run.kind.ledger_rows(session, pixel_id=run.pixel_id, ids=ids, events=events, at=send_at)
    chunk.delivery_id = record_delivery(session, pixel_id=run.pixel_id, event_row_ids=rows,
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
    if not isinstance(exc, MetaUnreachableError) and run.kind.records_failed_requests:
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
    chunks = session.scalars(select(FixChunk).where(col(FixChunk.proposal_id) == proposal_id)).all()
    result = ExecutionResult(finished=not any(c.status in ("planned", "sending") for c in chunks))
    row = session.get(FixProposalRow, proposal_id)
    out_of_scope = fix_kind(row.kind).out_of_scope if row is not None else frozenset()
    reasons: Counter[str] = Counter()
    for entry in trail(session, proposal_id):
        if entry.action == "execution_started":
            reasons.update({k: v for k, v in entry.detail.get("skipped", {}).items() if k not in out_of_scope})
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
    query = select(FixChunk).where(col(FixChunk.proposal_id) == proposal_id, col(FixChunk.status) == "uncertain")
    if seqs is not None:
        query = query.where(col(FixChunk.seq).in_(list(seqs)))
    chunks = session.scalars(query).all()
    for chunk in chunks:
        chunk.status, chunk.sent_ids, chunk.updated_at = "planned", [], as_utc(at)
    if chunks:
        row.status = "executing"
        record(session, proposal_id=proposal_id, actor=actor, action="uncertain_released", at=at,
               detail={"seqs": sorted(chunk.seq for chunk in chunks)})
    session.commit()
    return sorted(chunk.seq for chunk in chunks)
