"""Shared builders for the ``capi-agent serve`` end-to-end tests (no tests here).

A serve world is the small ``missed_batch.v1`` scenario (ledger copy + Graph API simulator, see
``tests.agentworld``) with its pixel configured for a Slack channel, the agent's real services, the
real ``SlackAgent`` behind a real Bolt app whose ``WebClient`` talks to the fake Slack Web API
over loopback, and the real outbox notifier. Lazy listeners run inline so that assertions follow the
requests they are about.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from slack_bolt import App
from sqlalchemy.orm import Session

from agent.agent_services import AgentServices
from agent.server import ServerParts, on_audit
from agent.settings import Settings
from agent.slack.agent import SlackAgent
from agent.slack.app import build_slack_app
from agent.slack.notifier import SlackNotifier
from agent.slack.outbox import OutboxReport, deliver_outbox
from evals.harness import ScenarioWorld
from tests.agentworld import WorldTemplate, agent_services, agent_world
from tests.fakes.slack_agent import InlineExecutor
from tests.fakes.slack_api import FakeSlackAPI, SlackCall
from tests.fakes.slack_requests import action_body, bolt_request
from tests.fixtures.db import event_line
from tests.fixtures.slack import SLACK_TEST_TOKEN
from tools.ledger.outbox import OutboxMessage
from tools.ledger.pixels import PixelConfig, sync_pixels

SECRET = "serve-signing-secret"
# Canaries: neither may ever reach a Slack message or a log line (the bot token is the fake Slack's).
BOT_TOKEN = SLACK_TEST_TOKEN
CANARY_EMAIL = "canary.shopper+h14@example.org"
CHANNEL = "C0CAPIALERTS"
APPROVER = "U0APPROVER"
STRANGER = "U0STRANGER"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Clock:
    """A clock tests move by hand; every part of the service reads the same one."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def canary_events(world_at: datetime, pixel_id: str) -> list[dict[str, Any]]:
    """A delivered Purchase a day before the audit whose email arrived raw (hashed at the door)."""
    at = world_at - timedelta(days=1)
    line = event_line(event_time=at, name="Purchase", event_id="canary-order-1", pixel_id=pixel_id,
                      user_data={"em": [CANARY_EMAIL], "client_ip_address": "203.0.113.7",
                                 "client_user_agent": "Mozilla/5.0"},
                      custom_data={"currency": "USD", "value": 12.5})
    return [line]


@dataclass
class ServeWorld:
    """Everything ``capi-agent serve`` wires together, over one scenario world."""

    world: ScenarioWorld
    services: AgentServices
    slack: SlackAgent
    app: App
    notifier: SlackNotifier
    fake: FakeSlackAPI
    pixel: PixelConfig
    clock: Clock
    parts: ServerParts = field(init=False)

    def __post_init__(self) -> None:
        self.parts = ServerParts(wiring=self.services.wiring, services=self.services, slack_app=self.app,
                                 notifier=self.notifier, clock=self.clock)

    def audit(self, at: datetime | None = None) -> dict[str, Any]:
        """One scheduled audit: the audit graph, then the scheduler's ``on_audit`` hook (enqueue)."""
        at = at or self.clock()
        self.world.simulator.state.set_now(at)
        state = self.services.audit_pixel(self.pixel, at)
        on_audit(self.parts)(self.pixel, state)
        return state

    def deliver(self) -> OutboxReport:
        return deliver_outbox(self.services.wiring.session, self.notifier, now=self.clock())

    def outbox(self) -> list[OutboxMessage]:
        with self.services.wiring.session() as session:
            return list(session.query(OutboxMessage).order_by(OutboxMessage.id))

    def accepted_posts(self) -> list[dict[str, Any]]:
        """Top-level messages the fake Slack accepted (failed attempts excluded), oldest first."""
        return [message.args for message in self.fake.messages.values() if not message.args.get("thread_ts")]

    def click(self, *, user: str, proposal_id: str, message: dict[str, Any],
              action_id: str = "approve_fix") -> int:
        body = action_body(action_id=action_id, value=proposal_id, user=user, channel=CHANNEL,
                           message=message)
        return self.app.dispatch(bolt_request(body, SECRET, form=True)).status


def slack_settings(fake: FakeSlackAPI, **extra: Any) -> Settings:
    return Settings(slack_bot_token=BOT_TOKEN, slack_signing_secret=SECRET, slack_api_url=fake.url,
                    approvers=APPROVER, **extra)


def configure_pixel(world: ScenarioWorld) -> PixelConfig:
    """The scenario's pixel with its Slack channel, kept in the ledger's pixels table. Hourly summaries
    are off: these worlds count incident messages (summaries: tests/e2e/test_summary_serve.py)."""
    pixel = world.pixel.model_copy(update={"slack_channel": CHANNEL, "summaries": "off"})
    with Session(world.engine) as session:
        sync_pixels(session, [pixel])
        session.commit()
    return pixel


@contextmanager
def serve_world(template: WorldTemplate, workdir: Path, fake: FakeSlackAPI) -> Iterator[ServeWorld]:
    """A copy of the template's ledger (plus the raw-email canary) served as ``serve_over`` does."""
    scenario = template.scenario
    with agent_world(template, workdir, extra_events=canary_events(scenario.audit_at, scenario.pixel_id)) \
            as world, serve_over(world, fake) as built:
        yield built


@contextmanager
def serve_over(world: ScenarioWorld, fake: FakeSlackAPI) -> Iterator[ServeWorld]:
    """The agent's services, the Slack service, the Bolt app and the notifier over ``world``."""
    pixel = configure_pixel(world)
    clock = Clock(world.scenario.audit_at)
    with agent_services(world) as services:
        services.clock = clock
        settings = slack_settings(fake)
        slack = SlackAgent(services=services, approvers=settings.approver_ids, clock=clock)
        app = build_slack_app(settings=settings, service=slack, approvers=settings.approver_ids,
                              listener_executor=InlineExecutor())
        yield ServeWorld(world=world, services=services, slack=slack, app=app,
                         notifier=SlackNotifier(app.client), fake=fake, pixel=pixel, clock=clock)


def message_of(call: SlackCall, ts: str) -> dict[str, Any]:
    """The posted message as Slack puts it in a block action payload."""
    blocks = call.args["blocks"]
    return {"ts": ts, "text": call.args.get("text", ""),
            "blocks": json.loads(blocks) if isinstance(blocks, str) else blocks}


def everything_slack_saw(fake: FakeSlackAPI) -> str:
    """Every argument of every recorded call, upload bytes decoded leniently."""
    parts = [call.text_blob() for call in fake.calls]
    parts += [content.decode("latin-1") for content in fake.uploads.values()]
    return "\n".join(parts)
