"""The relay's group commits: many requests' records and Meta's answers written in one transaction
(``tools.relay.writer``, ``tools.ledger.deliveries.record_deliveries``) give each request exactly what
it would get written alone: its rows once, its own delivery with Meta's answer, its sender counted,
and rollups equal to a rebuild from the rows."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from tests.relay_support import PIXEL, ledger_events, make_event
from tools.ledger.deliveries import Attempt, record_deliveries
from tools.ledger.models import (
    ArrivalHourRollup,
    Delivery,
    DeliveryEvent,
    DeliveryHourRollup,
    EventHourRollup,
    OrderHourRollup,
    PayloadHourRollup,
)
from tools.ledger.rollups import rebuild_rollups
from tools.ledger.store import DeliveryOutcome, IncomingEvent, prepare_events
from tools.relay.writer import AnswerWrite, LedgerWriter, RecordWrite, SenderNote, apply_writes
from tools.senders.fingerprint import event_shape, sender_from_request
from tools.senders.models import SenderFingerprint, SenderIdentity
from tools.timeutil import as_utc, utcnow

OTHER_PIXEL = "9988776655"
UA = "fbbizsdk-php-v17.0.0"


def _rollups(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for model in (EventHourRollup, DeliveryHourRollup, OrderHourRollup, ArrivalHourRollup, PayloadHourRollup):
        table = model.__table__  # type: ignore[attr-defined]
        rows = session.execute(select(table).where(table.c.pixel_id.in_([PIXEL, OTHER_PIXEL]))).all()
        out[table.name] = sorted(tuple(as_utc(v) if isinstance(v, datetime) else v for v in row) for row in rows)
    return out


def _assert_rollups_equal_a_rebuild(engine: Engine) -> None:
    with Session(engine) as session:
        incremental = _rollups(session)
        rebuild_rollups(session)
        assert _rollups(session) == incremental
        session.rollback()


def _record(pixel_id: str, event_ids: list[str], *, prepared: bool = True) -> RecordWrite:
    now = utcnow()
    events = [make_event(event_id) for event_id in event_ids]
    rows = prepare_events([IncomingEvent(pixel_id=pixel_id, received_at=now, event=e) for e in events],
                          default_country="US", repair=False) if prepared else None
    shapes = [shape for shape in map(event_shape, events) if shape is not None]
    return RecordWrite(pixel_id=pixel_id, events=events, received_at=now, default_country="US", repair=False,
                       after="sending", sender=SenderNote(sender_from_request(UA, {}), shapes), prepared=rows)


def test_one_group_of_records_and_one_of_answers_write_what_each_request_would_alone(
        ledger_engine: Engine) -> None:
    # Six requests on two pixels, one of them not hashed beforehand (the writer prepares it).
    records = [_record(PIXEL if n % 2 == 0 else OTHER_PIXEL, [f"g{n}-a", f"g{n}-b", f"g{n}-c"],
                       prepared=n != 3) for n in range(6)]
    with Session(ledger_engine, expire_on_commit=False) as session:
        ids = apply_writes(session, records)
        session.commit()
    assert [len(row_ids) for row_ids in ids] == [3] * 6 and len({i for row_ids in ids for i in row_ids}) == 18
    assert {e.delivery_status for e in ledger_events(ledger_engine)} == {"sending"}
    at = utcnow()
    outcomes: list[DeliveryOutcome | str] = [
        DeliveryOutcome(status="delivered", attempted_at=at, http_status=200, fbtrace_id="T0", events_received=3),
        DeliveryOutcome(status="delivered", attempted_at=at, http_status=200, fbtrace_id="T1", events_received=3),
        DeliveryOutcome(status="failed", attempted_at=at, http_status=400, error_code=190, fbtrace_id="T2",
                        events_received=0),
        DeliveryOutcome(status="pending", attempted_at=at, http_status=400, error_code=17, error_subcode=2446079,
                        fbtrace_id="T3", events_received=0),
        "uncertain",
        DeliveryOutcome(status="delivered", attempted_at=at, http_status=200, fbtrace_id="T5", events_received=3),
    ]
    answers = [AnswerWrite(record.pixel_id, row_ids, outcome)  # type: ignore[arg-type]
               for record, row_ids, outcome in zip(records, ids, outcomes, strict=True)]
    with Session(ledger_engine, expire_on_commit=False) as session:
        assert apply_writes(session, answers) == [None] * 6
        session.commit()
    status = {e.id: (e.delivery_status, e.attempts, e.last_error_code) for e in ledger_events(ledger_engine)}
    expected = [("delivered", 1, None), ("delivered", 1, None), ("failed", 1, 190), ("pending", 1, 17),
                ("uncertain", 0, None), ("delivered", 1, None)]
    for row_ids, want in zip(ids, expected, strict=True):
        assert [status[i] for i in row_ids] == [want] * 3
    with Session(ledger_engine) as session:
        # One delivery per answered request, each linked to exactly that request's rows.
        deliveries = {d.fbtrace_id: d for d in session.scalars(select(Delivery))}
        assert sorted(deliveries) == ["T0", "T1", "T2", "T3", "T5"]
        for n, row_ids in enumerate(ids):
            if n == 4:
                continue
            delivery = deliveries[f"T{n}"]
            assert (delivery.pixel_id, delivery.events_sent, delivery.retry_number) == (records[n].pixel_id, 3, 0)
            links = session.scalars(select(DeliveryEvent.event_row_id).where(
                DeliveryEvent.delivery_id == delivery.id)).all()
            assert sorted(links) == sorted(row_ids)
        # The six requests' sender: counted as six requests of 18 events, on the two pixels.
        requests = dict(session.execute(select(SenderFingerprint.pixel_id, SenderFingerprint.requests)).all())
        events = dict(session.execute(select(SenderIdentity.pixel_id, SenderIdentity.events)).all())
        assert requests == {PIXEL: 3, OTHER_PIXEL: 3} and events == {PIXEL: 9, OTHER_PIXEL: 9}
    _assert_rollups_equal_a_rebuild(ledger_engine)


def test_many_concurrent_requests_are_grouped_and_each_recorded_and_answered_once(ledger_engine: Engine) -> None:
    senders = 24
    gate = threading.Event()
    opened = [0]

    def gated() -> Session:
        opened[0] += 1
        if opened[0] == 1:  # the first transaction waits until the other requests are queued behind it
            gate.wait(10)
        return Session(ledger_engine, expire_on_commit=False)

    writer = LedgerWriter(gated)
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def request(n: int) -> None:
        try:
            row_ids = writer.record(_record(PIXEL, [f"c{n}-{k}" for k in range(4)]))
            writer.answer(AnswerWrite(PIXEL, row_ids, DeliveryOutcome(
                status="delivered", attempted_at=utcnow(), http_status=200, fbtrace_id=f"trace-{n}",
                events_received=len(row_ids))))
            results[n] = row_ids
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=request, args=(n,)) for n in range(senders)]
    threads[0].start()
    while opened[0] == 0:
        time.sleep(0.01)
    for thread in threads[1:]:
        thread.start()
    while writer._queue.qsize() < senders - 1:
        time.sleep(0.01)
    gate.set()
    for thread in threads:
        thread.join(30)
    writer.close()
    assert not errors
    # Grouped: the 23 records queued behind the first were written in one transaction.
    assert writer.writes == 2 * senders and writer.groups < writer.writes - senders + 2
    assert sorted(results) == list(range(senders))
    assert len({i for row_ids in results.values() for i in row_ids}) == 4 * senders
    events = ledger_events(ledger_engine)
    assert len(events) == 4 * senders and {(e.delivery_status, e.attempts) for e in events} == {("delivered", 1)}
    with Session(ledger_engine) as session:
        traces = {d.fbtrace_id: d.id for d in session.scalars(select(Delivery))}
        assert sorted(traces) == sorted(f"trace-{n}" for n in range(senders))
        for n, row_ids in results.items():
            links = session.scalars(select(DeliveryEvent.event_row_id).where(
                DeliveryEvent.delivery_id == traces[f"trace-{n}"])).all()
            assert sorted(links) == sorted(row_ids)
        assert session.scalar(select(SenderFingerprint.requests)) == senders
        assert session.scalar(select(func.sum(EventHourRollup.undelivered))) == 0
    _assert_rollups_equal_a_rebuild(ledger_engine)


def test_record_deliveries_checks_every_attempt_before_writing_and_orders_attempts_on_the_same_rows(
        ledger_engine: Engine) -> None:
    with Session(ledger_engine, expire_on_commit=False) as session:
        mine, others = apply_writes(session, [_record(PIXEL, ["d-1", "d-2"]), _record(OTHER_PIXEL, ["d-3"])])
        session.commit()
    at = utcnow()
    failed = DeliveryOutcome(status="failed", attempted_at=at, http_status=500, fbtrace_id="F")
    delivered = DeliveryOutcome(status="delivered", attempted_at=at, http_status=200, fbtrace_id="D")
    with Session(ledger_engine) as session:
        with pytest.raises(ValueError):  # the second attempt names another pixel's row: nothing is written
            record_deliveries(session, [Attempt(PIXEL, mine, failed), Attempt(PIXEL, others, delivered)])
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        session.rollback()
        # Two attempts on the same rows: the retry sees the first (retry number 1, two attempts).
        first, retry = record_deliveries(session, [Attempt(PIXEL, mine, failed), Attempt(PIXEL, mine, delivered)])
        session.commit()
        assert session.get(Delivery, first).retry_number == 0  # type: ignore[union-attr]
        assert session.get(Delivery, retry).retry_number == 1  # type: ignore[union-attr]
    assert {(e.event_id, e.delivery_status, e.attempts) for e in ledger_events(ledger_engine)} == {
        ("d-1", "delivered", 2), ("d-2", "delivered", 2), ("d-3", "sending", 0)}
    _assert_rollups_equal_a_rebuild(ledger_engine)
