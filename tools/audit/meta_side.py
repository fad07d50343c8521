"""Reading Meta's side of a pixel for an audit, with a snapshot cache.

Pixel stats are stored as snapshots on every read. An audit only asks Meta for the hours it has not
seen yet plus the last day (Meta keeps revising recent buckets), and takes older hours from the
snapshots, so the number of Graph API calls per audit stays constant (and the snapshots are folded as
they are stored, so reading them back stays flat too: tools/ledger/snapshots.py). When a read fails, the
failure is reported and that side is left out (None) rather than replaced with stale or empty data,
which would look like an outage to the checks.

A round of many pixels reads Meta first, for all of them at once (``prefetch_meta_sides``: bounded
concurrency, one pooled HTTP client, a ``UsageGovernor`` on Meta's usage headers, a deadline per
pixel), stores the snapshots, and leaves each pixel's outcome for its audit: ``read_meta_side`` then
takes the stored snapshots (or the read's failure, a finding as ever) instead of calling Meta. A pixel
that is slow or throttled is deferred to the next audit; it never holds up the others.
``start_prefetch`` runs that read in a background thread, so a round's audits begin as soon as their
own pixel's read is stored (``PrefetchRun.wait_for``) and the round takes about the longer of the reads
and the audits rather than their sum.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.checks.types import MetaHourlyCount, MetaReadError, QualitySnapshot, Source
from tools.ledger.models import MetaSnapshot
from tools.ledger.pixels import PixelConfig
from tools.ledger.snapshots import load_meta_counts, save_meta_counts, save_quality_snapshot
from tools.meta.client import MAX_STATS_WINDOW, GraphClient, pooled_http
from tools.meta.errors import MetaApiError, MetaUnreachableError
from tools.meta.usage import BudgetExhausted, UsageGovernor
from tools.timeutil import DAY, as_utc, audit_window

# Meta revises recent hourly buckets as late events arrive; re-read this much every audit.
REFRESH_SPAN = DAY


@dataclass(frozen=True)
class MetaSide:
    counts: tuple[MetaHourlyCount, ...] | None
    quality: QualitySnapshot | None
    errors: tuple[MetaReadError, ...]


def _no_token() -> MetaReadError:
    return MetaReadError(endpoint="stats", kind="unreachable",
                         message="no Meta access token configured for this pixel")


def read_error(endpoint: Literal["stats", "dataset_quality"], exc: Exception) -> MetaReadError:
    """A read failure as the checks see it; the message is Meta's (never contains the token)."""
    if isinstance(exc, MetaApiError):
        return MetaReadError(endpoint=endpoint, kind=exc.read_error_kind,
                             message=str(exc)[:300], code=exc.code, subcode=exc.subcode)
    return MetaReadError(endpoint=endpoint, kind="other", message=type(exc).__name__)


def _fetch_start(session: Session, *, pixel_id: str, history_start: datetime,
                 window_end: datetime) -> datetime:
    """The first hour that must be read from Meta: everything after what the snapshots already cover."""
    covered_from = session.scalar(select(func.min(col(MetaSnapshot.window_start))).where(
        col(MetaSnapshot.pixel_id) == pixel_id, col(MetaSnapshot.kind) == "stats"))
    covered_to = session.scalar(select(func.max(col(MetaSnapshot.window_end))).where(
        col(MetaSnapshot.pixel_id) == pixel_id, col(MetaSnapshot.kind) == "stats"))
    if covered_from is None or covered_to is None or as_utc(covered_from) > history_start:
        return history_start
    return max(history_start, min(as_utc(covered_to), window_end) - REFRESH_SPAN)


def read_meta_side(session: Session, client: GraphClient | None, *, pixel_id: str, history_start: datetime,
                   window_end: datetime, at: datetime) -> MetaSide:
    """Read stats (browser and server) and dataset quality, store them as snapshots, and return the
    full history window. ``client`` None means Meta is not configured: an "unreachable" error."""
    prefetched = _take_prefetched(session, pixel_id, at)
    if prefetched is not None:  # this round already read Meta for the pixel (or deferred it)
        counts_kept = (load_meta_counts(session, pixel_id=pixel_id, start=history_start, end=window_end)
                       if prefetched.stats_ok else None)
        return MetaSide(counts=counts_kept, quality=prefetched.quality, errors=prefetched.errors)
    if client is None:
        return MetaSide(counts=None, quality=None, errors=(_no_token(),))
    errors: list[MetaReadError] = []
    counts: tuple[MetaHourlyCount, ...] | None = None
    fetch_start = _fetch_start(session, pixel_id=pixel_id, history_start=history_start, window_end=window_end)
    fresh: list[MetaHourlyCount] | None = None
    stats_error: MetaReadError | None = None
    try:
        fresh = [*client.pixel_stats(pixel_id, start=fetch_start, end=window_end, source="browser"),
                 *client.pixel_stats(pixel_id, start=fetch_start, end=window_end, source="server")]
    except Exception as exc:
        stats_error = read_error("stats", exc)
    quality: QualitySnapshot | None = None
    quality_error: MetaReadError | None = None
    try:
        quality = client.dataset_quality(pixel_id, fetched_at=at)
    except Exception as exc:
        quality_error = read_error("dataset_quality", exc)
    # Stored once both calls are back: storing the stats folds the pixel's snapshots under a lock
    # (tools/ledger/snapshots.py) held until this transaction ends, not across a call to Meta.
    if fresh is not None:
        try:
            save_meta_counts(session, pixel_id=pixel_id, counts=fresh, fetched_at=at,
                             window_start=fetch_start, window_end=window_end, history_start=history_start)
            counts = load_meta_counts(session, pixel_id=pixel_id, start=history_start, end=window_end)
        except Exception as exc:
            stats_error = read_error("stats", exc)
    if quality is not None:
        try:
            save_quality_snapshot(session, pixel_id=pixel_id, snapshot=quality)
        except Exception as exc:
            quality_error = read_error("dataset_quality", exc)
    errors += [e for e in (stats_error, quality_error) if e is not None]
    return MetaSide(counts=counts, quality=quality, errors=tuple(errors))


def quality_history_start(window_end: datetime) -> datetime:
    """Dataset-quality snapshots kept for comparisons: a little over a week back."""
    return window_end - timedelta(days=8)


# ---------------------------------------------------------------------------------------- prefetch

PREFETCH_WORKERS = 24
PREFETCH_READ_TIMEOUT = 20.0  # seconds a pixel's reads may take once started, then it is deferred
PREFETCH_PAGE_SIZE = 200  # hourly buckets per page: a whole 7-day window in one call


@dataclass(frozen=True)
class PrefetchedRead:
    """One pixel's Meta side as the round's prefetch left it for the audit."""

    stats_ok: bool
    quality: QualitySnapshot | None
    errors: tuple[MetaReadError, ...]
    deferred: bool = False  # throttled or too slow: read again by the next audit
    calls: int = 0
    seconds: float = 0.0


@dataclass
class MetaPrefetch:
    """What a prefetch did; ``discard()`` (or leaving the ``with`` block) forgets reads no audit took."""

    reads: dict[str, PrefetchedRead] = field(default_factory=dict)
    seconds: float = 0.0
    governor: dict[str, object] = field(default_factory=dict)
    _keys: list[tuple[str, str, datetime]] = field(default_factory=list, repr=False)

    @property
    def deferred(self) -> list[str]:
        return [pixel_id for pixel_id, read in self.reads.items() if read.deferred]

    def discard(self) -> None:
        with _LOCK:
            for key in self._keys:
                _PREFETCHED.pop(key, None)
        self._keys.clear()

    def __enter__(self) -> MetaPrefetch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()


# (database, pixel, audit time) -> the read; taken (once) by that audit's read_meta_side.
_PREFETCHED: dict[tuple[str, str, datetime], PrefetchedRead] = {}
_LOCK = threading.Lock()


def _db_key(session: Session) -> str:
    bind = session.get_bind()
    return str(getattr(bind, "url", id(bind)))


def _take_prefetched(session: Session, pixel_id: str, at: datetime) -> PrefetchedRead | None:
    if not _PREFETCHED:
        return None
    with _LOCK:
        return _PREFETCHED.pop((_db_key(session), pixel_id, as_utc(at)), None)


# One read of a pixel's prefetch: the dataset quality, or one window of stats from one source.
_Part = Literal["quality"] | Source
_PartResult = QualitySnapshot | list[MetaHourlyCount]


@dataclass
class _PixelRead:
    pixel: PixelConfig
    at: datetime
    fetch_start: datetime
    window_end: datetime
    parts: int = 0
    counts: list[MetaHourlyCount] = field(default_factory=list)
    stats_error: MetaReadError | None = None
    quality: QualitySnapshot | None = None
    quality_error: MetaReadError | None = None
    deferred: bool = False
    defer_reason: MetaApiError | None = None
    started: float | None = None
    finished: float | None = None
    done: bool = False


def _coverage(session: Session, pixel_ids: list[str]) -> dict[str, tuple[datetime, datetime]]:
    """Per pixel, the span its stats snapshots cover (one grouped query for the whole round)."""
    rows = session.execute(select(col(MetaSnapshot.pixel_id), func.min(col(MetaSnapshot.window_start)),
                                  func.max(col(MetaSnapshot.window_end)))
                           .where(col(MetaSnapshot.kind) == "stats", col(MetaSnapshot.pixel_id).in_(pixel_ids))
                           .group_by(col(MetaSnapshot.pixel_id)))
    return {pid: (as_utc(lo), as_utc(hi)) for pid, lo, hi in rows if lo is not None and hi is not None}


def _fetch_start_from(cover: tuple[datetime, datetime] | None, history_start: datetime,
                      window_end: datetime) -> datetime:
    if cover is None or cover[0] > history_start:
        return history_start
    return max(history_start, min(cover[1], window_end) - REFRESH_SPAN)


def prefetch_meta_sides(
    session_factory: Callable[[], Session], targets: Sequence[tuple[PixelConfig, datetime]], *,
    client_for: Callable[[PixelConfig], GraphClient | None], workers: int = PREFETCH_WORKERS,
    read_timeout: float = PREFETCH_READ_TIMEOUT, governor: UsageGovernor | None = None,
    clock: Callable[[], float] = time.monotonic, on_ready: Callable[[str], None] | None = None,
) -> MetaPrefetch:
    """Read Meta's side of every (pixel, audit time) at once, store the snapshots, and leave each
    outcome for that pixel's audit (``read_meta_side``) in this process.

    At most ``workers`` Graph API calls are in flight (fewer when the governor sees usage near Meta's
    limit); every part of a pixel's read (each source, each 7-day window, dataset quality) is its own
    call. A pixel whose reads started more than ``read_timeout`` seconds ago, or whose budget Meta
    throttled for longer than the governor waits, is deferred: its audit reports the failed read
    (as any failed read) and the next audit reads again. Snapshots are written by the calling thread
    only (one writer among the reads). ``on_ready(pixel_id)`` is called, in that thread, once a
    pixel's outcome is stored and left for its audit."""
    began = clock()
    prefetch = MetaPrefetch()
    if not targets:
        return prefetch
    governor = governor or UsageGovernor(max_in_flight=workers)
    with session_factory() as session:
        cover = _coverage(session, sorted({pixel.id for pixel, _ in targets}))
        db = _db_key(session)
    reads: dict[str, _PixelRead] = {}
    clients: list[GraphClient] = []
    http = pooled_http(max_connections=workers, timeout=read_timeout)
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="meta-prefetch")
    pending: dict[Future[_PartResult], tuple[_PixelRead, _Part, datetime | None, datetime | None]] = {}
    finished: queue.SimpleQueue[Future[_PartResult]] = queue.SimpleQueue()  # completions, in the order they happen
    lock = threading.Lock()

    def run(read: _PixelRead, client: GraphClient, kind: _Part, start: datetime | None,
            end: datetime | None) -> _PartResult:
        with lock:
            if read.started is None:
                read.started = clock()
        if read.deferred:  # another part was throttled or timed out: spend nothing more on it now
            raise read.defer_reason or BudgetExhausted("read deferred: Meta throttled this pixel's budget",
                                                       code=4)
        try:
            if kind == "quality":
                return client.dataset_quality(read.pixel.id, fetched_at=read.at)
            assert start is not None and end is not None
            return client.pixel_stats(read.pixel.id, start=start, end=end, source=kind,
                                      page_size=PREFETCH_PAGE_SIZE)
        except MetaUnreachableError as exc:  # no answer within the deadline: the pixel's other parts stop
            late = MetaUnreachableError(f"no answer from Meta within {read_timeout:g} s ({exc.message}); "
                                        "read deferred to the next audit")
            read.defer_reason, read.deferred = read.defer_reason or late, True
            raise late from None

    try:
        for pixel, at in targets:
            window_end = audit_window(at)[1]
            history_start = window_end - timedelta(weeks=pixel.thresholds.baseline_weeks)
            read = _PixelRead(pixel=pixel, at=as_utc(at), window_end=window_end,
                              fetch_start=_fetch_start_from(cover.get(pixel.id), history_start, window_end))
            reads[pixel.id] = read
            client = client_for(pixel)
            if client is None:
                read.stats_error, read.done = _no_token(), True
                continue
            # Each call is cut at the pixel's deadline and not retried here: a slow pixel frees its
            # workers for the others. (A read that failed otherwise is read again by its audit.)
            clients.append(client.use_http(http, timeout=read_timeout, max_retries=0).use_governor(governor))
            parts: list[tuple[_Part, datetime | None, datetime | None]] = [("quality", None, None)]
            start = read.fetch_start
            while start < window_end:
                stop = min(start + MAX_STATS_WINDOW, window_end)
                parts += [("browser", start, stop), ("server", start, stop)]
                start = stop
            read.parts = len(parts)
            for kind, lo, hi in parts:
                future = executor.submit(run, read, client, kind, lo, hi)
                pending[future] = (read, kind, lo, hi)
                future.add_done_callback(finished.put)
        remaining = {pid: read.parts for pid, read in reads.items()}
        last_sweep = clock()
        with session_factory() as session:
            for read in reads.values():
                if read.done:
                    _finish(session, read, prefetch, db, on_ready)
            open_reads = sum(1 for read in reads.values() if not read.done)
            while pending and open_reads > 0:
                done = _drain(finished, timeout=0.05)
                for future in done:
                    read, kind, _lo, _hi = pending.pop(future)
                    remaining[read.pixel.id] -= 1
                    if read.done:
                        continue
                    _collect(read, kind, future)
                    if remaining[read.pixel.id] == 0:
                        read.finished = clock()
                        _finish(session, read, prefetch, db, on_ready)
                        open_reads -= 1
                now = clock()
                if now - last_sweep < 0.2:
                    continue
                last_sweep = now
                for read in reads.values():
                    if not read.done and read.started is not None and now - read.started > read_timeout:
                        read.deferred = True
                        late = MetaReadError(endpoint="stats", kind="unreachable", message=(
                            f"no answer from Meta within {read_timeout:g} s; read deferred to the next audit"))
                        read.stats_error = read.stats_error or late
                        if read.quality is None:
                            read.quality_error = read.quality_error or MetaReadError(
                                endpoint="dataset_quality", kind="unreachable", message=late.message)
                        read.finished = now
                        _finish(session, read, prefetch, db, on_ready)
                        open_reads -= 1
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        for client in clients:
            client.close()
        if not any(f.running() for f in pending):
            http.close()  # else left to the garbage collector: a deferred read may still be on it
    prefetch.seconds = clock() - began
    prefetch.governor = governor.stats()
    return prefetch


def _drain(finished: queue.SimpleQueue[Future[_PartResult]], *, timeout: float) -> list[Future[_PartResult]]:
    """The futures completed since the last call (waits up to ``timeout`` for the first one)."""
    try:
        done = [finished.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            done.append(finished.get_nowait())
        except queue.Empty:
            return done


def _collect(read: _PixelRead, kind: _Part, future: Future[_PartResult]) -> None:
    try:
        result = future.result()
    except Exception as exc:
        error = read_error("dataset_quality" if kind == "quality" else "stats", exc)
        if error.kind == "rate_limited":
            read.deferred = True  # the governor closed the budget; the next audit reads again
        if kind == "quality":
            read.quality_error = error
        elif read.stats_error is None:
            read.stats_error = error
        return
    if isinstance(result, QualitySnapshot):  # the "quality" part
        read.quality = result
    elif result:
        read.counts.extend(result)


def _finish(session: Session, read: _PixelRead, prefetch: MetaPrefetch, db: str,
            on_ready: Callable[[str], None] | None = None) -> None:
    """Store what was read (the caller's thread: one writer) and leave the outcome for the audit."""
    try:
        _store(session, read, prefetch, db)
    finally:
        # Stored (or given up): the audit takes the counts from the snapshots. Kept, every pixel's
        # counts would add up until the last read ends (about 100 kB a pixel).
        read.counts = []
        if on_ready is not None:
            on_ready(read.pixel.id)


def _store(session: Session, read: _PixelRead, prefetch: MetaPrefetch, db: str) -> None:
    read.done = True
    stats_ok = read.stats_error is None
    errors = tuple(e for e in (read.stats_error, read.quality_error) if e is not None)
    try:
        if stats_ok:
            save_meta_counts(session, pixel_id=read.pixel.id, counts=sorted(
                read.counts, key=lambda c: (c.hour, c.event_name, c.source)), fetched_at=read.at,
                window_start=read.fetch_start, window_end=read.window_end,
                history_start=read.window_end - timedelta(weeks=read.pixel.thresholds.baseline_weeks))
        if read.quality is not None:
            save_quality_snapshot(session, pixel_id=read.pixel.id, snapshot=read.quality)
        session.commit()
    except Exception:
        session.rollback()
        return  # nothing left for the audit: it reads Meta itself, as without a prefetch
    seconds = (read.finished or 0.0) - (read.started or read.finished or 0.0)
    outcome = PrefetchedRead(stats_ok=stats_ok, quality=read.quality, errors=errors, deferred=read.deferred,
                             calls=read.parts, seconds=max(0.0, seconds))
    prefetch.reads[read.pixel.id] = outcome
    if errors and not read.deferred:
        # A blip (5xx, a dropped connection) or a token error: the audit reads again with the
        # client's own retries, as without a prefetch, rather than report a one-off failure.
        return
    key = (db, read.pixel.id, read.at)
    with _LOCK:
        _PREFETCHED[key] = outcome
    prefetch._keys.append(key)


# ------------------------------------------------------------------------------ prefetch, pipelined

class PrefetchRun:
    """``prefetch_meta_sides`` running in a background thread while the round's audits go on.

    The reads wait on Meta (100-300 ms a call) and the audits on the CPU, so running them side by
    side makes a round last about the longer of the two instead of their sum. ``wait_for(pixel)``
    returns once that pixel's read is stored and left for its audit (or the prefetch has ended: an
    audit whose read is not there reads Meta itself, as without a prefetch)."""

    def __init__(self, pixel_ids: Sequence[str]) -> None:
        self._ready = {pixel_id: threading.Event() for pixel_id in pixel_ids}
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None
        self.result: MetaPrefetch | None = None
        self.error: BaseException | None = None
        self.began = time.monotonic()
        self.ended_at: float | None = None

    def _mark_ready(self, pixel_id: str) -> None:
        event = self._ready.get(pixel_id)
        if event is not None:
            event.set()

    def _run(self, call: Callable[[Callable[[str], None]], MetaPrefetch]) -> None:
        try:
            self.result = call(self._mark_ready)
        except BaseException as exc:  # reported by join(); the audits read Meta themselves
            self.error = exc
        finally:
            self.ended_at = time.monotonic()
            self._ended.set()
            for event in self._ready.values():  # nobody waits for a read that will not come
                event.set()

    def wait_for(self, pixel_id: str, timeout: float | None = None) -> bool:
        """Block until the pixel's read is ready or the prefetch ended; False on ``timeout``."""
        event = self._ready.get(pixel_id)
        if event is None:
            return True
        return event.wait(timeout)

    @property
    def done(self) -> bool:
        return self._ended.is_set()

    @property
    def seconds(self) -> float:
        """How long the reads took (so far, while they run)."""
        return (self.ended_at if self.ended_at is not None else time.monotonic()) - self.began

    def join(self, timeout: float | None = None) -> MetaPrefetch | None:
        """Wait for the reads to end; their outcome (None if the prefetch itself failed)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result


def start_prefetch(
    session_factory: Callable[[], Session], targets: Sequence[tuple[PixelConfig, datetime]], *,
    client_for: Callable[[PixelConfig], GraphClient | None], workers: int = PREFETCH_WORKERS,
    read_timeout: float = PREFETCH_READ_TIMEOUT, governor: UsageGovernor | None = None,
) -> PrefetchRun:
    """Start ``prefetch_meta_sides`` for ``targets`` in a background thread and return at once.

    The snapshots are written by that thread while the audits write theirs: on SQLite the writers
    take turns (WAL, ``busy_timeout``), each holding the lock for one short transaction. Call
    ``join()`` then ``result.discard()`` once the round's audits are done."""
    run = PrefetchRun([pixel.id for pixel, _ in targets])

    def call(on_ready: Callable[[str], None]) -> MetaPrefetch:
        return prefetch_meta_sides(session_factory, targets, client_for=client_for, workers=workers,
                                   read_timeout=read_timeout, governor=governor, on_ready=on_ready)

    run._thread = threading.Thread(target=run._run, args=(call,), name="meta-prefetch-round", daemon=True)
    run._thread.start()
    return run
