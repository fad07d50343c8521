"""The audit graph with a scripted LLM behind the real openai client: diagnosis with tool calls, an
invalid answer, an LLM that times out or is down. The deterministic audit is the reference."""

from __future__ import annotations

import json
import socket

import pytest
from sqlalchemy.orm import Session

from agent.reasoning.offline import narrate
from evals.harness import ScenarioWorld
from tests.agentworld import (
    agent_services,
    confirm_diagnosis,
    first_finding_id,
    only_proposal_id,
)
from tests.fakes.openai_server import Answer, Delay, ToolCalls
from tools.audit.runner import PixelAudit, audit_pixel
from tools.ledger.models import Audit

NARRATIVE = "Server events stopped at 18:00 while the browser kept counting: the batch never ran."


def deterministic(world: ScenarioWorld) -> PixelAudit:
    """The rules-only audit of the same hour (not stored)."""
    with Session(world.engine) as session, world.client() as client:
        return audit_pixel(session, pixel=world.pixel, at=world.scenario.audit_at, client=client, store=False)


def audit_row(world: ScenarioWorld, audit_id: int) -> Audit:
    with Session(world.engine) as session:
        row = session.get(Audit, audit_id)
    assert row is not None
    return row


def test_diagnosis_with_tool_calls_puts_the_llm_narrative_in_the_report(world, fake_openai, llm_adapter):
    fake_openai.script(
        lambda body: ToolCalls([("finding_detail", {"finding_id": first_finding_id(body)}),
                                ("hourly_counts", {"event_name": "PageView", "source": "server", "hours": 3})]),
        confirm_diagnosis(NARRATIVE),
    )
    reference = deterministic(world)
    with agent_services(world, adapter=llm_adapter) as services:
        state = services.audit_pixel(world.pixel, world.scenario.audit_at)

    [incident] = state["report"]["incidents"]
    assert incident["narrative"] == NARRATIVE
    assert incident["root_cause"] == reference.incidents[0].root_cause
    assert incident["confidence"] == 0.88
    assert state["diagnosis_sources"] == {incident["id"]: "llm"}
    # The model's drill-downs ran on the audit's data and went back to it.
    assert len(fake_openai.requests) == 2 and fake_openai.pending == 0
    tool_answers = [m["content"] for m in fake_openai.requests[1]["messages"] if m["role"] == "tool"]
    assert len(tool_answers) == 2
    detail = json.loads(tool_answers[0])
    assert detail["id"] == first_finding_id(fake_openai.requests[0])
    assert "error" not in json.loads(tool_answers[1])
    # Tokens are recorded on the audit row, along with how the incident was diagnosed.
    row = audit_row(world, state["audit_id"])
    assert state["tokens_used"] > 0 and row.tokens_used == state["tokens_used"]
    assert row.result["diagnosis_sources"] == {incident["id"]: "llm"}
    # A confirmed diagnosis keeps the catalogue's fix: the replay waits for a person.
    assert only_proposal_id(state)
    assert state["approval_requests"][0]["type"] == "fix_approval"


@pytest.mark.parametrize(("content", "reason"), [
    ("The server is down. Approve the replay now.", "invalid_answer:bad_json"),
    (json.dumps({"root_cause": "dedup_broken", "confidence": 0.9, "finding_ids": ["f_made_up"],
                 "narrative": "Dedup broke.", "fix_kinds": ["manual"]}), "invalid_answer:unknown_finding_id"),
    (json.dumps({"root_cause": "none", "confidence": 0.9, "finding_ids": ["PLACEHOLDER"],
                 "narrative": "All fine.", "fix_kinds": []}), "invalid_answer:dismissed_incident"),
])
def test_an_invalid_answer_keeps_the_deterministic_root_cause(world, fake_openai, llm_adapter, content,
                                                              reason):
    def answer(body):  # cite a real finding where the case needs one, so only the intended flaw remains
        return Answer(content.replace("PLACEHOLDER", first_finding_id(body)))

    fake_openai.script(answer)
    reference = deterministic(world)
    with agent_services(world, adapter=llm_adapter) as services:
        state = services.audit_pixel(world.pixel, world.scenario.audit_at)

    [incident] = state["incidents"]
    [expected] = reference.incidents
    assert incident["id"] == expected.id and incident["root_cause"] == expected.root_cause
    assert [f["kind"] for f in incident["fixes"]] == [f.kind for f in expected.fixes]
    assert state["diagnosis_sources"] == {expected.id: f"fallback ({reason})"}
    assert state["narratives"][expected.id] == narrate(expected, reference.findings)
    assert len(fake_openai.requests) == 1
    row = audit_row(world, state["audit_id"])
    assert row.result["diagnosis_sources"] == {expected.id: f"fallback ({reason})"}
    assert row.tokens_used == state["tokens_used"] > 0  # the failed answer still cost tokens


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("failure", ["timeout", "down"])
def test_an_llm_that_times_out_or_is_down_falls_back_and_the_audit_completes(
        world, fake_openai, make_llm_adapter, failure):
    if failure == "timeout":
        fake_openai.script(Delay(1.5, confirm_diagnosis(NARRATIVE)))
        adapter = make_llm_adapter(timeout_seconds=0.3)
    else:
        adapter = make_llm_adapter(base_url=f"http://127.0.0.1:{_closed_port()}/v1")
    reference = deterministic(world)
    with agent_services(world, adapter=adapter) as services:
        state = services.audit_pixel(world.pixel, world.scenario.audit_at)

    [expected] = reference.incidents
    [source] = state["diagnosis_sources"].values()
    assert source.startswith("fallback (llm_unavailable:")
    if failure == "timeout":
        assert source == "fallback (llm_unavailable:timeout)"
    assert state["incidents"][0]["root_cause"] == expected.root_cause
    assert state["report"]["incidents"][0]["narrative"] == narrate(expected, reference.findings)
    assert state["tokens_used"] == 0
    row = audit_row(world, state["audit_id"])
    assert row.findings == len(reference.findings) and row.tokens_used == 0
    assert only_proposal_id(state)  # the deterministic fix is still proposed


def test_without_an_llm_the_graph_matches_the_deterministic_audit(world, fake_openai):
    reference = deterministic(world)
    with agent_services(world) as services:
        state = services.audit_pixel(world.pixel, world.scenario.audit_at)
    assert [i["id"] for i in state["incidents"]] == [i.id for i in reference.incidents]
    assert set(state["diagnosis_sources"].values()) == {"offline"}
    assert fake_openai.requests == []
