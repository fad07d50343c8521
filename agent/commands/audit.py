"""``capi-agent audit``: audit pixels for the hour before ``--at`` and print findings and incidents."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer

from tools.timeutil import utcnow


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


class FailOn(StrEnum):
    warning = "warning"
    critical = "critical"


SEVERITY_MARK = {"info": "i", "warning": "!", "critical": "!!"}


def render_text(report: dict) -> str:
    lines = [f"audit window {report['window']['start']} -> {report['window']['end']}"]
    for pixel in report["pixels"]:
        lines.append(f"pixel {pixel['pixel_id']}: {pixel['status']}")
    for finding in report["findings"]:
        event = f" [{finding['event_name']}]" if finding.get("event_name") else ""
        lines.append(f"  {SEVERITY_MARK[finding['severity']]:>2} {finding['severity']:<8} {finding['code']}"
                     f"{event}: {finding['summary']}")
    for incident in report["incidents"]:
        lines.append(f"incident {incident['id']} ({incident.get('triage', 'new')}): {incident['root_cause']} "
                     f"confidence {incident['confidence']:.2f} - {incident['summary']}")
        if incident.get("narrative"):
            lines.append(f"  {incident['narrative']}")
        for fix in incident["fixes"]:
            approval = "needs approval" if fix["requires_approval"] else "manual"
            lines.append(f"  fix {fix['kind']} ({approval}): {fix['summary']}")
    for incident in report.get("resolved", []):
        lines.append(f"resolved: {incident['root_cause']} ({incident['id']})")
    if not report["findings"] and not report["incidents"]:
        lines.append("no findings")
    return "\n".join(lines)


def exit_code(report: dict, fail_on: FailOn | None) -> int:
    from tools.checks.types import SEVERITY_RANK  # pydantic: kept out of the CLI's start-up

    if fail_on is None:
        return 0
    floor = SEVERITY_RANK[fail_on.value]
    return 1 if any(SEVERITY_RANK[f["severity"]] >= floor for f in report["findings"]) else 0


def audit(
    pixel: list[str] = typer.Option(None, "--pixel", help="pixel id to audit (repeatable; default: all)"),
    at: str | None = typer.Option(None, "--at",
                                  help="audit the hour ending before this ISO time (default: now)"),
    output: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text or json"),
    fail_on: FailOn | None = typer.Option(None, "--fail-on",
                                          help="exit 1 when a finding at this severity exists"),
    database_url: str | None = typer.Option(None, "--database-url", help="default: CAPI_DATABASE_URL"),
    config: Path | None = typer.Option(None, "--config", exists=True, dir_okay=False,
                                       help="pixels TOML (default: CAPI_CONFIG)"),
) -> None:
    """Run the checks and the diagnosis for the last complete hour before --at, store and print them."""
    from agent.commands.arguments import chosen_pixels, parse_at  # heavy imports only when the command runs
    from agent.wiring import open_agent, open_wiring

    when = parse_at(at) or utcnow()
    with open_wiring(database_url=database_url, config_file=config) as wiring:
        pixels = chosen_pixels(wiring, pixel)
        with open_agent(wiring) as services:
            report = services.audit_round(pixels, when)
    typer.echo(json.dumps(report, indent=2) if output is OutputFormat.json else render_text(report))
    raise typer.Exit(exit_code(report, fail_on))


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)
