"""The scheduler over the real AgentServices: a scenario's ledger, the Graph API simulator on
loopback, the audit graph with the offline reasoner. Each due hour gets one stored audit of exactly
that hour."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.agent_services import AgentServices
from agent.scheduler import Scheduler
from agent.settings import load_settings
from agent.wiring import AgentWiring, open_agent, open_wiring
from evals.harness import scenario_world
from tools.ledger.models import Audit
from tools.ledger.pixels import PixelConfig
from tools.schedule.claims import AuditClaim, claim, finish
from tools.synth.scenario import Scenario, find_scenario
from tools.timeutil import as_utc, floor_hour


def short_scenario() -> Scenario:
    base = find_scenario("healthy_small_shop.v1")
    data = base.model_dump()
    data.update(days=6, audit_at=base.start + timedelta(days=5, hours=13))
    return Scenario.model_validate(data)


def test_scheduler_runs_real_audits_for_each_due_hour(tmp_path: Path) -> None:
    scenario = short_scenario()
    now = scenario.audit_at + timedelta(minutes=12)
    last = floor_hour(now) - timedelta(hours=3)
    with scenario_world(scenario, tmp_path) as world:
        world.simulator.state.set_now(now)
        wiring = AgentWiring(settings=load_settings(database_url=str(world.engine.url)), engine=world.engine)
        services = AgentServices(wiring=wiring, checkpointer=InMemorySaver(),
                                 client_factory=lambda _pixel: world.client(), clock=lambda: now)
        with Session(world.engine) as session:
            claim(session, pixel_id=world.pixel.id, window_end=last, worker="past", now=last)
            finish(session, pixel_id=world.pixel.id, window_end=last, worker="past", now=last, status="done")
        states: list[dict[str, Any]] = []

        def keep(pixel: PixelConfig, state: dict[str, Any]) -> None:
            assert pixel.id == world.pixel.id
            states.append(state)

        sched = Scheduler(services_factory=services, pixels=lambda: [world.pixel], worker_id="real",
                          clock=lambda: now, on_audit=keep)
        records = sched.run_once()
        expected = [last + timedelta(hours=h) for h in (1, 2, 3)]
        assert [(r.window_end, r.status) for r in records] == [(end, "done") for end in expected], records
        with Session(world.engine) as session:
            audits = session.scalars(select(Audit).order_by(Audit.id)).all()
            claimed = session.scalars(select(AuditClaim).where(AuditClaim.claimed_by == "real")).all()
        assert [as_utc(a.window_end) for a in audits] == expected
        assert [as_utc(a.window_start) for a in audits] == [end - timedelta(hours=1) for end in expected]
        assert [r.audit_id for r in records] == [a.id for a in audits]
        assert {as_utc(c.window_end) for c in claimed} == set(expected)
        assert len(states) == 3 and all("report" in state for state in states)
        assert sched.run_once() == []  # nothing left for this hour


def test_the_agent_opened_per_round_audits_an_empty_ledger_with_the_offline_reasoner(tmp_path: Path) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'agent.db'}", openai_api_key=None,
                             llm_model=None, meta_access_token=None)
    now = floor_hour(short_scenario().audit_at) + timedelta(minutes=15)
    with open_wiring(settings=settings) as wiring:
        sched = Scheduler(services_factory=lambda: open_agent(wiring), pixels=lambda: [PixelConfig(id="42")],
                          worker_id="serve", clock=lambda: now)
        records = sched.run_once()
        assert [(r.pixel_id, r.window_end, r.status) for r in records] == [("42", floor_hour(now), "done")]
        with Session(wiring.engine) as session:
            audits = session.scalars(select(Audit)).all()
        assert [(a.pixel_id, as_utc(a.window_end)) for a in audits] == [("42", floor_hour(now))]
