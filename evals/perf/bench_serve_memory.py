"""Resident memory of the real ``capi-agent serve`` process while it audits 1000 pixels.

    python -m evals.perf.bench_serve_memory [--pixels 1000] [--db sqlite|postgres] [--database-url URL]
        [--database-name capi_bench_serve_memory] [--latency-ms 150] [--timeout 3600] [--json FILE]
        [--log FILE] [--tracemalloc N] [--serve-env KEY=VALUE ...]

Builds a ledger of ``--pixels`` configured pixels and a Graph API simulator process around the present
hour (``evals.perf.serve_world``), starts ``capi-agent serve`` on it as its own process (relay, health
endpoint and every background loop; no Slack, email or LLM: the offline reasoner), and samples the
process's resident set size from /proc every half second until its scheduler has audited every
pixel's due hour. Prints the RSS once serving (before the round ends), its peak (VmHWM, the kernel's
own high-water mark), at the round's last audit and once the round has settled (its summaries queued,
its freed memory released), with the round's wall time. Issue 9 asks for less
than 300 MB with 1000 pixels. ``--tracemalloc N`` has serve log its N biggest Python allocation sites
after the round (``CAPI_TRACEMALLOC``; tracing costs memory and time of its own, so its figures are
not the benchmark's); ``--log`` keeps serve's log, where they are.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from evals.perf.pgdb import postgres_database, postgres_server
from evals.perf.serve_world import (
    build_world,
    claims_of,
    due_hour_for_serve,
    free_port,
    meta_stand_in,
    start_serve,
    stop,
    wait_healthy,
)
from tools.ledger.db import make_engine
from tools.schedule.plan import latest_due_hour
from tools.timeutil import to_iso, utcnow

MB = 1024 * 1024  # the *_mb figures are MiB, except rss_peak_decimal_mb (issue 9's 300 MB are decimal)


def memory_of(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in bytes, from /proc/PID/status."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024  # reported in kB
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, log: Path, *, traced: bool, seconds: float = 10.0) -> int:
    """VmRSS once serve has ended its round (summaries queued, freed memory released): ``seconds``
    after the last claim, or when traced, once serve has logged its allocations (up to 5 minutes)."""
    deadline = time.perf_counter() + (300.0 if traced else seconds)
    while time.perf_counter() < deadline:
        if traced and "tracemalloc after" in log.read_text(errors="replace"):
            break
        time.sleep(0.5)
    return memory_of(pid)["VmRSS"]


def run(*, pixels: int, database_url: str, folder: Path, latency_ms: float, timeout: float,
        tracemalloc_top: int = 0, serve_env: dict[str, str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    world = build_world(pixels=pixels, database_url=database_url, folder=folder,
                        hour=latest_due_hour(utcnow()))
    build_s = time.perf_counter() - started
    engine = make_engine(database_url)
    hour = due_hour_for_serve(world)
    port = free_port()
    with meta_stand_in(world, latency_ms=latency_ms) as meta_url:
        extra = {**(serve_env or {}), **({"CAPI_TRACEMALLOC": str(tracemalloc_top)} if tracemalloc_top else {})}
        process = start_serve(world, meta_url, port=port, log_path=folder / "serve.log", extra_env=extra)
        try:
            ready_s = wait_healthy(port, process)
            began = time.perf_counter()
            at_ready = memory_of(process.pid)["VmRSS"]
            samples: list[int] = []
            finished: dict[str, int] = {}
            while time.perf_counter() - began < timeout:
                samples.append(memory_of(process.pid)["VmRSS"])
                if len(samples) % 4 == 0:
                    finished = claims_of(engine, hour)
                    if sum(finished.values()) >= pixels:
                        break
                if process.poll() is not None:
                    raise RuntimeError(f"serve exited with {process.returncode}; see {folder / 'serve.log'}")
                time.sleep(0.5)
            else:
                raise TimeoutError(f"round not finished after {timeout:.0f} s: {finished}")
            round_s = time.perf_counter() - began
            end = memory_of(process.pid)
            cpu = cpu_seconds(process.pid)
            settled = settle(process.pid, folder / "serve.log", traced=tracemalloc_top > 0)
        finally:
            stop(process)
    engine.dispose()
    return {"pixels": pixels, "db": "postgres" if database_url.startswith("postgresql") else "sqlite",
            "serve_env": serve_env or {},
            "latency_ms": latency_ms, "hour": to_iso(hour), "build_s": round(build_s, 1),
            "serve_ready_s": round(ready_s, 1), "round_s": round(round_s, 1),
            "serve_cpu_s": round(cpu, 1), "audits": finished,
            "rss_ready_mb": round(at_ready / MB, 1), "rss_end_mb": round(end["VmRSS"] / MB, 1),
            "rss_peak_mb": round(end["VmHWM"] / MB, 1), "rss_peak_decimal_mb": round(end["VmHWM"] / 1e6, 1),
            "rss_settled_mb": round(settled / MB, 1),
            "rss_sampled_max_mb": round(max(samples) / MB, 1), "samples": len(samples)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=1000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--database-url", default=None,
                        help="the Postgres server (default: CAPI_TEST_POSTGRES_URL or the local one); "
                             "a database --database-name is created on it and dropped after")
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--database-name", default="capi_bench_serve_memory",
                        help="the Postgres database created (and dropped) for the run")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds the round may take")
    parser.add_argument("--json", default=None, help="also write the result to this file")
    parser.add_argument("--log", default=None, help="copy serve's log here")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="N",
                        help="serve logs its N biggest allocation sites after the round (see --log)")
    parser.add_argument("--serve-env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for serve (e.g. CAPI_SQLITE_HEAP_MIB=0); repeatable")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="capi-serve-mem-") as tmp, ExitStack() as stack:
        folder = Path(tmp)
        if args.log:
            stack.callback(lambda: shutil.copyfile(folder / "serve.log", args.log))
        if args.db == "postgres":
            server = args.database_url or postgres_server()
            url = stack.enter_context(postgres_database(server, args.database_name))
        else:
            url = f"sqlite:///{folder / 'ledger.db'}"
        result = run(pixels=args.pixels, database_url=url, folder=folder, latency_ms=args.latency_ms,
                     timeout=args.timeout, tracemalloc_top=args.tracemalloc,
                     serve_env=dict(item.split("=", 1) for item in args.serve_env))
    print(json.dumps(result, indent=2))
    print(f"serve with {result['pixels']} pixels ({result['db']}, Meta at {result['latency_ms']:.0f} ms): "
          f"round {result['round_s']:.0f} s, RSS {result['rss_ready_mb']:.0f} MiB serving, "
          f"{result['rss_peak_mb']:.0f} MiB peak ({result['rss_peak_decimal_mb']:.0f} MB), "
          f"{result['rss_end_mb']:.0f} MiB at the round's last audit, {result['rss_settled_mb']:.0f} MiB once settled")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
