"""``/capi status [pixel] | audit [pixel] | fixes | summary [pixel] | weekly [pixel] | release PROPOSAL |
help``.

Acknowledged at once; the answer comes through the command's response_url (works in any channel,
no membership needed): ephemeral for status and fixes, visible to the channel for audit, weekly and
release. ``weekly`` also uploads the week's picture to the channel, which needs the bot to be a member.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

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
    "• `/capi weekly [pixel]` — the last week's report with its picture, for one pixel or this channel's pixels\n"
    "• `/capi release PROPOSAL` — approvers: resend a fix's uncertain events (check Events Manager first)\n"
    "• `/capi help` — this message"
)
SUBCOMMANDS = frozenset({"status", "audit", "fixes", "summary", "weekly", "release", "help"})
PICTURE_NOT_POSTED_TEXT = ("The picture of the week could not be posted here: invite the bot to this channel "
                           "(it needs to be a member to upload a file), or run capi-agent report --week "
                           "--format png.")
log = logging.getLogger(__name__)
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
        elif subcommand == "weekly":
            _post_weekly(deps, body, client, respond, pixel_id)
        elif subcommand == "summary":
            summary = deps.service.latest_summary(pixel_id=pixel_id, channel=body.get("channel_id"))
            if summary is None:
                respond(text="Nothing audited yet: no summary to show.", response_type="ephemeral")
            else:
                respond(text=summary_fallback(summary), blocks=summary_blocks(summary),
                        response_type="ephemeral")

    app.command("/capi")(ack=acknowledge, lazy=[run_capi_command])


def _post_weekly(deps: ListenerDeps, body: dict[str, Any], client: WebClient, respond: Respond,
                 pixel_id: str | None) -> None:
    """The weekly report's message to the channel, then its picture right after it."""
    from agent.summary.weekly import week_label
    from agent.summary.weekly_chart import render_png
    from agent.summary.weekly_text import fallback, slack_blocks

    view = deps.service.weekly_report(pixel_id=pixel_id, channel=body.get("channel_id"))
    if view is None:
        respond(text="No pixels configured: no weekly report to show.", response_type="ephemeral")
        return
    respond(text=fallback(view.report), blocks=slack_blocks(view.report, links=view.links),
            response_type="in_channel", replace_original=False)
    try:
        client.files_upload_v2(channel=body.get("channel_id"), file=render_png(view.report), filename="weekly.png",
                               title=f"Weekly health · {week_label(view.report)}",
                               alt_txt="Coverage, server/browser ratio and EMQ of each pixel over the week, "
                                       "worst first")
    except SlackApiError as exc:
        log.warning("weekly picture for /capi weekly not uploaded: %s", exc.response.get("error"))
        respond(text=PICTURE_NOT_POSTED_TEXT, response_type="ephemeral", replace_original=False)
