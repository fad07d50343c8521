"""Posting to Slack outside a user interaction: hourly summaries, incident messages with their chart,
decision updates.

Transient failures are retried by the client (see ``client.slack_retry_handlers``); when a call still
fails, :class:`SlackDeliveryError` says so and the caller keeps the message pending (nothing is lost).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import SlackResponse

from agent.slack.blocks import (
    Block,
    IncidentMessage,
    SummaryMessage,
    incident_blocks,
    incident_text,
    summary_blocks,
    summary_text,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Slack error codes worth trying again later; others (channel_not_found, invalid_auth...) need a person.
RETRYABLE_ERRORS = frozenset({"ratelimited", "rate_limited", "internal_error", "fatal_error",
                              "service_unavailable", "request_timeout", "http_500", "http_503", "connection"})


class SlackDeliveryError(Exception):
    """A Slack call failed after retries. ``error`` is Slack's error code (never a token or a body)."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"Slack {method} failed: {error}")
        self.method = method
        self.error = error

    @property
    def retryable(self) -> bool:
        return self.error in RETRYABLE_ERRORS


@dataclass(frozen=True)
class PostedMessage:
    channel: str
    ts: str
    chart_uploaded: bool = False


def call_slack(method: str, call: Callable[[], T]) -> T:
    """Runs one Web API call, turning every failure into :class:`SlackDeliveryError`."""
    try:
        return call()
    except SlackApiError as exc:
        status = getattr(exc.response, "status_code", None)
        code = str(exc.response.get("error") or f"http_{status}")
        raise SlackDeliveryError(method, code) from exc
    except (SlackClientError, URLError, OSError) as exc:
        raise SlackDeliveryError(method, "connection" if not isinstance(exc, SlackClientError)
                                 else type(exc).__name__) from exc


class SlackNotifier:
    """Posts the agent's own messages through one shared ``WebClient``."""

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def post_incident(self, channel: str, message: IncidentMessage,
                      chart_png: bytes | None = None) -> PostedMessage:
        """Posts the incident, then its chart into the message's thread.

        Raises :class:`SlackDeliveryError` only when the message itself was not posted. A chart that
        fails to upload is logged and reported as ``chart_uploaded=False``: re-posting the whole
        incident for it would announce it twice.
        """
        posted = self._post(channel, incident_blocks(message), incident_text(message))
        if chart_png is None:
            return posted
        return self._attach_chart(posted, chart_png, title=f"{message.title} — pixel {message.pixel_id}")

    def post_summary(self, channel: str, summary: SummaryMessage,
                     chart_png: bytes | None = None) -> PostedMessage:
        """Posts an hourly summary or daily digest (with an optional chart in its thread)."""
        posted = self._post(channel, summary_blocks(summary), summary_text(summary))
        if chart_png is None:
            return posted
        return self._attach_chart(posted, chart_png, title=summary.title)

    def post_blocks(self, channel: str, blocks: Sequence[Block], text: str,
                    thread_ts: str | None = None) -> PostedMessage:
        """Posts prepared blocks (``text`` is the notification fallback and must be mrkdwn-safe)."""
        return self._post(channel, list(blocks), text, thread_ts=thread_ts)

    def update_message(self, channel: str, ts: str, blocks: Sequence[Block], text: str) -> None:
        """Replaces a posted message's blocks (``chat.update``), e.g. the day's summary message."""
        call_slack("chat.update", lambda: self.client.chat_update(
            channel=channel, ts=ts, blocks=list(blocks), text=text))

    def update_decision(self, channel: str, ts: str, blocks: Sequence[Block], text: str) -> None:
        """Replaces a posted message's blocks, e.g. buttons by who decided and the result."""
        self.update_message(channel, ts, blocks, text)

    def _post(self, channel: str, blocks: list[Block], text: str,
              thread_ts: str | None = None) -> PostedMessage:
        response: SlackResponse = call_slack("chat.postMessage", lambda: self.client.chat_postMessage(
            channel=channel, blocks=blocks, text=text, thread_ts=thread_ts,
            unfurl_links=False, unfurl_media=False))
        return PostedMessage(channel=str(response["channel"]), ts=str(response["ts"]))

    def _attach_chart(self, posted: PostedMessage, chart_png: bytes, *, title: str) -> PostedMessage:
        def upload() -> SlackResponse:
            return self.client.files_upload_v2(
                channel=posted.channel, thread_ts=posted.ts, file=chart_png, filename="parity.png",
                title=title, alt_txt="Hourly browser, server and baseline event counts")

        try:
            call_slack("files.upload", upload)
        except SlackDeliveryError as exc:
            log.warning("chart upload for message %s in %s failed: %s", posted.ts, posted.channel, exc.error)
            return posted
        return PostedMessage(channel=posted.channel, ts=posted.ts, chart_uploaded=True)
