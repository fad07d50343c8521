"""Questions to the agent: @-mentions anywhere, and any reply in an incident's thread.

Each user message is answered at most once, however many times Slack delivers it: a mention arrives
both as ``app_mention`` and as ``message``, and Events API retries are dropped by middleware.
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from agent.slack.blocks import escape_mrkdwn
from agent.slack.listeners import ListenerDeps
from agent.slack.listeners.errors import reported

MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")


def register(app: App, deps: ListenerDeps) -> None:
    @reported
    def answer_mention(body: dict[str, Any], client: WebClient) -> None:
        event = body["event"]
        if _from_a_bot(event):
            return
        channel, thread_ts = event["channel"], event.get("thread_ts") or event["ts"]
        pixel_id = (deps.service.pixel_for_thread(channel=channel, thread_ts=thread_ts)
                    if event.get("thread_ts") else None)
        _answer(client, deps, event, thread_ts=thread_ts, pixel_id=pixel_id)

    @reported
    def answer_thread_reply(body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        event = body["event"]
        thread_ts = event.get("thread_ts")
        if _from_a_bot(event) or event.get("subtype") or not thread_ts or thread_ts == event.get("ts"):
            return
        if context.bot_user_id and f"<@{context.bot_user_id}" in (event.get("text") or ""):
            return  # the app_mention listener answers this one
        pixel_id = deps.service.pixel_for_thread(channel=event["channel"], thread_ts=thread_ts)
        if pixel_id is None:
            return  # not an incident thread: people talking among themselves
        _answer(client, deps, event, thread_ts=thread_ts, pixel_id=pixel_id)

    app.event("app_mention")(ack=_acknowledge, lazy=[answer_mention])
    app.event("message")(ack=_acknowledge, lazy=[answer_thread_reply])


def _acknowledge(ack: Ack) -> None:
    ack()


def _from_a_bot(event: dict[str, Any]) -> bool:
    return bool(event.get("bot_id")) or event.get("subtype") == "bot_message"


def question_text(text: str) -> str:
    """The question without the @-mentions of the bot (or anyone) that start or pepper it."""
    return " ".join(MENTION.sub(" ", text).split())


def _answer(client: WebClient, deps: ListenerDeps, event: dict[str, Any], *, thread_ts: str,
            pixel_id: str | None) -> None:
    channel = event["channel"]
    if not deps.answered_messages.first_time(f"{channel}:{event['ts']}"):
        return
    question = question_text(event.get("text") or "")
    if not question:
        return
    reply = deps.service.answer(conversation_id=f"{channel}:{thread_ts}", question=question,
                                user_id=event.get("user") or "", pixel_id=pixel_id)
    # The answer may quote event data (names, URLs): escaped so it cannot ping or link.
    client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=escape_mrkdwn(reply),
                            unfurl_links=False, unfurl_media=False)
