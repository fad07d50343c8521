"""Where one pixel's deterministic audit spends its time: cProfile over repeated hourly audits.

    python -m evals.perf.profile_audit [--scenario healthy_weekday_evening.v1] [--audits 10]
        [--top 30] [--sort cumulative|tottime] [--meta client|prefetched] [--out FILE.prof]

The scenario is generated and ingested once, audited once at its ``audit_at`` (the first audit, which
reads 4 weeks of Meta stats and stores them as snapshots), then audited ``--audits`` times at the
following hours under the profiler. ``--meta prefetched`` (default) reads Meta's side for each hour
before the profiled audit, as the scheduler's round does (``prefetch_meta_sides``), so the profile is
the audit alone: ledger read, checks, diagnosis, storage. ``--meta client`` lets each audit call the
simulator itself (over loopback, no added latency). Prints the median audit time and the top entries.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session


def main(argv: list[str] | None = None) -> int:
    from evals.harness import scenario_world
    from tools.audit.meta_side import prefetch_meta_sides
    from tools.audit.runner import audit_pixel
    from tools.ledger.db import session_factory
    from tools.synth.scenario import find_scenario

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="healthy_weekday_evening.v1")
    parser.add_argument("--audits", type=int, default=10)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", choices=("cumulative", "tottime"), default="cumulative")
    parser.add_argument("--meta", choices=("client", "prefetched"), default="prefetched")
    parser.add_argument("--out", default=None, help="also dump the raw profile here (for snakeviz etc.)")
    args = parser.parse_args(argv)
    if args.audits < 1:
        parser.error("--audits must be at least 1")
    scenario = find_scenario(args.scenario)
    profiler = cProfile.Profile()
    timings: list[float] = []
    with tempfile.TemporaryDirectory(prefix="capi-profile-") as tmp, \
            scenario_world(scenario, Path(tmp)) as world:
        world.audit(scenario.audit_at)  # first audit: 4 weeks of Meta stats into the snapshots
        for step in range(1, args.audits + 1):
            at = scenario.audit_at + timedelta(hours=step)
            world.simulator.state.set_now(at)
            with world.client() as client:
                prefetch = None
                if args.meta == "prefetched":
                    prefetch = prefetch_meta_sides(session_factory(world.engine), [(world.pixel, at)],
                                                   workers=1, client_for=lambda _p: world.client())
                with Session(world.engine, expire_on_commit=False) as session:
                    began = time.perf_counter()
                    profiler.enable()
                    audit_pixel(session, pixel=world.pixel, at=at, client=client)
                    session.commit()
                    profiler.disable()
                    timings.append(time.perf_counter() - began)
                if prefetch is not None:
                    prefetch.discard()
    if args.out:
        profiler.dump_stats(args.out)
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats(args.sort).print_stats(args.top)
    print(stream.getvalue())
    print(f"{scenario.id}: {len(timings)} audits (Meta {args.meta}), median "
          f"{statistics.median(timings) * 1000:.1f} ms, min {min(timings) * 1000:.1f} ms "
          "(under the profiler, which slows Python calls)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
