"""``/capi status [pixel] | audit [pixel] | fixes | summary [pixel] | release PROPOSAL | help``.

Acknowledged at once; the answer comes through the command's response_url (works in any channel,
no membership needed): ephemeral for status and fixes, visible to the channel for audit and release.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from agent.slack.blocks import escape_mrkdwn
from agent.slack.listeners import ListenerDeps
from agent.slack.listeners.errors import reported
from agent.slack.summary_blocks import summary_blocks, summary_fallback

HELP_TEXT = (
    "*capi-agent* commands:\n"
    "• `/capi status [pixel]` — open incidents and the last audit, for one pixel or all\n"
    "• `/capi audit [pixel]` — run an audit now and post the result here\n"
    "• `/capi fixes` — proposed fixes waiting for a decision\n"
    "• `/capi summary [pixel]` — the latest hourly summary, for one pixel or this channel's pixels\n"
    "• `/capi release PROPOSAL` — approvers: resend a fix's uncertain events (check Events Manager first)\n"
    "• `/capi help` — this message"
)
SUBCOMMANDS = frozenset({"status", "audit", "fixes", "summary", "release", "help"})
NOT_AN_APPROVER_RELEASE_TEXT = ("Only approvers can release uncertain events. Ask someone listed in "
                                "CAPI_APPROVERS to do it.")


def parse_command(text: str | None) -> tuple[str, str | None]:
    """``(subcommand, pixel)``; anything unknown is ``help``."""
    words = (text or "").split()
    if not words or words[0].lower() not in SUBCOMMANDS:
        return "help", None
    return words[0].lower(), (words[1] if len(words) > 1 else None)


def register(app: App, deps: ListenerDeps) -> None:
    def acknowledge(ack: Ack, command: dict[str, Any]) -> None:
        subcommand, pixel_id = parse_command(command.get("text"))
        if subcommand == "help":
            ack(text=HELP_TEXT)
        elif subcommand == "audit":
            target = f" for pixel `{escape_mrkdwn(pixel_id)}`" if pixel_id else ""
            ack(text=f"Running an audit{target}…")
        elif subcommand == "release" and not pixel_id:
            ack(text="Usage: `/capi release PROPOSAL` (the proposal id, fix_...)")
        else:
            ack()

    @reported
    def run_capi_command(body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        subcommand, pixel_id = parse_command(body.get("text"))
        if subcommand == "status":
            respond(text=escape_mrkdwn(deps.service.status_text(pixel_id=pixel_id)),
                    response_type="ephemeral")
        elif subcommand == "fixes":
            respond(text=escape_mrkdwn(deps.service.fixes_text()), response_type="ephemeral")
        elif subcommand == "audit":
            respond(text=escape_mrkdwn(deps.service.run_audit_text(pixel_id=pixel_id)),
                    response_type="in_channel", replace_original=False)
        elif subcommand == "release" and pixel_id:
            if body.get("user_id") not in deps.approvers:
                respond(text=NOT_AN_APPROVER_RELEASE_TEXT, response_type="ephemeral")
                return
            respond(text=escape_mrkdwn(deps.service.release_uncertain_text(proposal_id=pixel_id,
                                                                           user_id=str(body["user_id"]))),
                    response_type="in_channel", replace_original=False)
        elif subcommand == "summary":
            summary = deps.service.latest_summary(pixel_id=pixel_id, channel=body.get("channel_id"))
            if summary is None:
                respond(text="Nothing audited yet: no summary to show.", response_type="ephemeral")
            else:
                respond(text=summary_fallback(summary), blocks=summary_blocks(summary),
                        response_type="ephemeral")

    app.command("/capi")(ack=acknowledge, lazy=[run_capi_command])
