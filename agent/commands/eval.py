"""``capi-agent eval``: run the scenario library through the audit graph and score it.

Detection (and hours to detect, per family against its target), root-cause top-1 accuracy and the
confusion matrix of causes, false alarms and false incidents on healthy scenarios per pixel-week (also
on the real-demand set alone), every missed scenario with what was found instead, fix correctness,
unsafe actions (must be 0) and LLM tokens per audit. With ``--floors`` it exits 1 when a metric falls
below the floors kept in the repository (``evals/floors.json``).

Subsets: ``--subset ci`` (what CI runs), ``--only`` ids, ``--family`` names, ``--sample N --seed S``
(N per family), ``--list``. The full library is ``capi-agent eval`` with no subset.
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


def _split(items: list[str] | None) -> set[str]:
    return {part.strip() for item in items or [] for part in item.split(",") if part.strip()}


def family_of(scenario: Any) -> str:
    return str(scenario.family_name)


def sample_per_family(scenarios: list[Any], per_family: int, seed: int) -> list[Any]:
    """Up to ``per_family`` scenarios of each family, drawn with ``seed`` (every family stays represented)."""
    import random

    rng = random.Random(f"capi-eval-sample:{seed}")
    families: dict[str, list[Any]] = {}
    for scenario in scenarios:
        families.setdefault(family_of(scenario), []).append(scenario)
    chosen = {s.id for members in families.values() for s in rng.sample(members, min(per_family, len(members)))}
    return [s for s in scenarios if s.id in chosen]


def select_scenarios(paths: list[Path] | None, only: list[str] | None, limit: int | None,
                     families: list[str] | None = None, sample: int | None = None, seed: int = 0,
                     subset: str | None = None) -> list[Any]:
    """Scenarios from files or folders (default: the packaged library), filtered by id and family,
    sampled per family (``sample`` each, seeded), limited."""
    from tools.synth.scenario import load_scenario_file, load_scenarios

    scenarios: list[Any] = []
    folders: list[Path | None] = list(paths) if paths else [None]  # None: the packaged library
    for path in folders:
        if path is not None and path.is_file():
            scenarios.append(load_scenario_file(path))
        else:
            scenarios.extend(load_scenarios(path))
    if subset:
        from evals.evaluate.library import SUBSETS

        if subset not in SUBSETS:
            raise KeyError(f"no subset {subset!r} (known: {', '.join(sorted(SUBSETS))})")
        scenarios = SUBSETS[subset](scenarios)
    if only:
        wanted = _split(only)
        unknown = wanted - {s.id for s in scenarios}
        if unknown:
            raise KeyError(f"no scenario {', '.join(sorted(unknown))}")
        scenarios = [s for s in scenarios if s.id in wanted]
    if families:
        wanted = _split(families)
        unknown = wanted - {family_of(s) for s in scenarios}
        if unknown:
            raise KeyError(f"no family {', '.join(sorted(unknown))}")
        scenarios = [s for s in scenarios if family_of(s) in wanted]
    if sample is not None:
        scenarios = sample_per_family(scenarios, sample, seed)
    return scenarios[:limit] if limit is not None else scenarios


def eval_command(
    scenarios: list[Path] = typer.Option(None, "--scenarios", exists=True,
                                         help="scenario file or folder (repeatable; default: the library)"),
    output: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text or json"),
    floors: Path | None = typer.Option(None, "--floors", exists=True, dir_okay=False,
                                       help="JSON floors; exit 1 when a metric is below them"),
    only: list[str] = typer.Option(None, "--only", help="scenario ids (repeatable or comma-separated)"),
    family: list[str] = typer.Option(None, "--family", help="scenario families (repeatable or comma-separated)"),
    sample: int | None = typer.Option(None, "--sample", min=1,
                                      help="at most N scenarios of each family, drawn with --seed"),
    seed: int = typer.Option(0, "--seed", help="seed of the --sample draw"),
    subset: str | None = typer.Option(None, "--subset", help="a named subset of the library ('ci')"),
    list_only: bool = typer.Option(False, "--list", help="list the chosen scenarios (id, family) and exit"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="only the first N scenarios (by id)"),
    days: int | None = typer.Option(None, "--days", min=2, help="cut each scenario to its last D days"),
    max_hours: int | None = typer.Option(None, "--max-hours", min=1,
                                         help="cap on hourly audits of a problem (default: its own window)"),
    healthy_hours: int = typer.Option(24, "--healthy-hours", min=1, help="hourly audits of a healthy scenario"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="scenarios run in parallel processes"),
    offline: bool = typer.Option(False, "--offline", help="use the offline reasoner even if an LLM is set"),
    out: Path | None = typer.Option(None, "--out", dir_okay=False, help="also write the JSON report here"),
    runs_out: Path | None = typer.Option(None, "--runs-out", dir_okay=False,
                                         help="also write every scenario's raw audit outputs (for --from-runs)"),
    from_runs: Path | None = typer.Option(None, "--from-runs", exists=True, dir_okay=False,
                                          help="score raw outputs saved by --runs-out instead of running"),
) -> None:
    """Run scenarios hour by hour through the audit graph and report detection, root-cause accuracy,
    false alarms, fix correctness, unsafe actions and tokens per audit."""
    from evals.evaluate.report import summarize
    from evals.evaluate.runner import EvalOptions, run_eval

    if from_runs is not None:
        runs = json.loads(from_runs.read_text(encoding="utf-8"))
        _report(summarize(runs["outputs"]), {**runs.get("options", {}), "rescored_from": str(from_runs)},
                runs.get("seconds"), floors, out, output)
    try:
        chosen = select_scenarios(scenarios, only, limit, family, sample, seed, subset)
    except (KeyError, ValueError) as exc:
        typer.echo(f"error: {exc.args[0] if exc.args else exc}", err=True)
        raise typer.Exit(2) from None
    if not chosen:
        typer.echo("error: no scenarios to run", err=True)
        raise typer.Exit(2)
    if list_only:
        for scenario in chosen:
            typer.echo(f"{scenario.id}\t{family_of(scenario)}")
        raise typer.Exit(0)
    options = EvalOptions(max_hours=max_hours, healthy_hours=healthy_hours, days=days, use_llm=not offline)
    started = time.perf_counter()

    def progress(outputs: dict[str, Any]) -> None:
        print(f"  {outputs['scenario_id']}: {len(outputs['audits'])} audit(s) "
              f"({time.perf_counter() - started:.0f}s)", file=sys.stderr, flush=True)

    outputs = run_eval(chosen, options, jobs=jobs, progress=progress)
    seconds = round(time.perf_counter() - started, 1)
    chosen_options = {"days": days, "max_hours": max_hours, "healthy_hours": healthy_hours,
                      "families": sorted(_split(family)), "sample": sample, "seed": seed,
                      "only": sorted(_split(only)), "subset": subset, "jobs": jobs}
    if runs_out is not None:
        runs_out.write_text(json.dumps({"options": chosen_options, "seconds": seconds, "outputs": outputs}),
                            encoding="utf-8")
    _report(summarize(outputs), chosen_options, seconds, floors, out, output)


def _report(summary: dict[str, Any], options: dict[str, Any], seconds: float | None, floors: Path | None,
            out: Path | None, output: OutputFormat) -> None:
    """Print (and write) the report; exit 1 when a floor breaks."""
    from evals.evaluate.report import floor_failures, render_text

    summary["seconds"] = seconds
    summary["options"] = options
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
