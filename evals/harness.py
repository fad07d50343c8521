"""Running a scenario through the real path: generate -> ingest -> simulator over loopback -> audit.

Used by the end-to-end tests and by ``capi-agent eval``. Each run gets its own ledger (a SQLite file
in the work folder unless a database URL is given) and its own simulator on a free loopback port.
The scenario's period is generated once (``tools.synth.timeline``); before each audit the ledger and
the simulator are brought to what existed at that hour, never further (no future leak).
"""

from __future__ import annotations

import copy
import json
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
from tools.ledger.deliveries import record_delivery
from tools.ledger.ingest import BATCH_SIZE, parse_delivery, parse_order_line, store_orders
from tools.ledger.pixels import PixelConfig
from tools.ledger.store import AttemptStatus, DeliveryOutcome, IncomingEvent, store_events
from tools.meta.client import GraphClient
from tools.meta.simulator import RunningSimulator, run_simulator_in_thread
from tools.meta.simulator.state import SimState
from tools.senders.envelope import with_sender
from tools.senders.track import record_import_senders
from tools.synth.generator import GeneratedFiles
from tools.synth.ledger import SIM_TOKEN, empty_ledger, load_scenario_ledger
from tools.synth.records import RETRYABLE_CODES, ServerEvent, delivery_line, order_line
from tools.synth.scenario import Scenario, materialize
from tools.synth.timeline import Timeline, build_timeline
from tools.timeutil import as_utc, audit_window

AuditFn = Callable[[Session, PixelConfig, datetime, GraphClient], PixelAudit]


def deterministic_audit(session: Session, pixel: PixelConfig, at: datetime,
                        client: GraphClient) -> PixelAudit:
    return audit_pixel(session, pixel=pixel, at=at, client=client)


class LedgerFeed:
    """Feeds a ledger from a timeline as time passes: before an audit at ``at``, the events received
    by ``at`` (with the attempts made by then), later attempts for events already stored (as the
    relay records them), and the orders taken before ``at``. Nothing from after ``at`` gets in."""

    def __init__(self, engine: Engine, timeline: Timeline) -> None:
        self.engine, self.timeline = engine, timeline
        self.fed_until: datetime | None = None
        self._next_event = 0
        self._next_order = 0
        self._row_ids: dict[int, int] = {}
        self._attempts_recorded: dict[int, int] = {}  # index -> attempts already in the ledger

    def advance(self, at: datetime) -> None:
        at = as_utc(at)
        if self.fed_until is not None and at < self.fed_until:
            raise ValueError("the ledger cannot go back in time")
        server = self.timeline.traffic.server
        pixel_id = self.timeline.pixel_id
        with Session(self.engine, expire_on_commit=False) as session:
            self._record_later_attempts(session, at)
            stop = self.timeline.received_count(at)
            for begin in range(self._next_event, stop, BATCH_SIZE):
                indexes = list(range(begin, min(stop, begin + BATCH_SIZE)))
                items = [with_sender(IncomingEvent(pixel_id=pixel_id, received_at=server[i].received_at,
                                                   event=server[i].event, delivery=_outcome_at(server[i], at)),
                                     server[i].sender, error=ValueError) for i in indexes]
                stored = store_events(session, items)
                record_import_senders(session, items, stored.event_row_ids)  # as ingest does
                for i, row_id in zip(indexes, stored.event_row_ids, strict=True):
                    attempts = server[i].attempts
                    if row_id is not None and attempts:
                        done = sum(1 for attempt in attempts if attempt.at <= at)
                        if done < len(attempts):
                            self._row_ids[i], self._attempts_recorded[i] = row_id, done
                session.commit()
            self._next_event = stop
            orders = self.timeline.orders_by(at)
            if len(orders) > self._next_order:
                store_orders(session, [order_row(pixel_id, o) for o in orders[self._next_order:]])
                self._next_order = len(orders)
            session.commit()
        self.fed_until = at

    def _record_later_attempts(self, session: Session, at: datetime) -> None:
        """Attempts made since the last feed for events already in the ledger, one delivery per request."""
        server = self.timeline.traffic.server
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i in sorted(self._attempts_recorded):
            attempts = server[i].attempts or []
            done = self._attempts_recorded[i]
            for attempt in attempts[done:]:
                if attempt.at > at:
                    break
                key = (attempt.at, attempt.http_status, attempt.error_code, attempt.error_subcode, attempt.fbtrace_id)
                groups.setdefault(key, []).append(self._row_ids[i])
                done += 1
            if done >= len(attempts):
                del self._attempts_recorded[i], self._row_ids[i]
            else:
                self._attempts_recorded[i] = done
        for (attempted_at, http, code, subcode, trace), row_ids in sorted(groups.items(), key=lambda g: g[0][0]):
            ok = http == 200
            status: AttemptStatus = "delivered" if ok else ("pending" if code in RETRYABLE_CODES else "failed")
            record_delivery(session, pixel_id=self.timeline.pixel_id, event_row_ids=row_ids,
                            outcome=DeliveryOutcome(status=status, attempted_at=attempted_at, http_status=http,
                                                    error_code=code, error_subcode=subcode, fbtrace_id=trace,
                                                    events_received=len(row_ids) if ok else 0))
        session.commit()


def _outcome_at(record: ServerEvent, at: datetime) -> DeliveryOutcome | None:
    """The delivery outcome an import line would carry at ``at`` (the ingest's own parser reads it)."""
    if record.attempts is None:
        return None
    seen = copy.copy(record)
    seen.attempts = [attempt for attempt in record.attempts if attempt.at <= at]
    return parse_delivery(delivery_line(seen))


def order_row(pixel_id: str, order: Any) -> dict[str, Any]:
    """The order as ``capi-agent ingest`` reads its line: its customer too (hashed, no IP), which a
    backfill from orders needs."""
    return parse_order_line(json.dumps(order_line(pixel_id, order)))


@dataclass
class ReplayWorld:
    """A scenario's ledger and simulator, fed hour by hour from its timeline (no future leak)."""

    scenario: Scenario
    timeline: Timeline
    feed: LedgerFeed
    engine: Engine
    simulator: RunningSimulator
    pixel: PixelConfig
    timings: dict[str, float] = field(default_factory=dict)
    sent_to_meta: int = 0  # events the simulator received from the agent (fixes), across resets

    def client(self) -> GraphClient:
        return GraphClient(base_url=self.simulator.url, access_token=SIM_TOKEN, timeout=5.0, max_retries=1,
                           sleep=lambda _s: None)

    def advance(self, at: datetime) -> None:
        """Ledger and Meta as they were at ``at``: what was received, attempted and counted by then.
        The first call loads Meta's state at ``at``; later ones add what changed since (the same
        state, without recounting the whole history every hour)."""
        started = time.perf_counter()
        since = self.feed.fed_until
        self.feed.advance(at)
        state = self.simulator.state
        if since is None:
            self.sent_to_meta += len(state.received())
            state.replace_with(SimState.from_dict(self.timeline.meta_state_at(at)))
        else:
            delta = self.timeline.meta_delta(since, at)
            state.add_server_hours(self.timeline.pixel_id, delta["server_hours"])
            state.set_browser_hours(self.timeline.pixel_id, delta["browser_hours"])
            state.add_tokens(expired=delta["expired"])
        state.set_now(at)
        self.timings["feed_s"] = self.timings.get("feed_s", 0.0) + time.perf_counter() - started

    def events_sent_to_meta(self) -> int:
        return self.sent_to_meta + len(self.simulator.state.received())

    def audit(self, at: datetime, audit_fn: AuditFn = deterministic_audit) -> PixelAudit:
        self.advance(at)
        with Session(self.engine, expire_on_commit=False) as session, self.client() as client:
            result = audit_fn(session, self.pixel, at, client)
            session.commit()
        return result


def scenario_timeline(scenario: Scenario) -> Timeline:
    """The scenario's whole audited period, generated once (up to its last audit)."""
    return build_timeline(scenario.shop_config(), start=scenario.start, end=min(scenario.end, scenario.audit_at),
                          seed=scenario.seed, injections=scenario.injections)


@contextmanager
def replay_world(scenario: Scenario, workdir: Path, *,
                 database_url: str | None = None) -> Iterator[ReplayWorld]:
    """Generate the scenario's timeline, an empty ledger and the simulator; ``advance``/``audit``
    feed both up to the audited time."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    timeline = scenario_timeline(scenario)
    timings["generate_s"] = time.perf_counter() - started
    engine, pixel = empty_ledger(scenario, database_url=database_url or f"sqlite:///{workdir / 'ledger.db'}")
    try:
        with run_simulator_in_thread(SimState()) as simulator:
            yield ReplayWorld(scenario=scenario, timeline=timeline, feed=LedgerFeed(engine, timeline),
                                engine=engine, simulator=simulator, pixel=pixel, timings=timings)
    finally:
        engine.dispose()


@dataclass
class ScenarioWorld:
    """A scenario's files as seen at ``audit_at``, ingested at once (demo, agent tests). An audit
    before ``audit_at`` would see later deliveries: the eval uses ``ReplayWorld`` instead."""

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
    with replay_world(scenario, workdir, database_url=database_url) as world:
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
