"""Bulk SQL of the ledger's write path: inserts of events, delivery attempts and their links, and the
look-ups by content hash and event id that come with them.

On SQLite the rows go straight to the driver's ``executemany``: SQLAlchemy's per-row statement
machinery (parameter construction, type processing) cost more than the insert itself. The values are
converted exactly as SQLAlchemy's SQLite types would convert them (``sqlite_datetime`` matches the
``DATETIME`` storage format; JSON goes through the engine's own ``json_serializer``), so the stored
bytes are the same either way. Postgres uses SQLAlchemy Core (executemany as multi-row VALUES), or,
for a session marked with ``bulk_session`` (the JSONL import), ``COPY ... FROM STDIN`` through
psycopg 3 with ids drawn from the tables' sequences beforehand: COPY returns no ids, and drawing
them first spares the look-up by content hash afterwards.
Nothing here commits; everything runs on the session's connection, inside its transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.ledger.models import Delivery, DeliveryEvent, Event, table_of
from tools.timeutil import as_utc

EVENT_COLUMNS = ("pixel_id", "event_name", "event_time", "received_at", "event_id", "order_ref",
                 "action_source", "payload", "flags", "delivery_status", "attempts", "first_attempt_at",
                 "last_attempt_at", "last_error_code", "last_error_subcode", "content_hash", "purchase_key")
DELIVERY_COLUMNS = ("pixel_id", "attempted_at", "status", "http_status", "events_sent", "events_received",
                    "error_code", "error_subcode", "fbtrace_id", "retry_number", "fix_id")


def sqlite_datetime(value: datetime | None) -> str | None:
    """The text SQLAlchemy's SQLite ``DATETIME`` stores: the value's own wall clock (its offset is
    dropped, as SQLAlchemy drops it), ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    if value is None:
        return None
    # isoformat pads the year to 4 digits, like SQLAlchemy's "%(year)04d"; [:26] drops the offset.
    return value.isoformat(" ", "microseconds")[:26]


_BULK_KEY = "capi_ledger_bulk"


@contextmanager
def bulk_session(session: Session) -> Iterator[Session]:
    """Mark ``session`` as a bulk import while the block runs: on Postgres its event, delivery and
    link inserts go through COPY. Rows, ids and rollups are those of the ordinary path."""
    previous = session.info.get(_BULK_KEY)
    session.info[_BULK_KEY] = True
    try:
        yield session
    finally:
        if previous is None:
            session.info.pop(_BULK_KEY, None)
        else:
            session.info[_BULK_KEY] = previous


def _copies(session: Session) -> bool:
    return bool(session.info.get(_BULK_KEY)) and session.get_bind().dialect.name == "postgresql"


def _driver_cursor(session: Session) -> Any:
    return session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]


def _pg_next_ids(cursor: Any, table: str, count: int) -> list[int]:
    """``count`` new ids of ``table`` from its own sequence (ascending, as an INSERT would take them)."""
    cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                   (table, count))
    return sorted(row[0] for row in cursor.fetchall())


def _pg_copy(cursor: Any, table: str, columns: Sequence[str], rows: Iterator[Sequence[Any]]) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _sqlite_cursor(session: Session) -> Any:
    return _driver_cursor(session)


def _json_serializer(session: Session) -> Callable[[Any], str]:
    serializer = getattr(session.get_bind().dialect, "_json_serializer", None)
    return serializer or json.dumps


def _placeholders(columns: Sequence[str]) -> str:
    return ", ".join("?" for _ in columns)


_CHUNK = 900  # bound parameters per IN (...) list, well under every driver's limit


def chunked(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[i:i + _CHUNK] for i in range(0, len(values), _CHUNK)]


def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def sqlite_rows_in(session: Session, sql: str, fixed: tuple[Any, ...], values: Sequence[Any],
                   chunk: int = 900) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` whose ``{marks}`` is an IN list of ``values`` (bound after ``fixed``), in chunks."""
    out: list[tuple[Any, ...]] = []
    cursor = _sqlite_cursor(session)
    try:
        for start in range(0, len(values), chunk):
            part = values[start:start + chunk]
            cursor.execute(sql.format(marks=", ".join("?" * len(part))), (*fixed, *part))
            out.extend(cursor.fetchall())
    finally:
        cursor.close()
    return out


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> list[int] | None:
    """Insert ``events`` rows (dicts with every column of ``EVENT_COLUMNS``), in this order.

    Returns their ids in row order when the database makes them certain (SQLite: one writer holds
    the lock and numbered them consecutively, which is checked), else None: look them up.
    """
    if not rows:
        return []
    if _copies(session):
        return _pg_copy_events(session, rows)
    if not is_sqlite(session):
        session.execute(insert(table_of(Event)), list(rows))
        return None
    dumps = _json_serializer(session)
    params = []
    for row in rows:
        first, last = row["first_attempt_at"], row["last_attempt_at"]
        first_text = sqlite_datetime(first)
        params.append((
            row["pixel_id"], row["event_name"], sqlite_datetime(row["event_time"]),
            sqlite_datetime(row["received_at"]), row["event_id"], row["order_ref"], row["action_source"],
            dumps(row["payload"]), dumps(row["flags"]), row["delivery_status"], row["attempts"],
            first_text, first_text if last is first else sqlite_datetime(last), row["last_error_code"],
            row["last_error_subcode"], row["content_hash"], row.get("purchase_key")))
    sql = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({_placeholders(EVENT_COLUMNS)})"
    cursor = _sqlite_cursor(session)
    try:
        cursor.executemany(sql, params)
        last = cursor.execute("SELECT last_insert_rowid()").fetchone()[0]
        first = last - len(rows) + 1
        # SQLite numbers new rows max(rowid) + 1 while this transaction holds the write lock; it
        # only picks other numbers once rowids run out. Check the ends and the count anyway.
        ends = dict(cursor.execute("SELECT id, content_hash FROM events WHERE id IN (?, ?)",
                                   (first, last)).fetchall())
        count = cursor.execute("SELECT count(*) FROM events WHERE id BETWEEN ? AND ?",
                               (first, last)).fetchone()[0]
    finally:
        cursor.close()
    if (count == len(rows) and ends.get(first) == rows[0]["content_hash"]
            and ends.get(last) == rows[-1]["content_hash"]):
        return list(range(first, last + 1))
    return None


def _pg_copy_events(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    # JSON as the engine's serializer writes it for an INSERT; the server parses it into JSONB alike.
    dumps = _json_serializer(session)
    cursor = _driver_cursor(session)
    try:
        ids = _pg_next_ids(cursor, "events", len(rows))
        # One tuple literal a row, in EVENT_COLUMNS order (a generator over the columns cost more
        # than the COPY itself).
        _pg_copy(cursor, "events", ("id", *EVENT_COLUMNS), (
            (row_id, row["pixel_id"], row["event_name"], row["event_time"], row["received_at"],
             row["event_id"], row["order_ref"], row["action_source"], dumps(row["payload"]),
             dumps(row["flags"]), row["delivery_status"], row["attempts"], row["first_attempt_at"],
             row["last_attempt_at"], row["last_error_code"], row["last_error_subcode"],
             row["content_hash"], row.get("purchase_key"))
            for row_id, row in zip(ids, rows, strict=True)))
    finally:
        cursor.close()
    return ids


def _pg_events_by(session: Session, columns: str, key: str, pixel_id: str, values: Sequence[str],
                  event_name: str | None = None) -> list[tuple[Any, ...]]:
    """``columns`` of the pixel's events (of ``event_name`` only, if given) whose ``key`` column is
    one of ``values``.

    The values are bound once, as an array, and each is looked up on its own through the
    (pixel_id, key) index: a LATERAL probe, kept one by ``OFFSET 0`` (else the planner flattens it
    into a join). ``key = ANY(array)``, or the flattened join, let the planner, whose statistics lag
    behind a growing import, read every event of the pixel (one value of pixel_id) and filter them:
    a cost that grew with the ledger.
    """
    # The event name is filtered outside the probe: inside it, a planner without statistics (a young
    # ledger) took the (pixel_id, event_name, event_id) index for the two equalities and filtered every
    # Purchase of the pixel for each value (the relay's Postgres writer spent seconds a group on it).
    named = "" if event_name is None else " WHERE e.event_name = %s"
    cursor = _driver_cursor(session)
    try:
        cursor.execute(f"SELECT {columns} FROM unnest(%s::text[]) AS wanted(value) CROSS JOIN LATERAL "
                       f"(SELECT * FROM events WHERE pixel_id = %s AND {key} = wanted.value OFFSET 0)"
                       f" AS e{named}", (list(values), pixel_id, *(() if event_name is None else (event_name,))))
        return list(cursor.fetchall())
    finally:
        cursor.close()


def insert_deliveries(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``deliveries`` rows (every column of ``DELIVERY_COLUMNS``); their ids, in row order."""
    if not rows:
        return []
    if _copies(session):
        cursor = _driver_cursor(session)
        try:
            ids = _pg_next_ids(cursor, "deliveries", len(rows))
            _pg_copy(cursor, "deliveries", ("id", *DELIVERY_COLUMNS),
                     ((row_id, *(row[name] for name in DELIVERY_COLUMNS))
                      for row_id, row in zip(ids, rows, strict=True)))
        finally:
            cursor.close()
        return ids
    if not is_sqlite(session):
        table = table_of(Delivery)
        result = session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), list(rows))
        return list(result.scalars().all())
    sql = f"INSERT INTO deliveries ({', '.join(DELIVERY_COLUMNS)}) VALUES ({_placeholders(DELIVERY_COLUMNS)})"
    ids = []
    cursor = _sqlite_cursor(session)
    try:
        # One execute per row: lastrowid is the only id SQLite guarantees to belong to a given row.
        for row in rows:
            cursor.execute(sql, tuple(sqlite_datetime(row[name]) if name == "attempted_at" else row[name]
                                      for name in DELIVERY_COLUMNS))
            ids.append(int(cursor.lastrowid))
    finally:
        cursor.close()
    return ids


def insert_delivery_links(session: Session, links: Sequence[tuple[int, int]]) -> None:
    """Insert ``delivery_events`` rows given as (delivery_id, event_row_id)."""
    if not links:
        return
    if _copies(session):
        cursor = _driver_cursor(session)
        try:
            _pg_copy(cursor, "delivery_events", ("delivery_id", "event_row_id"), iter(links))
        finally:
            cursor.close()
        return
    if not is_sqlite(session):
        session.execute(insert(table_of(DeliveryEvent)),
                        [{"delivery_id": delivery_id, "event_row_id": row_id} for delivery_id, row_id in links])
        return
    cursor = _sqlite_cursor(session)
    try:
        cursor.executemany("INSERT INTO delivery_events (delivery_id, event_row_id) VALUES (?, ?)", links)
    finally:
        cursor.close()


def known_content_hashes(session: Session, pixel_id: str, hashes: list[str]) -> set[str]:
    """Which of these content hashes the pixel already has."""
    if is_sqlite(session):
        return {found for found, in sqlite_rows_in(
            session, "SELECT content_hash FROM events WHERE pixel_id = ? AND content_hash IN ({marks})",
            (pixel_id,), hashes, _CHUNK)}
    return {found for found, in _pg_events_by(session, "e.content_hash", "content_hash", pixel_id, hashes)}


def event_names_by_id(session: Session, pixel_id: str, event_ids: list[str]) -> set[tuple[str, str, str]]:
    """(pixel, event name, event id) of stored events of the pixel carrying one of these ids."""
    if is_sqlite(session):
        # INDEXED BY: without statistics SQLite prefers the covering (pixel_id, event_name, event_id)
        # index, usable here on pixel_id alone, and walks every event of the pixel for each chunk
        # (the import's cost then grew with the ledger: 0.1 s a chunk at 250k events, against 2 ms).
        return {(pixel_id, name, event_id) for name, event_id in sqlite_rows_in(
            session, "SELECT event_name, event_id FROM events INDEXED BY ix_events_pixel_event_id"
                     " WHERE pixel_id = ? AND event_id IN ({marks})",
            (pixel_id,), event_ids, _CHUNK)}
    return {(pixel_id, name, event_id) for name, event_id in _pg_events_by(
        session, "e.event_name, e.event_id", "event_id", pixel_id, event_ids)}


def ids_by_content_hash(session: Session, rows: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """(pixel, content hash) -> event row id, for stored rows."""
    ids: dict[tuple[str, str], int] = {}
    for pixel_id in {row["pixel_id"] for row in rows}:
        hashes = [row["content_hash"] for row in rows if row["pixel_id"] == pixel_id]
        if is_sqlite(session):
            ids.update(((pixel_id, content_hash), row_id) for content_hash, row_id in sqlite_rows_in(
                session, "SELECT content_hash, id FROM events WHERE pixel_id = ? AND content_hash IN ({marks})",
                (pixel_id,), hashes, _CHUNK))
            continue
        ids.update(((pixel_id, content_hash), row_id) for content_hash, row_id in _pg_events_by(
            session, "e.content_hash, e.id", "content_hash", pixel_id, hashes))
    return ids


def known_purchases(session: Session, pixel_id: str, order_refs: list[str],
                    purchase_keys: list[str]) -> list[tuple[str | None, str | None, str | None, datetime]]:
    """(order_ref, purchase_key, event_id, event_time) of stored Purchases of the pixel carrying one of
    these order refs or purchase keys, in ledger order (``rollups.PurchaseIndex`` reads them)."""
    found: dict[int, tuple[str | None, str | None, str | None, datetime]] = {}
    if not is_sqlite(session):  # one index probe a value, as for the other look-ups (_pg_events_by)
        for key, values in (("order_ref", order_refs), ("purchase_key", purchase_keys)):
            if not values:
                continue
            for row_id, order_ref, purchase, event_id, event_time in _pg_events_by(
                    session, "e.id, e.order_ref, e.purchase_key, e.event_id, e.event_time", key, pixel_id,
                    values, event_name="Purchase"):
                found[row_id] = (order_ref, purchase, event_id, as_utc(event_time))
        return [found[row_id] for row_id in sorted(found)]
    base = select(table_of(Event).c.id, col(Event.order_ref), col(Event.purchase_key), col(Event.event_id),
                  col(Event.event_time)).where(
        col(Event.pixel_id) == pixel_id, col(Event.event_name) == "Purchase")
    for column, values in ((col(Event.order_ref), order_refs), (col(Event.purchase_key), purchase_keys)):
        for chunk in chunked(values):
            for row_id, order_ref, purchase, event_id, event_time in session.execute(base.where(column.in_(chunk))):
                found[row_id] = (order_ref, purchase, event_id, as_utc(event_time))
    return [found[row_id] for row_id in sorted(found)]
