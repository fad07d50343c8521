"""Recording delivery attempts (relay, replay fixes) and Meta's answers, with their rollups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.ledger.bulk import chunked, insert_deliveries, insert_delivery_links
from tools.ledger.db import by_name
from tools.ledger.models import Event, table_of
from tools.ledger.rollups import RollupDeltas, apply_deltas
from tools.ledger.store import DeliveryOutcome
from tools.timeutil import as_utc


@dataclass(frozen=True)
class Attempt:
    """One attempt to send these ledger events of one pixel, and Meta's answer to it."""

    pixel_id: str
    event_row_ids: Sequence[int]
    outcome: DeliveryOutcome
    fix_id: str | None = None


def record_delivery(session: Session, *, pixel_id: str, event_row_ids: Sequence[int],
                    outcome: DeliveryOutcome, fix_id: str | None = None,
                    deltas: RollupDeltas | None = None) -> int:
    """Record one attempt to send these ledger events and Meta's answer; returns the delivery id.

    Promises: the events' status, attempt counts and errors follow the answer (a delivered event
    stays delivered); the retry number is the events' earlier attempts; rollups follow. No commit.
    With ``deltas`` the rollup increments are added to it for the caller to apply once for several
    deliveries (the relay's group commits), instead of being written here.
    """
    return record_deliveries(session, [Attempt(pixel_id, event_row_ids, outcome, fix_id)], deltas=deltas)[0]


_COLUMNS = (col(Event.id), col(Event.pixel_id), col(Event.event_name), col(Event.event_time),
            col(Event.received_at), col(Event.delivery_status), col(Event.first_attempt_at), col(Event.attempts))


def record_deliveries(session: Session, attempts: Sequence[Attempt], *,
                      deltas: RollupDeltas | None = None) -> list[int]:
    """``record_delivery`` for several attempts at once; their delivery ids, in order.

    The same rows and rollups as one ``record_delivery`` after the other, in a fixed number of
    statements (one read of all the events, one insert of the deliveries, one of their links, one
    update of the events) instead of four per attempt: the relay answers a group of requests at once.
    Attempts that share an event are recorded one after the other (the later one sees the earlier's
    effect). Raises ValueError, before writing anything, when an id is not an event of its attempt's
    pixel. No commit.
    """
    if not attempts:
        return []
    times: list[datetime] = []
    for attempt in attempts:
        if attempt.outcome.attempted_at is None:
            raise ValueError("a delivery attempt needs attempted_at")
        times.append(as_utc(attempt.outcome.attempted_at))
    all_ids = [row_id for attempt in attempts for row_id in attempt.event_row_ids]
    if len(set(all_ids)) != len(all_ids) and len(attempts) > 1:
        return [record_deliveries(session, [attempt], deltas=deltas)[0] for attempt in attempts]
    found: dict[int, Mapping[str, Any]] = {}
    for chunk in chunked(sorted(set(all_ids))):
        for selected in session.execute(select(*_COLUMNS).where(col(Event.id).in_(chunk)).with_for_update()):
            found[selected.id] = by_name(selected)
    for attempt in attempts:
        if any(found.get(row_id) is None or found[row_id]["pixel_id"] != attempt.pixel_id
               for row_id in attempt.event_row_ids):
            raise ValueError("some event ids are not in the ledger for this pixel")
    own_deltas = deltas is None
    deltas = RollupDeltas() if deltas is None else deltas
    delivery_rows: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for attempt, attempted_at in zip(attempts, times, strict=True):
        outcome = attempt.outcome
        events = [found[row_id] for row_id in dict.fromkeys(attempt.event_row_ids)]
        retry_number = max((row["attempts"] for row in events), default=0)
        sent = len(events)
        received = outcome.events_received if outcome.events_received is not None else (
            sent if outcome.status == "delivered" else 0)
        delivery_rows.append({
            "pixel_id": attempt.pixel_id, "attempted_at": attempted_at, "status": outcome.status,
            "http_status": outcome.http_status, "events_sent": sent, "events_received": received,
            "error_code": outcome.error_code, "error_subcode": outcome.error_subcode,
            "fbtrace_id": outcome.fbtrace_id, "retry_number": retry_number, "fix_id": attempt.fix_id})
        deltas.add_delivery(pixel_id=attempt.pixel_id, attempted_at=attempted_at, status=outcome.status,
                            events_sent=sent, events_received=received, error_code=outcome.error_code,
                            error_subcode=outcome.error_subcode, retry_number=retry_number)
        for row in events:
            delivered_now = outcome.status == "delivered" and row["delivery_status"] != "delivered"
            deltas.add_first_attempt(row, attempted_at=attempted_at, delivered_now=delivered_now)
            updates.append({
                "row_id": row["id"],
                "new_status": "delivered" if row["delivery_status"] == "delivered" else outcome.status,
                "new_attempts": row["attempts"] + 1,
                "new_first": row["first_attempt_at"] or attempted_at,
                "new_last": attempted_at, "new_code": outcome.error_code, "new_subcode": outcome.error_subcode,
            })
    delivery_ids = insert_deliveries(session, delivery_rows)
    insert_delivery_links(session, [(delivery_id, row_id)
                                    for delivery_id, attempt in zip(delivery_ids, attempts, strict=True)
                                    for row_id in dict.fromkeys(attempt.event_row_ids)])
    if updates:
        events_table = table_of(Event)
        session.execute(update(events_table).where(events_table.c.id == bindparam("row_id")).values(
            delivery_status=bindparam("new_status"), attempts=bindparam("new_attempts"),
            first_attempt_at=bindparam("new_first"), last_attempt_at=bindparam("new_last"),
            last_error_code=bindparam("new_code"), last_error_subcode=bindparam("new_subcode")),
            updates)
    if own_deltas:
        apply_deltas(session, deltas)
    return delivery_ids
