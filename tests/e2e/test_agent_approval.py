"""Fix approvals through ``AgentServices.resolve_fix``: approve, reject, edit; resuming after a restart
on SQLite and Postgres; a second resume; a crash in the middle of a replay. The simulator's received
events are the proof of what reached "Meta"."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from langgraph.types import Command
from sqlalchemy.orm import Session

import agent.graphs.fix as fix_graph
from evals.harness import ScenarioWorld, scenario_world
from tests.agentworld import (
    agent_services,
    event_keys,
    only_proposal_id,
    proposal_of,
    received_events,
    small_scenario,
    trail_of,
)
from tests.fakes.crash import send_then_die
from tools.fixes.execute import execute_fix, release_uncertain
from tools.meta.client import GraphClient
from tools.timeutil import parse_iso, to_iso, to_unix

APPROVER = "U0APPROVER"



def start_audit(world: ScenarioWorld) -> tuple[str, dict[str, Any]]:
    """Audit in one short-lived "process"; returns the replay proposal's id and its approval request."""
    with agent_services(world) as services:
        state = services.audit_pixel(world.pixel, world.scenario.audit_at)
        proposal_id = only_proposal_id(state)
        request = services.pending_request(proposal_id)
    assert request is not None and request == state["approval_requests"][0]
    assert received_events(world) == []  # nothing runs before a person answers
    return proposal_id, request


def assert_sent_once(world: ScenarioWorld, expected: int) -> None:
    keys = event_keys(received_events(world))
    assert len(keys) == expected
    assert [k for k, n in Counter(keys).items() if n > 1] == []


def test_approve_runs_the_replay_once_and_verifies_it(world):
    proposal_id, request = start_audit(world)
    assert request["allowed_actions"] == ["approve", "reject", "edit"]
    total = request["proposal"]["preview"]["total_events"]
    assert total > 0

    with agent_services(world) as services:
        outcome = services.resolve_fix(proposal_id, action="approve", by=APPROVER)
        assert services.pending_request(proposal_id) is None

    assert outcome["outcome"] == "executed"
    assert outcome["result"]["sent"] == outcome["result"]["received"] == total
    assert outcome["verification"]["resolved"] is True
    assert_sent_once(world, total)
    proposal = proposal_of(world, proposal_id)
    assert proposal.status == "executed" and proposal.decided_by == APPROVER
    actions = [(entry.action, entry.actor) for entry in trail_of(world, proposal_id)]
    assert actions[:2] == [("proposed", "agent"), ("approved", APPROVER)]
    # As a set: under a fixed clock "verified" is stamped at the clock's time, before the execution's
    # own entries (which add the elapsed wall time), so the trail's time order puts it first.
    assert sorted(a for a, _ in actions[2:]) == ["executed", "execution_started", "verified"]


def test_reject_sends_nothing(world):
    proposal_id, _ = start_audit(world)
    with agent_services(world) as services:
        outcome = services.resolve_fix(proposal_id, action="reject", by=APPROVER)
        assert services.pending_request(proposal_id) is None
    assert outcome["outcome"] == "rejected"
    assert received_events(world) == []
    proposal = proposal_of(world, proposal_id)
    assert proposal.status == "rejected" and proposal.decided_by == APPROVER and proposal.result is None


def test_edit_approves_a_narrower_window_and_sends_only_its_events(world):
    proposal_id, request = start_audit(world)
    preview = request["proposal"]["preview"]
    since = parse_iso(preview["since"])
    until = since + timedelta(minutes=30)
    narrower = {"since": to_iso(since), "until": to_iso(until)}

    with agent_services(world) as services:
        outcome = services.resolve_fix(proposal_id, action="edit", by=APPROVER, params=narrower)

    assert outcome["outcome"] == "executed"
    sent = received_events(world)
    assert 0 < len(sent) < preview["total_events"]
    assert all(to_unix(since) <= e["event_time"] < to_unix(until) for e in sent)
    assert outcome["result"]["sent"] == len(sent)
    assert_sent_once(world, len(sent))
    proposal = proposal_of(world, proposal_id)
    assert proposal.params["since"] == narrower["since"] and proposal.params["until"] == narrower["until"]
    assert proposal.preview.total_events == len(sent)
    edited = [e for e in trail_of(world, proposal_id) if e.action == "edited"]
    assert len(edited) == 1 and edited[0].actor == APPROVER


def _restart_and_approve(world: ScenarioWorld) -> None:
    """Interrupt in one process, approve in a second, answer again in a third."""
    proposal_id, request = start_audit(world)
    total = request["proposal"]["preview"]["total_events"]

    with agent_services(world) as services:  # new engine, new checkpointer, new services
        assert services.pending_request(proposal_id) == request
        outcome = services.resolve_fix(proposal_id, action="approve", by=APPROVER)
    assert outcome["outcome"] == "executed"
    assert_sent_once(world, total)

    with agent_services(world) as services:
        again = services.resolve_fix(proposal_id, action="approve", by="U0SOMEONEELSE")
        assert again["outcome"] == "already_decided" and again["decided_by"] == APPROVER
        # Even a raw resume of the finished run (bypassing resolve_fix's own check) sends nothing.
        services.fix_graph().invoke(Command(resume={"action": "approve", "by": "U0SOMEONEELSE"}),
                                    config={"configurable": {"thread_id": proposal_id}},
                                    context=services.fix_context())
    assert_sent_once(world, total)
    assert proposal_of(world, proposal_id).decided_by == APPROVER
    assert sum(e.action == "execution_started" for e in trail_of(world, proposal_id)) == 1


def test_an_approval_after_a_restart_resumes_and_executes_exactly_once_on_sqlite(world):
    _restart_and_approve(world)


@pytest.mark.postgres
def test_an_approval_after_a_restart_resumes_and_executes_exactly_once_on_postgres(postgres_url, tmp_path):
    with scenario_world(small_scenario(), tmp_path, database_url=postgres_url) as world:
        assert world.engine.dialect.name == "postgresql"
        _restart_and_approve(world)


@pytest.mark.parametrize("crash", ["after_send", "before_send"])
def test_a_crash_during_the_replay_resumes_without_sending_anything_twice(world, monkeypatch, crash):
    # Smaller batches than Meta's 1000 give the replay several chunks to crash between.
    monkeypatch.setattr(fix_graph, "run_fix", lambda *a, **kw: execute_fix(*a, **{**kw, "batch_size": 40}))
    real_send = GraphClient.send_events

    proposal_id, request = start_audit(world)
    total = request["proposal"]["preview"]["total_events"]
    assert total > 80  # three chunks at least
    monkeypatch.setattr(GraphClient, "send_events", send_then_die(crash))
    with agent_services(world) as services, pytest.raises(RuntimeError, match="process killed"):
        services.resolve_fix(proposal_id, action="approve", by=APPROVER)
    first_chunk = 40
    assert len(received_events(world)) == first_chunk + (40 if crash == "after_send" else 0)
    assert proposal_of(world, proposal_id).status == "executing"

    monkeypatch.setattr(GraphClient, "send_events", real_send)
    with agent_services(world) as services:  # the restarted process finishes the decided run
        outcome = services.resolve_fix(proposal_id, action="approve", by=APPROVER)
    assert outcome["outcome"] == "executed"
    # The chunk caught between request and record is never re-sent on its own: Meta may have it.
    assert outcome["result"]["uncertain"] == 40
    assert outcome["result"]["sent"] == total - 40
    if crash == "after_send":
        assert_sent_once(world, total)  # everything delivered, nothing twice
        return
    assert_sent_once(world, total - 40)
    # A person checked Meta, found the chunk missing and released it; the run then completes it.
    with Session(world.engine) as session:
        assert release_uncertain(session, proposal_id=proposal_id, actor=APPROVER,
                                 at=world.scenario.audit_at) == [1]
    with agent_services(world) as services:
        outcome = services.resolve_fix(proposal_id, action="approve", by=APPROVER)
    assert outcome["outcome"] == "executed" and outcome["result"]["uncertain"] == 0
    assert_sent_once(world, total)
