"""The relay under concurrent senders: writes grouped into short transactions, nothing lost or doubled,
no database connection held while Meta thinks, and "queued" only when the relay can keep it."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from tests.fixtures.meta import SIM_TOKEN
from tests.relay_support import PIXEL, ledger_events, make_event, running_relay, session_factory
from tools.ledger.models import Delivery, DeliveryEvent, Event
from tools.ledger.store import DeliveryOutcome
from tools.meta.client import GraphClient, SendResult
from tools.meta.simulator import Fault, RunningSimulator
from tools.relay import RelayRequest, accept_batch, forward_pending
from tools.relay.access import RelayAuth
from tools.relay.writer import AnswerWrite, LedgerWriter, RecordWrite
from tools.timeutil import utcnow

OTHER_PIXEL = "9988776655"
SENDERS = 16
PER_REQUEST = 5


def post(url: str, events: list[dict[str, Any]], *, pixel: str = PIXEL, token: str = SIM_TOKEN) -> httpx.Response:
    return httpx.post(f"{url}/v25.0/{pixel}/events", json={"data": events},
                      headers={"Authorization": f"Bearer {token}"}, timeout=20)


def record(pixel_id: str, event_ids: Sequence[str]) -> RecordWrite:
    return RecordWrite(pixel_id=pixel_id, events=[make_event(event_id) for event_id in event_ids],
                       received_at=utcnow(), default_country="US", repair=False, after="sending")


def test_concurrent_senders_lose_nothing_and_double_nothing(
        ledger_engine: Engine, meta_sim: RunningSimulator) -> None:
    # Meta answers after 200 ms, so the 16 requests overlap and their writes are grouped.
    meta_sim.state.usage.configure({"latency_ms": 200})
    batches = [[make_event(f"s{sender}-{n}") for n in range(PER_REQUEST)] for sender in range(SENDERS)]
    with running_relay(ledger_engine, meta_sim.url) as url, ThreadPoolExecutor(SENDERS) as pool:
        responses = list(pool.map(lambda batch: post(url, batch), batches))
    assert [(r.status_code, r.json()["events_received"]) for r in responses] == [(200, PER_REQUEST)] * SENDERS
    sent = sorted(event["event_id"] for batch in batches for event in batch)
    assert sorted(item["event"]["event_id"] for item in meta_sim.state.received(PIXEL)) == sent
    events = ledger_events(ledger_engine)
    assert sorted(e.event_id for e in events) == sent
    assert {(e.delivery_status, e.attempts) for e in events} == {("delivered", 1)}
    with Session(ledger_engine) as session:
        deliveries = list(session.scalars(select(Delivery)))
        links = session.scalar(select(func.count()).select_from(DeliveryEvent))
    # One delivery per request, with Meta's own trace id handed back to that request's sender.
    assert len(deliveries) == SENDERS and links == SENDERS * PER_REQUEST
    assert sorted(d.fbtrace_id for d in deliveries) == sorted(r.json()["fbtrace_id"] for r in responses)


def test_writes_waiting_together_share_one_commit_and_a_failing_one_fails_alone(ledger_engine: Engine) -> None:
    gate = threading.Event()
    opened = [0]

    def gated() -> Session:
        opened[0] += 1
        if opened[0] == 1:  # the first transaction waits until the other writes are queued behind it
            gate.wait(10)
        return Session(ledger_engine, expire_on_commit=False)

    writer = LedgerWriter(gated)
    results: dict[str, Any] = {}

    def submit(name: str, write: RecordWrite | AnswerWrite) -> None:
        try:
            results[name] = writer.record(write) if isinstance(write, RecordWrite) else writer.answer(write)
        except Exception as exc:
            results[name] = exc

    first = threading.Thread(target=submit, args=("first", record(PIXEL, ["g-0"])))
    first.start()
    while opened[0] == 0:
        time.sleep(0.01)
    delivered = DeliveryOutcome(status="delivered", attempted_at=utcnow(), http_status=200, events_received=1)
    others = [threading.Thread(target=submit, args=(f"r{n}", record(PIXEL, [f"g-{n}", f"g-{n}b"])))
              for n in range(1, 6)]
    # Meta's answer for a row that is not this pixel's: record_delivery refuses it.
    others.append(threading.Thread(target=submit, args=("bad", AnswerWrite(OTHER_PIXEL, [10**9], delivered))))
    for thread in others:
        thread.start()
    while writer._queue.qsize() < len(others):
        time.sleep(0.01)
    gate.set()
    for thread in [first, *others]:
        thread.join(10)
    writer.close()
    assert isinstance(results.pop("bad"), ValueError)
    assert len(results["first"]) == 1 and all(len(results[f"r{n}"]) == 2 for n in range(1, 6))
    assert len({row_id for ids in results.values() for row_id in ids}) == 11
    assert sorted(e.event_id for e in ledger_events(ledger_engine)) == sorted(
        ["g-0", *(f"g-{n}{s}" for n in range(1, 6) for s in ("", "b"))])
    # The first alone; the six queued behind it in one transaction, which failed on the bad write and
    # was then written one by one: five commits, the bad one rolled back alone.
    assert (writer.groups, writer.writes) == (6, 6)


class CheckingClient(GraphClient):
    """Notes how many database connections are checked out while Meta is being asked."""

    def __init__(self, engine: Engine, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.checked_out: list[int] = []

    def send_events(self, pixel_id: str, events: Sequence[Any], **kwargs: Any) -> SendResult:
        self.checked_out.append(self.engine.pool.checkedout())  # type: ignore[attr-defined]
        return super().send_events(pixel_id, events, **kwargs)


def test_no_connection_or_transaction_is_held_while_meta_answers(
        ledger_engine: Engine, meta_sim: RunningSimulator) -> None:
    with CheckingClient(ledger_engine, base_url=meta_sim.url, access_token=SIM_TOKEN, max_retries=0) as client:
        answer = accept_batch(session_factory(ledger_engine), RelayRequest(PIXEL, [make_event("h-1")]),
                              client=client, now=utcnow())
    assert answer.status == 200 and client.checked_out == [0]
    # The events were committed as in flight before the request left (a crash now: "uncertain").
    assert [e.delivery_status for e in ledger_events(ledger_engine)] == ["delivered"]


def test_a_request_waiting_on_meta_does_not_hold_up_another_ones_commit(
        ledger_engine: Engine, meta_sim: RunningSimulator) -> None:
    meta_sim.state.usage.configure({"pixel_latency_ms": {PIXEL: 3000}})
    auth = RelayAuth.static({PIXEL: SIM_TOKEN, OTHER_PIXEL: SIM_TOKEN})
    with running_relay(ledger_engine, meta_sim.url, auth=auth, forward_timeout=10.0) as url, \
            ThreadPoolExecutor(1) as pool:
        slow = pool.submit(post, url, [make_event("slow-1")])
        deadline = time.monotonic() + 10
        while not ledger_events(ledger_engine) and time.monotonic() < deadline:
            time.sleep(0.02)  # the slow request's events are committed in flight before Meta answers
        assert [e.delivery_status for e in ledger_events(ledger_engine)] == ["sending"]
        fast = post(url, [make_event("fast-1")], pixel=OTHER_PIXEL)
        assert fast.status_code == 200 and not slow.done()
        statuses = {e.event_id: e.delivery_status for e in ledger_events(ledger_engine)}
        assert statuses == {"slow-1": "sending", "fast-1": "delivered"}
        assert slow.result().status_code == 200
    assert {e.event_id: e.delivery_status for e in ledger_events(ledger_engine)} == {
        "slow-1": "delivered", "fast-1": "delivered"}


def test_meta_down_between_record_and_forward_leaves_the_events_queued_then_sent_once(
        ledger_engine: Engine, graph_client: GraphClient, meta_sim: RunningSimulator) -> None:
    meta_sim.state.add_fault(Fault(mode="unavailable", remaining=10, endpoint="events"))
    answer = accept_batch(session_factory(ledger_engine), RelayRequest(PIXEL, [make_event("d-1"),
                                                                             make_event("d-2")]),
                          client=graph_client, now=utcnow())
    assert answer.status == 200 and answer.body["fbtrace_id"] is None
    assert [e.delivery_status for e in ledger_events(ledger_engine)] == ["pending"] * 2
    meta_sim.state.clear_faults()
    report = forward_pending(session_factory(ledger_engine), client_for_pixel=lambda _p: graph_client,
                             now=utcnow())
    assert report.sent == 2
    again = forward_pending(session_factory(ledger_engine), client_for_pixel=lambda _p: graph_client,
                            now=utcnow())
    assert again.sent == 0
    assert sorted(item["event"]["event_id"] for item in meta_sim.state.received(PIXEL)) == ["d-1", "d-2"]


class _Crash(BaseException):
    """Stands for the relay process dying after its record was committed, before Meta answered."""


class CrashingClient(GraphClient):
    def send_events(self, pixel_id: str, events: Sequence[Any], **kwargs: Any) -> SendResult:
        raise _Crash


def test_a_crash_after_the_record_never_sends_twice(
        ledger_engine: Engine, graph_client: GraphClient, meta_sim: RunningSimulator) -> None:
    now = utcnow()
    with CrashingClient(base_url=meta_sim.url, access_token=SIM_TOKEN) as crashing, pytest.raises(_Crash):
        accept_batch(session_factory(ledger_engine), RelayRequest(PIXEL, [make_event("x-1")]), client=crashing,
                     now=now)
    # The relay cannot tell "died before sending" from "died before Meta's answer was recorded":
    # the rows stay in flight, and after the lease they are reported uncertain, never re-sent.
    assert [e.delivery_status for e in ledger_events(ledger_engine)] == ["sending"]
    later = forward_pending(session_factory(ledger_engine), client_for_pixel=lambda _p: graph_client,
                            now=now + timedelta(minutes=20))
    assert (later.sent, later.uncertain) == (0, 1)
    assert meta_sim.state.received(PIXEL) == []


def test_unconfigured_pixel_while_meta_is_down_gets_metas_answer_not_a_queue(
        sqlite_engine: Engine, meta_sim: RunningSimulator) -> None:
    # Its events go out only with the caller's own token, which is never stored: nothing could send
    # them later, so the caller gets Meta's failure to retry, and the ledger records it failed.
    meta_sim.state.add_tokens(valid=["EAAtheirOwnToken"])
    meta_sim.state.add_fault(Fault(mode="unavailable", remaining=5, endpoint="events"))
    auth = RelayAuth.static({PIXEL: SIM_TOKEN}, accept_unconfigured=True)
    with running_relay(sqlite_engine, meta_sim.url, auth=auth) as url:
        response = post(url, [make_event("u-1")], pixel=OTHER_PIXEL, token="EAAtheirOwnToken")
    assert response.status_code == 503 and response.json()["error"]["code"]
    with Session(sqlite_engine) as session:
        assert session.scalars(select(Event.delivery_status)).all() == ["failed"]


def test_meta_silent_past_the_timeout_leaves_the_events_uncertain_never_resent(
        ledger_engine: Engine, meta_sim: RunningSimulator) -> None:
    meta_sim.state.add_fault(Fault(mode="timeout", remaining=1, endpoint="events", delay_seconds=2.0))
    with GraphClient(base_url=meta_sim.url, access_token=SIM_TOKEN, timeout=0.3, max_retries=0) as client:
        answer = accept_batch(session_factory(ledger_engine), RelayRequest(PIXEL, [make_event("t-1")]),
                              client=client, now=utcnow())
        # Meta may have the events: a retry by the sender could count them twice, so none is asked for.
        assert answer.status == 200 and "uncertain" in answer.body["messages"][0]
        assert [e.delivery_status for e in ledger_events(ledger_engine)] == ["uncertain"]
        report = forward_pending(session_factory(ledger_engine), client_for_pixel=lambda _p: client,
                                 now=utcnow() + timedelta(minutes=20))
    assert report.sent == 0


def test_pixel_policy_is_read_again_once_its_ttl_has_passed(ledger_engine: Engine) -> None:
    from tools.ledger.pixels import PixelConfig, sync_pixels
    from tools.relay.accept import PolicyCache

    now = [0.0]
    reads = [0]

    def counting() -> Session:
        reads[0] += 1
        return Session(ledger_engine)

    cache = PolicyCache(ttl=2.0, clock=lambda: now[0])
    assert cache.get(counting, PIXEL).mode == "observe"
    with Session(ledger_engine) as session:
        sync_pixels(session, [PixelConfig(id=PIXEL, relay_mode="repair")])
        session.commit()
    now[0] = 1.5
    assert cache.get(counting, PIXEL).mode == "observe" and reads[0] == 1
    now[0] = 2.6  # an approved switch to repair applies within the ttl
    assert cache.get(counting, PIXEL).mode == "repair" and reads[0] == 2
