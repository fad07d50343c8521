"""``capi-agent demo``: the whole loop on a demo shop, offline, in under a minute.

Two weeks of synthetic traffic with an incident (a batch job that skipped an hour), the Graph API
simulator on loopback, the audit graph (offline reasoner unless an LLM is configured), the proposed
fix with its preview, an approval at the terminal, the replay against the simulator, and its
verification. The demo keeps its own ledger in a work folder; it never touches ``CAPI_DATABASE_URL``.
The demo runs on the scenario's clock (its audit time), like every simulation in capi-agent.
"""

from __future__ import annotations

import getpass
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import typer

DEMO_SCENARIO = "missed_batch.v1"
DEMO_DAYS = 14


class Progress:
    """Prints what the demo is doing and how long each step took."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        typer.secho(f"-> {text} ...", fg=typer.colors.CYAN)
        began = time.perf_counter()
        yield
        typer.echo(f"   done in {time.perf_counter() - began:.1f}s")

    def total(self) -> float:
        return time.perf_counter() - self.started


def demo_scenario() -> Any:
    """The demo shop: the library's missed-batch scenario, trimmed to two weeks of history."""
    from tools.synth.scenario import find_scenario

    scenario = find_scenario(DEMO_SCENARIO)
    first_day = scenario.audit_at.replace(hour=0, minute=0, second=0, microsecond=0)
    return scenario.model_copy(update={"start": first_day - timedelta(days=DEMO_DAYS - 1), "days": DEMO_DAYS})


def scenario_clock(at: datetime) -> Any:
    """The scenario's time, advancing with the wall clock from the moment it is made."""
    began = time.monotonic()
    return lambda: at + timedelta(seconds=time.monotonic() - began)


def show_report(state: dict[str, Any]) -> None:
    report = state["report"]
    typer.echo(f"\nAudit of {report['window']['start']} -> {report['window']['end']}")
    for pixel in report["pixels"]:
        typer.echo(f"  pixel {pixel['pixel_id']}: {pixel['status']}")
    typer.echo("Findings:")
    for finding in report["findings"]:
        event = f" [{finding['event_name']}]" if finding.get("event_name") else ""
        typer.echo(f"  {finding['severity']:<8} {finding['code']}{event}: {finding['summary']}")
    for incident in report["incidents"]:
        typer.secho(f"\nRoot cause: {incident['root_cause']} (confidence {incident['confidence']:.2f}, "
                    f"{incident['severity']})", bold=True)
        typer.echo(f"  {incident['summary']}")
        if incident.get("narrative"):
            typer.echo(f"  Narrative: {incident['narrative']}")
        for fix in incident["fixes"]:
            typer.echo(f"  fix: {fix['kind']} - {fix['summary']}")


def show_request(request: dict[str, Any]) -> None:
    proposal = request["proposal"]
    preview = proposal["preview"]
    typer.secho(f"\nProposed fix {proposal['id']}: {proposal['kind']} (needs approval)", bold=True)
    typer.echo(f"  window {preview['since']} -> {preview['until']}; events: {', '.join(preview['event_names'])}")
    typer.echo(f"  {preview['total_events']} events in {preview['requests']} request(s) to Meta")
    for row in preview["by_event_hour"][:12]:
        typer.echo(f"    {row['hour']}  {row['event_name']:<18} {row['count']}")
    for skip in preview["skipped"]:
        typer.echo(f"  will skip {skip['count']} ({skip['reason']})")


def show_outcome(state: dict[str, Any]) -> None:
    outcome = state.get("outcome")
    typer.secho(f"\nFix outcome: {outcome}", bold=True)
    if state.get("result"):
        result = state["result"]
        typer.echo(f"  sent {result['sent']}, Meta received {result['received']}, skipped {result['skipped']}, "
                   f"failed {result['failed']}, requests {result['requests']}")
    if state.get("verification"):
        verification = state["verification"]
        typer.echo(f"  verification ({verification['check']}): {verification['summary']}")
    if state.get("error"):
        typer.echo(f"  error: {state['error']}")


def demo(
    yes: bool = typer.Option(False, "--yes", "-y", help="approve the proposed fix without asking"),
    workdir: Path | None = typer.Option(None, "--workdir", help="keep the demo's files here (default: temp)"),
) -> None:
    """Generate a demo shop with an incident, audit it, propose a fix, approve it, run it, verify it."""
    from agent.settings import load_settings
    from agent.wiring import AgentWiring, open_agent
    from tools.meta.client import GraphClient
    from tools.meta.simulator import run_simulator_in_thread
    from tools.meta.simulator.state import SimState
    from tools.synth.ledger import SIM_TOKEN, load_scenario_ledger
    from tools.synth.scenario import materialize

    progress = Progress()
    scenario = demo_scenario()
    typer.secho(f"capi-agent demo - {scenario.description}", bold=True)
    with ExitStack() as stack:
        folder = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="capi-demo-")))
        folder.mkdir(parents=True, exist_ok=True)
        database_url = f"sqlite:///{folder / 'demo.db'}"
        with progress.step(f"generating {DEMO_DAYS} days of traffic for a demo shop (pixel {scenario.pixel_id})"):
            files = materialize(scenario, folder)
            typer.echo(f"   {files.server_events} server events, {files.browser_events} browser events, "
                       f"{files.orders} orders")
        with progress.step("loading them into a fresh ledger (raw PII hashed at the door)"):
            engine, pixel = load_scenario_ledger(scenario, files, database_url=database_url)
            stack.callback(engine.dispose)
        with progress.step("starting the Graph API simulator on loopback"):
            simulator = stack.enter_context(run_simulator_in_thread(SimState.load(files.meta_state_path)))
            typer.echo(f"   {simulator.url}")
        settings = load_settings().model_copy(update={"database_url": database_url})
        clock = scenario_clock(scenario.audit_at)
        simulator.state.set_now(scenario.audit_at)
        services = stack.enter_context(open_agent(
            AgentWiring(settings=settings, engine=engine), clock=clock,
            client_factory=lambda _p: GraphClient(base_url=simulator.url, access_token=SIM_TOKEN, timeout=5.0)))
        reasoner = "the configured LLM" if services.adapter is not None else "the offline reasoner (no LLM configured)"
        with progress.step(f"auditing the hour before {scenario.audit_at:%Y-%m-%d %H:%M} UTC with {reasoner}"):
            state = services.audit_pixel(pixel, scenario.audit_at)
        show_report(state)
        requests = state.get("approval_requests", [])
        if not requests:
            typer.echo("\nNo fix needs approval.")
        for request in requests:
            show_request(request)
            proposal_id = request["proposal"]["id"]
            approve = yes or typer.confirm("Approve this fix?", default=False)
            actor = f"cli:{getpass.getuser()}"
            with progress.step("approved: replaying to Meta (simulator), then re-running the check" if approve
                               else "rejected"):
                outcome = services.resolve_fix(proposal_id, action="approve" if approve else "reject", by=actor)
            show_outcome(outcome)
    typer.secho(f"\nDemo finished in {progress.total():.1f}s.", bold=True)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
