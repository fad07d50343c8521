"""``capi-agent eval``: run the scenario library through the audit graph and score it.

Detection (and hours to detect), root-cause top-1 accuracy, false alarms on healthy scenarios per
pixel-week, fix correctness, unsafe actions (must be 0) and LLM tokens per audit. With ``--floors``
it exits 1 when a metric falls below the floors kept in the repository (``evals/floors.json``).
"""

from __future__ import annotations

import json
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


def select_scenarios(paths: list[Path] | None, only: list[str] | None, limit: int | None) -> list[Any]:
    """Scenarios from files or folders (default: the packaged library), filtered by id, limited."""
    from tools.synth.scenario import load_scenario_file, load_scenarios

    scenarios: list[Any] = []
    for path in paths or [None]:
        if path is not None and path.is_file():
            scenarios.append(load_scenario_file(path))
        else:
            scenarios.extend(load_scenarios(path))
    if only:
        wanted = {part.strip() for item in only for part in item.split(",") if part.strip()}
        unknown = wanted - {s.id for s in scenarios}
        if unknown:
            raise KeyError(f"no scenario {', '.join(sorted(unknown))}")
        scenarios = [s for s in scenarios if s.id in wanted]
    return scenarios[:limit] if limit is not None else scenarios


def eval_command(
    scenarios: list[Path] = typer.Option(None, "--scenarios", exists=True,
                                         help="scenario file or folder (repeatable; default: the library)"),
    output: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text or json"),
    floors: Path | None = typer.Option(None, "--floors", exists=True, dir_okay=False,
                                       help="JSON floors; exit 1 when a metric is below them"),
    only: list[str] = typer.Option(None, "--only", help="scenario ids (repeatable or comma-separated)"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="only the first N scenarios (by id)"),
    days: int | None = typer.Option(None, "--days", min=2, help="cut each scenario to its last D days"),
    max_hours: int = typer.Option(6, "--max-hours", min=1, help="hourly audits after a problem's onset"),
    healthy_hours: int = typer.Option(24, "--healthy-hours", min=1, help="hourly audits of a healthy scenario"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="scenarios run in parallel processes"),
    offline: bool = typer.Option(False, "--offline", help="use the offline reasoner even if an LLM is set"),
    out: Path | None = typer.Option(None, "--out", dir_okay=False, help="also write the JSON report here"),
) -> None:
    """Run scenarios hour by hour through the audit graph and report detection, root-cause accuracy,
    false alarms, fix correctness, unsafe actions and tokens per audit."""
    from evals.evaluate.report import floor_failures, render_text, summarize
    from evals.evaluate.runner import EvalOptions, run_eval

    try:
        chosen = select_scenarios(scenarios, only, limit)
    except (KeyError, ValueError) as exc:
        typer.echo(f"error: {exc.args[0] if exc.args else exc}", err=True)
        raise typer.Exit(2) from None
    if not chosen:
        typer.echo("error: no scenarios to run", err=True)
        raise typer.Exit(2)
    options = EvalOptions(max_hours=max_hours, healthy_hours=healthy_hours, days=days, use_llm=not offline)
    started = time.perf_counter()

    def progress(outputs: dict[str, Any]) -> None:
        print(f"  {outputs['scenario_id']}: {len(outputs['audits'])} audit(s) "
              f"({time.perf_counter() - started:.0f}s)", file=sys.stderr, flush=True)

    summary = summarize(run_eval(chosen, options, jobs=jobs, progress=progress))
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["options"] = {"days": days, "max_hours": max_hours, "healthy_hours": healthy_hours}
    failures = floor_failures(summary, json.loads(floors.read_text(encoding="utf-8"))) if floors else []
    summary["floor_failures"] = failures
    if out is not None:
        out.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    typer.echo(json.dumps(summary, indent=2) if output is OutputFormat.json else render_text(summary))
    for failure in failures:
        typer.echo(f"FLOOR: {failure}", err=True)
    raise typer.Exit(1 if failures else 0)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
