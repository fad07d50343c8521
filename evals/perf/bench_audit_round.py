"""One hourly audit round for 1, 10, 100 and 1000 pixels.

    python -m evals.perf.bench_audit_round [--pixels 1,10,100,1000] [--scenario healthy_weekday_evening.v1]

One scenario is generated and ingested once; its rollups and Meta-side state are then cloned under
new pixel ids (an audit reads only rollups and Meta, so clones cost the same to audit as the original).
Each round audits every pixel for the same hour through the real path: the Graph API client over
loopback to the simulator (stats for 4 weeks on the first audit of a pixel, dataset quality),
the ledger on SQLite, the checks, the diagnosis and storage. Printed: wall time per round and per pixel.
Two rounds are timed: the first audit of each pixel ("cold": it reads 4 weeks of Meta stats and
caches them as snapshots) and the next hour's round ("warm": the hourly steady state, which asks Meta
only for the last day). Rounds are sequential on one process; the scheduler's claims let several
replicas share a round.
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

ROLLUP_TABLES = ("event_hours", "delivery_hours", "order_hours")


def clone_pixels(engine, source: str, count: int) -> list[str]:
    """Copy the source pixel's rollups under ``count - 1`` new ids (SQL INSERT .. SELECT)."""
    ids = [source] + [f"9{n:09d}" for n in range(1, count)]
    with engine.begin() as conn:
        for table in ROLLUP_TABLES:
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
            ids = clone_pixels(engine, scenario.pixel_id, size)
            state_doc = json.loads(files.meta_state_path.read_text())
            source_state = state_doc["pixels"][scenario.pixel_id]
            state_doc["pixels"] = {pixel_id: source_state for pixel_id in ids}
            (folder / "state.json").write_text(json.dumps(state_doc))
            pixels = [PixelConfig(id=pixel_id, timezone=scenario.timezone) for pixel_id in ids]
            with Session(engine) as session:
                sync_pixels(session, pixels)
                session.commit()
            with run_simulator_in_thread(SimState.load(folder / "state.json")) as sim, \
                    GraphClient(base_url=sim.url, access_token=SIM_TOKEN, timeout=30) as client:
                for label, at in (("cold", scenario.audit_at), ("warm", scenario.audit_at + timedelta(hours=1))):
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
                    rows.append((size, label, total, statistics.median(per_pixel), max(per_pixel)))
                    print(f"{size:>6} pixels {label}: round {total:8.1f}s  median "
                          f"{statistics.median(per_pixel) * 1000:6.0f} ms/pixel  max {max(per_pixel) * 1000:6.0f} ms",
                          flush=True)
            engine.dispose()
    print("\npixels  round  round_s  median_ms_per_pixel  max_ms")
    for size, label, total, median, worst in rows:
        print(f"{size:>6}  {label:<5}  {total:7.1f}  {median * 1000:19.0f}  {worst * 1000:6.0f}")


if __name__ == "__main__":
    main()
