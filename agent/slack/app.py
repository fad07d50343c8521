"""The Bolt app: built by a factory, wired by ``register_listeners``, served over HTTP or Socket Mode."""

from __future__ import annotations

from concurrent.futures import Executor

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_sdk import WebClient
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agent.settings import Settings
from agent.slack.client import build_web_client
from agent.slack.dedupe import RecentKeys, ignore_event_retries
from agent.slack.listeners import ListenerDeps, register_listeners
from agent.slack.listeners.errors import handle_global_error
from agent.slack.port import AgentPort

EVENTS_PATH = "/slack/events"


class SlackNotConfigured(ValueError):
    """A required Slack setting is missing (the message names the variable, never its value)."""


def build_slack_app(*, settings: Settings, service: AgentPort, client: WebClient | None = None,
                    approvers: frozenset[str], listener_executor: Executor | None = None,
                    verify_token: bool = True) -> App:
    """A Bolt app answering buttons, thread questions and ``/capi`` through ``service``.

    Listeners acknowledge at once and do the slow work (a fix, the LLM) in lazy listeners run on
    ``listener_executor`` (Bolt's thread pool by default; tests pass an inline executor to make runs
    deterministic). Requests are verified with the signing secret (Socket Mode needs none).
    ``verify_token`` calls ``auth.test`` now, failing fast on a bad token.
    """
    if settings.slack_bot_token is None:
        raise SlackNotConfigured("SLACK_BOT_TOKEN is not set")
    if settings.slack_signing_secret is None and settings.slack_app_token is None:
        raise SlackNotConfigured("SLACK_SIGNING_SECRET is not set (needed unless SLACK_APP_TOKEN selects "
                                 "Socket Mode)")
    token = settings.slack_bot_token.get_secret_value()
    secret = settings.slack_signing_secret
    signing_secret = secret.get_secret_value() if secret is not None else None
    # Bolt takes the token from the client; per-request clients copy its base URL and retry handlers.
    app = App(
        name="capi-agent",
        signing_secret=signing_secret,
        client=client or build_web_client(token=token, base_url=settings.slack_api_url),
        process_before_response=False,
        token_verification_enabled=verify_token,
        listener_executor=listener_executor,
    )
    app.use(ignore_event_retries)
    app.error(handle_global_error)
    deps = ListenerDeps(service=service, approvers=approvers, answered_messages=RecentKeys())
    register_listeners(app, deps)
    return app


def slack_routes(app: App, *, path: str = EVENTS_PATH) -> list[Route]:
    """Starlette routes for Slack's HTTP mode (events, interactivity and slash commands share one URL)."""

    async def slack_events(request: Request) -> Response:
        body = await request.body()
        # Bolt's dispatch blocks (until ack() has run): keep it off the event loop the relay shares.
        bolt_response = await run_in_threadpool(app.dispatch, to_bolt_request(request, body))
        return to_starlette_response(bolt_response)

    return [Route(path, slack_events, methods=["POST"])]


def socket_mode_handler(app: App, *, settings: Settings) -> SocketModeHandler:
    """A Socket Mode connection for ``app`` (call ``.connect()`` / ``.close()``); needs SLACK_APP_TOKEN."""
    if settings.slack_app_token is None:
        raise SlackNotConfigured("SLACK_APP_TOKEN is not set")
    return SocketModeHandler(app, settings.slack_app_token.get_secret_value())
