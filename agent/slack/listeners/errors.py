"""What a user sees when something breaks: one short, safe sentence. Details go to the log only."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

log = logging.getLogger("agent.slack")

SAFE_ERROR_TEXT = "Something went wrong on our side; the details are in the capi-agent log."


def reply_with_safe_error(client: WebClient, body: dict[str, Any]) -> None:
    """Tells the person who triggered ``body`` that it failed, where they triggered it.

    Never raises: a failure to report a failure is only logged.
    """
    try:
        if body.get("command") and body.get("response_url"):
            WebhookClient(body["response_url"]).send(text=SAFE_ERROR_TEXT, response_type="ephemeral")
        elif body.get("type") == "block_actions":
            channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
            user = (body.get("user") or {}).get("id")
            if channel and user:
                client.chat_postEphemeral(channel=channel, user=user, text=SAFE_ERROR_TEXT)
        elif body.get("type") == "event_callback":
            event = body.get("event") or {}
            if event.get("channel"):
                client.chat_postMessage(channel=event["channel"], text=SAFE_ERROR_TEXT,
                                        thread_ts=event.get("thread_ts") or event.get("ts"))
    except Exception as exc:  # the original error is already logged
        log.warning("could not tell the user about a failure: %s", type(exc).__name__)


def log_listener_error(name: str, error: BaseException) -> None:
    # The traceback goes to the log; tokens are never part of our exceptions or Slack SDK errors.
    log.error("Slack listener %s failed: %s", name, type(error).__name__, exc_info=error)


def handle_global_error(error: Exception, body: dict[str, Any], client: WebClient) -> None:
    """Bolt's global error handler (errors raised while acknowledging)."""
    log_listener_error("ack", error)
    reply_with_safe_error(client, body)


def reported(func: Callable[..., None]) -> Callable[..., None]:
    """Wraps a lazy listener so an exception is logged and answered with :data:`SAFE_ERROR_TEXT`.

    Bolt only logs exceptions from lazy listeners (with their text), and never calls the global error
    handler for them. The wrapped function must accept ``body`` and ``client``.
    """

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> None:
        try:
            func(**kwargs)
        except Exception as exc:
            log_listener_error(func.__name__, exc)
            reply_with_safe_error(kwargs["client"], kwargs["body"])

    return wrapper
