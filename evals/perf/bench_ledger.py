"""Ledger benchmark: ingest rate and the cost of one audit's ledger reads, at growing sizes.

    python evals/perf/bench_ledger.py [--db sqlite|postgres] [--sizes 100000,1000000,10000000]
                                      [--database-url URL] [--step audit|inputs] [--no-bulk]
                                      [--jsonl-dir DIR] [--workdir DIR] [--pg-options OPTS]

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

Prints one JSON document (the rows), then a table, and while an import runs a progress line a minute
on stderr. The JSONL file of a size (about 700 bytes an event: 7 GB for 10^7, written in about 80 s)
is written before the timing starts, to a temporary directory, or with ``--jsonl-dir`` to a directory
where it is kept and found again by the next run (of the other database, say).
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import itertools
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

from sqlalchemy import Engine
from sqlmodel import Session

from evals.perf.pgdb import postgres_database, postgres_server
from tools.audit.runner import check_and_diagnose, gather_inputs
from tools.ledger.db import make_engine, migrate
from tools.ledger.ingest import IngestProgress, ingest_events_jsonl
from tools.ledger.inputs import load_ledger_inputs
from tools.ledger.pixels import PixelConfig

PIXEL = "1234567890"
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
    """``count`` ingest lines spread over the 4 weeks before WINDOW_END, in time order.

    Each line is filled into a fixed template (the JSON a sender writes, keys in one order), not
    built as a dict and serialized: 10^7 lines are 7 GB, and ``json.dumps`` of a nested dict per line
    made writing them take longer than importing them. The data are those of a dict-built line.
    """
    rng = random.Random(seed)
    rand, bits = rng.random, rng.getrandbits
    emails = [hashlib.sha256(f"shopper{i}@example.com".encode()).hexdigest() for i in range(5000)]
    phones = [hashlib.sha256(f"1650555{i:04d}".encode()).hexdigest() for i in range(3000)]
    names, weights = zip(*EVENT_MIX, strict=True)
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    # Times in whole microseconds from `start`, as timedelta arithmetic would give them.
    start_us = int((WINDOW_END - HISTORY).timestamp()) * 1_000_000
    step_us = HISTORY / timedelta(microseconds=1) / count
    stamps: dict[int, str] = {}  # whole second -> its ISO text (many lines share one at 10^7)

    def iso(micros: int) -> str:
        second, fraction = divmod(micros, 1_000_000)
        text = stamps.get(second)
        if text is None:
            if len(stamps) > 4096:
                stamps.clear()
            text = stamps[second] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{text}.{fraction:06d}Z" if fraction else f"{text}Z"

    delivery = ""
    for index in range(count):
        event_us = start_us + round(index * step_us)
        if index % 50 == 0:  # a sender flushing batches of 50 a little after the events
            failed = index // 50 % 97 == 3
            batch_at = iso(event_us + (2 + int(rand() * 89)) * 1_000_000)
            delivery = (f'"delivery": {{"status": "failed", "attempted_at": "{batch_at}", "http_status": 400, '
                        f'"error_code": 190, "error_subcode": 463, "fbtrace_id": "T{index}"}}' if failed else
                        f'"delivery": {{"status": "delivered", "attempted_at": "{batch_at}", "http_status": 200, '
                        f'"error_code": null, "error_subcode": null, "fbtrace_id": "T{index}"}}')
        user = (f'"client_ip_address": "203.0.113.{1 + int(rand() * 254)}", '
                f'"client_user_agent": "Mozilla/5.0 (X11; Linux x86_64)", '
                f'"fbp": "fb.1.1763600000000.{10**8 + int(rand() * 9 * 10**8)}"')
        if rand() < 0.7:
            user += f', "em": ["{emails[int(rand() * 5000)]}"]'
        if rand() < 0.35:
            user += f', "ph": ["{phones[int(rand() * 3000)]}"]'
        if rand() < 0.3:
            user += f', "fbc": "fb.1.1763632000000.IwAR{bits(40):x}"'
        name = names[bisect.bisect_right(cumulative, rand() * total)]
        value = round(5 + rand() * 195, 2)
        yield (f'{{"pixel_id": "{PIXEL}", "received_at": "{iso(event_us + 1_000_000)}", '
               f'"event": {{"event_name": "{name}", "event_time": {event_us // 1_000_000}, "event_id": "e{index}", '
               f'"action_source": "website", "event_source_url": "https://shop.example/p", "user_data": {{{user}}}, '
               f'"custom_data": {{"currency": "USD", "value": {value!r}}}}}, {delivery}}}')


@contextmanager
def fresh_ledger(database_url: str | None, workdir: Path, prefix: str = "capi_bench") -> Iterator[str]:
    """A new, empty database: a SQLite file, or a throw-away database (named ``prefix``_...) on a
    Postgres server."""
    if database_url is None or database_url.startswith("sqlite"):
        yield f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        return
    with postgres_database(database_url, f"{prefix}_{uuid.uuid4().hex[:10]}") as url:
        yield url


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


# Bumped whenever synthetic_lines changes what it writes, so a kept file of an older form is not reused.
LINES_VERSION = 2


def write_lines(path: Path, size: int) -> None:
    """The JSONL file of ``size`` synthetic events at ``path``, complete or not at all (written
    beside it, then renamed: an interrupted write leaves no file that looks finished)."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("w") as handle:
        chunk: list[str] = []
        for line in synthetic_lines(size):
            chunk.append(line)
            if len(chunk) >= 10_000:  # one write call per 7 MB, not per line
                handle.write("\n".join(chunk) + "\n")
                chunk = []
        if chunk:
            handle.write("\n".join(chunk) + "\n")
    partial.replace(path)


def lines_file(size: int, directory: Path) -> tuple[Path, float]:
    """The events file of ``size`` in ``directory``: reused when already there, else written.
    Also the seconds spent writing it (0 when reused)."""
    path = directory / f"events-{size}-v{LINES_VERSION}.jsonl"
    if path.exists():
        return path, 0.0
    started = time.perf_counter()
    write_lines(path, size)
    return path, time.perf_counter() - started


def _progress_printer(backend: int | None, every: float = 60.0) -> Callable[[IngestProgress], None]:
    """Prints, at most every ``every`` seconds, how far the import is: a long run (10^7) can be
    followed, and judged if it has to be stopped. CPU of this process and of the server's."""
    last = [time.perf_counter()]
    cpu_started, server_started = time.process_time(), _process_cpu_seconds(backend)

    def show(progress: IngestProgress) -> None:
        now = time.perf_counter()
        if now - last[0] < every and progress.fraction < 1.0:
            return
        last[0] = now
        server_now = _process_cpu_seconds(backend)
        server = (server_now - server_started) if server_now is not None and server_started is not None else 0.0
        cpu = time.process_time() - cpu_started
        print(f"  {time.strftime('%H:%M:%S')} {progress.lines:>11,} lines ({progress.fraction:.1%}) in "
              f"{progress.elapsed:.0f} s: {progress.lines_per_second:,.0f}/s, cpu {cpu:.0f} s"
              f" + server {server:.0f} s, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)

    return show


def bench_size(size: int, *, database_url: str | None, workdir: Path,
               audit_step: AuditStep = full_audit_step, repeats: int = 5, bulk: bool = True,
               jsonl_dir: Path | None = None, pg_options: str | None = None,
               db_prefix: str = "capi_bench") -> BenchRow:
    """One size: fill a fresh ledger, time its import and the audit. With ``jsonl_dir`` the events
    file is kept there (and reused by the next run of the same size), else written to ``workdir``
    and deleted afterwards. ``pg_options``: libpq ``options`` of the import's connections (e.g.
    ``-c synchronous_commit=off``), to try server settings for the import session alone."""
    lines_path, write_seconds = lines_file(size, jsonl_dir or workdir)
    if write_seconds:
        print(f"  wrote {lines_path} in {write_seconds:.0f} s", file=sys.stderr, flush=True)
    with fresh_ledger(database_url, workdir, db_prefix) as url:
        engine = make_engine(url, **({"connect_args": {"options": pg_options}} if pg_options else {}))
        migrate(engine)
        # The pool hands the import the connection just returned (checked again afterwards).
        backend = _backend_pid(engine)
        server_cpu_started = _process_cpu_seconds(backend)
        started, cpu_started = time.perf_counter(), time.process_time()
        report = ingest_events_jsonl(session_or_engine=engine, path=lines_path, now=WINDOW_END, bulk=bulk,
                                     progress=_progress_printer(backend))
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
    if jsonl_dir is None:
        lines_path.unlink()
    hours = len(getattr(result, "event_hours", ()))
    db = "sqlite" if database_url is None or database_url.startswith("sqlite") else "postgres"
    return BenchRow(db, bulk, size, ingest_seconds, size / ingest_seconds, ingest_cpu_seconds,
                    statistics.median(timings) * 1000, hours, server_cpu)


def run_benchmark(sizes: list[int], *, database_url: str | None = None,
                  audit_step: AuditStep = full_audit_step, bulk: bool = True,
                  jsonl_dir: Path | None = None, workdir: Path | None = None,
                  pg_options: str | None = None, db_prefix: str = "capi_bench") -> list[BenchRow]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="capi-bench-", dir=workdir) as tmp:
        for size in sizes:
            row = bench_size(size, database_url=database_url, workdir=Path(tmp), audit_step=audit_step,
                             bulk=bulk, jsonl_dir=jsonl_dir, pg_options=pg_options, db_prefix=db_prefix)
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
    parser.add_argument("--jsonl-dir", type=Path, default=None,
                        help="keep the events files here and reuse them (10^7 is 7 GB; writing it takes "
                             "minutes): the same file then serves both databases")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the SQLite ledgers (and unkept events files) go (default: the "
                             "system's temporary directory)")
    parser.add_argument("--pg-options", default=None,
                        help="libpq options for the import's connections, e.g. '-c synchronous_commit=off'")
    parser.add_argument("--db-prefix", default="capi_bench",
                        help="name prefix of the throw-away Postgres databases")
    args = parser.parse_args(argv)
    if args.jsonl_dir is not None:
        args.jsonl_dir.mkdir(parents=True, exist_ok=True)
    try:
        sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    except ValueError:
        parser.error("--sizes takes whole numbers separated by commas")
    if not sizes or min(sizes) < 1:
        parser.error("--sizes needs at least one positive size")
    url = None
    if args.db == "postgres":
        url = args.database_url or postgres_server()
    elif args.database_url:
        parser.error("--database-url is for --db postgres (SQLite uses a temporary file)")
    step = full_audit_step if args.step == "audit" else load_inputs_step
    rows = run_benchmark(sizes, database_url=url, audit_step=step, bulk=not args.no_bulk,
                         jsonl_dir=args.jsonl_dir, workdir=args.workdir, pg_options=args.pg_options,
                         db_prefix=args.db_prefix)
    print(json.dumps({"benchmark": "ledger", "step": args.step, "rows": [
        {**asdict(row), "events_per_cpu_second": row.events_per_cpu_second} for row in rows]}, indent=2))
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
