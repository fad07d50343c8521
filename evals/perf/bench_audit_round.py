"""One hourly audit round for 1, 10, 100 and 1000 pixels.

    python -m evals.perf.bench_audit_round [--pixels 1,10,100,1000] [--scenario healthy_weekday_evening.v1]
        [--latency-ms 150] [--mode concurrent|sequential] [--workers 24] [--sim process|thread]

One scenario is generated and ingested once and audited once ("cold": its first audit reads 4 weeks
of Meta stats through the Graph API client and caches them as snapshots). Its rollups and Meta
snapshots are then cloned under new pixel ids (an audit reads only rollups and Meta, so a clone costs
what the original costs), and the next hour's round is timed over all pixels ("warm": the hourly
steady state, which asks Meta, over loopback to the simulator, only for the last day plus dataset
quality). Each audit is the real path: client, ledger on SQLite, checks, diagnosis, storage.
``--mode sequential`` is the old round: each audit reads its own pixel's Meta side, one after another.
``--mode concurrent`` (default) is the scheduler's round: Meta's side of every pixel read at once
(``prefetch_meta_sides``, ``--workers`` calls in flight), then the audits, one after another, from the
stored snapshots. ``--latency-ms`` is how long the simulator holds each answer back (real Graph API
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
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from evals.harness import SIM_TOKEN, load_scenario_ledger
from evals.perf.bench_meta_reads import simulator_process
from tools.audit.meta_side import prefetch_meta_sides
from tools.audit.runner import audit_pixel
from tools.ledger.db import session_factory
from tools.ledger.pixels import PixelConfig, sync_pixels
from tools.meta.client import GraphClient
from tools.meta.simulator import run_simulator_in_thread
from tools.meta.simulator.state import SimState
from tools.synth.scenario import find_scenario, materialize
from tools.timeutil import to_iso

CLONED_TABLES = ("event_hours", "delivery_hours", "order_hours", "meta_snapshots")


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


def audit_all(engine: Engine, pixels: list[PixelConfig], at: datetime, url: str, *, mode: str,
              workers: int) -> tuple[float, float, list[float], int]:
    """(total s, Meta prefetch s, per-pixel audit s, deferred pixels) for one round at ``at``."""
    started = time.perf_counter()
    prefetch_s, deferred = 0.0, 0
    with GraphClient(base_url=url, access_token=SIM_TOKEN, timeout=30) as client:
        prefetch = None
        if mode == "concurrent":
            prefetch = prefetch_meta_sides(
                session_factory(engine), [(pixel, at) for pixel in pixels], workers=workers,
                client_for=lambda _p: GraphClient(base_url=url, access_token=SIM_TOKEN, timeout=30))
            prefetch_s, deferred = time.perf_counter() - started, len(prefetch.deferred)
        per_pixel = []
        for pixel in pixels:
            began = time.perf_counter()
            with Session(engine, expire_on_commit=False) as session:
                audit_pixel(session, pixel=pixel, at=at, client=client)
                session.commit()
            per_pixel.append(time.perf_counter() - began)
        if prefetch is not None:
            prefetch.discard()
    return time.perf_counter() - started, prefetch_s, per_pixel, deferred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", default="1,10,100,1000")
    parser.add_argument("--scenario", default="healthy_weekday_evening.v1")
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--mode", choices=("concurrent", "sequential"), default="concurrent")
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
                cold, _, _, _ = audit_all(engine, [source], scenario.audit_at, url, mode=args.mode,
                                          workers=args.workers)
            ids = clone_pixels(engine, scenario.pixel_id, size)
            state_doc["pixel_aliases"] = {pixel_id: scenario.pixel_id for pixel_id in ids[1:]}
            pixels = [PixelConfig(id=pixel_id, timezone=scenario.timezone) for pixel_id in ids]
            with Session(engine) as session:
                sync_pixels(session, pixels)
                session.commit()
            at = scenario.audit_at + timedelta(hours=1)
            state_doc["now"] = to_iso(at)
            with simulator(state_doc, latency_ms=args.latency_ms, kind=args.sim, folder=folder) as url:
                total, prefetch_s, per_pixel, deferred = audit_all(engine, pixels, at, url, mode=args.mode,
                                                                   workers=args.workers)
            engine.dispose()
        row = {"pixels": size, "mode": args.mode, "latency_ms": args.latency_ms, "first_audit_s": cold,
               "round_s": total, "meta_prefetch_s": prefetch_s, "audits_s": sum(per_pixel),
               "median_audit_ms": statistics.median(per_pixel) * 1000, "max_audit_ms": max(per_pixel) * 1000,
               "deferred": deferred}
        rows.append(row)
        print(f"{size:>6} pixels ({args.mode}, Meta {args.latency_ms:.0f} ms): first audit {cold:5.1f}s; "
              f"hourly round {total:8.1f}s (Meta reads {prefetch_s:.1f}s), median "
              f"{row['median_audit_ms']:6.0f} ms/pixel, max {row['max_audit_ms']:6.0f} ms", flush=True)
    print("\npixels  mode        first_audit_s  round_s  meta_reads_s  median_ms_per_pixel  max_ms")
    for r in rows:
        print(f"{r['pixels']:>6}  {r['mode']:<10}  {r['first_audit_s']:13.1f}  {r['round_s']:7.1f}  "
              f"{r['meta_prefetch_s']:12.1f}  {r['median_audit_ms']:19.0f}  {r['max_audit_ms']:6.0f}")
    print(json.dumps(rows, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
