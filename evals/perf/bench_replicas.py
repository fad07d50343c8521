"""One and two ``capi-agent serve`` replicas on one Postgres database: the hourly round and the relay
queue, split between them.

    python -m evals.perf.bench_replicas [--pixels 200] [--queued 20] [--latency-ms 150]
        [--database-url URL] [--replicas 1,2] [--timeout 3600] [--json FILE]

Builds one world (``evals.perf.serve_world``: ``--pixels`` pixels whose next due hour is the present
one, Meta as a simulator process answering after ``--latency-ms``), with ``--queued`` events a pixel
waiting in the relay queue (status pending, from three hours before). For each replica count, a copy
of that database (``CREATE DATABASE .. TEMPLATE``) gets that many ``serve`` processes, started
together, each with its scheduler and relay-forward loop; the run ends when every pixel's due hour is
audited and the queue is empty. Prints, for each run: the round's wall time (from the first replica
answering /healthz to the last audit finished), how the pixel-hours and queued events split between
replicas, and the checks that matter: each pixel-hour audited exactly once (one claim and one stored
audit) and each queued event received by Meta exactly once.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlmodel import col

from evals.perf.pgdb import postgres_database, postgres_server
from evals.perf.serve_world import (
    ServeWorld,
    build_world,
    due_hour_for_serve,
    free_port,
    meta_stand_in,
    start_serve,
    stop,
    wait_healthy,
)
from tools.ledger.db import make_engine, normalize_database_url
from tools.ledger.ingest import ingest_events_jsonl
from tools.ledger.models import Audit, Event
from tools.relay.claims import IN_FLIGHT
from tools.schedule.claims import AuditClaim
from tools.schedule.plan import latest_due_hour
from tools.timeutil import to_iso, utcnow

TEMPLATE_DB = "capi_bench_replicas"
UNSENT = ("pending", IN_FLIGHT)


def queue_events(world: ServeWorld, per_pixel: int) -> int:
    """``per_pixel`` events of every pixel waiting in the relay queue, dated three hours back (an hour
    the round does not audit); event ids unique across pixels, to count Meta's copies."""
    if per_pixel <= 0:
        return 0
    at = world.hour - timedelta(hours=3)
    path = world.folder / "queued.jsonl"
    with path.open("w") as handle:
        for pixel_id in world.pixel_ids:
            for n in range(per_pixel):
                event_time = at + timedelta(seconds=7 * n)
                handle.write(json.dumps({
                    "pixel_id": pixel_id, "received_at": to_iso(event_time + timedelta(seconds=5)),
                    "event": {"event_name": "PageView", "event_time": int(event_time.timestamp()),
                              "event_id": f"q-{pixel_id}-{n}", "action_source": "website",
                              "event_source_url": "https://shop.example/queued",
                              "user_data": {"client_user_agent": "Mozilla/5.0", "client_ip_address": "203.0.113.9"}},
                    "delivery": {"status": "pending"}}) + "\n")
    engine = make_engine(world.database_url)
    try:
        report = ingest_events_jsonl(session_or_engine=engine, path=path, now=utcnow())
    finally:
        engine.dispose()
    return report.loaded


@contextmanager
def copy_of(server: str, template: str, name: str) -> Iterator[str]:
    """A database ``name`` made from ``template`` (no session may be connected to the template)."""
    admin = create_engine(normalize_database_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield make_url(normalize_database_url(server)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def unsent(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Event).where(
        col(Event.delivery_status).in_(UNSENT))) or 0)


def run_replicas(world: ServeWorld, *, replicas: int, database_url: str, latency_ms: float,
                 queued: int, timeout: float) -> dict[str, Any]:
    run_world = replace(world, database_url=database_url)
    hour = due_hour_for_serve(run_world)
    engine = make_engine(database_url)
    pixels = len(world.pixel_ids)
    with meta_stand_in(run_world, latency_ms=latency_ms) as meta_url:
        ports = [free_port() for _ in range(replicas)]
        launched = time.perf_counter()
        processes = [start_serve(run_world, meta_url, port=port,
                                 log_path=world.folder / f"serve-{replicas}-{n}.log")
                     for n, port in enumerate(ports)]
        try:
            ready = [wait_healthy(port, process) for port, process in zip(ports, processes, strict=True)]
            first_ready = launched + min(ready)
            round_done: float | None = None
            queue_done: float | None = None
            while time.perf_counter() - launched < timeout:
                with Session(engine) as session:
                    finished = session.scalar(select(func.count()).select_from(AuditClaim).where(
                        col(AuditClaim.window_end) == hour, col(AuditClaim.status) != "running")) or 0
                    waiting = unsent(session)
                now = time.perf_counter()
                if round_done is None and finished >= pixels:
                    round_done = now
                if queue_done is None and waiting == 0:
                    queue_done = now
                if round_done is not None and queue_done is not None:
                    round_s, queue_s = round_done - first_ready, queue_done - first_ready
                    break
                for process in processes:
                    if process.poll() is not None:
                        raise RuntimeError(f"a serve replica exited with {process.returncode}")
                time.sleep(1.0)
            else:
                raise TimeoutError(f"not done after {timeout:.0f} s")
            received = httpx.get(f"{meta_url}/_sim/received", params={"pixel_id": world.pixel_ids[0]},
                                 timeout=60).json()["data"]
        finally:
            for process in processes:
                stop(process)
    with Session(engine) as session:
        claims = session.execute(select(col(AuditClaim.pixel_id), col(AuditClaim.claimed_by),
                                        col(AuditClaim.status)).where(
            col(AuditClaim.window_end) == hour)).all()
        audits = Counter(session.scalars(select(col(Audit.pixel_id)).where(col(Audit.window_end) == hour)))
        status = col(Event.delivery_status)
        delivered_by: Counter[str] = Counter(dict(session.execute(select(status, func.count()).where(
            col(Event.event_id).like("q-%")).group_by(status)).all()))
    engine.dispose()
    copies = Counter(item["event"].get("event_id") for item in received
                     if str(item["event"].get("event_id", "")).startswith("q-"))
    by_worker = Counter(worker for _, worker, _ in claims)
    return {
        "replicas": replicas, "pixels": pixels, "hour": to_iso(hour), "latency_ms": latency_ms,
        "ready_s": [round(r, 1) for r in ready],
        "round_s": round(round_s, 1),
        "queue_drained_s": round(queue_s, 1),
        "audits_by_replica": sorted(by_worker.values(), reverse=True),
        "claims_done": sum(1 for _, _, status in claims if status == "done"),
        "claims_failed": sum(1 for _, _, status in claims if status == "failed"),
        "pixel_hours_audited_once": sum(1 for pid in world.pixel_ids if audits.get(pid) == 1),
        "pixel_hours_audited_twice_or_more": sum(1 for count in audits.values() if count > 1),
        "queued_events": queued, "queued_statuses": dict(delivered_by),
        "queued_received_once": sum(1 for count in copies.values() if count == 1),
        "queued_received_twice_or_more": sum(1 for count in copies.values() if count > 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=200)
    parser.add_argument("--queued", type=int, default=20, help="relay-queue events per pixel")
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--replicas", default="1,2")
    parser.add_argument("--database-url", default=None,
                        help="the Postgres server (default: CAPI_TEST_POSTGRES_URL or the local one)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    server = args.database_url or postgres_server()
    counts = [int(n) for n in args.replicas.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="capi-replicas-") as tmp, \
            postgres_database(server, TEMPLATE_DB) as template_url:
        hour: datetime = latest_due_hour(utcnow())
        world = build_world(pixels=args.pixels, database_url=template_url, folder=Path(tmp), hour=hour)
        queued = queue_events(world, args.queued)
        for replicas in counts:
            with copy_of(server, TEMPLATE_DB, f"{TEMPLATE_DB}_{replicas}") as url:
                row = run_replicas(world, replicas=replicas, database_url=url, latency_ms=args.latency_ms,
                                   queued=queued, timeout=args.timeout)
            rows.append(row)
            print(f"{replicas} replica(s), {row['pixels']} pixels: round {row['round_s']:.1f} s "
                  f"(audits per replica {row['audits_by_replica']}), relay queue of {queued} drained in "
                  f"{row['queue_drained_s']:.1f} s; audited exactly once: {row['pixel_hours_audited_once']}"
                  f"/{row['pixels']}, twice: {row['pixel_hours_audited_twice_or_more']}; queued events "
                  f"received once: {row['queued_received_once']}/{queued}, twice: "
                  f"{row['queued_received_twice_or_more']}", flush=True)
    print(json.dumps(rows, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
