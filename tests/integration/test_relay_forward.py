"""Store and forward: events queued while Meta was down are delivered later, exactly once, by
``forward_pending`` (real GraphClient against the simulator on loopback; SQLite and Postgres)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from tests.fixtures.meta import SIM_TOKEN
from tests.relay_support import PIXEL, ledger_events, make_event, session_factory
from tools.ledger.models import Event
from tools.meta.client import GraphClient, SendResult
from tools.meta.simulator import Fault, RunningSimulator
from tools.relay import RelayRequest, accept_batch, forward_pending
from tools.timeutil import utcnow


def queue_while_down(engine: Engine, graph_client: GraphClient, meta_sim: RunningSimulator,
                     batches: Sequence[Sequence[str]]) -> None:
    meta_sim.state.add_fault(Fault(mode="unavailable", remaining=len(batches) * 5, endpoint="events"))
    for batch in batches:
        answer = accept_batch(session_factory(engine), RelayRequest(PIXEL, [make_event(i) for i in batch]),
                              client=graph_client, now=utcnow())
        assert answer.status == 200 and answer.body["fbtrace_id"] is None
    meta_sim.state.clear_faults()


def received_ids(meta_sim: RunningSimulator) -> list[str]:
    return [item["event"]["event_id"] for item in meta_sim.state.received(PIXEL)]


def test_meta_down_then_back_delivers_every_event_exactly_once(
        ledger_engine: Engine, graph_client: GraphClient, meta_sim: RunningSimulator) -> None:
    queue_while_down(ledger_engine, graph_client, meta_sim, [["a-1", "a-2"], ["a-3"]])
    times = {e.event_id: e.event_time for e in ledger_events(ledger_engine)}
    assert received_ids(meta_sim) == []
    report = forward_pending(session_factory(ledger_engine), client_for_pixel=lambda _p: graph_client,
                             now=utcnow(), batch_size=2)
    assert (report.sent, report.total("delivered"), report.total("requests")) == (3, 3, 2)
    assert sorted(received_ids(meta_sim)) == ["a-1", "a-2", "a-3"]
    sent_times = {item["event"]["event_id"]: item["event"]["event_time"]
                  for item in meta_sim.state.received(PIXEL)}
    assert sent_times == {event_id: int(t.timestamp()) for event_id, t in times.items()}
    assert [e.delivery_status for e in ledger_events(ledger_engine)] == ["delivered"] * 3
    again = forward_pending(session_factory(ledger_engine), client_for_pixel=lambda _p: graph_client,
                            now=utcnow())
    assert again.sent == 0 and len(received_ids(meta_sim)) == 3


def test_still_rate_limited_keeps_events_pending(
        ledger_engine: Engine, graph_client: GraphClient, meta_sim: RunningSimulator) -> None:
    queue_while_down(ledger_engine, graph_client, meta_sim, [["r-1"]])
    meta_sim.state.add_fault(Fault(mode="rate_limit", remaining=10, endpoint="events", code=17))
    report = forward_pending(session_factory(ledger_engine), client_for_pixel=lambda _p: graph_client,
                             now=utcnow())
    assert report.sent == 0 and report.pixels[0].still_pending == 1 and report.pixels[0].errors
    assert received_ids(meta_sim) == []


class _CrashAfterSend(BaseException):
    """Stands for the process dying between Meta's answer and the commit that records it."""


class CrashingClient(GraphClient):
    def send_events(self, pixel_id: str, events: Sequence[Any], **kwargs: Any) -> SendResult:
        super().send_events(pixel_id, events, **kwargs)
        raise _CrashAfterSend


def test_crash_between_send_and_commit_leaves_events_uncertain_not_resent(
        ledger_engine: Engine, graph_client: GraphClient, meta_sim: RunningSimulator) -> None:
    queue_while_down(ledger_engine, graph_client, meta_sim, [["c-1", "c-2"]])
    now = utcnow()
    with CrashingClient(base_url=meta_sim.url, access_token=SIM_TOKEN, max_retries=0) as crashing, \
            pytest.raises(_CrashAfterSend):
        forward_pending(session_factory(ledger_engine), client_for_pixel=lambda _p: crashing, now=now)
    assert len(received_ids(meta_sim)) == 2
    # A run while the claim is fresh leaves it alone (its sender may be alive); a later one, after the
    # lease, reports it uncertain. Neither sends it again.
    soon = forward_pending(session_factory(ledger_engine), client_for_pixel=lambda _p: graph_client, now=now)
    assert soon.sent == 0 and soon.pixels == []
    later = forward_pending(session_factory(ledger_engine), client_for_pixel=lambda _p: graph_client,
                            now=now + timedelta(minutes=20))
    assert later.sent == 0 and later.uncertain == 2
    assert len(received_ids(meta_sim)) == 2
    assert [e.delivery_status for e in ledger_events(ledger_engine)] == ["uncertain"] * 2


def test_no_token_waits_and_too_old_events_fail_without_sending(
        ledger_engine: Engine, graph_client: GraphClient, meta_sim: RunningSimulator) -> None:
    queue_while_down(ledger_engine, graph_client, meta_sim, [["w-1"], ["o-1"]])
    with Session(ledger_engine) as session:
        session.execute(update(Event).where(Event.event_id == "o-1").values(
            event_time=utcnow() - timedelta(days=8)))
        session.commit()
    report = forward_pending(session_factory(ledger_engine), client_for_pixel=lambda _p: None, now=utcnow())
    line = report.pixels[0]
    assert (line.too_old, line.still_pending, line.sent) == (1, 1, 0)
    assert line.waiting_reason and "token" in line.waiting_reason
    statuses = {e.event_id: (e.delivery_status, e.last_error_subcode) for e in ledger_events(ledger_engine)}
    assert statuses["o-1"] == ("failed", 2804003) and statuses["w-1"][0] == "pending"
    assert received_ids(meta_sim) == []
