"""Builders for the summary tests (no tests here): the small ``missed_batch.v1`` shop plus pixels in two
Slack channels, served as ``capi-agent serve`` does (scheduler round -> outbox -> fake Slack Web API).

Channel A: the scenario's pixel (healthy the day before, the missed batch on the audit day) and a clone
of its data whose Graph client is missing (its audit warns that Meta is unreachable). Channel B: two
pixels with no events (not judged) and one whose audit raises (audit failed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, inspect, text
from sqlalchemy.orm import Session

from agent.agent_services import AgentServices
from agent.scheduler import Scheduler
from agent.server import ServerParts, scheduled_round
from agent.slack.client import build_web_client
from agent.slack.notifier import SlackNotifier
from agent.slack.outbox import OutboxReport, deliver_outbox
from evals.harness import ScenarioWorld
from tests.agentworld import agent_services
from tests.e2e.test_serve_world import BOT_TOKEN, Clock
from tests.fakes.slack_api import FakeSlackAPI
from tools.ledger.outbox import OutboxMessage
from tools.ledger.pixels import PixelConfig, sync_pixels
from tools.meta.client import GraphClient

CHANNEL_A = "C0SHOPS"
CHANNEL_B = "C0LABS"
CLONE = "9000000001"
EMPTY_1, EMPTY_2, BROKEN = "9100000001", "9100000002", "9100000003"
CLONED_TABLES = ("event_hours", "delivery_hours", "order_hours", "meta_snapshots")
SUMMARY_HEADER = "capi-agent hourly summary"


def clone_pixel_data(engine: Engine, source: str, target: str) -> None:
    """Copy a pixel's rollups and Meta snapshots under another id (SQLite or Postgres)."""
    with engine.begin() as conn:
        for table in CLONED_TABLES:
            columns = [c["name"] for c in inspect(conn).get_columns(table) if c["name"] not in ("pixel_id", "id")]
            cols = ", ".join(f'"{c}"' for c in columns)
            conn.execute(text(f"INSERT INTO {table} (pixel_id, {cols}) SELECT :t, {cols} FROM {table} "
                              "WHERE pixel_id = :s"), {"t": target, "s": source})


def shop_pixels(world: ScenarioWorld, **extra: Any) -> list[PixelConfig]:
    base = world.pixel
    a = {"slack_channel": CHANNEL_A, "timezone": base.timezone, **extra}
    b = {"slack_channel": CHANNEL_B, "timezone": base.timezone, **extra}
    return [base.model_copy(update=a), PixelConfig(id=CLONE, name="Clone shop", **a),
            PixelConfig(id=EMPTY_1, name="Lab one", **b), PixelConfig(id=EMPTY_2, name="Lab two", **b),
            PixelConfig(id=BROKEN, name="Broken lab", **b)]


def configure(world: ScenarioWorld, pixels: list[PixelConfig], *, clone: bool = True) -> None:
    if clone:
        clone_pixel_data(world.engine, world.pixel.id, CLONE)
    with Session(world.engine) as session:
        sync_pixels(session, pixels)
        session.commit()


def client_factory(world: ScenarioWorld):
    def factory(pixel: PixelConfig) -> GraphClient | None:
        if pixel.id == BROKEN:
            raise ConnectionError("graph client could not be built")
        return None if pixel.id == CLONE else world.client()
    return factory


@dataclass
class Shop:
    world: ScenarioWorld
    services: AgentServices
    parts: ServerParts
    scheduler: Scheduler
    fake: FakeSlackAPI
    clock: Clock

    def round(self, now: datetime) -> None:
        """One scheduler loop iteration at ``now``, as ``capi-agent serve`` runs it."""
        self.clock.now = now
        self.world.simulator.state.set_now(now)
        scheduled_round(self.parts, self.scheduler)

    def deliver(self, now: datetime | None = None) -> OutboxReport:
        if now is not None:
            self.clock.now = now
        return deliver_outbox(self.services.wiring.session, self.parts.notifier, now=self.clock())

    def outbox(self, kind: str | None = None) -> list[OutboxMessage]:
        with self.services.wiring.session() as session:
            query = session.query(OutboxMessage).order_by(OutboxMessage.id)
            if kind is not None:
                query = query.filter(OutboxMessage.kind == kind)
            return list(query)


@contextmanager
def serve_shop(world: ScenarioWorld, fake: FakeSlackAPI, *, worker: str = "replica-a",
               max_catch_up: int = 2) -> Iterator[Shop]:
    """The services, the notifier and the scheduler over ``world`` (one "replica")."""
    clock = Clock(world.scenario.audit_at)
    with agent_services(world, client_factory=client_factory(world)) as services:
        services.clock = clock
        notifier = SlackNotifier(build_web_client(token=BOT_TOKEN, base_url=fake.url))
        parts = ServerParts(wiring=services.wiring, services=services, notifier=notifier, clock=clock)
        scheduler = Scheduler(services_factory=services, clock=clock, worker_id=worker,
                              max_catch_up=max_catch_up)
        yield Shop(world=world, services=services, parts=parts, scheduler=scheduler, fake=fake, clock=clock)


def header(message: dict[str, Any]) -> str:
    blocks = message.get("blocks") or []
    return str(blocks[0]["text"]["text"]) if blocks and blocks[0].get("type") == "header" else ""


def summary_replies(fake: FakeSlackAPI, channel: str) -> list[dict[str, Any]]:
    return [m for m in fake.posted(channel) if m.get("thread_ts") and header(m).startswith(SUMMARY_HEADER)]


def day_parents(fake: FakeSlackAPI, channel: str) -> list[dict[str, Any]]:
    return [m for m in fake.posted(channel) if not m.get("thread_ts") and header(m).startswith("capi-agent ·")]


def incident_posts(fake: FakeSlackAPI, channel: str) -> list[dict[str, Any]]:
    return [m for m in fake.posted(channel) if not m.get("thread_ts") and (
        header(m).startswith("New incident") or header(m).startswith("Resolved"))]


def blocks_text(message: dict[str, Any]) -> str:
    import json

    return json.dumps(message.get("blocks") or [], ensure_ascii=False)


def hour_before(at: datetime, *, days: int = 0) -> datetime:
    """A round time 10 minutes after the hour that ends at ``at``'s hour, ``days`` earlier."""
    return at.replace(minute=10, second=0, microsecond=0) - timedelta(days=days)
