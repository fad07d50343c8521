"""The Slack app behind its real HTTP route (Starlette + uvicorn on loopback), with Bolt's own thread
pool running the lazy listeners: acknowledgement first, the answer afterwards."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from agent.settings import Settings
from agent.slack.app import EVENTS_PATH, build_slack_app, slack_routes
from tests.fakes.slack_agent import FakeSlackAgent
from tests.fakes.slack_api import BOT_USER_ID, FakeSlackAPI
from tests.fakes.slack_requests import event_body, message_event, signed_headers

SECRET = "http-signing-secret"
TOKEN = "xoxb-http-token"


class SlowService(FakeSlackAgent):
    def answer(self, **kwargs: object) -> str:  # type: ignore[override]
        time.sleep(0.5)  # slower than an acknowledgement must be
        return super().answer(**kwargs)  # type: ignore[arg-type]


@pytest.fixture()
def served() -> Iterator[tuple[str, FakeSlackAPI, FakeSlackAgent]]:
    with FakeSlackAPI(bot_token=TOKEN) as fake:
        service = SlowService()
        settings = Settings(slack_bot_token=TOKEN, slack_signing_secret=SECRET, slack_api_url=fake.url)
        app = build_slack_app(settings=settings, service=service, approvers=frozenset())
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(Starlette(routes=slack_routes(app)), log_level="warning",
                                               lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}{EVENTS_PATH}", fake, service
        finally:
            server.should_exit = True
            thread.join(timeout=5)


def test_a_mention_is_acknowledged_at_once_and_answered_afterwards(
        served: tuple[str, FakeSlackAPI, FakeSlackAgent]) -> None:
    url, fake, service = served
    body = event_body(message_event(kind="app_mention", channel="C1", user="U1",
                                    text=f"<@{BOT_USER_ID}> what broke?", ts="1700000000.000001"))
    started = time.monotonic()
    response = httpx.post(url, content=body, headers=signed_headers(body, SECRET))
    acknowledged_in = time.monotonic() - started

    assert response.status_code == 200
    assert acknowledged_in < 0.5, "the acknowledgement must not wait for the answer"
    [reply] = fake.wait_for("chat.postMessage")
    assert reply.args["thread_ts"] == "1700000000.000001"
    assert service.calls_to("answer")[0]["question"] == "what broke?"


def test_a_bad_signature_gets_401_over_http(served: tuple[str, FakeSlackAPI, FakeSlackAgent]) -> None:
    url, fake, service = served
    body = event_body(message_event(kind="app_mention", channel="C1", user="U1", text="hi", ts="1.2"))
    headers = signed_headers(body, SECRET)
    headers["x-slack-signature"] = "v0=" + "0" * 64
    assert httpx.post(url, content=body, headers=headers).status_code == 401
    unsigned = httpx.post(url, content=body, headers={"content-type": "application/json"})
    assert unsigned.status_code == 401
    time.sleep(0.2)
    assert service.calls == [] and fake.calls_to("chat.postMessage") == []


def test_url_verification_is_answered(served: tuple[str, FakeSlackAPI, FakeSlackAgent]) -> None:
    url, _, _ = served
    body = '{"token": "x", "challenge": "c-123", "type": "url_verification"}'
    response = httpx.post(url, content=body, headers=signed_headers(body, SECRET))
    assert response.status_code == 200 and response.json() == {"challenge": "c-123"}
