"""The deterministic audit of one pixel (ledger read, all checks, diagnosis, storage) at growing
ledger sizes, on SQLite and Postgres.

    python -m evals.perf.bench_audit_pixel [--sizes 10000,100000,1000000] [--databases sqlite,postgres]
        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--repeats 15]
        [--keep DIR] [--label after] [--before FILE] [--json FILE]

Each ledger holds ``size`` synthetic server events over 4 weeks (``bench_ledger.synthetic_lines``:
six event names, hashed match keys, batched deliveries with some failures). Meta's side comes from an
in-process stand-in for the Graph API client (no network): browser and server hourly counts that
follow the ledger, and a dataset-quality answer. The first audit reads 4 weeks of Meta stats into the
snapshots (not timed); then ``--repeats`` audits of the same hour are timed, each the real
``audit_pixel``: Meta's last day read and stored, the rollups read, every check, the diagnosis, the
triage and the stored audit, committed.

``--keep DIR`` keeps the ledgers (SQLite files in DIR, Postgres databases named after the size) and
reuses them on the next run, so two versions of the code can be timed on the same data: run it once
on the old code with ``--label before --json before.json``, then on the new one with
``--before before.json`` for a before/after table. Prints the table, then the rows as JSON. Wall time
is what a round waits for; CPU time is this process only (on Postgres the server's work is not in it)
and is steadier on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.perf.pgdb import DEFAULT_POSTGRES_URL

if TYPE_CHECKING:
    from tools.checks.types import Source

# The audit runs a little after the hour it audits, as the scheduler's does.
AUDIT_DELAY = timedelta(minutes=10)
# Browser events per server event in the stand-in Meta stats (the pixel sees a little more).
BROWSER_FACTOR = 1.25


class StandInMeta:
    """What ``read_meta_side`` asks of a Graph API client, answered from memory: hourly stats that
    follow the ledger's server events, and a dataset-quality snapshot."""

    def __init__(self, server_counts: dict[tuple[datetime, str], int]) -> None:
        self._server = server_counts

    def pixel_stats(self, pixel_id: str, *, start: datetime, end: datetime, source: Source,
                    page_size: int | None = None) -> list[Any]:
        from tools.checks.types import MetaHourlyCount

        factor = 1.0 if source == "server" else BROWSER_FACTOR
        return [MetaHourlyCount(hour=hour, event_name=name, source=source, count=round(count * factor))
                for (hour, name), count in sorted(self._server.items()) if start <= hour < end]

    def dataset_quality(self, dataset_id: str, *, fetched_at: datetime | None = None) -> Any:
        from tools.checks.types import DedupeKeyFeedback, EventQuality, QualitySnapshot

        names = sorted({name for _, name in self._server})
        events = tuple(EventQuality(
            event_name=name, composite_score=8.2,
            match_key_coverage={"email": 70.0, "phone": 35.0, "ip_address": 100.0, "user_agent": 100.0,
                                "fbp": 100.0, "fbc": 30.0},
            event_coverage_pct=92.0,
            dedupe_key_feedback=(DedupeKeyFeedback("event_id", 95.0, 100.0, 95.0),),
            upload_frequency="real_time") for name in names)
        return QualitySnapshot(fetched_at=fetched_at or datetime.now().astimezone(), events=events)


@dataclass(frozen=True)
class AuditRow:
    label: str
    database: str
    events: int
    event_hours: int
    repeats: int
    wall_ms_median: float
    wall_ms_p95: float
    cpu_ms_median: float
    findings: int
    incidents: int


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


@contextmanager
def ledger_url(database: str, size: int, *, keep: Path, persistent: bool, postgres_url: str) -> Iterator[str]:
    """The URL of this database's ledger for this size (created empty when missing; a Postgres one
    is dropped afterwards unless ``persistent``)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from tools.ledger.db import normalize_database_url

    if database == "sqlite":
        yield f"sqlite:///{keep / f'audit-bench-{size}.db'}"
        return
    server = normalize_database_url(postgres_url)
    name = f"capi_auditbench_{size}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            if connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is None:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        if not persistent:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def is_filled(engine: Any, pixel_id: str) -> bool:
    """A ledger an earlier run filled completely (the pixel is registered after the ingest)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT 1 FROM pixels WHERE id = :p"), {"p": pixel_id}).first() is not None
    except DBAPIError:  # no schema yet
        return False


def fill_ledger(engine: Any, size: int, workdir: Path) -> None:
    from evals.perf.bench_ledger import WINDOW_END, synthetic_lines
    from tools.ledger.db import migrate
    from tools.ledger.ingest import ingest_events_jsonl

    migrate(engine)
    lines = workdir / f"events-{size}.jsonl"
    with lines.open("w") as handle:
        for line in synthetic_lines(size):
            handle.write(line + "\n")
    report = ingest_events_jsonl(session_or_engine=engine, path=lines, now=WINDOW_END)
    lines.unlink()
    if report.loaded != size:
        raise RuntimeError(f"loaded {report.loaded} of {size} events: {report.skipped[:3]}")


def server_counts(engine: Any, pixel_id: str) -> dict[tuple[datetime, str], int]:
    from sqlalchemy import select
    from sqlalchemy.orm import Session
    from sqlmodel import col

    from tools.ledger.models import EventHourRollup
    from tools.timeutil import as_utc

    with Session(engine) as session:
        rows = session.execute(select(col(EventHourRollup.hour), col(EventHourRollup.event_name),
                                      col(EventHourRollup.events))
                               .where(col(EventHourRollup.pixel_id) == pixel_id))
        return {(as_utc(hour), name): events for hour, name, events in rows}


def bench_one(database: str, size: int, *, keep: Path, persistent: bool, postgres_url: str, repeats: int,
              label: str) -> AuditRow:
    from sqlalchemy.orm import Session

    from evals.perf.bench_ledger import PIXEL, WINDOW_END
    from tools.audit.runner import audit_pixel
    from tools.ledger.db import make_engine
    from tools.ledger.pixels import PixelConfig, sync_pixels

    at = WINDOW_END + AUDIT_DELAY
    pixel = PixelConfig(id=PIXEL)
    with ledger_url(database, size, keep=keep, persistent=persistent, postgres_url=postgres_url) as url:
        engine = make_engine(url)
        try:
            if not is_filled(engine, PIXEL):
                print(f"  filling {database} with {size:,} events ...", file=sys.stderr, flush=True)
                fill_ledger(engine, size, keep)
                with Session(engine) as session:
                    sync_pixels(session, [pixel])
                    session.commit()
            meta = StandInMeta(server_counts(engine, PIXEL))
            wall: list[float] = []
            cpu: list[float] = []
            audit = None
            for index in range(repeats + 1):
                with Session(engine, expire_on_commit=False) as session:
                    began, began_cpu = time.perf_counter(), time.process_time()
                    # The stand-in answers the two reads an audit makes, not the whole GraphClient.
                    audit = audit_pixel(session, pixel=pixel, at=at, client=meta)  # type: ignore[arg-type]
                    session.commit()
                    if index:  # the first audit reads 4 weeks of Meta stats: not the hourly case
                        wall.append(time.perf_counter() - began)
                        cpu.append(time.process_time() - began_cpu)
        finally:
            engine.dispose()
    assert audit is not None
    return AuditRow(label, database, size, len(audit.inputs.event_hours), repeats,
                    statistics.median(wall) * 1000, _p95(wall) * 1000, statistics.median(cpu) * 1000,
                    len(audit.findings), len(audit.incidents))


def format_table(rows: list[AuditRow], before: dict[tuple[str, int], dict[str, Any]]) -> str:
    header = (f"{'database':<9} | {'events':>10} | {'event hours':>11} | {'before ms':>9} | {'median ms':>9} | "
              f"{'p95 ms':>7} | {'before cpu':>10} | {'cpu ms':>7} | {'findings':>8}")
    out = [header, "-" * len(header)]
    for r in rows:
        old = before.get((r.database, r.events))
        old_wall = f"{old['wall_ms_median']:9.1f}" if old else f"{'-':>9}"
        old_cpu = f"{old['cpu_ms_median']:10.1f}" if old else f"{'-':>10}"
        out.append(f"{r.database:<9} | {r.events:>10,} | {r.event_hours:>11} | {old_wall} | {r.wall_ms_median:9.1f} | "
                   f"{r.wall_ms_p95:7.1f} | {old_cpu} | {r.cpu_ms_median:7.1f} | {r.findings:>8}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--keep", default=None, help="keep the ledgers here and reuse them")
    parser.add_argument("--label", default="after")
    parser.add_argument("--before", default=None, help="JSON rows of an earlier run for the 'before' column")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    try:
        sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    databases = [part.strip() for part in args.databases.split(",") if part.strip()]
    if unknown := [d for d in databases if d not in ("sqlite", "postgres")]:
        parser.error(f"unknown database(s) {unknown}: use sqlite and/or postgres")
    if args.repeats < 1 or not sizes or min(sizes) < 1:
        parser.error("--repeats and every size must be at least 1")
    before: dict[tuple[str, int], dict[str, Any]] = {}
    if args.before:
        before = {(row["database"], row["events"]): row for row in json.loads(Path(args.before).read_text())}
    rows: list[AuditRow] = []
    with tempfile.TemporaryDirectory(prefix="capi-audit-bench-") as tmp:
        keep = Path(args.keep) if args.keep else Path(tmp)
        keep.mkdir(parents=True, exist_ok=True)
        for database in databases:
            for size in sizes:
                row = bench_one(database, size, keep=keep, persistent=bool(args.keep), postgres_url=args.postgres_url,
                                repeats=args.repeats, label=args.label)
                print(f"  {database} {size:>9,} events: median {row.wall_ms_median:.1f} ms", file=sys.stderr,
                      flush=True)
                rows.append(row)
    print(format_table(rows, before))
    document = [asdict(row) for row in rows]
    print(json.dumps(document, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
