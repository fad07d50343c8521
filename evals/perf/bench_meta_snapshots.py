"""Cost of Meta's stats snapshots as a pixel ages: rows kept and the time of an audit's 4-week read,
without folding ("before") and with it ("after"), side by side.

For each age (``--days``, default 1, 7, 28 and 56 days of hourly audits) two pixels get the same saves,
one with ``fold=False`` and one as ``serve`` stores them: the first audit reads 4 weeks, each next one
the last 25 hours (meta_side's refresh), ``--events`` event names from both sources, committed one by
one as the audits do. Then ``load_meta_counts`` of the 4 weeks before the last audit is timed
(``--repeat`` times, median; wall and CPU), and the reads of both pixels are checked to be equal. The
save of the last day's audits is timed too (the fold is paid there). SQLite (a temporary file) and
PostgreSQL (a new database ``snapfold_bench_<random>`` on ``--postgres-url``, dropped afterwards).
Prints a table and one JSON object.

Run: ``.venv/bin/python -m evals.perf.bench_meta_snapshots [--db sqlite,postgres] [--days 1,7,28,56]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from evals.perf.pgdb import DEFAULT_POSTGRES_URL, postgres_database
from tools.checks.types import MetaHourlyCount
from tools.ledger.db import make_engine, migrate
from tools.ledger.snapshots import count_stats_snapshots, load_meta_counts, save_meta_counts
from tools.timeutil import HOUR

START = datetime(2026, 9, 1, tzinfo=UTC)
REFRESH_HOURS = 25  # an hourly audit reads the last day again plus the new hour
HISTORY = timedelta(weeks=4)


def _counts(start: datetime, end: datetime, names: list[str], fetched: datetime) -> list[MetaHourlyCount]:
    out = []
    hour = start
    while hour < end:
        for name in names:
            for source in ("browser", "server"):
                # Recent hours still move between reads (Meta revises them), older ones are settled.
                late = 0 if fetched - hour > timedelta(days=1) else int((fetched - hour) / HOUR) % 3
                out.append(MetaHourlyCount(hour, name, source, 30 + len(name) + late))  # type: ignore[arg-type]
        hour += HOUR
    return out


def _seed(engine: Engine, pixel_id: str, days: int, names: list[str], fold: bool) -> tuple[datetime, float, float]:
    """Hourly saves over ``days``; returns the last window end and the mean wall and CPU seconds of a
    save (commit included) over the last day."""
    walls: list[float] = []
    cpus: list[float] = []
    end = START
    with Session(engine) as session:
        for n in range(days * 24):
            end = START + n * HOUR
            start = end - HISTORY if n == 0 else end - REFRESH_HOURS * HOUR
            counts = _counts(start, end, names, end)
            wall, cpu = time.perf_counter(), time.process_time()
            save_meta_counts(session, pixel_id=pixel_id, counts=counts, fetched_at=end + timedelta(minutes=5),
                             window_start=start, window_end=end, history_start=end - HISTORY, fold=fold)
            session.commit()
            if n >= days * 24 - 24:
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
    return end, statistics.fmean(walls), statistics.fmean(cpus)


def _time_read(engine: Engine, pixel_id: str, end: datetime, repeat: int) -> tuple[float, float, int]:
    walls, cpus = [], []
    counts: tuple[MetaHourlyCount, ...] = ()
    with Session(engine) as session:
        for _ in range(repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            counts = load_meta_counts(session, pixel_id=pixel_id, start=end - HISTORY, end=end)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            session.rollback()
    return statistics.median(walls), statistics.median(cpus), len(counts)


@contextmanager
def _engine(db: str, postgres_url: str) -> Iterator[Engine]:
    if db == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(f"sqlite:///{Path(tmp) / 'ledger.db'}")
            migrate(engine)
            try:
                yield engine
            finally:
                engine.dispose()
        return
    with postgres_database(postgres_url, f"snapfold_bench_{uuid.uuid4().hex[:10]}") as url:
        engine = make_engine(url)
        migrate(engine)
        try:
            yield engine
        finally:
            engine.dispose()


def run(db: str, days_list: list[int], events: int, repeat: int, postgres_url: str) -> list[dict[str, Any]]:
    names = [f"Event{n}" for n in range(events)]
    results = []
    with _engine(db, postgres_url) as engine:
        for days in days_list:
            row: dict[str, Any] = {"db": db, "days": days}
            reads = {}
            for mode, fold in (("before", False), ("after", True)):
                pixel_id = f"{mode}-{days}"
                end, save_wall, save_cpu = _seed(engine, pixel_id, days, names, fold)
                wall, cpu, kept = _time_read(engine, pixel_id, end, repeat)
                with Session(engine) as session:
                    rows = count_stats_snapshots(session, pixel_id=pixel_id)
                    reads[mode] = load_meta_counts(session, pixel_id=pixel_id, start=end - HISTORY, end=end)
                row[mode] = {"rows": rows, "read_ms": round(1000 * wall, 2), "read_cpu_ms": round(1000 * cpu, 2),
                             "counts": kept, "save_ms": round(1000 * save_wall, 2),
                             "save_cpu_ms": round(1000 * save_cpu, 2)}
            row["same_read"] = reads["before"] == reads["after"]
            results.append(row)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--days", default="1,7,28,56", help="ages in days of hourly audits")
    parser.add_argument("--events", type=int, default=6, help="event names (each from browser and server)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args(argv)
    days_list = [int(d) for d in args.days.split(",")]
    results = []
    for db in args.db.split(","):
        results += run(db, days_list, args.events, args.repeat, args.postgres_url)
    print(f"{'db':<9}{'days':>5} | {'rows':>6} {'read ms':>9} {'cpu ms':>8} {'save ms':>8} | "
          f"{'rows':>5} {'read ms':>8} {'cpu ms':>7} {'save ms':>8} | {'counts':>6} same")
    print(f"{'':<14} | {'before (folding off)':^34} | {'after (folding on)':^32} |")
    for r in results:
        b, a = r["before"], r["after"]
        print(f"{r['db']:<9}{r['days']:>5} | {b['rows']:>6} {b['read_ms']:>9.1f} {b['read_cpu_ms']:>8.1f} "
              f"{b['save_ms']:>8.2f} | {a['rows']:>5} {a['read_ms']:>8.1f} {a['read_cpu_ms']:>7.1f} "
              f"{a['save_ms']:>8.2f} | {a['counts']:>6} {r['same_read']}")
    print(json.dumps({"python": sys.version.split()[0], "events": args.events, "repeat": args.repeat,
                      "results": results}))
    return 0 if all(r["same_read"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
