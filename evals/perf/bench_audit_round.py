"""One hourly audit round for 1, 10, 100 and 1000 pixels.

    python -m evals.perf.bench_audit_round [--pixels 1,10,100,1000] [--scenario healthy_weekday_evening.v1]
        [--latency-ms 150] [--mode pipelined|concurrent|sequential] [--workers 24] [--sim process|thread]

One scenario is generated and ingested once and audited once ("cold": its first audit reads 4 weeks
of Meta stats through the Graph API client and caches them as snapshots). Its rollups and Meta
snapshots are then cloned under new pixel ids (an audit reads only rollups and Meta, so a clone costs
what the original costs), and the next hour's round is timed over all pixels ("warm": the hourly
steady state, which asks Meta, over loopback to the simulator, only for the last day plus dataset
quality). Each audit is the real path: client, ledger on SQLite, checks, diagnosis, storage.
``--mode sequential`` is the old round: each audit reads its own pixel's Meta side, one after another.
``--mode concurrent`` reads Meta's side of every pixel at once (``prefetch_meta_sides``, ``--workers``
calls in flight), then runs the audits, one after another, from the stored snapshots.
``--mode pipelined`` (default) is the scheduler's round: the same reads in a background thread
(``start_prefetch``) while the audits go on, each waiting only for its own pixel's read.
CPU time is this process's (the simulator runs in its own process), for the whole round and per audit
(the auditing thread's); on a shared machine it is steadier than wall time.
``--latency-ms`` is how long the simulator holds each answer back (real Graph API
reads take 100-300 ms); ``--sim process`` (default) runs it as its own process, as Meta is not in the
client's interpreter. The scheduler's claims let several replicas share a round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from evals.harness import SIM_TOKEN, load_scenario_ledger
from evals.perf.bench_meta_reads import simulator_process
from tools.audit.meta_side import prefetch_meta_sides, start_prefetch
from tools.audit.runner import audit_pixel
from tools.ledger.db import session_factory
from tools.ledger.pixels import PixelConfig, sync_pixels
from tools.meta.client import GraphClient
from tools.meta.simulator import run_simulator_in_thread
from tools.meta.simulator.state import SimState
from tools.synth.scenario import find_scenario, materialize
from tools.timeutil import to_iso

# Every table an audit reads per pixel, so a clone costs what the original costs.
CLONED_TABLES = ("event_hours", "delivery_hours", "order_hours", "arrival_hours", "payload_hours", "meta_snapshots")


def clone_pixels(engine: Engine, source: str, count: int) -> list[str]:
    """Copy the source pixel's rollups and Meta snapshots under ``count - 1`` new ids (INSERT .. SELECT)."""
    ids = [source] + [f"9{n:09d}" for n in range(1, count)]
    with engine.begin() as conn:
        for table in CLONED_TABLES:
            columns = [row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({table})")]
            others = [c for c in columns if c not in ("pixel_id", "id")]
            cols = ", ".join(others)
            for pixel_id in ids[1:]:
                conn.execute(text(f"INSERT INTO {table} (pixel_id, {cols}) SELECT :p, {cols} FROM {table} "
                                  "WHERE pixel_id = :s"), {"p": pixel_id, "s": source})
    return ids


@contextmanager
def simulator(state_doc: dict, *, latency_ms: float, kind: str, folder: Path) -> Iterator[str]:
    if kind == "process":
        with simulator_process(state_doc, latency_ms=latency_ms, folder=folder) as url:
            yield url
        return
    state = SimState.from_dict(state_doc)
    state.usage.configure({"latency_ms": latency_ms})
    with run_simulator_in_thread(state) as sim:
        yield sim.url


@dataclass
class Round:
    total_s: float
    prefetch_s: float  # the Meta reads, start to end (overlapping the audits when pipelined)
    per_pixel: list[float]  # wall s of each audit
    per_pixel_cpu: list[float]  # CPU s of each audit (the auditing thread)
    cpu_s: float  # this process, the whole round (the reads' threads included)
    deferred: int


def audit_all(engine: Engine, pixels: list[PixelConfig], at: datetime, url: str, *, mode: str,
              workers: int) -> Round:
    """One round at ``at`` over ``pixels``."""
    started, cpu_started = time.perf_counter(), time.process_time()
    prefetch_s, deferred = 0.0, 0

    def client_for(_pixel: PixelConfig) -> GraphClient:
        return GraphClient(base_url=url, access_token=SIM_TOKEN, timeout=30)

    with GraphClient(base_url=url, access_token=SIM_TOKEN, timeout=30) as client:
        prefetch, run = None, None
        if mode == "concurrent":
            prefetch = prefetch_meta_sides(session_factory(engine), [(pixel, at) for pixel in pixels],
                                           workers=workers, client_for=client_for)
            prefetch_s = time.perf_counter() - started
        elif mode == "pipelined":
            run = start_prefetch(session_factory(engine), [(pixel, at) for pixel in pixels], workers=workers,
                                 client_for=client_for)
        per_pixel, per_pixel_cpu = [], []
        for pixel in pixels:
            if run is not None:
                run.wait_for(pixel.id)
            began, cpu_began = time.perf_counter(), time.thread_time()
            with Session(engine, expire_on_commit=False) as session:
                audit_pixel(session, pixel=pixel, at=at, client=client)
                session.commit()
            per_pixel.append(time.perf_counter() - began)
            per_pixel_cpu.append(time.thread_time() - cpu_began)
        if run is not None:
            prefetch = run.join()
            prefetch_s = run.seconds
            if run.error is not None:
                raise run.error
        if prefetch is not None:
            deferred = len(prefetch.deferred)
            prefetch.discard()
    return Round(total_s=time.perf_counter() - started, prefetch_s=prefetch_s, per_pixel=per_pixel,
                 per_pixel_cpu=per_pixel_cpu, cpu_s=time.process_time() - cpu_started, deferred=deferred)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", default="1,10,100,1000")
    parser.add_argument("--scenario", default="healthy_weekday_evening.v1")
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--mode", choices=("pipelined", "concurrent", "sequential"), default="pipelined")
    parser.add_argument("--workers", type=int, default=24)
    parser.add_argument("--sim", choices=("process", "thread"), default="process")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    sizes = [int(n) for n in args.pixels.split(",")]
    scenario = find_scenario(args.scenario)
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            files = materialize(scenario, folder)
            engine, _ = load_scenario_ledger(scenario, files, database_url=f"sqlite:///{folder / 'l.db'}")
            source = PixelConfig(id=scenario.pixel_id, timezone=scenario.timezone)
            state_doc = json.loads(files.meta_state_path.read_text())
            state_doc["now"] = to_iso(scenario.audit_at)
            with simulator(state_doc, latency_ms=args.latency_ms, kind=args.sim, folder=folder) as url:
                cold = audit_all(engine, [source], scenario.audit_at, url, mode=args.mode,
                                 workers=args.workers).total_s
            ids = clone_pixels(engine, scenario.pixel_id, size)
            state_doc["pixel_aliases"] = {pixel_id: scenario.pixel_id for pixel_id in ids[1:]}
            pixels = [PixelConfig(id=pixel_id, timezone=scenario.timezone) for pixel_id in ids]
            with Session(engine) as session:
                sync_pixels(session, pixels)
                session.commit()
            at = scenario.audit_at + timedelta(hours=1)
            state_doc["now"] = to_iso(at)
            with simulator(state_doc, latency_ms=args.latency_ms, kind=args.sim, folder=folder) as url:
                result = audit_all(engine, pixels, at, url, mode=args.mode, workers=args.workers)
            engine.dispose()
        per_pixel, per_cpu = result.per_pixel, result.per_pixel_cpu
        row = {"pixels": size, "mode": args.mode, "latency_ms": args.latency_ms, "first_audit_s": cold,
               "round_s": result.total_s, "meta_prefetch_s": result.prefetch_s, "audits_s": sum(per_pixel),
               "round_cpu_s": result.cpu_s, "audits_cpu_s": sum(per_cpu),
               "median_audit_ms": statistics.median(per_pixel) * 1000, "max_audit_ms": max(per_pixel) * 1000,
               "median_audit_cpu_ms": statistics.median(per_cpu) * 1000, "deferred": result.deferred}
        rows.append(row)
        print(f"{size:>6} pixels ({args.mode}, Meta {args.latency_ms:.0f} ms): first audit {cold:5.1f}s; "
              f"hourly round {result.total_s:8.1f}s (Meta reads {result.prefetch_s:.1f}s, CPU "
              f"{result.cpu_s:.1f}s), median {row['median_audit_ms']:6.0f} ms/pixel "
              f"({row['median_audit_cpu_ms']:.0f} ms CPU), max {row['max_audit_ms']:6.0f} ms", flush=True)
    print("\npixels  mode        first_audit_s  round_s  meta_reads_s  round_cpu_s  median_ms  median_cpu_ms  max_ms")
    for r in rows:
        print(f"{r['pixels']:>6}  {r['mode']:<10}  {r['first_audit_s']:13.1f}  {r['round_s']:7.1f}  "
              f"{r['meta_prefetch_s']:12.1f}  {r['round_cpu_s']:11.1f}  {r['median_audit_ms']:9.0f}  "
              f"{r['median_audit_cpu_ms']:13.0f}  {r['max_audit_ms']:6.0f}")
    print(json.dumps(rows, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
