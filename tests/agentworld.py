"""Builders for the agent graph tests: a small scenario's ledger + the Graph API simulator, the
agent's services over them (as one "process": own engine, own checkpointer), and scripted LLM turns.

Generating and ingesting a scenario takes seconds, so it is done once per scenario and test session
into a template SQLite ledger; each test gets its own copy of that file and its own simulator.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.agent_services import AgentServices
from agent.llm import LLMAdapter
from agent.settings import load_settings
from agent.wiring import AgentWiring, open_agent
from evals.harness import ScenarioWorld, scenario_world
from tests.fakes.openai_server import Answer, ToolCalls
from tools.fixes.models import FixProposalRow
from tools.fixes.planner import get_proposal
from tools.fixes.trail import trail
from tools.fixes.types import FixProposal, TrailEntry
from tools.ledger.db import make_engine
from tools.ledger.ingest import ingest_events_jsonl
from tools.ledger.pixels import PixelConfig
from tools.meta.client import GraphClient
from tools.meta.simulator import run_simulator_in_thread
from tools.meta.simulator.state import SimState
from tools.synth.generator import GeneratedFiles
from tools.synth.scenario import Scenario, find_scenario

# missed_batch.v1: an hour of events recorded but never sent; the deterministic diagnosis proposes a
# replay of ~100 events. Two days of history are enough for the parity and volume checks to fire.
SCENARIO_ID = "missed_batch.v1"
SMALL_DAYS = 2


def small_scenario(scenario_id: str = SCENARIO_ID, *, days: int = SMALL_DAYS) -> Scenario:
    """A library scenario cut to its last ``days`` days (the audit time and injections unchanged)."""
    scenario = find_scenario(scenario_id)
    start = scenario.audit_at.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
    data = scenario.model_dump()
    data.update(start=start, days=days)
    return Scenario.model_validate(data)  # validated again: the injections must still fit


@dataclass(frozen=True)
class WorldTemplate:
    scenario: Scenario
    files: GeneratedFiles
    ledger_path: Path


_TEMPLATES: dict[str, WorldTemplate] = {}


def world_template(scenario: Scenario, factory: pytest.TempPathFactory) -> WorldTemplate:
    """The scenario generated and ingested once per test session (cached by scenario id)."""
    if scenario.id not in _TEMPLATES:
        workdir = factory.mktemp(f"template-{scenario.id.replace('.', '_')}")
        with scenario_world(scenario, workdir) as world:
            files = world.files
        _TEMPLATES[scenario.id] = WorldTemplate(scenario, files, workdir / "ledger.db")
    return _TEMPLATES[scenario.id]


def _copy_sqlite(source: Path, target: Path) -> None:
    # The backup API copies a consistent database whatever is still in the source's WAL file.
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


@contextmanager
def agent_world(template: WorldTemplate, workdir: Path,
                extra_events: Sequence[Mapping[str, Any]] = ()) -> Iterator[ScenarioWorld]:
    """A fresh copy of the template's ledger (plus ``extra_events``, ingest lines) and a fresh
    simulator whose clock stands at the scenario's audit time."""
    ledger_path = workdir / "ledger.db"
    _copy_sqlite(template.ledger_path, ledger_path)
    engine = make_engine(f"sqlite:///{ledger_path}")
    try:
        if extra_events:
            extra = workdir / "extra.jsonl"
            extra.write_text("".join(json.dumps(line) + "\n" for line in extra_events))
            ingest_events_jsonl(session_or_engine=engine, path=extra, now=template.scenario.audit_at)
        scenario = template.scenario
        pixel = PixelConfig(id=scenario.pixel_id, name=scenario.id, timezone=scenario.timezone)
        state = SimState.load(template.files.meta_state_path)
        state.set_now(scenario.audit_at)
        with run_simulator_in_thread(state) as simulator:
            yield ScenarioWorld(scenario=scenario, files=template.files, engine=engine,
                                simulator=simulator, pixel=pixel)
    finally:
        engine.dispose()


def database_url(world: ScenarioWorld) -> str:
    return world.engine.url.render_as_string(hide_password=False)


@contextmanager
def agent_services(world: ScenarioWorld, *, adapter: LLMAdapter | None = None,
                   auto_approve_kinds: Iterable[str] = (),
                   client_factory: Callable[[PixelConfig], GraphClient | None] | None = None,
                   ) -> Iterator[AgentServices]:
    """The agent as one process would run it: its own engine and checkpointer on the world's
    database, a fixed clock (the scenario's audit time), Graph clients pointing at the simulator.
    Leaving the block closes everything, like a process exit."""
    url = database_url(world)
    world.simulator.state.set_now(world.scenario.audit_at)
    engine = make_engine(url)
    try:
        wiring = AgentWiring(settings=load_settings(database_url=url), engine=engine)
        with open_agent(wiring, adapter=adapter, clock=lambda: world.scenario.audit_at,
                        auto_approve_kinds=frozenset(auto_approve_kinds),
                        client_factory=client_factory or (lambda _pixel: world.client())) as services:
            yield services
    finally:
        engine.dispose()


# --- reading the outcome ------------------------------------------------------------------------

def received_events(world: ScenarioWorld) -> list[dict[str, Any]]:
    """The server events the simulator accepted (what really reached "Meta")."""
    return [item["event"] for item in world.simulator.state.received(world.pixel.id)]


def event_keys(events: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, int]]:
    return [(str(e.get("event_name")), str(e.get("event_id")), int(e["event_time"])) for e in events]


def proposal_of(world: ScenarioWorld, proposal_id: str) -> FixProposal:
    with Session(world.engine) as session:
        proposal = get_proposal(session, proposal_id)
    assert proposal is not None
    return proposal


def proposals_of(world: ScenarioWorld) -> list[FixProposal]:
    with Session(world.engine) as session:
        ids = session.scalars(select(FixProposalRow.id)).all()
        return [p for p in (get_proposal(session, pid) for pid in ids) if p is not None]


def trail_of(world: ScenarioWorld, proposal_id: str) -> list[TrailEntry]:
    with Session(world.engine) as session:
        return trail(session, proposal_id)


def only_proposal_id(state: Mapping[str, Any]) -> str:
    """The one proposal an audit of the small scenario makes (its replay)."""
    proposals = state["proposals"]
    assert [p["kind"] for p in proposals] == ["replay"], proposals
    return str(proposals[0]["id"])


# --- scripted LLM turns -------------------------------------------------------------------------

def prompt_block(body: Mapping[str, Any], tag: str) -> Any:
    """The JSON data block ``<tag>...</tag>`` of the request's first user message."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    start = user.index(f"<{tag}>") + len(tag) + 2
    return json.loads(user[start:user.index(f"</{tag}>")])


def confirm_diagnosis(narrative: str, *, confidence: float = 0.88) -> Callable[[dict[str, Any]], Answer]:
    """A script item answering like a good model: the deterministic root cause confirmed, citing the
    incident's findings as the request shows them."""

    def answer(body: dict[str, Any]) -> Answer:
        diagnosis = prompt_block(body, "deterministic_diagnosis")
        return Answer(json.dumps({
            "root_cause": diagnosis["root_cause"], "confidence": confidence,
            "finding_ids": diagnosis["finding_ids"], "narrative": narrative,
            "fix_kinds": diagnosis["fix_kinds"]}))

    return answer


def drill_then_confirm(narrative: str, tool_calls: Callable[[dict[str, Any]], list[tuple[str, Any]]]
                       ) -> Callable[[dict[str, Any]], Any]:
    """A script item for every diagnosis request of an audit, whatever the number of incidents: a
    fresh conversation gets ``tool_calls(body)``, one that has the tools' answers gets the
    confirmation (queue it twice per incident)."""
    confirm = confirm_diagnosis(narrative)

    def respond(body: dict[str, Any]) -> Any:
        if body["messages"][-1]["role"] == "tool":
            return confirm(body)
        return ToolCalls(tool_calls(body))

    return respond


def first_finding_id(body: Mapping[str, Any]) -> str:
    return str(prompt_block(body, "findings")[0]["id"])
