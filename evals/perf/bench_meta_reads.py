"""Meta reads of an audit round, sequential (each audit reads its pixel, one after another, as before)
vs concurrent (``prefetch_meta_sides``: the whole round at once), with Meta answering in
``--latency-ms`` (real Graph API reads take 100-300 ms).

    python -m evals.perf.bench_meta_reads [--pixels 100,1000] [--latency-ms 150] [--workers 24]
        [--history-days 28] [--sequential-max 100] [--json out.json]

Each pixel has ``--history-days`` of hourly stats (two events, browser and server) at the simulator,
which runs as a separate process (``python -m tools.meta.simulator``), as Meta is not in the
client's interpreter. Per size: the "first" read (new pixels: the whole history) and the "hourly"
read (the next hour: only the last day plus dataset quality), each through the real Graph API client
into SQLite snapshots. Sequential reads take pixels x calls x latency, so they are measured on the first
``--sequential-max`` pixels only and scaled to the size (marked "est." in the table; the per-pixel
cost of a sequential read does not depend on how many pixels come after it). Prints a table and JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from tools.audit.meta_side import prefetch_meta_sides, read_meta_side
from tools.ledger.db import make_engine, migrate, session_factory
from tools.ledger.pixels import PixelConfig
from tools.meta.client import GraphClient
from tools.timeutil import audit_window, to_iso

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TOKEN = "sim-token"
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def simulator_process(state: dict[str, Any], *, latency_ms: float, folder: Path) -> Iterator[str]:
    """``python -m tools.meta.simulator`` on a free loopback port; yields its URL."""
    path = folder / "sim-state.json"
    path.write_text(json.dumps(state))
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.meta.simulator", "--port", "0", "--state", str(path),
         "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on " not in line:
            raise RuntimeError(f"simulator did not start: {line}{process.stdout.read()[:2000]}")
        url = line.split("listening on ")[1].strip()
        for _ in range(200):
            try:
                httpx.get(f"{url}/_sim/clock")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def seeded_state(pixel_ids: list[str], *, history_days: int, now: datetime) -> dict[str, Any]:
    source = pixel_ids[0]
    hours = [now - timedelta(hours=h + 1) for h in range(history_days * 24 + 2)]
    browser = [{"hour": to_iso(h), "event_name": name, "count": count} for h in hours
               for name, count in (("PageView", 40), ("Purchase", 2))]
    server = [{**row, "match_keys": {"em": row["count"]}, "lag_seconds_p50": 30} for row in browser]
    return {"now": to_iso(now), "tokens": {"valid": [TOKEN]},
            "pixels": {source: {"browser_hours": browser, "server_hours": server}},
            "pixel_aliases": {pid: source for pid in pixel_ids[1:]}}


def run_sequential(engine: Engine, url: str, pixels: list[PixelConfig], at: datetime) -> dict[str, Any]:
    """Today's path: each audit reads its own pixel (own client), one pixel after another."""
    window_end = audit_window(at)[1]
    per_pixel, errors = [], 0
    started = time.perf_counter()
    for pixel in pixels:
        began = time.perf_counter()
        with GraphClient(base_url=url, access_token=TOKEN, timeout=30) as client, \
                Session(engine, expire_on_commit=False) as session:
            side = read_meta_side(session, client, pixel_id=pixel.id, at=at, window_end=window_end,
                                  history_start=window_end - timedelta(weeks=pixel.thresholds.baseline_weeks))
            session.commit()
        errors += bool(side.errors)
        per_pixel.append(time.perf_counter() - began)
    total = time.perf_counter() - started
    return {"seconds": total, "max_pixel_s": max(per_pixel), "errors": errors, "deferred": 0}


def run_concurrent(engine: Engine, url: str, pixels: list[PixelConfig], at: datetime, workers: int) -> dict[str, Any]:
    started = time.perf_counter()
    prefetch = prefetch_meta_sides(session_factory(engine), [(p, at) for p in pixels], workers=workers,
                                   client_for=lambda _p: GraphClient(base_url=url, access_token=TOKEN,
                                                                     timeout=30))
    total = time.perf_counter() - started
    # The audits then take the stored snapshots (what read_meta_side does with a prefetched read).
    began = time.perf_counter()
    window_end = audit_window(at)[1]
    for pixel in pixels:
        with Session(engine, expire_on_commit=False) as session:
            read_meta_side(session, None, pixel_id=pixel.id, at=at, window_end=window_end,
                           history_start=window_end - timedelta(weeks=pixel.thresholds.baseline_weeks))
    handoff = time.perf_counter() - began
    prefetch.discard()
    errors = sum(1 for read in prefetch.reads.values() if read.errors)
    reads = prefetch.reads.values()
    return {"seconds": total, "handoff_s": handoff, "max_pixel_s": max(r.seconds for r in reads),
            "errors": errors, "deferred": len(prefetch.deferred), "calls": sum(r.calls for r in reads),
            "governor": prefetch.governor}


def bench(size: int, *, latency_ms: float, workers: int, history_days: int, sequential_max: int) -> list[dict]:
    rows = []
    pixels = [PixelConfig(id=f"8{n:09d}") for n in range(size)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        state = seeded_state([p.id for p in pixels], history_days=history_days, now=AT + timedelta(hours=1))
        with simulator_process(state, latency_ms=latency_ms, folder=folder) as url:
            for mode in ("sequential", "concurrent"):
                engine = make_engine(f"sqlite:///{folder / f'{mode}.db'}")
                migrate(engine)
                for phase, at in (("first", AT), ("hourly", AT + timedelta(hours=1))):
                    if mode == "sequential":
                        sample = pixels[:max(1, sequential_max)]
                        result = run_sequential(engine, url, sample, at)
                        result["measured_pixels"] = len(sample)
                        result["seconds"] *= size / len(sample)
                    else:
                        result = run_concurrent(engine, url, pixels, at, workers)
                    row = {"pixels": size, "phase": phase, "mode": mode, "latency_ms": latency_ms,
                           "workers": workers if mode == "concurrent" else 1, **result}
                    rows.append(row)
                    print(f"{size:>6} pixels {phase:>6} {mode:>10}: {result['seconds']:7.1f} s "
                          f"(slowest pixel {result['max_pixel_s']:.2f} s, errors {result['errors']}, "
                          f"deferred {result['deferred']})", flush=True)
                engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", default="100,1000")
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--workers", type=int, default=24)
    parser.add_argument("--history-days", type=int, default=28)
    parser.add_argument("--sequential-max", type=int, default=10)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    rows = []
    for size in (int(n) for n in args.pixels.split(",")):
        rows += bench(size, latency_ms=args.latency_ms, workers=args.workers, history_days=args.history_days,
                      sequential_max=args.sequential_max)
    print("\n| pixels | read | sequential | concurrent | speed-up |\n|---:|---|---:|---:|---:|")
    for size in sorted({r["pixels"] for r in rows}):
        for phase in ("first", "hourly"):
            found = {r["mode"]: r for r in rows if r["pixels"] == size and r["phase"] == phase}
            seq, con = found.get("sequential"), found["concurrent"]  # every size runs concurrently
            seq_s = "not run"
            if seq:
                estimated = seq.get("measured_pixels", size) < size
                seq_s = f"{seq['seconds']:.1f} s" + (f" (est. from {seq['measured_pixels']})" if estimated else "")
            ratio = f"{seq['seconds'] / con['seconds']:.0f}x" if seq else ""
            print(f"| {size} | {phase} | {seq_s} | {con['seconds']:.1f} s | {ratio} |")
    text = json.dumps(rows, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
