"""Import of events and orders from JSONL files (docs/design.md §3.1), in batches.

A bad line (not JSON, not an object, a missing or mistyped field) is reported with its line number
and a reason, and skipped; the rest loads. Reasons name the field, never its value (it may be PII).

Events load in batches of ``batch_size`` lines, each stored by ``store.store_events`` (so a batch's
rows, deliveries and rollups are exactly those of any other write path), in bounded memory. The bulk
import (the default) commits every ``commit_every`` events instead of every batch, and marks its
session so that Postgres receives rows through COPY (``bulk.bulk_session``); SQLite already takes
them through the driver's executemany. An interrupted import loses at most its open transaction,
whose rows and rollups go together, and can simply be run again: what is already stored is
recognised by content hash and not added twice.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.ledger.bulk import bulk_session, chunked
from tools.ledger.models import Event, Order, table_of
from tools.ledger.pixels import ensure_pixels
from tools.ledger.rollups import RollupDeltas, apply_deltas, dialect_insert
from tools.ledger.store import DeliveryOutcome, IncomingEvent, PreparedEvent, prepare_events, store_events
from tools.senders.envelope import with_sender
from tools.senders.track import record_import_senders
from tools.timeutil import as_utc, parse_iso, utcnow

T = TypeVar("T")

_fast_loads: Callable[[str | bytes], Any]
try:  # a dependency of langgraph; optional here
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover
    _fast_loads = json.loads

logger = logging.getLogger(__name__)
BATCH_SIZE = 5000
# Unix seconds stay below this until the year 5138; a larger event_time is in milliseconds.
MAX_UNIX_SECONDS = 10**11
# Events per transaction of a bulk import: a commit (and SQLite's WAL checkpoint after it) per 5000
# events cost about a tenth of the import; 50k events hold SQLite's write lock for a few seconds at
# most, under the relay's busy timeout (10 s).
COMMIT_EVERY = 50_000
# Batches parsed and prepared ahead of the one being stored (see ``_read_ahead``).
READ_AHEAD_BATCHES = 2
DELIVERY_STATUSES = ("delivered", "failed", "pending")


class LineError(ValueError):
    """A line that cannot be loaded; the message is safe to print (no values)."""


@dataclass
class IngestReport:
    lines: int = 0
    loaded: int = 0
    duplicates: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    pixels: set[str] = field(default_factory=set)
    # Field -> events in which it arrived as raw PII (normalized and hashed before storage).
    raw_pii_hashed: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class IngestProgress:
    """Where an import stands, after each batch (for a progress display)."""

    lines: int
    loaded: int
    duplicates: int
    skipped: int
    position: int  # characters of the file read so far
    size: int  # the file's size in bytes (characters and bytes differ only with non-ASCII text)
    elapsed: float  # seconds since the import began

    @property
    def fraction(self) -> float:
        return min(1.0, self.position / self.size) if self.size else 1.0

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the rate so far; None before there is a rate."""
        if self.elapsed <= 0 or self.position <= 0:
            return None
        return max(0.0, self.elapsed * (self.size - self.position) / self.position)


ProgressCallback = Callable[[IngestProgress], None]


def _int(value: Any, name: str, *, required: bool = False) -> int | None:
    if value.__class__ is int:  # the common case first (bool is a subclass, so it is not this)
        return value
    if value is None:
        if required:
            raise LineError(f"missing {name}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise LineError(f"{name} must be an integer")
    return int(value)


def _time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise LineError(f"{name} must be an ISO-8601 string")
    try:  # the common, exact form first ('Z' is accepted since Python 3.11); parse_iso is lenient
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            return parse_iso(value)
        except ValueError:
            raise LineError(f"{name} is not an ISO-8601 timestamp") from None
    return parsed if parsed.tzinfo is UTC else as_utc(parsed)


def _pixel_id(value: Any) -> str:
    if value is None or value == "":
        raise LineError("missing pixel_id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise LineError("pixel_id must be a string")
    return str(value)


def _object(text: str) -> dict[str, Any]:
    try:
        obj = _fast_loads(text)
    except ValueError:
        # Parse again with the standard library for a precise, value-free reason.
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LineError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise LineError("line is not a JSON object")
    return obj


def parse_delivery(value: Any) -> DeliveryOutcome | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise LineError("delivery must be an object")
    status = value.get("status")
    if status not in DELIVERY_STATUSES:
        raise LineError("delivery.status must be delivered, failed or pending")
    attempted_raw = value.get("attempted_at")
    if attempted_raw is None and status != "pending":
        raise LineError("missing delivery.attempted_at")
    trace = value.get("fbtrace_id")
    if trace is not None and not isinstance(trace, str):
        raise LineError("delivery.fbtrace_id must be a string")
    attempts = _int(value.get("attempts"), "delivery.attempts")
    if attempts is not None and attempts < 1:
        raise LineError("delivery.attempts must be at least 1")
    retries = value.get("retries") or []
    if not isinstance(retries, list) or not all(isinstance(r, dict) for r in retries):
        raise LineError("delivery.retries must be a list of objects")
    earlier = tuple(DeliveryOutcome(
        status="failed", attempted_at=_time(r.get("attempted_at"), "delivery.retries.attempted_at"),
        http_status=_int(r.get("http_status"), "delivery.retries.http_status"),
        error_code=_int(r.get("error_code"), "delivery.retries.error_code"),
        error_subcode=_int(r.get("error_subcode"), "delivery.retries.error_subcode"),
        events_received=0, attempts=number + 1) for number, r in enumerate(retries))
    if earlier and attempts is None:
        attempts = len(earlier) + 1
    return DeliveryOutcome(
        status=status,
        attempted_at=None if attempted_raw is None else _time(attempted_raw, "delivery.attempted_at"),
        http_status=_int(value.get("http_status"), "delivery.http_status"),
        error_code=_int(value.get("error_code"), "delivery.error_code"),
        error_subcode=_int(value.get("error_subcode"), "delivery.error_subcode"),
        fbtrace_id=trace,
        events_received=_int(value.get("events_received"), "delivery.events_received"),
        attempts=attempts or 1,
        earlier=earlier,
    )


# The last delivery object parsed, keyed by its fields with their types (1, 1.0 and True are equal
# in Python, not to the parser). Lines of one request carry the same object one after another, so
# one entry spares most of the parsing; a bad object raises before it is remembered.
_last_delivery: tuple[tuple[Any, ...], DeliveryOutcome | None] | None = None


def _delivery(value: Any) -> DeliveryOutcome | None:
    global _last_delivery
    if value.__class__ is not dict or "retries" in value:
        return parse_delivery(value)
    key = tuple((name, item.__class__, item) for name, item in value.items())
    last = _last_delivery  # one read: another thread may replace it meanwhile
    if last is not None and last[0] == key:
        return last[1]
    outcome = parse_delivery(value)
    _last_delivery = (key, outcome)
    return outcome


def parse_event_line(text: str, *, now: datetime) -> IncomingEvent:
    """One JSONL line -> an incoming event; raises LineError with a printable reason."""
    obj = _object(text)
    pixel_id = _pixel_id(obj.get("pixel_id"))
    received_at = now if obj.get("received_at") is None else _time(obj["received_at"], "received_at")
    event = obj.get("event")
    if not isinstance(event, dict):
        raise LineError("missing event object" if event is None else "event must be an object")
    name = event.get("event_name")
    if not isinstance(name, str) or not name.strip():
        raise LineError("missing event.event_name" if name is None else "event.event_name must be a string")
    event_time = _int(event.get("event_time"), "event.event_time", required=True)
    if event_time is not None and not -MAX_UNIX_SECONDS < event_time < MAX_UNIX_SECONDS:
        # Milliseconds (or worse): no date to store it under, and Meta would refuse it anyway.
        raise LineError("event.event_time looks like milliseconds; Meta wants unix seconds")
    for key in ("user_data", "custom_data"):
        if event.get(key) is not None and not isinstance(event[key], dict):
            raise LineError(f"event.{key} must be an object")
    event_id = event.get("event_id")
    if event_id is not None and (isinstance(event_id, bool) or not isinstance(event_id, str | int)):
        raise LineError("event.event_id must be a string")
    return with_sender(IncomingEvent(pixel_id=pixel_id, received_at=received_at, event=event,
                                     delivery=_delivery(obj.get("delivery"))), obj.get("sender"), error=LineError)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line_no, text in enumerate(handle, start=1):
            if text.strip():
                yield line_no, text


@contextmanager
def _cyclic_gc_per_batch() -> Iterator[None]:
    """Automatic cyclic GC off while a file loads (the caller collects young objects per batch).

    A batch allocates a great many short-lived, acyclic objects that reference counting frees; the
    automatic collector would walk them, and every older object, again and again (about a third of
    the import time). Process-wide while it lasts, so it is only used around a whole import.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _sessions(session_or_engine: Session | Engine) -> tuple[Session, bool]:
    if isinstance(session_or_engine, Session):
        return session_or_engine, False
    return Session(session_or_engine, expire_on_commit=False), True


def _load_batches(path: Path | str, parse: Callable[[str], T], flush: Callable[[list[T]], None],
                  report: IngestReport, batch_size: int,
                  progress: Callable[[int], None] | None = None) -> None:
    """Parse each line; report a bad one by number and go on; hand ``flush`` full batches, then the rest.

    ``progress`` gets the characters read so far after each flush.
    """
    batch: list[T] = []
    position = 0
    for line_no, text in _lines(Path(path)):
        report.lines += 1
        position += len(text)
        try:
            batch.append(parse(text))
        except LineError as exc:
            report.skipped.append((line_no, str(exc)))
            continue
        if len(batch) >= batch_size:
            flush(batch)
            batch = []
            if progress is not None:
                progress(position)
    if batch:
        flush(batch)
    if progress is not None:
        progress(position)


@dataclass
class _ReadBatch:
    """Lines of the file made ready for ``store_events``: parsed, their rows prepared."""

    items: list[IncomingEvent]
    prepared: list[PreparedEvent]
    lines: int  # lines read since the previous batch, the skipped ones included
    skipped: list[tuple[int, str]]
    position: int  # characters of the file read up to the end of this batch
    full: bool  # False only for the last batch (which may then be empty)


def _read_batches(path: Path | str, parse: Callable[[str], IncomingEvent],
                  prepare: Callable[[list[IncomingEvent]], list[PreparedEvent]],
                  batch_size: int) -> Iterator[_ReadBatch]:
    """The file in batches of ``batch_size`` parsed lines, a bad line reported by number and skipped."""
    items: list[IncomingEvent] = []
    skipped: list[tuple[int, str]] = []
    lines = position = 0
    for line_no, text in _lines(Path(path)):
        lines += 1
        position += len(text)
        try:
            items.append(parse(text))
        except LineError as exc:
            skipped.append((line_no, str(exc)))
            continue
        if len(items) >= batch_size:
            yield _ReadBatch(items, prepare(items), lines, skipped, position, full=True)
            items, skipped, lines = [], [], 0
    yield _ReadBatch(items, prepare(items), lines, skipped, position, full=False)


_DONE = object()


def _read_ahead(batches: Iterator[_ReadBatch], depth: int | None = None) -> Generator[_ReadBatch, None, None]:
    """``batches``, produced by a thread up to ``depth`` batches ahead of the consumer.

    Parsing and preparing a batch is pure Python; storing it mostly waits for the database (the
    Postgres server's COPY, index and rollup work; SQLite's own C code, which runs without the GIL).
    The thread fills that wait, so the import's Python and the database's work overlap on two cores
    instead of taking turns. The same batches come out in the same order, so the ledger is the same.
    An exception of the thread is raised here, after the batches before it. ``depth`` 0: no thread.
    """
    depth = READ_AHEAD_BATCHES if depth is None else depth
    if depth <= 0:
        yield from batches
        return
    out: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                out.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=produce, name="ingest-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            value = out.get()
            if value is _DONE:
                return
            if isinstance(value, BaseException):
                raise value
            assert isinstance(value, _ReadBatch)
            yield value
    finally:
        # The consumer stopped (done, failed or interrupted): let the thread end, not read on.
        stop.set()
        thread.join()


def ingest_events_jsonl(*, session_or_engine: Session | Engine, path: Path | str,
                        default_country: str = "US", now: datetime | None = None,
                        batch_size: int = BATCH_SIZE, bulk: bool = True,
                        commit_every: int = COMMIT_EVERY,
                        progress: ProgressCallback | None = None) -> IngestReport:
    """Load server events (one JSON object a line) into the ledger.

    ``bulk`` (default): COPY on Postgres and a commit every ``commit_every`` events (rounded up to
    whole batches); otherwise the ordinary inserts and a commit after every batch. Both store the
    same rows and rollups. ``progress`` is called after every batch.
    """
    now = as_utc(now) if now else utcnow()
    report = IngestReport()
    session, owned = _sessions(session_or_engine)
    size = os.path.getsize(path)
    started = time.perf_counter()
    pending = 0  # events stored since the last commit

    def flush(batch: list[IncomingEvent], prepared: list[PreparedEvent]) -> None:
        nonlocal pending
        pixels = {item.pixel_id for item in batch}
        ensure_pixels(session, pixels, default_country=default_country, now=now)
        stored = store_events(session, batch, default_country=default_country, prepared=prepared)
        record_import_senders(session, batch, stored.event_row_ids)  # tools.senders: who sent them
        pending += len(batch)
        if not bulk or pending >= commit_every:
            session.commit()
            pending = 0
        report.loaded += stored.loaded
        report.duplicates += stored.duplicates
        report.raw_pii_hashed.update(stored.raw_pii_hashed)
        report.pixels.update(pixels)
        batch.clear()
        gc.collect(1)  # what the batch left in cycles: cheap, the batch itself is gone

    def tell(position: int) -> None:
        if progress is not None:
            progress(IngestProgress(lines=report.lines, loaded=report.loaded,
                                    duplicates=report.duplicates, skipped=len(report.skipped),
                                    position=position, size=size,
                                    elapsed=time.perf_counter() - started))

    def load() -> None:
        batches = _read_batches(path, lambda text: parse_event_line(text, now=now),
                                lambda items: prepare_events(items, default_country=default_country),
                                batch_size)
        for batch in _read_ahead(batches):
            report.lines += batch.lines
            report.skipped.extend(batch.skipped)
            if batch.items:
                flush(batch.items, batch.prepared)
            tell(batch.position)

    with _cyclic_gc_per_batch():
        try:
            if bulk:
                with bulk_session(session):
                    load()
                    session.commit()
            else:
                load()
        except BaseException:
            # The open transaction (at most ``commit_every`` events, with their rollups) is lost
            # whole; what was committed before stays, and a re-run adds only what is missing.
            session.rollback()
            raise
        finally:
            if owned:
                session.close()
    logger.info("ingested %s events (%s duplicates, %s lines skipped)", report.loaded,
                report.duplicates, len(report.skipped))
    return report


def parse_order_line(text: str) -> dict[str, Any]:
    obj = _object(text)
    order_id = obj.get("order_id")
    if order_id is None or order_id == "":
        raise LineError("missing order_id")
    if isinstance(order_id, bool) or not isinstance(order_id, str | int):
        raise LineError("order_id must be a string")
    value = obj.get("value", 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LineError("value must be a number")
    currency = obj.get("currency")
    if currency is not None and not isinstance(currency, str):
        raise LineError("currency must be a string")
    if obj.get("created_at") is None:
        raise LineError("missing created_at")
    user_data = obj.get("user_data")
    if user_data is not None and not isinstance(user_data, dict):
        raise LineError("user_data must be an object")
    return {"pixel_id": _pixel_id(obj.get("pixel_id")), "order_id": str(order_id),
            "created_at": _time(obj["created_at"], "created_at"), "value": float(value),
            "currency": currency, "matched": False, "user_data": _order_customer(user_data)}


def _order_customer(user_data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The order's customer information as the ledger keeps it: hashed by ``prepare_user_data``
    (raw values are hashed here and never stored), without the IP address (Meta wants it clear, and
    orders, unlike event payloads, are never purged); None when nothing usable is left."""
    if not user_data:
        return None
    from tools.meta.userdata import prepare_user_data

    prepared = dict(prepare_user_data(user_data).user_data)
    prepared.pop("client_ip_address", None)
    return prepared or None


def store_orders(session: Session, orders: list[dict[str, Any]]) -> tuple[int, int]:
    """Insert new orders, matched against server Purchases already in the ledger. (loaded, duplicates)."""
    deltas = RollupDeltas()
    fresh: list[dict[str, Any]] = []
    for pixel_id in sorted({o["pixel_id"] for o in orders}):
        mine = [o for o in orders if o["pixel_id"] == pixel_id]
        ids = sorted({o["order_id"] for o in mine})
        known: set[str] = set()
        purchases: set[str] = set()
        for chunk in chunked(ids):
            known.update(session.scalars(select(col(Order.order_id)).where(
                col(Order.pixel_id) == pixel_id, col(Order.order_id).in_(chunk))))
            base = select(col(Event.event_id), col(Event.order_ref)).where(
                col(Event.pixel_id) == pixel_id, col(Event.event_name) == "Purchase")
            for event_id, order_ref in session.execute(base.where(
                    col(Event.event_id).in_(chunk) | col(Event.order_ref).in_(chunk))):
                purchases.update(ref for ref in (event_id, order_ref) if ref is not None)
        for order in mine:
            if order["order_id"] in known:
                continue
            known.add(order["order_id"])
            order["matched"] = order["order_id"] in purchases
            fresh.append(order)
            deltas.add_order(pixel_id=pixel_id, created_at=order["created_at"], value=order["value"],
                             matched=order["matched"])
    if fresh:
        stmt = dialect_insert(session, table_of(Order)).on_conflict_do_nothing()
        session.execute(stmt, fresh)
    apply_deltas(session, deltas)
    return len(fresh), len(orders) - len(fresh)


def ingest_orders_jsonl(*, session_or_engine: Session | Engine, path: Path | str,
                        now: datetime | None = None, batch_size: int = BATCH_SIZE) -> IngestReport:
    """Load the shop's orders (order_id, pixel_id, created_at, value, currency). Commits per batch."""
    now = as_utc(now) if now else utcnow()
    report = IngestReport()
    session, owned = _sessions(session_or_engine)

    def flush(batch: list[dict[str, Any]]) -> None:
        pixels = {order["pixel_id"] for order in batch}
        ensure_pixels(session, pixels, now=now)
        loaded, duplicates = store_orders(session, batch)
        session.commit()
        report.loaded += loaded
        report.duplicates += duplicates
        report.pixels.update(pixels)

    try:
        _load_batches(path, parse_order_line, flush, report, batch_size)
    finally:
        if owned:
            session.close()
    return report
