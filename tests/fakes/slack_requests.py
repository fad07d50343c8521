"""Signed requests as Slack sends them, for driving a Bolt app in tests.

``signed_headers`` computes ``X-Slack-Signature`` (``v0=`` HMAC-SHA256 of ``v0:{timestamp}:{body}``)
and ``X-Slack-Request-Timestamp``; the ``*_body`` helpers build the payloads of an Events API event,
a block action and a slash command; ``bolt_request`` wraps one for ``app.dispatch``.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

from slack_bolt import BoltRequest
from slack_sdk.signature import SignatureVerifier

from tests.fakes.slack_api import BOT_ID, BOT_USER_ID, TEAM_ID

_event_ids = itertools.count(1)


def signed_headers(body: str, signing_secret: str, *, timestamp: int | None = None,
                   content_type: str = "application/json", retry_num: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=stamp, body=body)
    headers = {"content-type": content_type, "x-slack-request-timestamp": stamp,
               "x-slack-signature": signature or ""}
    if retry_num is not None:
        headers["x-slack-retry-num"] = str(retry_num)
        headers["x-slack-retry-reason"] = "http_timeout"
    return headers


def event_body(event: dict[str, Any], *, event_id: str | None = None) -> str:
    """An Events API ``event_callback`` envelope around ``event`` (JSON text)."""
    return json.dumps({
        "token": "legacy-verification-token", "team_id": TEAM_ID, "api_app_id": "A0000001",
        "event": event, "type": "event_callback",
        "event_id": event_id or f"Ev{next(_event_ids):08d}", "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
    })


def message_event(*, channel: str, user: str, text: str, ts: str, thread_ts: str | None = None,
                  kind: str = "message", **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind, "channel": channel, "user": user, "text": text, "ts": ts,
                             "event_ts": ts, "channel_type": "channel", **extra}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def action_body(*, action_id: str, value: str, user: str, channel: str, message: dict[str, Any]) -> str:
    """A ``block_actions`` payload for a button click on ``message`` (form-encoded ``payload=``)."""
    payload = {
        "type": "block_actions", "team": {"id": TEAM_ID}, "user": {"id": user, "username": user},
        "api_app_id": "A0000001", "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel},
        "trigger_id": "1.2.3", "channel": {"id": channel, "name": "capi-alerts"},
        "message": {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, **message},
        "response_url": "http://127.0.0.1:9/never-used",
        "actions": [{"type": "button", "action_id": action_id, "block_id": f"proposal:{value}",
                     "value": value, "action_ts": str(time.time())}],
    }
    return urlencode({"payload": json.dumps(payload)})


def command_body(*, text: str, user: str, channel: str, response_url: str) -> str:
    """A ``/capi`` slash command as Slack posts it (form-encoded)."""
    return urlencode({
        "token": "legacy-verification-token", "team_id": TEAM_ID, "channel_id": channel,
        "channel_name": "capi-alerts", "user_id": user, "user_name": user, "command": "/capi",
        "text": text, "api_app_id": "A0000001", "response_url": response_url, "trigger_id": "1.2.3",
    })


def bolt_request(body: str, signing_secret: str, *, form: bool = False,
                 retry_num: int | None = None, timestamp: int | None = None) -> BoltRequest:
    content_type = "application/x-www-form-urlencoded" if form else "application/json"
    headers = signed_headers(body, signing_secret, timestamp=timestamp, content_type=content_type,
                             retry_num=retry_num)
    return BoltRequest(body=body, headers=headers)
