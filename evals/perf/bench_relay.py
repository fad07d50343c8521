"""Relay benchmark: the ledger write against plain SQL, and many senders at once through the relay.

    python -m evals.perf.bench_relay [--backends sqlite,postgres] [--senders 32] [--rounds 30]
                                     [--events 50] [--latency-ms 100] [--requests 200] [--rate 3000]
                                     [--profile] [--parts write,http,concurrent]

Three processes, as in production: the Graph API simulator (``python -m tools.meta.simulator
--latency-ms 100``), the relay (uvicorn, served by this script with ``serve``), and the senders (this
process). For each backend (a fresh SQLite file, or a fresh database on the Postgres server of
``--postgres-url``):

1. **Ledger write vs plain SQL**, sequential: the relay's two writes for ``--requests`` batches
   (record the events as in flight, hashing them into rows included, then Meta's answer:
   ``tools.relay.writer.apply_writes``, one transaction each) against plain ``INSERT``s of
   equivalent rows into ``events`` (one executemany per batch). The issue's target for the ratio is >= 0.5.
2. **Sequential over HTTP**: one sender, Meta answering at once: events/s through the whole relay.
3. **Concurrent**: ``--senders`` threads each post ``--rounds`` batches of ``--events`` events;
   Meta answers after ``--latency-ms``. Events/s, and the latency the relay adds: the senders' p50
   and p99 through the relay minus the same senders' p50 and p99 straight to the simulator. Then
   nothing lost or doubled is checked: ledger rows, their event ids and statuses, and the events the
   simulator received. The target is >= 3,000 events/s and <= 10 ms / 50 ms added (p50 / p99).
   Senders that send again as soon as they are answered keep ``senders x events`` in flight, so by
   Little's law their latency is that over the throughput (1,600 / 3,000 events/s = 533 ms): the
   added latency is therefore also measured **paced**, the same senders offering ``--rate`` events/s
   between them (3,000: one request every 533 ms each), an open load the relay either keeps up with
   or not.

``--profile`` runs the relay under cProfile (every worker thread and the writer) and prints where
its time goes. Prints a table, then one JSON document.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlmodel import col

from evals.perf.pgdb import postgres_server
from tools.ledger.db import make_engine, migrate
from tools.ledger.models import Event
from tools.ledger.store import DeliveryOutcome
from tools.timeutil import to_unix, utcnow

PIXEL = "1234567890"
TOKEN = "sim-token"  # the simulator's default token
ROOT = Path(__file__).resolve().parents[2]


def _event(n: int, event_time: int) -> dict[str, Any]:
    email = hashlib.sha256(f"buyer{n}@example.com".encode()).hexdigest()
    return {"event_name": "Purchase", "event_time": event_time, "event_id": f"bench-{n}",
            "action_source": "website", "event_source_url": "https://shop.example/thanks",
            "user_data": {"em": [email], "client_ip_address": "203.0.113.9", "client_user_agent": "Mozilla/5.0",
                          "fbp": f"fb.1.1763600000000.{n}"},
            "custom_data": {"currency": "USD", "value": 42.5, "order_id": f"o-{n}"}}


@contextmanager
def fresh_database(backend: str, postgres_url: str) -> Iterator[str]:
    """The URL of a new, migrated ledger: a SQLite file, or a new database on the Postgres server."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            engine = make_engine(url)
            migrate(engine)
            engine.dispose()
            yield url
        return
    name = f"capi_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _batches(count: int, per_request: int, event_time: int, *, first: int = 0) -> list[list[dict[str, Any]]]:
    return [[_event(first + r * per_request + i, event_time) for i in range(per_request)] for r in range(count)]


def ledger_write_rate(url: str, requests: int, per_request: int) -> float:
    """Events/s of the relay's two ledger writes per batch, sequential, one transaction each."""
    from tools.relay.writer import AnswerWrite, DirectWrites, RecordWrite

    engine = make_engine(url)
    writes = DirectWrites(lambda: Session(engine, expire_on_commit=False))
    batches = _batches(requests, per_request, to_unix(utcnow() - timedelta(hours=1)))
    started = time.perf_counter()
    for batch in batches:
        now = utcnow()
        ids = writes.record(RecordWrite(pixel_id=PIXEL, events=batch, received_at=now, default_country="US",
                                        repair=False, after="sending"))
        writes.answer(AnswerWrite(PIXEL, ids, DeliveryOutcome(status="delivered", attempted_at=now,
                                                              http_status=200, events_received=len(ids))))
    elapsed = time.perf_counter() - started
    engine.dispose()
    return requests * per_request / elapsed


def sql_rate(url: str, requests: int, per_request: int) -> float:
    """Events/s of plain inserts of equivalent rows into ``events`` (one executemany a batch)."""
    engine = make_engine(url)
    now = utcnow()
    started = time.perf_counter()
    for r in range(requests):
        rows = []
        for i in range(per_request):
            n = r * per_request + i
            event = _event(n, to_unix(now))
            rows.append({"pixel_id": PIXEL, "event_name": "Purchase", "event_time": now, "received_at": now,
                         "event_id": event["event_id"], "order_ref": f"o-{n}", "action_source": "website",
                         "payload": event, "flags": {"keys": ["em", "fbp"]}, "delivery_status": "delivered",
                         "attempts": 1, "content_hash": hashlib.sha256(str(n).encode()).hexdigest()})
        with Session(engine) as session:
            # SQLModel's typing does not declare the __table__ that SQLAlchemy sets on table classes.
            session.execute(insert(Event.__table__), rows)  # type: ignore[attr-defined]
            session.commit()
    elapsed = time.perf_counter() - started
    engine.dispose()
    return requests * per_request / elapsed


def _wait_until_listening(url: str, timeout: float = 30.0) -> None:
    """The socket is bound before the server listens on it: connect until it accepts."""
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def process(args: list[str], *, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A child process that prints ``listening on URL`` once serving; yields it and the URL."""
    child = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, **(env or {})})
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"{args[:3]} did not start: {line!r}")
        url = line.split()[-1]
        _wait_until_listening(url)
        yield child, url
    finally:
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()


@contextmanager
def simulator(latency_ms: float) -> Iterator[str]:
    with process([sys.executable, "-m", "tools.meta.simulator", "--port", "0", "--latency-ms",
                  str(latency_ms)]) as (_child, url):
        yield url


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux), to tell the relay's cost from the machine's load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def relay(database_url: str, graph_url: str, *, profile: Path | None = None,
          stats: Path | None = None) -> Iterator[tuple[str, int]]:
    args = [sys.executable, "-m", "evals.perf.bench_relay", "serve", "--database-url", database_url,
            "--graph-url", graph_url]
    if stats is not None:
        args += ["--stats-to", str(stats)]
    if profile is not None:
        args += ["--profile-to", str(profile)]
    with process(args) as (child, url):
        yield url, child.pid
        child.send_signal(signal.SIGINT)  # a graceful stop: the relay prints its writer's figures
        child.wait(timeout=60)


def post_all(url: str, bodies: list[list[bytes]], *, interval: float = 0.0) -> tuple[float, list[float]]:
    """One thread per sender, each posting its bodies in turn; (seconds, per-request latencies).
    With ``interval`` each sender starts a request every ``interval`` seconds (staggered between
    senders; at once when behind), an open load; without, the next as soon as the last is answered."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(bodies) + 1)

    def sender(own: list[bytes]) -> None:
        mine = []
        started = False
        try:
            with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
                              timeout=600) as client:  # a loaded machine: slow, not failed
                client.post(f"{url}/v25.0/{PIXEL}/events", content=b"")  # connect first (a 400)
                start.wait()
                started = True
                offset = interval * threads_index[threading.get_ident()] / len(bodies)
                zero = time.perf_counter() + offset
                for n, body in enumerate(own):
                    if interval:
                        time.sleep(max(0.0, zero + n * interval - time.perf_counter()))
                    began = time.perf_counter()
                    response = client.post(f"{url}/v25.0/{PIXEL}/events", content=body)
                    mine.append(time.perf_counter() - began)
                    if response.status_code != 200 or "queued" in response.text:
                        errors.append(f"{response.status_code}: {response.text[:200]}")
        except Exception as exc:  # reported below; the other senders are not left waiting
            errors.append(f"{type(exc).__name__}: {exc}")
            if not started:
                start.wait()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=sender, args=(own,)) for own in bodies]
    threads_index: dict[int | None, int] = {}
    for index, thread in enumerate(threads):
        thread.start()
        threads_index[thread.ident] = index
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    return elapsed, latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def sender_bodies(senders: int, rounds: int, per_request: int, *, first: int) -> list[list[bytes]]:
    event_time = to_unix(utcnow() - timedelta(hours=1))
    return [[json.dumps({"data": batch}).encode() for batch in
             _batches(rounds, per_request, event_time, first=first + s * rounds * per_request)]
            for s in range(senders)]


def check_nothing_lost_or_doubled(database_url: str, graph_url: str, expected: int) -> dict[str, Any]:
    engine = make_engine(database_url)
    with Session(engine) as session:
        rows = session.scalar(select(func.count()).select_from(Event)) or 0
        ids = session.scalar(select(func.count(func.distinct(col(Event.event_id))))) or 0
        statuses: dict[str, int] = dict(session.execute(select(col(Event.delivery_status), func.count())
                                                        .group_by(col(Event.delivery_status))).all())
    engine.dispose()
    received = httpx.get(f"{graph_url}/_sim/received", params={"pixel_id": PIXEL}, timeout=60).json()["data"]
    meta_ids = [item["event"]["event_id"] for item in received]
    result = {"sent": expected, "ledger_rows": rows, "ledger_distinct_event_ids": ids,
              "ledger_statuses": {str(k): v for k, v in statuses.items()}, "meta_received": len(meta_ids),
              "meta_distinct": len(set(meta_ids))}
    result["ok"] = (rows == ids == len(meta_ids) == len(set(meta_ids)) == expected
                    and statuses == {"delivered": expected})
    return result


def concurrent_run(database_url: str, *, senders: int, rounds: int, per_request: int, latency_ms: float,
                   profile: Path | None, rate: float = 0.0) -> dict[str, Any]:
    """``rate`` (events/s, all senders together): an open load at that rate; 0: each sender sends again
    as soon as it is answered (then, by Little's law, latency = senders x events / throughput)."""
    interval = senders * per_request / rate if rate else 0.0
    with simulator(latency_ms) as graph_url:
        # Meta's own latency for these senders: the same load straight to the simulator.
        direct_elapsed, direct = post_all(graph_url, sender_bodies(senders, max(3, rounds // 3), per_request,
                                                                   first=10**8), interval=interval)
        httpx.post(f"{graph_url}/_sim/reset", timeout=10)
        httpx.post(f"{graph_url}/_sim/usage", json={"latency_ms": latency_ms}, timeout=10)
        bodies = sender_bodies(senders, rounds, per_request, first=0)
        with tempfile.TemporaryDirectory() as tmp:
            stats_file = Path(tmp) / "writer.json"
            with relay(database_url, graph_url, profile=profile, stats=stats_file) as (relay_url, pid):
                # One batch first, so that first-time costs (mapper set-up, connections) are not timed.
                post_all(relay_url, sender_bodies(1, 1, per_request, first=9 * 10**8))
                cpu_before = cpu_seconds(pid)
                elapsed, through = post_all(relay_url, bodies, interval=interval)
                relay_cpu = cpu_seconds(pid) - cpu_before
            writer = json.loads(stats_file.read_text()) if stats_file.exists() else {}
        total = senders * rounds * per_request
        check = check_nothing_lost_or_doubled(database_url, graph_url, total + per_request)
    p50, p99 = percentile(through, 0.5), percentile(through, 0.99)
    meta50, meta99 = percentile(direct, 0.5), percentile(direct, 0.99)
    return {"senders": senders, "offered_events_per_s": rate or None, "requests": senders * rounds, "events": total,
            "events_per_s": total / elapsed, "meta_direct_events_per_s": len(direct) * per_request / direct_elapsed,
            "p50_ms": p50 * 1000, "p99_ms": p99 * 1000, "mean_ms": statistics.fmean(through) * 1000,
            "meta_p50_ms": meta50 * 1000, "meta_p99_ms": meta99 * 1000,
            "added_p50_ms": (p50 - meta50) * 1000, "added_p99_ms": (p99 - meta99) * 1000,
            "relay_cpu_s": relay_cpu, "relay_cpu_ms_per_1000_events": relay_cpu / total * 1e6,
            "load_average": os.getloadavg()[0], "elapsed_s": elapsed, "writer": writer, "check": check}


def sequential_http_rate(database_url: str, requests: int, per_request: int) -> float:
    with simulator(0) as graph_url, relay(database_url, graph_url) as (relay_url, _pid):
        elapsed, _ = post_all(relay_url, sender_bodies(1, requests, per_request, first=5 * 10**8))
    return requests * per_request / elapsed


# --- the relay process (``serve``) -------------------------------------------------------------------

class ThreadProfiles:
    """One cProfile per thread (cProfile sees only the thread that enabled it), merged at the end."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def profiled(*args: Any, **kwargs: Any) -> Any:
            profile = getattr(self._local, "profile", None)
            if profile is None:  # CPU time of this thread: waits on Meta, locks and the machine's load drop out
                profile = self._local.profile = cProfile.Profile(time.thread_time)
                with self._lock:
                    self._all.append(profile)
            profile.enable()
            try:
                return fn(*args, **kwargs)
            finally:
                profile.disable()
        return profiled

    def write(self, path: Path) -> None:
        with self._lock:
            profiles = list(self._all)
        if profiles:
            stats = pstats.Stats(profiles[0])
            for profile in profiles[1:]:
                stats.add(profile)
            stats.dump_stats(str(path))


def serve(database_url: str, graph_url: str, profile_to: str | None, stats_to: str | None = None) -> None:
    import uvicorn

    import tools.relay.accept as accept_module
    import tools.relay.writer as writer_module
    from agent.relay.app import RelayDeps, build_relay_app
    from tools.loopback import bind_socket
    from tools.relay.access import RelayAuth
    from tools.relay.ratelimit import RateLimiter

    if os.environ.get("BENCH_SWITCH_INTERVAL"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    profiles = ThreadProfiles() if profile_to else None
    if profiles is not None:  # the request threads' work and the writer's transactions
        accept_module.accept_batch = profiles.wrap(accept_module.accept_batch)
        writer_module.apply_writes = profiles.wrap(writer_module.apply_writes)
        import agent.relay.app as app_module
        app_module.accept_batch = accept_module.accept_batch
        # What the event loop does before the worker thread: read, parse and check the request.
        for name in ("parse_body", "decode_events", "check_events"):
            setattr(app_module, name, profiles.wrap(getattr(app_module, name)))
    engine = make_engine(database_url, pool_size=40, max_overflow=10) if not database_url.startswith(
        "sqlite") else make_engine(database_url)
    # Every sender is 127.0.0.1 here: the per-address rate limit would throttle the benchmark itself.
    deps = RelayDeps(session_factory=lambda: Session(engine, expire_on_commit=False), graph_url=graph_url,
                     forward_timeout=30.0, auth=RelayAuth.static({PIXEL: TOKEN}),
                     limiter=RateLimiter(rate=1e6, burst=10**6))
    sock = bind_socket("127.0.0.1", 0)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(build_relay_app(deps), log_level="warning", access_log=False, lifespan="on")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT that stopped it, after a graceful shutdown
        pass
    finally:
        assert deps.writer is not None
        if stats_to:
            Path(stats_to).write_text(json.dumps({"writes": deps.writer.writes, "transactions": deps.writer.groups,
                                                  "busy_s": deps.writer.busy_seconds}))
        if profiles is not None and profile_to:
            profiles.write(Path(profile_to))


# Where the relay's CPU goes: (label, function name as cProfile records it, file it is in).
PROFILE_PARTS = [
    ("event loop: read the request's parameters", "parse_body", "relay/limits.py"),
    ("event loop: decode data, check limits", "decode_events", "relay/limits.py"),
    ("event loop: per-event limits", "check_events", "relay/limits.py"),
    ("worker: accept_batch (all)", "accept_batch", "relay/accept.py"),
    ("worker:   pixel policy read", "pixel_policy", "relay/accept.py"),
    ("worker:   validate (Meta's rules)", "validate_batch", "meta/validate.py"),
    ("worker:   hash events into ledger rows", "prepare_events", "ledger/store.py"),
    ("worker:   sender and event shapes", "sender_note", "relay/accept.py"),
    ("worker:   forward to Meta (httpx, JSON)", "send_batch", "relay/sending.py"),
    ("writer: apply_writes (all)", "apply_writes", "relay/writer.py"),
    ("writer:   store_events (look-ups, insert, counts)", "store_events", "ledger/store.py"),
    ("writer:   record_deliveries (Meta's answers)", "record_deliveries", "ledger/deliveries.py"),
    ("writer:   rollup upserts", "apply_deltas", "ledger/rollups.py"),
    ("writer:   sender fingerprint", "observe", "senders/track.py"),
]


def profile_summary(path: Path, limit: int = 20) -> tuple[dict[str, float], str]:
    """CPU seconds of the parts above, and the functions with the most CPU time of their own."""
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    # pstats fills Stats.stats at run time; typeshed does not declare it.
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    parts: dict[str, float] = {}
    for label, name, where in PROFILE_PARTS:
        parts[label] = sum(entry[3] for (file, _line, func), entry in raw.items()
                           if func == name and file.endswith(where))
    stats.sort_stats("tottime").print_stats(limit)
    return parts, out.getvalue()


# --- the report ---------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    serve_parser = sub.add_parser("serve", help="serve the relay (used by the benchmark itself)")
    serve_parser.add_argument("--database-url", required=True)
    serve_parser.add_argument("--graph-url", required=True)
    serve_parser.add_argument("--profile-to", default=None)
    serve_parser.add_argument("--stats-to", default=None)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--postgres-url", default=postgres_server())
    parser.add_argument("--requests", type=int, default=200, help="sequential batches")
    parser.add_argument("--events", type=int, default=50, help="events per request (<= 1000)")
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=30, help="requests per concurrent sender")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="Meta's latency (concurrent run)")
    parser.add_argument("--profile", action="store_true", help="profile the relay in the concurrent run")
    parser.add_argument("--rate", type=float, default=3000.0,
                        help="events/s offered in the paced concurrent run (0: skip it)")
    parser.add_argument("--parts", default="write,http,concurrent", help="which measures to run")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.database_url, args.graph_url, args.profile_to, args.stats_to)
        return
    results: dict[str, Any] = {"date": utcnow().date().isoformat(), "cpus": os.cpu_count(),
                               "load_average_at_start": os.getloadavg()[0],
                               "command": "python -m evals.perf.bench_relay " + " ".join(sys.argv[1:]),
                               "backends": {}}
    profiles: dict[str, str] = {}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        line: dict[str, Any] = {}
        parts = set(args.parts.split(","))
        if "write" in parts:
            with fresh_database(backend, args.postgres_url) as url:
                line["ledger_write_events_per_s"] = ledger_write_rate(url, args.requests, args.events)
            with fresh_database(backend, args.postgres_url) as url:
                line["plain_sql_events_per_s"] = sql_rate(url, args.requests, args.events)
            line["ledger_write_ratio"] = line["ledger_write_events_per_s"] / line["plain_sql_events_per_s"]
        if "http" in parts:
            with fresh_database(backend, args.postgres_url) as url:
                line["sequential_http_events_per_s"] = sequential_http_rate(url, args.requests, args.events)
        if "concurrent" not in parts:
            results["backends"][backend] = line
            continue
        with tempfile.TemporaryDirectory() as tmp, fresh_database(backend, args.postgres_url) as url:
            profile = Path(tmp) / "relay.prof" if args.profile else None
            try:
                line["concurrent"] = concurrent_run(url, senders=args.senders, rounds=args.rounds,
                                                    per_request=args.events, latency_ms=args.latency_ms,
                                                    profile=profile)
            except RuntimeError as exc:  # senders timed out (a loaded machine): report, go on
                line["concurrent_error"] = str(exc)
            if args.rate:  # the latency target is about the relay at a given load, not saturated
                with fresh_database(backend, args.postgres_url) as paced_url:
                    try:
                        line["paced"] = concurrent_run(paced_url, senders=args.senders, rounds=args.rounds,
                                                       per_request=args.events, latency_ms=args.latency_ms,
                                                       profile=None, rate=args.rate)
                    except RuntimeError as exc:
                        line["paced_error"] = str(exc)
            if profile is not None and profile.exists() and "concurrent" in line:
                cpu_by_part, top = profile_summary(profile)
                line["concurrent"]["profile_cpu_s"] = cpu_by_part
                profiles[backend] = top
        results["backends"][backend] = line
    for backend, summary in profiles.items():
        line = results["backends"][backend]["concurrent"]
        print(f"--- relay profile, {backend}: CPU seconds by part (cProfile, thread CPU time; "
              f"the relay process used {line['relay_cpu_s']:.1f} s in all) ---")
        for label, seconds in line["profile_cpu_s"].items():
            print(f"{label:<48}{seconds:>8.2f}")
        print(summary)
    print(f"relay benchmark, {args.events} events a request, Meta at {args.latency_ms:.0f} ms in the concurrent run")
    print(f"{'':<44}" + "".join(f"{b:>14}" for b in results["backends"]))
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("ledger write, sequential (events/s)", lambda r: f"{r['ledger_write_events_per_s']:,.0f}"),
        ("plain SQL inserts (events/s)", lambda r: f"{r['plain_sql_events_per_s']:,.0f}"),
        ("ratio ledger write / plain SQL", lambda r: f"{r['ledger_write_ratio']:.2f}"),
        ("relay over HTTP, 1 sender (events/s)", lambda r: f"{r['sequential_http_events_per_s']:,.0f}"),
        (f"{args.senders} senders through the relay (events/s)", lambda r: f"{r['concurrent']['events_per_s']:,.0f}"),
        ("  same senders straight to Meta (events/s)",
         lambda r: f"{r['concurrent']['meta_direct_events_per_s']:,.0f}"),
        ("  latency p50 / p99 (ms)", lambda r: f"{r['concurrent']['p50_ms']:.0f} / {r['concurrent']['p99_ms']:.0f}"),
        ("  Meta alone p50 / p99 (ms)",
         lambda r: f"{r['concurrent']['meta_p50_ms']:.0f} / {r['concurrent']['meta_p99_ms']:.0f}"),
        ("  added by the relay p50 / p99 (ms)",
         lambda r: f"{r['concurrent']['added_p50_ms']:.0f} / {r['concurrent']['added_p99_ms']:.0f}"),
        ("  writes per transaction (group commit)",
         lambda r: f"{r['concurrent']['writer']['writes'] / max(1, r['concurrent']['writer']['transactions']):.1f}"),
        ("  writer busy, share of the run",
         lambda r: f"{r['concurrent']['writer']['busy_s'] / r['concurrent']['elapsed_s']:.0%}"),
        ("  relay CPU per 1000 events (ms)", lambda r: f"{r['concurrent']['relay_cpu_ms_per_1000_events']:,.0f}"),
        ("  events per relay CPU second",
         lambda r: f"{1e6 / r['concurrent']['relay_cpu_ms_per_1000_events']:,.0f}"),
        ("  load average during the run", lambda r: f"{r['concurrent']['load_average']:.1f}"),
        ("  nothing lost or doubled", lambda r: "yes" if r["concurrent"]["check"]["ok"] else "NO"),
        (f"paced: {args.rate:,.0f} events/s offered, achieved", lambda r: f"{r['paced']['events_per_s']:,.0f}"),
        ("  latency p50 / p99 (ms)", lambda r: f"{r['paced']['p50_ms']:.0f} / {r['paced']['p99_ms']:.0f}"),
        ("  Meta alone p50 / p99 (ms)",
         lambda r: f"{r['paced']['meta_p50_ms']:.0f} / {r['paced']['meta_p99_ms']:.0f}"),
        ("  added by the relay p50 / p99 (ms)",
         lambda r: f"{r['paced']['added_p50_ms']:.0f} / {r['paced']['added_p99_ms']:.0f}"),
        ("  nothing lost or doubled", lambda r: "yes" if r["paced"]["check"]["ok"] else "NO"),
    ]
    for label, cell in rows:
        try:
            cells = [cell(r) for r in results["backends"].values()]
        except KeyError:  # a part not run
            continue
        print(f"{label:<44}" + "".join(f"{c:>14}" for c in cells))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
