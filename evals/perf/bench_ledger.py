"""Ledger benchmark: ingest rate and the cost of one audit's ledger reads, at growing sizes.

    python evals/perf/bench_ledger.py [--db sqlite|postgres] [--sizes 100000,1000000,10000000]
                                      [--database-url URL] [--step audit|inputs] [--no-bulk]

For each size it fills a fresh ledger (a new SQLite file, or a new database on the Postgres server
of --database-url, default CAPI_TEST_POSTGRES_URL or the local server) with synthetic server events
of one pixel over 4 weeks (several event names, hashed match keys, batched deliveries with some
failures), then times:
- ingest: events/s through ``ingest_events_jsonl`` (parsing, hashing checks, rollups included; the
  bulk import, or with --no-bulk the per-batch path), the CPU seconds of this process meanwhile and,
  for a local Postgres server, those of the server process that served the import (read from
  /proc; None when it cannot be read). On a shared machine wall time mostly measures the neighbours:
  ``events_per_cpu_second`` (events over both CPU times) is what the code itself costs;
- audit: by default the whole deterministic audit of the pixel for one hour (4 weeks of rollups,
  the six checks, the diagnosis; Meta not configured, so its side is a read-error finding), or with
  ``--step inputs`` only the ledger read. ``run_benchmark(audit_step=...)`` takes any other step.

Prints one JSON document (the rows), then a table. The JSONL file of a size is written to a temporary
directory first (about 700 bytes an event: 7 GB for 10^7) and is not part of the timing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from tools.audit.runner import check_and_diagnose, gather_inputs
from tools.ledger.db import make_engine, migrate, normalize_database_url
from tools.ledger.ingest import ingest_events_jsonl
from tools.ledger.inputs import load_ledger_inputs
from tools.ledger.pixels import PixelConfig
from tools.timeutil import to_iso

PIXEL = "1234567890"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
WINDOW_END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
HISTORY = timedelta(weeks=4)
EVENT_MIX = (("PageView", 50), ("ViewContent", 25), ("AddToCart", 12), ("InitiateCheckout", 7),
             ("Purchase", 5), ("Lead", 1))
AuditStep = Callable[[Session, str, datetime], object]


def load_inputs_step(session: Session, pixel_id: str, window_end: datetime) -> object:
    """The ledger part of one audit: four weeks of hourly rollups for one pixel."""
    return load_ledger_inputs(session, pixel_id=pixel_id, history_start=window_end - HISTORY,
                              window_end=window_end)


def full_audit_step(session: Session, pixel_id: str, window_end: datetime) -> object:
    """The audit of one pixel for the hour before ``window_end``: ledger read, checks, diagnosis."""
    inputs = gather_inputs(session, pixel=PixelConfig(id=pixel_id), at=window_end, client=None)
    check_and_diagnose(inputs)
    return inputs


def synthetic_lines(count: int, *, seed: int = 7) -> Iterator[str]:
    """``count`` ingest lines spread over the 4 weeks before WINDOW_END, in time order."""
    rng = random.Random(seed)
    emails = [hashlib.sha256(f"shopper{i}@example.com".encode()).hexdigest() for i in range(5000)]
    phones = [hashlib.sha256(f"1650555{i:04d}".encode()).hexdigest() for i in range(3000)]
    names, weights = zip(*EVENT_MIX, strict=True)
    start = WINDOW_END - HISTORY
    step = HISTORY.total_seconds() / count
    batch_trace, batch_at = "", start
    for index in range(count):
        event_time = start + timedelta(seconds=index * step)
        if index % 50 == 0:  # a sender flushing batches of 50 a little after the events
            batch_trace = f"T{index}"
            batch_at = event_time + timedelta(seconds=rng.randint(2, 90))
        user: dict[str, object] = {"client_ip_address": f"203.0.113.{rng.randint(1, 254)}",
                                   "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
                                   "fbp": f"fb.1.1763600000000.{rng.randint(10**8, 10**9)}"}
        if rng.random() < 0.7:
            user["em"] = [rng.choice(emails)]
        if rng.random() < 0.35:
            user["ph"] = [rng.choice(phones)]
        if rng.random() < 0.3:
            user["fbc"] = f"fb.1.1763632000000.IwAR{rng.getrandbits(40):x}"
        name = rng.choices(names, weights)[0]
        event = {"event_name": name, "event_time": int(event_time.timestamp()),
                 "event_id": f"e{index}", "action_source": "website",
                 "event_source_url": "https://shop.example/p", "user_data": user,
                 "custom_data": {"currency": "USD", "value": round(rng.uniform(5, 200), 2)}}
        failed = index // 50 % 97 == 3
        delivery = {"status": "failed" if failed else "delivered", "attempted_at": to_iso(batch_at),
                    "http_status": 400 if failed else 200, "error_code": 190 if failed else None,
                    "error_subcode": 463 if failed else None, "fbtrace_id": batch_trace}
        yield json.dumps({"pixel_id": PIXEL, "received_at": to_iso(event_time + timedelta(seconds=1)),
                          "event": event, "delivery": delivery})


@contextmanager
def fresh_ledger(database_url: str | None, workdir: Path) -> Iterator[str]:
    """A new, empty database: a SQLite file, or a throw-away database on a Postgres server."""
    if database_url is None or database_url.startswith("sqlite"):
        yield f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        return
    server = normalize_database_url(database_url)
    name = f"capi_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass(frozen=True)
class BenchRow:
    db: str
    bulk: bool
    size: int
    ingest_seconds: float
    events_per_second: float
    # CPU time of this process during the ingest: steadier than wall time on a shared machine.
    ingest_cpu_seconds: float
    audit_ms_median: float
    event_hours: int
    # CPU time of the Postgres server process that served the import (None: SQLite, or not readable).
    server_cpu_seconds: float | None = None

    @property
    def events_per_cpu_second(self) -> float:
        return self.size / (self.ingest_cpu_seconds + (self.server_cpu_seconds or 0.0))


def _backend_pid(engine: Engine) -> int | None:
    """The server process id behind the engine's pooled connection (Postgres), else None."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _process_cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of a local process from /proc (None when it is not ours to read)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_size(size: int, *, database_url: str | None, workdir: Path,
               audit_step: AuditStep = full_audit_step, repeats: int = 5, bulk: bool = True) -> BenchRow:
    lines_path = workdir / f"events-{size}.jsonl"
    with lines_path.open("w") as handle:
        for line in synthetic_lines(size):
            handle.write(line + "\n")
    with fresh_ledger(database_url, workdir) as url:
        engine = make_engine(url)
        migrate(engine)
        # The pool hands the import the connection just returned (checked again afterwards).
        backend = _backend_pid(engine)
        server_cpu_started = _process_cpu_seconds(backend)
        started, cpu_started = time.perf_counter(), time.process_time()
        report = ingest_events_jsonl(session_or_engine=engine, path=lines_path, now=WINDOW_END, bulk=bulk)
        ingest_seconds = time.perf_counter() - started
        ingest_cpu_seconds = time.process_time() - cpu_started
        server_cpu_ended = _process_cpu_seconds(backend)
        server_cpu = None
        if (server_cpu_started is not None and server_cpu_ended is not None
                and _backend_pid(engine) == backend):
            server_cpu = server_cpu_ended - server_cpu_started
        if report.loaded != size:
            raise RuntimeError(f"loaded {report.loaded} of {size}: {report.skipped[:3]}")
        timings, result = [], None
        for _ in range(repeats):
            with Session(engine) as session:
                started = time.perf_counter()
                result = audit_step(session, PIXEL, WINDOW_END)
                timings.append(time.perf_counter() - started)
        engine.dispose()
    lines_path.unlink()
    hours = len(getattr(result, "event_hours", ()))
    db = "sqlite" if database_url is None or database_url.startswith("sqlite") else "postgres"
    return BenchRow(db, bulk, size, ingest_seconds, size / ingest_seconds, ingest_cpu_seconds,
                    statistics.median(timings) * 1000, hours, server_cpu)


def run_benchmark(sizes: list[int], *, database_url: str | None = None,
                  audit_step: AuditStep = full_audit_step, bulk: bool = True) -> list[BenchRow]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="capi-bench-") as tmp:
        for size in sizes:
            row = bench_size(size, database_url=database_url, workdir=Path(tmp), audit_step=audit_step,
                             bulk=bulk)
            # Each size as it finishes: a long run (10^7) is readable before the end.
            print(f"  done {size:>9,} events: {row.events_per_second:,.0f} events/s, cpu {row.ingest_cpu_seconds:.1f} s"
                  f" (+ server {row.server_cpu_seconds or 0:.1f} s), audit {row.audit_ms_median:.0f} ms",
                  file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def format_table(rows: list[BenchRow]) -> str:
    header = (f"{'db':>8} | {'events':>10} | {'ingest s':>9} | {'events/s':>9} | {'cpu s':>7} | "
              f"{'server cpu s':>12} | {'events/cpu-s':>12} | {'audit ms':>9} | {'event hours':>11}")
    out = [header, "-" * len(header)]
    for r in rows:
        server = "-" if r.server_cpu_seconds is None else f"{r.server_cpu_seconds:.2f}"
        out.append(f"{r.db:>8} | {r.size:>10,} | {r.ingest_seconds:>9.2f} | {r.events_per_second:>9,.0f} | "
                   f"{r.ingest_cpu_seconds:>7.2f} | {server:>12} | {r.events_per_cpu_second:>12,.0f} | "
                   f"{r.audit_ms_median:>9.1f} | {r.event_hours:>11}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite",
                        help="sqlite: a temp file per size; postgres: a new database per size on the "
                             "server of --database-url")
    parser.add_argument("--database-url", default=None,
                        help="the Postgres server (default: CAPI_TEST_POSTGRES_URL or the local one)")
    parser.add_argument("--no-bulk", action="store_true",
                        help="ingest with the per-batch path (ordinary inserts, a commit per batch)")
    parser.add_argument("--step", choices=("audit", "inputs"), default="audit",
                        help="time the whole audit (default) or only the ledger read")
    args = parser.parse_args(argv)
    try:
        sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    except ValueError:
        parser.error("--sizes takes whole numbers separated by commas")
    if not sizes or min(sizes) < 1:
        parser.error("--sizes needs at least one positive size")
    url = None
    if args.db == "postgres":
        url = args.database_url or os.environ.get("CAPI_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    elif args.database_url:
        parser.error("--database-url is for --db postgres (SQLite uses a temporary file)")
    step = full_audit_step if args.step == "audit" else load_inputs_step
    rows = run_benchmark(sizes, database_url=url, audit_step=step, bulk=not args.no_bulk)
    print(json.dumps({"benchmark": "ledger", "step": args.step, "rows": [
        {**asdict(row), "events_per_cpu_second": row.events_per_cpu_second} for row in rows]}, indent=2))
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
