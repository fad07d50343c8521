"""The one ASGI app of ``capi-agent serve`` (``build_server_app``) over real HTTP: uvicorn on a loopback
port, the Slack route, the relay forwarding to the Graph API simulator, /healthz, and the background
loops (scheduler and Slack outbox) on a controllable clock posting to the fake Slack Web API."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from agent.server import ServerParts, build_server_app, slack_parts
from agent.wiring import AgentWiring
from evals.harness import SIM_TOKEN
from tests.agentworld import WorldTemplate, agent_services, agent_world
from tests.e2e.test_serve_world import (
    BOT_TOKEN,
    CANARY_EMAIL,
    CHANNEL,
    Clock,
    configure_pixel,
    everything_slack_saw,
    slack_settings,
)
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_requests import event_body, message_event
from tools.diagnosis.catalogue import cause_info
from tools.loopback import ThreadedServer
from tools.timeutil import floor_hour, to_unix


@contextmanager
def serving(parts: ServerParts, *, run_loops: bool) -> Iterator[str]:
    """``build_server_app`` under uvicorn on a free loopback port; yields the base URL."""
    with ThreadedServer(build_server_app(parts, run_loops=run_loops), lifespan="on", name="serve") as server:
        yield server.url


def test_serve_over_http_health_relay_slack_route_and_loops_that_audit_and_post(
        template: WorldTemplate, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    scenario = template.scenario
    clock = Clock(floor_hour(scenario.audit_at) + timedelta(minutes=15))  # the hour ending then is due
    with FakeSlackAPI(bot_token=BOT_TOKEN) as fake, agent_world(template, tmp_path) as world, \
            agent_services(world) as services:
        configure_pixel(world)
        services.clock = clock
        world.simulator.state.set_now(clock())
        settings = services.wiring.settings.model_copy(update=slack_settings(
            fake, meta_graph_url=world.simulator.url).model_dump(exclude_unset=True))
        # The operator's token: the relay accepts the pixel's events only with it (or a relay key).
        settings = settings.model_copy(update={"meta_access_token": SecretStr(SIM_TOKEN)})
        wiring = AgentWiring(settings=settings, engine=services.wiring.engine)
        services.wiring = wiring
        slack_app, notifier, socket_handler = slack_parts(wiring, services)
        assert slack_app is not None and notifier is not None and socket_handler is None
        parts = ServerParts(wiring=wiring, services=services, slack_app=slack_app, notifier=notifier,
                            scheduler_interval=0.2, outbox_interval=0.2, forward_interval=0.2, clock=clock)

        with serving(parts, run_loops=True) as base, httpx.Client(base_url=base, timeout=10) as http:
            # The relay: a drop-in for Meta's endpoint, forwarding to the simulator.
            event = {"event_name": "Purchase", "event_time": to_unix(clock()) - 60, "event_id": "relay-1",
                     "action_source": "website", "event_source_url": "https://shop.example/thanks",
                     "user_data": {"em": [CANARY_EMAIL], "client_ip_address": "203.0.113.7",
                                   "client_user_agent": "Mozilla/5.0"},
                     "custom_data": {"currency": "USD", "value": 10}}
            relayed = http.post(f"/v25.0/{world.pixel.id}/events",
                                json={"data": [event], "access_token": SIM_TOKEN})
            assert relayed.status_code == 200, relayed.text
            assert relayed.json()["events_received"] == 1

            # Slack's route: unsigned requests are refused before any listener runs.
            body = event_body(message_event(channel=CHANNEL, user="U1", text="hi", ts="1.000001",
                                            thread_ts="1.000000"))
            unsigned = http.post("/slack/events", content=body, headers={"content-type": "application/json"})
            assert unsigned.status_code == 401

            # The loops: the scheduler audits the due hour, the outbox sender posts the incident.
            [post] = fake.wait_for("chat.postMessage", timeout=30)
            assert post.args["channel"] == CHANNEL
            assert f"New incident: {cause_info('missed_batch').title}" in json.dumps(post.args["blocks"])
            fake.wait_for("files.completeUploadExternal", timeout=10)

            health = http.get("/healthz")
            assert health.status_code == 200
            status = health.json()
            assert status["status"] == "ok" and status["slack"] is True
            assert status["loops"] == {"scheduler": True, "relay-forward": True, "payload-purge": True,
                                       "slack-outbox": True}
            assert status["last_audit_window_end"] is not None

        assert len(fake.calls_to("chat.postMessage")) == 1, "posted once, however many loop rounds ran"

    seen = everything_slack_saw(fake)
    assert CANARY_EMAIL not in seen and BOT_TOKEN not in seen
    assert CANARY_EMAIL not in caplog.text and BOT_TOKEN not in caplog.text
