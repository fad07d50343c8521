"""Block Kit builders for incident, summary and decision messages.

Inputs are small dataclasses the agent fills from its domain objects. Every piece of text that can
come from event data (event names, URLs, summaries) is escaped for mrkdwn, so it cannot mention
people (``<!channel>``) or forge links.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from agent.slack.port import DecisionOutcome
from tools.senders.types import change_from_json

Block = dict[str, Any]
IncidentStatus = Literal["new", "escalated", "resolved"]

APPROVE_ACTION = "approve_fix"
REJECT_ACTION = "reject_fix"
PROPOSAL_BLOCK_PREFIX = "proposal:"

SEVERITY_EMOJI = {"info": ":large_blue_circle:", "warning": ":warning:", "critical": ":red_circle:",
                  "ok": ":white_check_mark:"}
STATUS_LABEL = {"new": "New incident", "escalated": "Escalated", "resolved": "Resolved"}

# Slack's documented limits: section text 3000 chars, header 150, context element 2000, 50 blocks.
SECTION_LIMIT = 3000
HEADER_LIMIT = 150
MAX_BLOCKS = 50
MAX_EVIDENCE_LINES = 15


@dataclass(frozen=True)
class ProposalView:
    """A proposed fix as shown in Slack: what it will do and its preview numbers."""

    id: str
    kind: str
    summary: str
    total_events: int
    requests: int
    skipped: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class IncidentMessage:
    pixel_id: str
    root_cause: str
    title: str
    severity: str
    status: IncidentStatus
    summary: str
    narrative: str = ""
    evidence: list[str] = field(default_factory=list)
    proposals: list[ProposalView] = field(default_factory=list)
    # Sender changes shortly before the onset, as in the audit JSON ({"at", "kind", "before", "after"}).
    changes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class PixelStatusLine:
    """One pixel in an hourly summary or daily digest. ``severity`` is ``ok`` when nothing is open."""

    pixel_id: str
    severity: str
    headline: str
    open_incidents: int = 0


@dataclass(frozen=True)
class SummaryMessage:
    title: str
    window_start: datetime
    window_end: datetime
    pixels: list[PixelStatusLine] = field(default_factory=list)
    note: str | None = None


def escape_mrkdwn(text: str) -> str:
    """Escapes the three characters Slack's mrkdwn gives meaning to (``&``, ``<``, ``>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, SECTION_LIMIT)}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(text, 2000)}]}


def hhmm_utc(at: datetime) -> str:
    """``HH:MM UTC`` for a datetime (naive is taken as UTC)."""
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%H:%M UTC")


def change_lines(changes: Sequence[dict[str, Any]]) -> list[str]:
    """``14:02 UTC: the sender changed from woo-capi 3.2.1 to 3.3.0`` per change (unreadable ones skipped)."""
    lines = []
    for body in changes:
        try:
            change = change_from_json(body)
        except (KeyError, TypeError, ValueError):
            continue
        lines.append(f"{change.at.strftime('%Y-%m-%d')} {hhmm_utc(change.at)}: {change.describe()}")
    return lines


def incident_text(message: IncidentMessage) -> str:
    """The notification fallback text (shown in push notifications and screen readers)."""
    return escape_mrkdwn(f"{STATUS_LABEL[message.status]}: {message.title} (pixel {message.pixel_id})")


def incident_blocks(message: IncidentMessage) -> list[Block]:
    """Blocks for a new, escalated or resolved incident, with Approve/Reject buttons per proposal."""
    emoji = SEVERITY_EMOJI["ok"] if message.status == "resolved" else SEVERITY_EMOJI.get(message.severity, "")
    header = f"{STATUS_LABEL[message.status]}: {message.title}"
    blocks: list[Block] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": _clip(header, HEADER_LIMIT), "emoji": True}},
        _context(
            f"{emoji} *{escape_mrkdwn(message.severity)}*  ·  pixel `{escape_mrkdwn(message.pixel_id)}`"
            f"  ·  root cause `{escape_mrkdwn(message.root_cause)}`"
        ),
        _section(escape_mrkdwn(message.summary)),
    ]
    if message.narrative:
        blocks.append(_section(escape_mrkdwn(message.narrative)))
    lines = change_lines(message.changes)
    if lines:
        blocks.append(_section("*Changed just before*\n" + "\n".join(f"• {escape_mrkdwn(line)}" for line in lines)))
    if message.evidence:
        lines = [f"• {escape_mrkdwn(line)}" for line in message.evidence[:MAX_EVIDENCE_LINES]]
        hidden = len(message.evidence) - MAX_EVIDENCE_LINES
        if hidden > 0:
            lines.append(f"_…and {hidden} more in the audit trail_")
        blocks.append(_section("*Evidence*\n" + "\n".join(lines)))
    if message.status != "resolved":
        for proposal in message.proposals:
            blocks.append({"type": "divider"})
            blocks.extend(proposal_blocks(proposal))
    return blocks[:MAX_BLOCKS]


def proposal_blocks(proposal: ProposalView) -> list[Block]:
    """A proposal's summary, preview numbers and its buttons (``block_id`` = ``proposal:<id>``)."""
    preview = f"{proposal.total_events:,} events in {proposal.requests:,} request(s)"
    if proposal.skipped:
        skipped = ", ".join(f"{count:,} {escape_mrkdwn(reason)}" for reason, count in proposal.skipped)
        preview += f"; skipped: {skipped}"
    text = (f"*Proposed fix* `{escape_mrkdwn(proposal.kind)}`: {escape_mrkdwn(proposal.summary)}\n"
            f"Preview: {preview}")
    return [
        _section(text),
        {
            "type": "actions",
            "block_id": _clip(PROPOSAL_BLOCK_PREFIX + proposal.id, 255),
            "elements": [
                {"type": "button", "action_id": APPROVE_ACTION, "style": "primary", "value": proposal.id,
                 "text": {"type": "plain_text", "text": "Approve"}},
                {"type": "button", "action_id": REJECT_ACTION, "style": "danger", "value": proposal.id,
                 "text": {"type": "plain_text", "text": "Reject"}},
            ],
        },
    ]


def decision_line(outcome: DecisionOutcome, *, user_id: str, now: datetime) -> str:
    """``Approved by <@U> at HH:MM UTC — result: ...`` (or Rejected by ...), escaped except the mention."""
    who = outcome.decided_by or user_id
    when = hhmm_utc(outcome.decided_at or now)
    if outcome.status == "rejected":
        line = f":no_entry_sign: Rejected by <@{who}> at {when}"
    else:
        mark = ":white_check_mark:" if outcome.status == "approved_executed" else ":x:"
        result = outcome.result_summary or outcome.message
        line = f"{mark} Approved by <@{who}> at {when} — result: {escape_mrkdwn(result)}"
    return line


def decision_blocks(original: Sequence[Block], outcome: DecisionOutcome, *, user_id: str,
                    now: datetime) -> list[Block]:
    """The original message with this proposal's buttons replaced by who decided, when, and the result.

    Buttons of other proposals in the same message stay as they are.
    """
    target = PROPOSAL_BLOCK_PREFIX + outcome.proposal_id
    line = decision_line(outcome, user_id=user_id, now=now)
    replaced = False
    blocks: list[Block] = []
    for block in original:
        if block.get("type") == "actions" and (block.get("block_id") == target or _has_value(block, outcome)):
            blocks.append({**_section(line), "block_id": block.get("block_id", target)})
            replaced = True
        else:
            blocks.append(block)
    if not replaced:
        blocks.append(_section(line))
    return blocks[:MAX_BLOCKS]


def _has_value(block: Block, outcome: DecisionOutcome) -> bool:
    return any(element.get("value") == outcome.proposal_id for element in block.get("elements", []))


def summary_text(summary: SummaryMessage) -> str:
    return escape_mrkdwn(summary.title)


def summary_blocks(summary: SummaryMessage) -> list[Block]:
    """An hourly summary or daily digest: one line per pixel, worst first."""
    order = {"critical": 0, "warning": 1, "info": 2, "ok": 3}
    pixels = sorted(summary.pixels, key=lambda line: (order.get(line.severity, 4), line.pixel_id))
    window = f"{summary.window_start.astimezone(UTC):%Y-%m-%d %H:%M} to {hhmm_utc(summary.window_end)}"
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(summary.title, HEADER_LIMIT)}},
        _context(f"Window {window}"),
    ]
    lines = []
    for line in pixels:
        emoji = SEVERITY_EMOJI.get(line.severity, "")
        incidents = f" ({line.open_incidents} open)" if line.open_incidents else ""
        lines.append(f"{emoji} `{escape_mrkdwn(line.pixel_id)}` {escape_mrkdwn(line.headline)}{incidents}")
    blocks.append(_section("\n".join(lines) if lines else "No pixels configured."))
    if summary.note:
        blocks.append(_context(escape_mrkdwn(summary.note)))
    return blocks
