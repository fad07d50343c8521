"""The hourly audit loop: audits every due pixel-hour once, catching up the hours missed while the
service was down, and sharing the work safely between replicas on one database.

Each round: expire stale fix proposals, plan the due hours of every pixel (``tools.schedule.plan``),
start reading Meta's side of every pixel's next hour at once in the background
(``tools.audit.meta_side.start_prefetch``: bounded concurrency, Meta's usage headers honoured, a slow
or throttled pixel deferred), and audit them oldest first meanwhile, each audit waiting only for its
own pixel's read: the reads wait on Meta and the audits on the CPU, so they overlap.
An hour is audited only by the worker that wins its claim
(``tools.schedule.claims``), so replicas never audit the same pixel-hour twice. Within a pixel the
hours go in order, because incident triage compares each hour with the incidents left open by the one
before: when an hour fails, or another replica is busy with it, that pixel's later hours wait for a
later round (or for that replica) while the other pixels carry on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.orm import Session

from tools.audit.meta_side import (
    PREFETCH_READ_TIMEOUT,
    PREFETCH_WORKERS,
    MetaPrefetch,
    PrefetchRun,
    start_prefetch,
)
from tools.fixes.planner import expire_proposals
from tools.ledger.pixels import PixelConfig
from tools.schedule.claims import (
    DEFAULT_LEASE,
    DEFAULT_MAX_ATTEMPTS,
    claim,
    describe_error,
    finish,
    get_claim,
    is_held,
    last_done_by_pixel,
)
from tools.schedule.plan import DEFAULT_GRACE, DEFAULT_MAX_CATCH_UP, plan_hours
from tools.timeutil import as_utc, to_iso, utcnow

if TYPE_CHECKING:  # the scheduler runs whatever the factory opens: the agent, or a test's stand-in
    from agent.agent_services import AgentServices

logger = logging.getLogger(__name__)


ServicesFactory = Callable[[], AbstractContextManager["AgentServices"]]
OnAudit = Callable[[PixelConfig, dict[str, Any]], None]


@dataclass(frozen=True)
class RunRecord:
    """One pixel-hour this worker audited in a round, and how it ended."""

    pixel_id: str
    window_end: datetime
    status: Literal["done", "failed"]
    worker: str
    started_at: datetime
    finished_at: datetime
    error: str | None = None
    audit_id: int | None = None


@dataclass(frozen=True)
class SkippedHours:
    """Hours of a pixel too old to catch up (beyond ``max_catch_up``); reported once."""

    pixel_id: str
    first: datetime  # window end of the oldest skipped hour
    last: datetime
    count: int


def default_worker_id() -> str:
    """Unique per process, readable in the claims table: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Scheduler:
    """Runs the hourly audits of ``pixels()`` through the agent's services.

    ``services_factory`` is either the services themselves or a callable returning a context manager
    that yields them (opened once per round, e.g. to hold a checkpointer connection)."""

    def __init__(self, *, services_factory: ServicesFactory | AgentServices,
                 pixels: Callable[[], list[PixelConfig]] | None = None, worker_id: str | None = None,
                 clock: Callable[[], datetime] = utcnow, grace: timedelta = DEFAULT_GRACE,
                 max_catch_up: int = DEFAULT_MAX_CATCH_UP, on_audit: OnAudit | None = None,
                 lease: timedelta = DEFAULT_LEASE, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 prefetch_workers: int = PREFETCH_WORKERS,
                 read_timeout: float = PREFETCH_READ_TIMEOUT) -> None:
        self._services_source = services_factory
        self._pixels = pixels
        self.worker_id = worker_id or default_worker_id()
        self.clock = clock
        self.grace = grace
        self.max_catch_up = max_catch_up
        self.on_audit = on_audit
        self.lease = lease
        self.max_attempts = max_attempts
        self.prefetch_workers = prefetch_workers  # 0: each audit reads Meta itself, one after another
        self.read_timeout = read_timeout
        self.last_prefetch: MetaPrefetch | None = None
        self.skipped: deque[SkippedHours] = deque(maxlen=200)
        self._skips_reported: dict[str, datetime] = {}
        self._given_up: set[tuple[str, datetime]] = set()

    # --- the loop -------------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event, interval_seconds: float = 60) -> None:
        """Run rounds every ``interval_seconds`` until ``stop`` is set; a failing round (database
        down, ...) is logged and retried at the next interval. Stops between two audits."""
        logger.info("scheduler %s started", self.worker_id)
        while not stop.is_set():
            try:
                self._round(None, stop)
            except Exception as exc:  # keep the service alive; the next round retries
                logger.error("scheduler round failed: %s", describe_error(exc))
            stop.wait(interval_seconds)
        logger.info("scheduler %s stopped", self.worker_id)

    def run_once(self, now: datetime | None = None) -> list[RunRecord]:
        """One round at ``now`` (default: the clock): every due pixel-hour this worker manages to
        claim is audited at its window end, oldest first; returns what it audited, in order."""
        return self._round(now, None)

    # --- one round ------------------------------------------------------------------------------

    def _round(self, now: datetime | None, stop: threading.Event | None) -> list[RunRecord]:
        now = as_utc(now or self.clock())
        records: list[RunRecord] = []
        with self._open_services() as services:
            sessions = services.wiring.session
            self._expire_proposals(sessions, now)
            pixels = self._pixels() if self._pixels is not None else services.wiring.pixels()
            by_id = {pixel.id: pixel for pixel in pixels}
            with sessions() as session:
                last = last_done_by_pixel(session, list(by_id))
            queue: list[tuple[datetime, str]] = []
            for pixel_id in by_id:
                plan = plan_hours(last_done=last.get(pixel_id), now=now, grace=self.grace,
                                  max_catch_up=self.max_catch_up)
                if plan.skipped:
                    self._report_skipped(pixel_id, plan.skipped)
                queue.extend((end, pixel_id) for end in plan.due)
            queue.sort()  # oldest hour first, all pixels caught up together
            prefetch = self._prefetch(services, by_id, queue)
            waiting: set[str] = set()  # pixels whose next hour failed or is held elsewhere
            try:
                for window_end, pixel_id in queue:
                    if stop is not None and stop.is_set():
                        break
                    if pixel_id in waiting:
                        continue
                    if prefetch is not None:
                        prefetch.wait_for(pixel_id)  # its Meta read stored (or given up): audit it
                    record = self._audit_hour(services, by_id[pixel_id], window_end, now, waiting)
                    if record is not None:
                        records.append(record)
            finally:
                if prefetch is not None:
                    self._end_prefetch(prefetch)
        return records

    def _prefetch(self, services: AgentServices, by_id: dict[str, PixelConfig],
                  queue: list[tuple[datetime, str]]) -> PrefetchRun | None:
        """Start reading Meta's side of each pixel's first due hour, for all pixels at once, in the
        background (the audits then take it from the snapshots). Needs ``services.client_for``; a
        failure here only means the audits read Meta themselves."""
        client_for = getattr(services, "client_for", None)
        if self.prefetch_workers <= 0 or not callable(client_for) or not queue:
            return None
        first: dict[str, datetime] = {}
        for window_end, pixel_id in queue:
            first.setdefault(pixel_id, window_end)
        try:
            return start_prefetch(services.wiring.session, [(by_id[pid], end) for pid, end in first.items()],
                                  client_for=client_for, workers=self.prefetch_workers,
                                  read_timeout=self.read_timeout)
        except Exception as exc:
            logger.warning("reading Meta ahead of the round failed: %s", describe_error(exc))
            return None

    def _end_prefetch(self, run: PrefetchRun) -> None:
        """After the audits: wait for the reads still running (a stopped round), log what was
        deferred, and forget reads no audit took (the next round reads again)."""
        prefetch = run.join()
        if run.error is not None:
            logger.warning("reading Meta ahead of the round failed: %s", describe_error(run.error))
        if prefetch is None:
            return
        if prefetch.deferred:
            logger.warning("Meta reads of %d pixel(s) deferred to the next audit (throttled or slow): %s",
                           len(prefetch.deferred), ", ".join(prefetch.deferred[:10]))
        self.last_prefetch = prefetch
        prefetch.discard()

    def _audit_hour(self, services: AgentServices, pixel: PixelConfig, window_end: datetime,
                    now: datetime, waiting: set[str]) -> RunRecord | None:
        """Claim, audit and finish one pixel-hour; None when the hour was not ours to audit."""
        sessions = services.wiring.session
        with sessions() as session:
            won = claim(session, pixel_id=pixel.id, window_end=window_end, worker=self.worker_id,
                        now=now, lease=self.lease, max_attempts=self.max_attempts)
            if not won:
                row = get_claim(session, pixel_id=pixel.id, window_end=window_end)
                if row is not None and is_held(row, now=now):
                    waiting.add(pixel.id)  # its worker goes on with the later hours, in order
                elif row is not None and row.status == "failed" and self._first_give_up(row.pixel_id,
                                                                                         window_end):
                    logger.warning("giving up on pixel %s hour ending %s after %d failed attempts",
                                   pixel.id, to_iso(window_end), row.attempts)
                return None
        started = time.monotonic()
        try:
            state = services.audit_pixel(pixel, window_end)
        except BaseException as exc:
            error = describe_error(exc)
            finished_at = now + timedelta(seconds=time.monotonic() - started)
            with sessions() as session:
                finish(session, pixel_id=pixel.id, window_end=window_end, worker=self.worker_id,
                       now=finished_at, status="failed", error=error)
            if not isinstance(exc, Exception):  # interrupted: record it, then let it through
                raise
            logger.warning("audit of pixel %s hour ending %s failed: %s", pixel.id, to_iso(window_end),
                           error)
            waiting.add(pixel.id)  # retried next round, before that pixel's later hours
            return RunRecord(pixel_id=pixel.id, window_end=window_end, status="failed",
                             worker=self.worker_id, started_at=now, finished_at=finished_at, error=error)
        finished_at = now + timedelta(seconds=time.monotonic() - started)
        with sessions() as session:
            kept = finish(session, pixel_id=pixel.id, window_end=window_end, worker=self.worker_id,
                          now=finished_at, status="done")
        if not kept:
            logger.warning("claim on pixel %s hour ending %s was taken over before the audit ended "
                           "(lease %s too short?)", pixel.id, to_iso(window_end), self.lease)
        self._notify(pixel, state)
        audit_id = state.get("audit_id") if isinstance(state, dict) else None
        return RunRecord(pixel_id=pixel.id, window_end=window_end, status="done", worker=self.worker_id,
                         started_at=now, finished_at=finished_at,
                         audit_id=audit_id if isinstance(audit_id, int) else None)

    # --- helpers --------------------------------------------------------------------------------

    @contextmanager
    def _open_services(self) -> Iterator[AgentServices]:
        source = self._services_source
        # The services themselves are not callable; a factory is.
        manager: AbstractContextManager[AgentServices] = source() if callable(source) else nullcontext(source)
        with manager as services:
            yield services

    def _notify(self, pixel: PixelConfig, state: dict[str, Any]) -> None:
        if self.on_audit is None:
            return
        try:
            self.on_audit(pixel, state)
        except Exception as exc:  # a Slack outage must not undo or repeat the audit
            logger.warning("on_audit hook failed for pixel %s: %s", pixel.id, describe_error(exc))

    def _expire_proposals(self, sessions: Callable[[], Session], now: datetime) -> None:
        try:
            with sessions() as session:
                expired = expire_proposals(session, at=now)
        except Exception as exc:
            logger.warning("expiring fix proposals failed: %s", describe_error(exc))
            return
        if expired:
            logger.info("expired %d fix proposal(s)", len(expired))

    def _first_give_up(self, pixel_id: str, window_end: datetime) -> bool:
        """True the first time this process sees the hour's retries exhausted (log it once)."""
        key = (pixel_id, window_end)
        if key in self._given_up:
            return False
        if len(self._given_up) > 10_000:  # a long-lived process: old hours no longer come up
            self._given_up.clear()
        self._given_up.add(key)
        return True

    def _report_skipped(self, pixel_id: str, hours: list[datetime]) -> None:
        """Log hours beyond the catch-up limit, once per stretch of downtime."""
        reported = self._skips_reported.get(pixel_id)
        fresh = [hour for hour in hours if reported is None or hour > reported]
        if not fresh:
            return
        self._skips_reported[pixel_id] = fresh[-1]
        gap = SkippedHours(pixel_id=pixel_id, first=fresh[0], last=fresh[-1], count=len(fresh))
        self.skipped.append(gap)
        logger.warning("pixel %s: %d hour(s) ending %s .. %s are beyond the catch-up limit of %d hours "
                       "and will not be audited", pixel_id, gap.count, to_iso(gap.first),
                       to_iso(gap.last), self.max_catch_up)
