"""Approve / Reject buttons on proposed fixes.

Only people in CAPI_APPROVERS may decide (the service re-checks). The decision and the fix run in a
lazy listener, after Slack has its acknowledgement. A second click gets ``already_decided`` from the
service and only an ephemeral note: the message keeps the first result.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from agent.slack.blocks import (
    APPROVE_ACTION,
    REJECT_ACTION,
    decision_blocks,
    decision_line,
    escape_mrkdwn,
    hhmm_utc,
)
from agent.slack.listeners import ListenerDeps
from agent.slack.listeners.errors import reported
from agent.slack.port import DecisionOutcome

log = logging.getLogger(__name__)

NOT_AN_APPROVER_TEXT = ("Only approvers can approve or reject fixes. Ask someone listed in "
                        "CAPI_APPROVERS to decide on this one.")
MESSAGE_CHANGING = frozenset({"approved_executed", "approved_failed", "rejected"})


def register(app: App, deps: ListenerDeps) -> None:
    @reported
    def decide_on_proposal(body: dict[str, Any], client: WebClient) -> None:
        action = body["actions"][0]
        decision: Literal["approve", "reject"] = (
            "approve" if action["action_id"] == APPROVE_ACTION else "reject")
        proposal_id = str(action["value"])
        user_id = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
        if user_id not in deps.approvers:
            client.chat_postEphemeral(channel=channel, user=user_id, text=NOT_AN_APPROVER_TEXT)
            return
        outcome = deps.service.decide(proposal_id=proposal_id, user_id=user_id, decision=decision)
        if outcome.status in MESSAGE_CHANGING:
            _show_decision(client, body, channel=channel, user_id=user_id, outcome=outcome, deps=deps)
        else:
            client.chat_postEphemeral(channel=channel, user=user_id, text=refusal_text(outcome))

    for action_id in (APPROVE_ACTION, REJECT_ACTION):
        app.action(action_id)(ack=_acknowledge, lazy=[decide_on_proposal])


def _acknowledge(ack: Ack) -> None:
    ack()


def _show_decision(client: WebClient, body: dict[str, Any], *, channel: str, user_id: str,
                   outcome: DecisionOutcome, deps: ListenerDeps) -> None:
    """Replaces the buttons by the decision. If Slack refuses the update, the decider still learns the
    result privately: the decision is recorded by the service either way."""
    now = deps.clock()
    message = body.get("message") or {}
    line = decision_line(outcome, user_id=user_id, now=now)
    try:
        client.chat_update(
            channel=channel,
            ts=message.get("ts") or body["container"]["message_ts"],
            blocks=decision_blocks(message.get("blocks") or [], outcome, user_id=user_id, now=now),
            text=line,
        )
    except (SlackApiError, SlackClientError) as exc:
        log.warning("could not update the proposal message for %s: %s", outcome.proposal_id,
                    type(exc).__name__)
        client.chat_postEphemeral(channel=channel, user=user_id, text=line)


def refusal_text(outcome: DecisionOutcome) -> str:
    """The private note for a click that changed nothing, saying why."""
    detail = escape_mrkdwn(outcome.message)
    if outcome.status == "already_decided":
        who = f" by <@{outcome.decided_by}>" if outcome.decided_by else ""
        when = f" at {hhmm_utc(outcome.decided_at)}" if outcome.decided_at else ""
        return f"This fix was already decided{who}{when}; nothing was run again. {detail}".strip()
    if outcome.status == "expired":
        return f"This proposal has expired and can no longer be approved. {detail}".strip()
    if outcome.status == "not_found":
        return f"I could not find this proposal. {detail}".strip()
    if outcome.status == "not_allowed":
        return f"You are not allowed to decide on this fix. {detail}".strip()
    return detail
