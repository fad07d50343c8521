"""Running a scenario through the real path: generate -> ingest -> simulator over loopback -> audit.

Used by the end-to-end tests and by ``capi-agent eval``. Each run gets its own ledger (a SQLite file
in the work folder unless a database URL is given) and its own simulator on a free loopback port.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from tools.audit.report import audit_report
from tools.audit.runner import PixelAudit, audit_pixel
from tools.ledger.db import make_engine, migrate
from tools.ledger.ingest import ingest_events_jsonl, ingest_orders_jsonl
from tools.ledger.pixels import PixelConfig, sync_pixels
from tools.meta.client import GraphClient
from tools.meta.simulator import RunningSimulator, run_simulator_in_thread
from tools.meta.simulator.state import SimState
from tools.synth.generator import GeneratedFiles
from tools.synth.scenario import Scenario, materialize
from tools.timeutil import audit_window

SIM_TOKEN = "sim-token"
AuditFn = Callable[[Session, PixelConfig, datetime, GraphClient], PixelAudit]


def deterministic_audit(session: Session, pixel: PixelConfig, at: datetime,
                        client: GraphClient) -> PixelAudit:
    return audit_pixel(session, pixel=pixel, at=at, client=client)


@dataclass
class ScenarioWorld:
    """A scenario's ledger and simulator, ready to audit at any time."""

    scenario: Scenario
    files: GeneratedFiles
    engine: Engine
    simulator: RunningSimulator
    pixel: PixelConfig
    timings: dict[str, float] = field(default_factory=dict)

    def client(self) -> GraphClient:
        return GraphClient(base_url=self.simulator.url, access_token=SIM_TOKEN, timeout=5.0, max_retries=1,
                           sleep=lambda _s: None)

    def audit(self, at: datetime, audit_fn: AuditFn = deterministic_audit) -> PixelAudit:
        self.simulator.state.set_now(at)
        with Session(self.engine, expire_on_commit=False) as session, self.client() as client:
            result = audit_fn(session, self.pixel, at, client)
            session.commit()
        return result


def load_scenario_ledger(scenario: Scenario, files: GeneratedFiles, *,
                         database_url: str) -> tuple[Engine, PixelConfig]:
    """A fresh, migrated ledger with the scenario's pixel configured and its files ingested."""
    engine = make_engine(database_url)
    migrate(engine)
    pixel = PixelConfig(id=scenario.pixel_id, name=scenario.id, timezone=scenario.timezone)
    with Session(engine) as session:
        sync_pixels(session, [pixel])
        session.commit()
    ingest_events_jsonl(session_or_engine=engine, path=files.events_path)
    ingest_orders_jsonl(session_or_engine=engine, path=files.orders_path)
    return engine, pixel


@contextmanager
def scenario_world(scenario: Scenario, workdir: Path, *,
                   database_url: str | None = None) -> Iterator[ScenarioWorld]:
    """Generate the scenario's files, load them into a fresh ledger and start the simulator."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    files = materialize(scenario, workdir)
    timings["generate_s"] = time.perf_counter() - started
    started = time.perf_counter()
    engine, pixel = load_scenario_ledger(scenario, files,
                                         database_url=database_url or f"sqlite:///{workdir / 'ledger.db'}")
    timings["ingest_s"] = time.perf_counter() - started
    try:
        with run_simulator_in_thread(SimState.load(files.meta_state_path)) as simulator:
            yield ScenarioWorld(scenario=scenario, files=files, engine=engine, simulator=simulator,
                                pixel=pixel, timings=timings)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class ScenarioOutcome:
    scenario_id: str
    expected_root_causes: list[str]
    found_root_causes: list[str]
    finding_codes: list[str]
    serious_findings: int
    healthy_expected: bool
    report: dict[str, Any]
    timings: dict[str, float]

    @property
    def passed(self) -> bool:
        if self.healthy_expected:
            return self.serious_findings == 0 and not self.found_root_causes
        return set(self.expected_root_causes) <= set(self.found_root_causes)


def run_scenario(scenario: Scenario, workdir: Path, *, audit_fn: AuditFn = deterministic_audit,
                 database_url: str | None = None) -> ScenarioOutcome:
    """One audit at the scenario's ``audit_at``, compared with what it expects."""
    with scenario_world(scenario, workdir, database_url=database_url) as world:
        started = time.perf_counter()
        audit = world.audit(scenario.audit_at, audit_fn)
        world.timings["audit_s"] = time.perf_counter() - started
    report = audit_report([audit], window=audit_window(scenario.audit_at))
    expected = [c for c in scenario.expect.root_causes if c != "none"]
    return ScenarioOutcome(
        scenario_id=scenario.id, expected_root_causes=expected,
        found_root_causes=sorted({i.root_cause for i in audit.incidents}),
        finding_codes=sorted({f.code for f in audit.findings}),
        serious_findings=sum(f.severity in ("warning", "critical") for f in audit.findings),
        healthy_expected=scenario.expect.healthy, report=report, timings=dict(world.timings),
    )
