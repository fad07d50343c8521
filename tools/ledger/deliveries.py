"""Recording one delivery attempt (relay, replay fixes) and Meta's answer, with its rollups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.ledger.bulk import chunked
from tools.ledger.db import by_name
from tools.ledger.models import Delivery, DeliveryEvent, Event, table_of
from tools.ledger.rollups import RollupDeltas, apply_deltas
from tools.ledger.store import DeliveryOutcome
from tools.timeutil import as_utc


def record_delivery(session: Session, *, pixel_id: str, event_row_ids: Sequence[int],
                    outcome: DeliveryOutcome, fix_id: str | None = None,
                    deltas: RollupDeltas | None = None) -> int:
    """Record one attempt to send these ledger events and Meta's answer; returns the delivery id.

    Promises: the events' status, attempt counts and errors follow the answer (a delivered event
    stays delivered); the retry number is the events' earlier attempts; rollups follow. No commit.
    With ``deltas`` the rollup increments are added to it for the caller to apply once for several
    deliveries (the relay's group commits), instead of being written here.
    """
    if outcome.attempted_at is None:
        raise ValueError("a delivery attempt needs attempted_at")
    attempted_at = as_utc(outcome.attempted_at)
    columns = (col(Event.id), col(Event.pixel_id), col(Event.event_name), col(Event.event_time), col(Event.received_at),
               col(Event.delivery_status), col(Event.first_attempt_at), col(Event.attempts))
    events: list[Mapping[str, Any]] = []
    for chunk in chunked(list(event_row_ids)):
        query = select(*columns).where(col(Event.id).in_(chunk), col(Event.pixel_id) == pixel_id)
        events.extend(by_name(row) for row in session.execute(query.with_for_update()))
    if len(events) != len(set(event_row_ids)):
        raise ValueError("some event ids are not in the ledger for this pixel")
    retry_number = max((row["attempts"] for row in events), default=0)
    sent = len(events)
    received = outcome.events_received if outcome.events_received is not None else (
        sent if outcome.status == "delivered" else 0)
    delivery_id = session.execute(insert(table_of(Delivery)).returning(col(Delivery.id)), [{
        "pixel_id": pixel_id, "attempted_at": attempted_at, "status": outcome.status,
        "http_status": outcome.http_status, "events_sent": sent, "events_received": received,
        "error_code": outcome.error_code, "error_subcode": outcome.error_subcode,
        "fbtrace_id": outcome.fbtrace_id, "retry_number": retry_number, "fix_id": fix_id}]).scalar_one()
    assert delivery_id is not None  # the id column is typed optional for rows not yet inserted
    session.execute(insert(table_of(DeliveryEvent)), [{"delivery_id": delivery_id, "event_row_id": row["id"]}
                                            for row in events])
    own_deltas = deltas is None
    deltas = RollupDeltas() if deltas is None else deltas
    deltas.add_delivery(pixel_id=pixel_id, attempted_at=attempted_at, status=outcome.status,
                        events_sent=sent, events_received=received, error_code=outcome.error_code,
                        error_subcode=outcome.error_subcode, retry_number=retry_number)
    updates = []
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
    events_table = table_of(Event)
    session.execute(update(events_table).where(events_table.c.id == bindparam("row_id")).values(
        delivery_status=bindparam("new_status"), attempts=bindparam("new_attempts"),
        first_attempt_at=bindparam("new_first"), last_attempt_at=bindparam("new_last"),
        last_error_code=bindparam("new_code"), last_error_subcode=bindparam("new_subcode")),
        updates)
    if own_deltas:
        apply_deltas(session, deltas)
    return delivery_id
