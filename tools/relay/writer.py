"""The relay's ledger writes, grouped: several requests' rows committed in one short transaction.

A relay request writes twice: its events as received (before forwarding) and Meta's answer (after).
Committing each write alone costs a commit and the rollup upserts of each request, and under load
the commits queue on the database's one writer (SQLite) or on the same rollup rows (Postgres).
``LedgerWriter`` owns one thread that takes every write waiting in its queue, applies them all in one
transaction (one ``store_events`` for all the requests' events, so each rollup row is upserted once
per group) and commits; only then does each caller get its result. So a sender hears back only
after its rows are durable, and no transaction is open while anyone waits on Meta.

A group costs a fixed number of statements, whatever its size: the events of all its records in
one ``store_events``, the senders of its requests in one ``observe`` per sender and hour, Meta's
answers in one ``record_deliveries`` (a read, two inserts and an update for all of them), and the
rollup increments of all of it in one ``apply_deltas`` at the end. Grouping has no timer: while one
group commits, the next one gathers; a lone request is written at once.

A write that fails (a bug, a constraint) must not take the others down: when a group fails,
each of its writes is retried alone, and only the failing one gets the exception.

``DirectWrites`` does the same writes one by one on the caller's thread (scripts, tests, ``forward``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy.orm import Session

from tools.ledger.deliveries import Attempt, record_deliveries
from tools.ledger.pixels import ensure_pixels, mark_relay_unconfigured
from tools.ledger.rollups import RollupDeltas, apply_deltas
from tools.ledger.store import DeliveryOutcome, IncomingEvent, PreparedEvent, prepare_events, store_events
from tools.relay.claims import set_uncertain
from tools.senders.fingerprint import EventShape, SenderInfo
from tools.senders.track import observe
from tools.timeutil import floor_hour

logger = logging.getLogger("capi_agent.relay")

# How many writes at most share one transaction (bounds the transaction's size and time).
MAX_GROUP = 64
# What becomes of freshly recorded events: in flight to Meta now, queued for forward_pending, or a
# delivery outcome recorded at once (a batch the relay rejected as Meta would).
AfterRecord = Literal["sending", "pending"] | DeliveryOutcome


@dataclass(frozen=True)
class RecordWrite:
    """Record one request's keepable events (user_data hashed by ``store_events``)."""

    pixel_id: str
    events: Sequence[dict[str, Any]]
    received_at: datetime
    default_country: str
    repair: bool
    after: AfterRecord
    unconfigured: bool = False  # accepted through the opt-in for unconfigured pixels: mark the pixel
    # Who sent the request (tools.senders), recorded in the same transaction; None: it named no software.
    sender: SenderNote | None = None
    # The events' rows, hashed by ``prepare_events`` on the request's thread (None: the writer does it).
    prepared: Sequence[PreparedEvent] | None = None


@dataclass(frozen=True)
class SenderNote:
    """The sender of one request and the shape of its events, worked out before the writer sees them."""

    info: SenderInfo
    shapes: Sequence[EventShape]


@dataclass(frozen=True)
class AnswerWrite:
    """Record Meta's answer to one forward (a ledger delivery, with its rollups), or, when no answer
    came in time, that Meta may have the events (``uncertain``: reported, never re-sent)."""

    pixel_id: str
    row_ids: Sequence[int]
    outcome: DeliveryOutcome | Literal["uncertain"]


Write = RecordWrite | AnswerWrite


class Writes(Protocol):
    def record(self, write: RecordWrite) -> list[int]:
        """Commit the events; their new ledger row ids (repeats of stored events leave none)."""
        ...

    def answer(self, write: AnswerWrite) -> None:
        """Commit Meta's answer."""
        ...


def apply_writes(session: Session, writes: Sequence[Write]) -> list[Any]:
    """Apply writes in one transaction (no commit); per write, its row ids (records) or None (answers).

    Records of the same country and mode share one ``store_events`` call, the requests of one sender
    and hour one ``observe``, all answers one ``record_deliveries``; the rollups of everything are
    written once, at the end."""
    results: list[Any] = [None] * len(writes)
    records = [(index, w) for index, w in enumerate(writes) if isinstance(w, RecordWrite)]
    for pixel_id, country in {(w.pixel_id, w.default_country) for _, w in records}:
        ensure_pixels(session, [pixel_id], default_country=country, now=min(
            w.received_at for _, w in records if w.pixel_id == pixel_id))
    for pixel_id in {w.pixel_id for _, w in records if w.unconfigured}:
        mark_relay_unconfigured(session, pixel_id)
    # Every write of the group adds to one set of rollup increments, written once at the end.
    deltas = RollupDeltas()
    groups: dict[tuple[str, bool], list[tuple[int, RecordWrite]]] = {}
    for index, w in records:
        groups.setdefault((w.default_country, w.repair), []).append((index, w))
    for (country, repair), members in groups.items():
        items: list[IncomingEvent] = []
        prepared: list[PreparedEvent] = []
        for _, w in members:
            mine = [IncomingEvent(pixel_id=w.pixel_id, received_at=w.received_at, event=event)
                    for event in w.events]
            items.extend(mine)
            rows = w.prepared if w.prepared is not None else prepare_events(
                mine, default_country=country, repair=repair)
            prepared.extend(_as_recorded(rows, w))
        stored = store_events(session, items, default_country=country, repair=repair,
                              deltas=deltas, prepared=prepared) if items else None
        offset = 0
        for index, w in members:
            ids = stored.event_row_ids[offset:offset + len(w.events)] if stored is not None else []
            offset += len(w.events)
            results[index] = [row_id for row_id in ids if row_id is not None]
    _observe_senders(session, [w for _, w in records])
    attempts = [Attempt(w.pixel_id, results[index], w.after) for index, w in records
                if isinstance(w.after, DeliveryOutcome) and results[index]]
    uncertain: list[int] = []
    for answer in writes:
        if not isinstance(answer, AnswerWrite) or not answer.row_ids:
            continue
        if isinstance(answer.outcome, DeliveryOutcome):
            attempts.append(Attempt(answer.pixel_id, answer.row_ids, answer.outcome))
        else:
            uncertain.extend(answer.row_ids)
    record_deliveries(session, attempts, deltas=deltas)
    if uncertain:
        set_uncertain(session, uncertain)
    apply_deltas(session, deltas)
    return results


def _as_recorded(prepared: Sequence[PreparedEvent], write: RecordWrite) -> list[PreparedEvent]:
    """The rows as they are inserted: in flight (``sending``, the journal entry made before the request
    leaves: rows a crash leaves so become ``uncertain``, never re-sent) or ``pending``; those of a
    batch refused at once stay unsent until their delivery is recorded. Copies: a group that fails is
    written again one by one from the same prepared rows."""
    if write.after == "sending":
        return [({**row, "delivery_status": "sending", "last_attempt_at": write.received_at}, raw)
                for row, raw in prepared]
    if write.after == "pending":
        return [({**row, "delivery_status": "pending"}, raw) for row, raw in prepared]
    return list(prepared)


def _observe_senders(session: Session, records: Sequence[RecordWrite]) -> None:
    """One ``observe`` per pixel, sender and hour of arrival for the group's requests, oldest first:
    the same counts and changes as one call per request (a change is dated by its first request)."""
    runs: dict[tuple[str, str, datetime], list[RecordWrite]] = {}
    for w in records:
        if w.sender is not None:
            runs.setdefault((w.pixel_id, w.sender.info.key(), floor_hour(w.received_at)), []).append(w)
    for (pixel_id, _key, _hour), run in sorted(runs.items(), key=lambda kv: (
            min(w.received_at for w in kv[1]), kv[0])):
        run.sort(key=lambda w: w.received_at)
        first = run[0].sender
        assert first is not None
        observe(session, pixel_id=pixel_id, info=first.info,
                shapes=[shape for w in run if w.sender is not None for shape in w.sender.shapes],
                at=run[0].received_at, last=run[-1].received_at, requests=len(run))


@dataclass
class DirectWrites:
    """Each write in its own transaction, on the caller's thread."""

    session_factory: Callable[[], Session]

    def _commit(self, write: Write) -> Any:
        with self.session_factory() as session:
            result = apply_writes(session, [write])[0]
            session.commit()
        return result

    def record(self, write: RecordWrite) -> list[int]:
        return list(self._commit(write))

    def answer(self, write: AnswerWrite) -> None:
        self._commit(write)


@dataclass
class _Job:
    write: Write
    future: Future[Any] = field(default_factory=Future)


class LedgerWriter:
    """Group commit over one writer thread (module docstring). Thread-safe; ``close`` to stop."""

    def __init__(self, session_factory: Callable[[], Session], *, max_group: int = MAX_GROUP) -> None:
        self._session_factory = session_factory
        self._max_group = max_group
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.groups = 0  # transactions committed (for tests and benchmarks: writes / groups)
        self.writes = 0
        self.busy_seconds = 0.0  # time spent writing (benchmarks: near the run's length = the bottleneck)

    def record(self, write: RecordWrite) -> list[int]:
        return list(self._submit(write))

    def answer(self, write: AnswerWrite) -> None:
        self._submit(write)

    def _submit(self, write: Write) -> Any:
        job = _Job(write)
        with self._lock:
            if self._closed:
                raise RuntimeError("the relay's ledger writer is closed")
            if self._thread is None:  # started on first use: nothing runs at import or construction
                self._thread = threading.Thread(target=self._run, name="relay-writer", daemon=True)
                self._thread.start()
            self._queue.put(job)
        return job.future.result()

    def close(self) -> None:
        """Write what is queued, then stop the thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._queue.put(None)
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            jobs = [first]
            while len(jobs) < self._max_group:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
            self._commit(jobs)

    def _commit(self, jobs: list[_Job]) -> None:
        began = time.perf_counter()
        try:
            with self._session_factory() as session:
                results = apply_writes(session, [job.write for job in jobs])
                session.commit()
        except Exception as exc:
            if len(jobs) > 1:  # find the write that fails; the others commit on their own
                logger.warning("relay: a group of %d writes failed (%s); writing them one by one", len(jobs),
                               type(exc).__name__)
                for job in jobs:
                    self._commit([job])
            else:
                jobs[0].future.set_exception(exc)
            return
        except BaseException as exc:  # the thread is going down: no caller may wait forever
            for job in jobs:
                job.future.set_exception(RuntimeError(f"the relay's ledger writer stopped ({type(exc).__name__})"))
            raise
        self.groups += 1
        self.writes += len(jobs)
        self.busy_seconds += time.perf_counter() - began
        for job, result in zip(jobs, results, strict=True):
            job.future.set_result(result)
