"""Executing fixes against the Graph API simulator over loopback: chunking, idempotency, crash and
resume, uncertain chunks, too-old events, rate limits, deliveries recorded in the ledger."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from tests.fixtures.db import PIXEL
from tests.integration.test_fixes_support import AT, approved, received_ids, seed, sessions
from tools.fixes.execute import ChunkProgress, execute_fix, release_uncertain
from tools.fixes.planner import get_proposal
from tools.fixes.trail import trail
from tools.fixes.types import ProposalNotApproved
from tools.ledger.models import Delivery, Event
from tools.meta.client import GraphClient
from tools.meta.simulator import Fault, RunningSimulator

SIM_NOW = AT  # the clock of the simulator fixture ``sim``
H1 = AT - timedelta(hours=5)


def test_2500_events_go_in_3_requests_once_and_a_second_run_sends_nothing(
        ledger_engine: Engine, sim: RunningSimulator, graph_client: GraphClient) -> None:
    seed(ledger_engine, 2500, event_time=H1)
    proposal_id = approved(ledger_engine)
    result = execute_fix(sessions(ledger_engine), proposal_id=proposal_id, client=graph_client, at=AT)
    assert (result.sent, result.received, result.requests, result.finished) == (2500, 2500, 3, True)
    ids = received_ids(sim)
    assert len(ids) == 2500 and set(ids.values()) == {1}
    sent_events = {item["event"]["event_id"]: item["event"] for item in sim.state.received(PIXEL)}
    assert sent_events["ev-7"]["event_time"] == int(H1.timestamp())  # event_time kept
    with Session(ledger_engine) as session:
        sizes = sorted(session.scalars(select(Delivery.events_sent).where(Delivery.fix_id == proposal_id)))
        assert sizes == [500, 1000, 1000]
        undelivered = session.scalar(select(func.count()).select_from(Event).where(
            Event.delivery_status != "delivered"))
        assert undelivered == 0
    again = execute_fix(sessions(ledger_engine), proposal_id=proposal_id, client=graph_client, at=AT)
    assert again == result
    assert len(sim.state.received(PIXEL)) == 2500
    with Session(ledger_engine) as session:
        assert get_proposal(session, proposal_id).status == "executed"  # type: ignore[union-attr]
        actions = [e.action for e in trail(session, proposal_id)]
    assert actions == ["proposed", "approved", "execution_started", "executed"]


def test_an_unapproved_proposal_does_not_run(ledger_engine: Engine, graph_client: GraphClient) -> None:
    from tools.fixes.planner import propose_fix
    seed(ledger_engine, 3, event_time=H1)
    with Session(ledger_engine) as session:
        proposal = propose_fix(session, pixel_id=PIXEL, kind="replay", at=AT,
                               params={"since": "2026-11-19T00:00:00Z", "until": "2026-11-20T12:00:00Z"})
    with pytest.raises(ProposalNotApproved):
        execute_fix(sessions(ledger_engine), proposal_id=proposal.id, client=graph_client, at=AT)


class Crash(Exception):
    pass


def test_crash_between_chunks_resumes_and_sends_each_event_once(
        ledger_engine: Engine, sim: RunningSimulator, graph_client: GraphClient) -> None:
    seed(ledger_engine, 250, event_time=H1)
    proposal_id = approved(ledger_engine)

    def crash_after_first(progress: ChunkProgress) -> None:
        if progress.seq == 0:
            raise Crash("process killed")

    with pytest.raises(Crash):
        execute_fix(sessions(ledger_engine), proposal_id=proposal_id, client=graph_client, at=AT,
                    batch_size=100, on_chunk=crash_after_first)
    assert len(sim.state.received(PIXEL)) == 100
    with Session(ledger_engine) as session:
        assert get_proposal(session, proposal_id).status == "executing"  # type: ignore[union-attr]
    result = execute_fix(sessions(ledger_engine), proposal_id=proposal_id, client=graph_client, at=AT,
                         batch_size=100)
    ids = received_ids(sim)
    assert len(ids) == 250 and set(ids.values()) == {1}
    assert (result.sent, result.uncertain, result.finished) == (250, 0, True)


class CrashAfterSending:
    """Delegates to a real client, then dies on the given call after the request was answered."""

    def __init__(self, client: GraphClient, crash_on: int) -> None:
        self.client, self.crash_on, self.calls = client, crash_on, 0

    def send_events(self, pixel_id: str, events: Any, **kw: Any) -> Any:
        self.calls += 1
        answer = self.client.send_events(pixel_id, events, **kw)
        if self.calls == self.crash_on:
            raise Crash("killed before the answer was recorded")
        return answer


def test_chunk_left_sending_is_uncertain_and_not_resent_until_released(
        ledger_engine: Engine, sim: RunningSimulator, graph_client: GraphClient) -> None:
    seed(ledger_engine, 300, event_time=H1)
    proposal_id = approved(ledger_engine)
    with pytest.raises(Crash):
        execute_fix(sessions(ledger_engine), proposal_id=proposal_id, at=AT, batch_size=100,
                    client=CrashAfterSending(graph_client, crash_on=2))  # type: ignore[arg-type]
    assert len(sim.state.received(PIXEL)) == 200
    result = execute_fix(sessions(ledger_engine), proposal_id=proposal_id, client=graph_client, at=AT,
                         batch_size=100)
    assert (result.sent, result.uncertain, result.finished) == (200, 100, True)
    ids = received_ids(sim)
    assert len(ids) == 300 and set(ids.values()) == {1}  # the uncertain chunk was not sent twice
    with Session(ledger_engine) as session:
        assert "chunk_uncertain" in [e.action for e in trail(session, proposal_id)]
        assert release_uncertain(session, proposal_id=proposal_id, actor="U123", at=AT) == [1]
    again = execute_fix(sessions(ledger_engine), proposal_id=proposal_id, client=graph_client, at=AT,
                        batch_size=100)
    assert (again.sent, again.uncertain) == (300, 0)
    assert received_ids(sim)["ev-150"] == 2  # a person chose to resend it


def test_events_too_old_at_send_time_are_skipped_and_reported(
        ledger_engine: Engine, sim: RunningSimulator, graph_client: GraphClient) -> None:
    seed(ledger_engine, 4, event_time=AT - timedelta(days=6, hours=20), prefix="aging")
    seed(ledger_engine, 6, event_time=H1, prefix="fresh")
    proposal_id = approved(ledger_engine, params={"since": "2026-11-13T00:00:00Z",
                                                  "until": "2026-11-20T12:00:00Z"})
    with Session(ledger_engine) as session:
        assert get_proposal(session, proposal_id).preview.total_events == 10  # type: ignore[union-attr]
    later = AT + timedelta(hours=6)  # the approval came late: 4 events are now past 7 days
    sim.state.set_now(later)
    result = execute_fix(sessions(ledger_engine), proposal_id=proposal_id, client=graph_client, at=later)
    assert (result.sent, result.skipped, result.skipped_by_reason) == (6, 4, {"too_old": 4})
    assert set(received_ids(sim)) == {f"fresh-{i}" for i in range(6)}


def test_rate_limit_pauses_and_resume_finishes(
        ledger_engine: Engine, sim: RunningSimulator, graph_client: GraphClient) -> None:
    seed(ledger_engine, 250, event_time=H1)
    proposal_id = approved(ledger_engine)
    sim.state.add_fault(Fault(mode="rate_limit", code=80004, remaining=10, endpoint="events"))
    paused = execute_fix(sessions(ledger_engine), proposal_id=proposal_id, client=graph_client, at=AT,
                         batch_size=100)
    assert (paused.sent, paused.finished) == (0, False)
    assert paused.requests == 3  # the client's own retries (max_retries=2) before giving up
    with Session(ledger_engine) as session:
        assert get_proposal(session, proposal_id).status == "executing"  # type: ignore[union-attr]
        errors = session.scalars(select(Delivery.error_code).where(Delivery.fix_id == proposal_id)).all()
        assert errors == [80004]
    sim.state.clear_faults()
    done = execute_fix(sessions(ledger_engine), proposal_id=proposal_id, client=graph_client, at=AT,
                       batch_size=100)
    assert (done.sent, done.finished) == (250, True)
    assert set(received_ids(sim).values()) == {1} and len(received_ids(sim)) == 250
