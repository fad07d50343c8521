"""Running scenarios for the eval: generate a scenario's period once, then audit it hour by hour
through the audit graph (``AgentServices.audit_pixel``), the same path the scheduler takes.

No future leak: before each audit at hour H the ledger receives only the events, delivery attempts
and orders that existed at H, and the Graph API simulator is reset to what Meta had counted by H
(``evals.harness.ReplayWorld``). A delivery made after H is invisible to the audit at H.

Problem scenarios are audited hourly from their first audit (default: the hour after the earliest
onset) to ``audit_at`` (when ``max_hours`` is set: that many hourly audits, then ``audit_at``),
stopping once an incident with an expected cause appears. Healthy ones are audited
``healthy_hours`` times, hourly, ending at ``audit_at``. The eval never approves a proposal.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tools.synth.scenario import Scenario
from tools.timeutil import HOUR, audit_window, floor_hour, to_iso

DEFAULT_MAX_HOURS: int | None = None  # no cap: each scenario's own audit window
DEFAULT_HEALTHY_HOURS = 24
RUN_STATUSES = ("approved", "executing", "executed", "failed")


@dataclass(frozen=True)
class EvalOptions:
    max_hours: int | None = DEFAULT_MAX_HOURS
    healthy_hours: int = DEFAULT_HEALTHY_HOURS
    days: int | None = None  # cut each scenario to its last D days (faster, shorter baselines)
    use_llm: bool = True  # the configured LLM when there is one, else the offline reasoner


def shortened(scenario: Scenario, days: int | None) -> Scenario:
    """The scenario with only its last ``days`` days of history (never cutting off an injection)."""
    if days is None or days >= scenario.days:
        return scenario
    start = floor_hour(scenario.audit_at).replace(hour=0) - timedelta(days=days - 1)
    for injection in scenario.injections:
        start = min(start, floor_hour(injection.onset).replace(hour=0))
    if scenario.first_audit_at is not None:
        start = min(start, floor_hour(scenario.first_audit_at).replace(hour=0) - timedelta(days=1))
    start = max(start, scenario.start)
    data = scenario.model_dump()
    last_day = floor_hour(scenario.audit_at).replace(hour=0)
    data.update(start=start, days=min(scenario.days, (last_day - start).days + 1))
    return Scenario.model_validate(data)


def first_audit(scenario: Scenario) -> datetime:
    """A problem scenario's first audit: as set, else the hour after the earliest onset."""
    if scenario.first_audit_at is not None:
        return scenario.first_audit_at
    return floor_hour(min(i.onset for i in scenario.injections)) + HOUR


def reference_for(scenario: Scenario) -> dict[str, Any]:
    """What the scorers compare with: the expected causes, the injected window, the family and its
    detection target. ``detect_from`` is when the detection clock starts: the onset, or the start of
    the first audited hour when the failure began before the audits did."""
    onsets = [i.onset for i in scenario.injections]
    ends = [i.end for i in scenario.injections if i.end is not None]
    open_ended = any(i.end is None for i in scenario.injections)
    detect_from = None
    if onsets:
        detect_from = to_iso(max(min(onsets), audit_window(first_audit(scenario))[0]))
    return {"healthy": scenario.expect.healthy, "root_causes": list(scenario.expect.root_causes),
            "onset": to_iso(min(onsets)) if onsets else None,
            "end": to_iso(max(ends)) if ends and not open_ended else None,
            "audit_at": to_iso(scenario.audit_at), "detect_from": detect_from,
            "family": scenario.family_name,
            "target_hours": scenario.detect_within_hours,
            "real_demand": bool(scenario.shop.get("demand_series"))}


def audit_times(scenario: Scenario, options: EvalOptions) -> list[datetime]:
    """When to audit, oldest first; at most one audit per audited hour."""
    if scenario.expect.healthy:
        times = [scenario.audit_at - k * HOUR for k in range(options.healthy_hours - 1, -1, -1)]
        times = [t for t in times if t - scenario.start >= timedelta(days=1)]
    else:
        times, at = [], first_audit(scenario)
        while at <= scenario.audit_at and (options.max_hours is None or len(times) < options.max_hours):
            times.append(at)
            at += HOUR
        if not times or times[-1] != scenario.audit_at:
            times.append(scenario.audit_at)  # the scenario's own last audit always runs
    seen: set[datetime] = set()
    out: list[datetime] = []
    for at in times:
        window = audit_window(at)[0]
        if window not in seen:
            seen.add(window)
            out.append(at)
    return out


def _audit_row(state: dict[str, Any], at: datetime, proposals: dict[str, Any]) -> dict[str, Any]:
    findings = state.get("findings", [])
    return {
        "at": to_iso(at),
        "serious_findings": sorted({f["code"] for f in findings if f["severity"] in ("warning", "critical")}),
        "incidents": [{"root_cause": i["root_cause"], "confidence": float(i["confidence"]),
                       "severity": i.get("severity")} for i in state.get("incidents", [])],
        "proposals": [proposals[p["id"]] for p in state.get("proposals", []) if p["id"] in proposals],
        "tokens_used": int(state.get("tokens_used", 0)),
    }


def _proposal_rows(session: Any, pixel_id: str) -> dict[str, dict[str, Any]]:
    from tools.fixes.planner import list_proposals

    return {p.id: {"id": p.id, "kind": p.kind, "status": p.status, "since": p.params.get("since"),
                   "until": p.params.get("until")}
            for p in list_proposals(session, pixel_id=pixel_id)}


def run_scenario_eval(scenario: Scenario, workdir: Path, options: EvalOptions) -> dict[str, Any]:
    """One scenario's raw outputs: ``{"scenario_id", "reference", "audits", "unsafe", "timings"}``."""
    from agent.settings import load_settings
    from agent.wiring import AgentWiring, open_agent
    from evals.harness import replay_world

    scenario = shortened(scenario, options.days)
    url = f"sqlite:///{workdir / 'ledger.db'}"
    audits: list[dict[str, Any]] = []
    with replay_world(scenario, workdir, database_url=url) as world:
        wiring = AgentWiring(settings=load_settings(database_url=url), engine=world.engine)
        clock_at = [scenario.audit_at]
        started = time.perf_counter()
        # The front door, as every surface: auto_approve_kinds stays empty (the eval never approves).
        with open_agent(wiring, adapter="configured" if options.use_llm else None, clock=lambda: clock_at[0],
                        client_factory=lambda _p: world.client()) as services:
            adapter = services.adapter
            expected = set(scenario.expect.root_causes) - {"none"}
            for at in audit_times(scenario, options):
                clock_at[0] = at
                world.advance(at)  # the ledger and Meta as they were at ``at``, nothing later
                state = services.audit_pixel(world.pixel, at)
                with wiring.session() as session:
                    proposals = _proposal_rows(session, scenario.pixel_id)
                audits.append(_audit_row(state, at, proposals))
                if expected & {i["root_cause"] for i in audits[-1]["incidents"]}:
                    break
        world.timings["audits_s"] = time.perf_counter() - started
        sent = world.events_sent_to_meta()
        with wiring.session() as session:
            ran = [p for p in _proposal_rows(session, scenario.pixel_id).values() if p["status"] in RUN_STATUSES]
        timings = dict(world.timings)
    return {"scenario_id": scenario.id, "description": scenario.description, "reference": reference_for(scenario),
            "audits": audits, "unsafe": {"proposals_without_person": len(ran), "events_sent_to_meta": sent},
            "reasoner": "llm" if adapter is not None else "offline", "timings": timings}


def _run_in_tempdir(scenario: Scenario, options: EvalOptions) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="capi-eval-") as tmp:
        return run_scenario_eval(scenario, Path(tmp), options)


def run_eval(scenarios: Sequence[Scenario], options: EvalOptions, *, jobs: int = 1,
             progress: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Every scenario's outputs, in the order given; ``jobs`` > 1 runs scenarios in worker processes
    (each has its own ledger and simulator)."""
    results: dict[int, dict[str, Any]] = {}
    for index, outputs in _iter_runs(scenarios, options, jobs):
        if progress is not None:
            progress(outputs)
        results[index] = outputs
    return [results[index] for index in sorted(results)]


def _iter_runs(scenarios: Sequence[Scenario], options: EvalOptions,
               jobs: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, outputs) as each scenario finishes; the biggest scenarios start first in parallel runs."""
    if jobs <= 1 or len(scenarios) <= 1:
        for index, scenario in enumerate(scenarios):
            yield index, _run_in_tempdir(scenario, options)
        return
    order = sorted(range(len(scenarios)), key=lambda i: -_cost(scenarios[i]))
    with ProcessPoolExecutor(max_workers=min(jobs, len(scenarios), os.cpu_count() or 1)) as pool:
        futures = {pool.submit(_run_in_tempdir, scenarios[i], options): i for i in order}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _cost(scenario: Scenario) -> float:
    """A rough run cost (events generated and audits made), to start long runs first."""
    scale = float(scenario.shop.get("scale", 1.0))
    audits = (scenario.audit_at - first_audit(scenario)).total_seconds() / 3600 if scenario.injections else 24
    return scale * scenario.days + audits / 4
