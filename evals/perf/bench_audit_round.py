"""One hourly audit round for 1, 10, 100 and 1000 pixels.

    python -m evals.perf.bench_audit_round [--pixels 1,10,100,1000] [--scenario healthy_weekday_evening.v1]

One scenario is generated and ingested once and audited once ("cold": its first audit reads 4 weeks
of Meta stats through the Graph API client and caches them as snapshots). Its rollups and Meta
snapshots are then cloned under new pixel ids (an audit reads only rollups and Meta, so a clone costs
what the original costs), and the next hour's round is timed over all pixels ("warm": the hourly
steady state, which asks Meta, over loopback to the simulator, only for the last day plus dataset
quality). Each audit is the real path: client, ledger on SQLite, checks, diagnosis, storage.
Rounds are sequential in one process; the scheduler's claims let several replicas share a round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from evals.harness import SIM_TOKEN, load_scenario_ledger
from tools.audit.runner import audit_pixel
from tools.ledger.pixels import PixelConfig, sync_pixels
from tools.meta.client import GraphClient
from tools.meta.simulator import run_simulator_in_thread
from tools.meta.simulator.state import SimState
from tools.synth.scenario import find_scenario, materialize

CLONED_TABLES = ("event_hours", "delivery_hours", "order_hours", "meta_snapshots")


def clone_pixels(engine, source: str, count: int) -> list[str]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", default="1,10,100,1000")
    parser.add_argument("--scenario", default="healthy_weekday_evening.v1")
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
            with run_simulator_in_thread(SimState.from_dict(state_doc)) as sim, \
                    GraphClient(base_url=sim.url, access_token=SIM_TOKEN, timeout=30) as client:
                sim.state.set_now(scenario.audit_at)
                began = time.perf_counter()
                with Session(engine, expire_on_commit=False) as session:
                    audit_pixel(session, pixel=source, at=scenario.audit_at, client=client)
                    session.commit()
                cold = time.perf_counter() - began
            ids = clone_pixels(engine, scenario.pixel_id, size)
            state_doc["pixels"] = {pixel_id: state_doc["pixels"][scenario.pixel_id] for pixel_id in ids}
            pixels = [PixelConfig(id=pixel_id, timezone=scenario.timezone) for pixel_id in ids]
            with Session(engine) as session:
                sync_pixels(session, pixels)
                session.commit()
            at = scenario.audit_at + timedelta(hours=1)
            with run_simulator_in_thread(SimState.from_dict(state_doc)) as sim, \
                    GraphClient(base_url=sim.url, access_token=SIM_TOKEN, timeout=30) as client:
                sim.state.set_now(at)
                per_pixel = []
                started = time.perf_counter()
                for pixel in pixels:
                    began = time.perf_counter()
                    with Session(engine, expire_on_commit=False) as session:
                        audit_pixel(session, pixel=pixel, at=at, client=client)
                        session.commit()
                    per_pixel.append(time.perf_counter() - began)
                total = time.perf_counter() - started
            engine.dispose()
        rows.append((size, cold, total, statistics.median(per_pixel), max(per_pixel)))
        print(f"{size:>6} pixels: first audit {cold:5.1f}s; hourly round {total:8.1f}s, median "
              f"{statistics.median(per_pixel) * 1000:6.0f} ms/pixel, max {max(per_pixel) * 1000:6.0f} ms", flush=True)
    print("\npixels  first_audit_s  round_s  median_ms_per_pixel  max_ms")
    for size, cold, total, median, worst in rows:
        print(f"{size:>6}  {cold:13.1f}  {total:7.1f}  {median * 1000:19.0f}  {worst * 1000:6.0f}")


if __name__ == "__main__":
    main()
