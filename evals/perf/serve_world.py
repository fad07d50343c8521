"""A ledger and a Meta stand-in for running the real ``capi-agent serve`` in a benchmark.

``serve`` audits on the wall clock: the pixel-hour it audits first is the newest due one
(``tools.schedule.plan.latest_due_hour``) of the moment it starts. So the world is built around that
hour: one scenario generated up to there and ingested, audited once an hour earlier (its first,
"cold" audit, which stores four weeks of Meta stats as snapshots), and its rollups and snapshots
copied under ``pixels - 1`` new ids. The round ``serve`` runs is then the hourly steady state of
every pixel (Meta asked for the last day plus dataset quality), as in ``bench_audit_round``. The
scenario runs two hours past that hour, so that a clock that moved on to the next due hour while the
world was built still finds the same kind of data. Meta is the Graph API simulator in its own
process, holding every answer back ``latency_ms``; the clones are aliases of the source pixel there.
Used by ``bench_serve_memory`` and ``bench_replicas``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, insert, literal, select
from sqlalchemy.orm import Session
from sqlmodel import col

from evals.perf.bench_meta_reads import simulator_process
from tools.audit.runner import audit_pixel
from tools.ledger.models import (
    ArrivalHourRollup,
    DeliveryHourRollup,
    EventHourRollup,
    MetaSnapshot,
    OrderHourRollup,
    PayloadHourRollup,
)
from tools.meta.client import GraphClient
from tools.meta.simulator import run_simulator_in_thread
from tools.meta.simulator.state import SimState
from tools.schedule.claims import AuditClaim
from tools.schedule.plan import latest_due_hour
from tools.synth.ledger import SIM_TOKEN, load_scenario_ledger
from tools.synth.scenario import Scenario, find_scenario, materialize
from tools.timeutil import to_iso, utcnow

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCENARIO = "healthy_weekday_evening.v1"
# What an audit reads per pixel (rollups and Meta's snapshots); events are not needed by an audit.
CLONED = (EventHourRollup, DeliveryHourRollup, OrderHourRollup, ArrivalHourRollup, PayloadHourRollup,
          MetaSnapshot)
# serve's scheduler plans its round at start: keep clear of the minute at which the due hour changes.
SAFE_MARGIN = timedelta(minutes=4)


@dataclass(frozen=True)
class ServeWorld:
    database_url: str
    folder: Path
    pixel_ids: list[str]
    hour: datetime  # the due window end when the world was built (serve may find the next one due)
    state_doc: dict[str, Any]  # the simulator's state (with the clones as aliases)
    config_path: Path


def clone_pixels(engine: Engine, source: str, count: int) -> list[str]:
    """Copy the source pixel's rollups and Meta snapshots under ``count - 1`` new ids
    (INSERT .. SELECT per table and pixel; works on SQLite and Postgres alike)."""
    ids = [source] + [f"9{n:09d}" for n in range(1, count)]
    with engine.begin() as connection:
        for model in CLONED:
            table = model.__table__  # type: ignore[union-attr]  # every one of them is a table model
            others = [c for c in table.columns if c.name not in ("pixel_id", "id")]
            names = ["pixel_id", *(c.name for c in others)]
            for pixel_id in ids[1:]:
                connection.execute(insert(table).from_select(
                    names, select(literal(pixel_id).label("pixel_id"), *others).where(
                        table.c.pixel_id == source)))
    return ids


def shifted_scenario(scenario_id: str, end: datetime) -> Scenario:
    """The scenario regenerated to end at ``end`` (same seed, shop and length), audited there."""
    base = find_scenario(scenario_id)
    data = base.model_dump()
    data.update(start=end - timedelta(days=base.days), audit_at=end, first_audit_at=None)
    return Scenario.model_validate(data)


def due_hour_for_serve(world: ServeWorld) -> datetime:
    """The hour serve will audit if started now, after sleeping past the minutes around the due
    hour's change (a round planned just before it would be followed at once by the next hour's)."""
    while latest_due_hour(utcnow() + SAFE_MARGIN) != latest_due_hour(utcnow()):
        time.sleep(15)
    due = latest_due_hour(utcnow())
    if not world.hour <= due <= world.hour + timedelta(hours=1):
        raise RuntimeError(f"the world was built for {to_iso(world.hour)}; {to_iso(due)} is due now")
    return due


def write_config(path: Path, pixel_ids: Sequence[str], timezone: str) -> None:
    """The pixels TOML: every pixel with the simulator's token (through META_ACCESS_TOKEN)."""
    path.write_text("".join(f'[[pixels]]\nid = "{pixel_id}"\ntimezone = "{timezone}"\n\n'
                            for pixel_id in pixel_ids))


def build_world(*, pixels: int, database_url: str, folder: Path, hour: datetime,
                scenario_id: str = DEFAULT_SCENARIO) -> ServeWorld:
    """Generate, ingest, audit once (cold, an hour before ``hour``) and clone; see the module doc."""
    scenario = shifted_scenario(scenario_id, hour + timedelta(hours=2))
    files = materialize(scenario, folder)
    engine, source = load_scenario_ledger(scenario, files, database_url=database_url)
    state_doc = json.loads(files.meta_state_path.read_text())
    cold_at = hour - timedelta(hours=1)
    state = SimState.from_dict({**state_doc, "now": to_iso(cold_at)})
    with (run_simulator_in_thread(state) as sim,
          GraphClient(base_url=sim.url, access_token=SIM_TOKEN, timeout=30) as client,
          Session(engine, expire_on_commit=False) as session):
        audit_pixel(session, pixel=source, at=cold_at, client=client)
        session.commit()
    ids = clone_pixels(engine, source.id, pixels)
    engine.dispose()
    state_doc["pixel_aliases"] = {pixel_id: source.id for pixel_id in ids[1:]}
    config = folder / "pixels.toml"
    write_config(config, ids, source.timezone)
    return ServeWorld(database_url=database_url, folder=folder, pixel_ids=ids, hour=hour,
                      state_doc=state_doc, config_path=config)


@contextmanager
def meta_stand_in(world: ServeWorld, *, latency_ms: float) -> Iterator[str]:
    """The simulator as its own process, its clock at the present."""
    doc = {**world.state_doc, "now": to_iso(utcnow())}
    with simulator_process(doc, latency_ms=latency_ms, folder=world.folder) as url:
        yield url


def serve_env(world: ServeWorld, meta_url: str) -> dict[str, str]:
    """The environment of a serve process: this world's ledger, pixels and Meta; no LLM, Slack or
    email (the offline reasoner, as in the evals)."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("CAPI_", "META_", "OPENAI_", "SLACK_"))}
    return {**keep, "CAPI_DATABASE_URL": world.database_url, "CAPI_CONFIG": str(world.config_path),
            "META_GRAPH_URL": meta_url, "META_ACCESS_TOKEN": SIM_TOKEN, "PYTHONUNBUFFERED": "1"}


def start_serve(world: ServeWorld, meta_url: str, *, port: int, log_path: Path,
                extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``capi-agent serve`` as its own process (cwd: the world's folder, so no stray .env is read)."""
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "agent.cli", "serve", "--port", str(port)],
                                   cwd=world.folder, env={**serve_env(world, meta_url), **(extra_env or {})},
                                   stdout=log,
                                   stderr=subprocess.STDOUT)
    process.capi_log = log_path  # type: ignore[attr-defined]  # for log_tail
    return process


def log_tail(process: subprocess.Popen[bytes], lines: int = 30) -> str:
    """The end of the log ``start_serve`` gave the process."""
    path = getattr(process, "capi_log", None)
    if path is None or not Path(path).exists():
        return ""
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def wait_healthy(port: int, process: subprocess.Popen[bytes], timeout: float = 300) -> float:
    """Seconds until /healthz answers (the loops start with the app)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited with {process.returncode}:\n{log_tail(process)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError("serve did not come up")


def claims_of(engine: Engine, hour: datetime) -> dict[str, int]:
    """Finished claims of the hour, by status ('done', 'failed'; running ones are not counted)."""
    with Session(engine) as session:
        rows = session.execute(select(col(AuditClaim.status), func.count()).where(
            col(AuditClaim.window_end) == hour, col(AuditClaim.status) != "running")
            .group_by(col(AuditClaim.status))).all()
    return {status: count for status, count in rows}


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn shuts down its loops), then SIGKILL if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
