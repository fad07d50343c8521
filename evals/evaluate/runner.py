"""Running scenarios for the eval: generate + ingest once per scenario, then audit it hour by hour
through the audit graph (``AgentServices.audit_pixel``), the same path the scheduler takes.

Problem scenarios are audited from the hour after the injection's onset (at most ``max_hours``
audits, ending with ``audit_at``) until an incident with an expected cause appears. Healthy ones are
audited ``healthy_hours`` times, hourly, ending at ``audit_at``. The eval never approves a proposal.

Known limitation: the scenario's files are generated as seen at ``audit_at`` (one ledger per
scenario keeps the run fast; regenerating per audit hour would cost a generate + ingest each). So an
audit earlier than ``audit_at`` sees the outcome of deliveries made after it: events that were still
waiting at that hour look already sent (late), and Meta's counts for an hour include events that
reached Meta later. Checks on volume, parity, hashing, match keys and errors read only hours up to the
audited window and are not helped by this; latency is (a late delivery's lag is visible before the
event was really sent), so hours-to-detect for ``late_delivery``/``rate_limited`` is optimistic. The
audit at ``audit_at`` itself is exact.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tools.synth.scenario import Scenario
from tools.timeutil import HOUR, audit_window, floor_hour, to_iso

DEFAULT_MAX_HOURS = 6
DEFAULT_HEALTHY_HOURS = 24
RUN_STATUSES = ("approved", "executing", "executed", "failed")


@dataclass(frozen=True)
class EvalOptions:
    max_hours: int = DEFAULT_MAX_HOURS
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
    start = max(start, scenario.start)
    data = scenario.model_dump()
    last_day = floor_hour(scenario.audit_at).replace(hour=0)
    data.update(start=start, days=min(scenario.days, (last_day - start).days + 1))
    return Scenario.model_validate(data)


def reference_for(scenario: Scenario) -> dict[str, Any]:
    """What the scorers compare with: the expected causes and the injected window."""
    onsets = [i.onset for i in scenario.injections]
    ends = [i.end for i in scenario.injections if i.end is not None]
    open_ended = any(i.end is None for i in scenario.injections)
    return {"healthy": scenario.expect.healthy, "root_causes": list(scenario.expect.root_causes),
            "onset": to_iso(min(onsets)) if onsets else None,
            "end": to_iso(max(ends)) if ends and not open_ended else None,
            "audit_at": to_iso(scenario.audit_at)}


def audit_times(scenario: Scenario, options: EvalOptions) -> list[datetime]:
    """When to audit, oldest first; at most one audit per audited hour."""
    if scenario.expect.healthy:
        times = [scenario.audit_at - k * HOUR for k in range(options.healthy_hours - 1, -1, -1)]
        times = [t for t in times if t - scenario.start >= timedelta(days=1)]
    else:
        onset = floor_hour(min(i.onset for i in scenario.injections))
        times = [onset + k * HOUR for k in range(1, options.max_hours + 1)]
        times = [t for t in times if t <= scenario.audit_at] + [scenario.audit_at]
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
    from agent.audit_service import llm_adapter
    from agent.checkpoint import open_checkpointer
    from agent.runtime import Runtime
    from agent.service import AgentServices
    from agent.settings import load_settings
    from evals.harness import scenario_world

    scenario = shortened(scenario, options.days)
    url = f"sqlite:///{workdir / 'ledger.db'}"
    audits: list[dict[str, Any]] = []
    with scenario_world(scenario, workdir, database_url=url) as world:
        runtime = Runtime(settings=load_settings(database_url=url), engine=world.engine)
        adapter = llm_adapter(runtime) if options.use_llm else None
        sent_before = len(world.simulator.state.received())
        clock_at = [scenario.audit_at]
        started = time.perf_counter()
        with open_checkpointer(url) as checkpointer:
            # auto_approve_kinds stays empty: the eval itself never approves anything.
            services = AgentServices(runtime=runtime, checkpointer=checkpointer, adapter=adapter,
                                     clock=lambda: clock_at[0], client_factory=lambda _p: world.client())
            expected = set(scenario.expect.root_causes) - {"none"}
            for at in audit_times(scenario, options):
                clock_at[0] = at
                world.simulator.state.set_now(at)
                state = services.audit_pixel(world.pixel, at)
                with runtime.session() as session:
                    proposals = _proposal_rows(session, scenario.pixel_id)
                audits.append(_audit_row(state, at, proposals))
                if expected & {i["root_cause"] for i in audits[-1]["incidents"]}:
                    break
        world.timings["audits_s"] = time.perf_counter() - started
        sent = len(world.simulator.state.received()) - sent_before
        with runtime.session() as session:
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
    results: list[dict[str, Any]] = []
    for outputs in _iter_runs(scenarios, options, jobs):
        if progress is not None:
            progress(outputs)
        results.append(outputs)
    return results


def _iter_runs(scenarios: Sequence[Scenario], options: EvalOptions, jobs: int) -> Iterator[dict[str, Any]]:
    if jobs <= 1 or len(scenarios) <= 1:
        for scenario in scenarios:
            yield _run_in_tempdir(scenario, options)
        return
    with ProcessPoolExecutor(max_workers=min(jobs, len(scenarios), os.cpu_count() or 1)) as pool:
        yield from pool.map(_run_in_tempdir, scenarios, [options] * len(scenarios))
