"""``capi-agent ingest FILE [--orders FILE]``: load server events (and the shop's orders) from JSONL
into the ledger, hashing raw customer information at the door."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import typer

if TYPE_CHECKING:
    from tools.ledger.ingest import IngestProgress, IngestReport

MAX_REASONS_SHOWN = 20


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


@contextmanager
def progress_display(stream: TextIO | None = None) -> Iterator[Callable[[IngestProgress], None] | None]:
    """A progress bar (share of the file read, events/s, ETA) on ``stream`` (stderr) when it is a
    terminal; None otherwise, so that logs and pipes get only the final report."""
    stream = sys.stderr if stream is None else stream
    if not stream.isatty():
        yield None
        return
    # rich comes with typer; imported here, only when a terminal will show it.
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    display = Progress(TextColumn("[bold]ingest"), BarColumn(), TaskProgressColumn(),
                       TextColumn("{task.fields[counts]}"), console=Console(file=stream),
                       transient=False)
    task = display.add_task("ingest", total=1.0, counts="")

    def update(progress: IngestProgress) -> None:
        counts = (f"{progress.lines:,} lines, {progress.lines_per_second:,.0f} events/s, "
                  f"ETA {_duration(progress.eta_seconds)}")
        display.update(task, completed=progress.fraction, counts=counts)

    with display:
        yield update


def _print_report(kind: str, report: IngestReport) -> None:
    typer.echo(f"{kind}: {report.loaded} loaded, {report.duplicates} already in the ledger, "
               f"{len(report.skipped)} skipped (of {report.lines} lines)")
    for line_no, reason in report.skipped[:MAX_REASONS_SHOWN]:
        typer.echo(f"  line {line_no}: {reason}")
    if len(report.skipped) > MAX_REASONS_SHOWN:
        typer.echo(f"  ... and {len(report.skipped) - MAX_REASONS_SHOWN} more skipped lines")
    if report.raw_pii_hashed:
        fields = ", ".join(f"{name} {count}" for name, count in sorted(report.raw_pii_hashed.items()))
        typer.echo(f"  raw customer information hashed before storage: {fields}")


def ingest(
    events_file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                       help="events JSONL (one object a line: pixel_id, received_at, "
                                            "event, optional delivery)"),
    orders: Path | None = typer.Option(None, "--orders", exists=True, dir_okay=False, readable=True,
                                       help="orders JSONL (order_id, pixel_id, created_at, value, currency)"),
    database_url: str | None = typer.Option(None, "--database-url",
                                            help="SQLAlchemy URL (default: CAPI_DATABASE_URL)"),
    country: str = typer.Option("US", "--country", help="default country for phone numbers (ISO alpha-2)"),
    config: Path | None = typer.Option(None, "--config", exists=True, dir_okay=False,
                                       help="pixels TOML to sync first (default: CAPI_CONFIG)"),
) -> None:
    """Load events (and orders) into the ledger; exit 1 when nothing loaded and lines were bad."""
    if len(country.strip()) != 2 or not country.strip().isalpha():
        typer.echo("error: --country must be a 2-letter ISO country code", err=True)
        raise typer.Exit(2)
    # Imported here: building the CLI (and every other command) must stay free of the ledger.
    from agent.wiring import open_wiring
    from tools.ledger.ingest import ingest_events_jsonl, ingest_orders_jsonl

    # The front door: the migrated ledger with the configured pixels synced (--config or CAPI_CONFIG).
    with open_wiring(database_url=database_url, config_file=config) as wiring:
        engine = wiring.engine
        typer.echo(f"ledger: {engine.url.render_as_string(hide_password=True)}")
        with progress_display() as progress:
            events = ingest_events_jsonl(session_or_engine=engine, path=events_file,
                                         default_country=country.strip().upper(), progress=progress)
        _print_report("events", events)
        reports = [events]
        if orders is not None:
            order_report = ingest_orders_jsonl(session_or_engine=engine, path=orders)
            _print_report("orders", order_report)
            reports.append(order_report)
    if sum(r.loaded + r.duplicates for r in reports) == 0 and any(r.skipped for r in reports):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``ingest`` command to the CLI."""
    app.command("ingest")(ingest)
