"""Block Kit for audit summaries: the hourly reply, the day's parent message and the daily digest.

Text that can come from configuration or event data (pixel names, event names) is escaped, so a
summary cannot mention people or forge links; the only links are the agent's own, to incident threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from agent.slack.blocks import (
    HEADER_LIMIT,
    MAX_BLOCKS,
    SECTION_LIMIT,
    Block,
    _clip,
    _context,
    _section,
    escape_mrkdwn,
    hhmm_utc,
)
from agent.summary.model import MARK_LABEL, PixelLine, Summary, counts_line
from agent.summary.text import split_folded, tally, title, window_label

MARK_EMOJI = {"critical": ":red_circle:", "warning": ":warning:", "audit_failed": ":x:",
              "not_judged": ":grey_question:", "healthy": ":white_check_mark:"}
PIXELS_PER_SECTION = 8
# Payload findings shown per pixel (the rest are counted; ``/capi audit`` lists every finding).
PAYLOAD_SHOWN = 3
EXAMPLE_LIMIT = 160


def thread_link(channel: str, ts: str) -> str:
    """A link to a Slack message that works in any workspace (Slack redirects to the right one)."""
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"


def pixel_text(pixel: PixelLine, links: Mapping[str, str]) -> str:
    name = f" {escape_mrkdwn(pixel.name)}" if pixel.name else ""
    lines = [f"{MARK_EMOJI[pixel.mark]} *{MARK_LABEL[pixel.mark]}* · `{escape_mrkdwn(pixel.pixel_id)}`{name}",
             escape_mrkdwn(counts_line(pixel))]
    if pixel.incidents:
        shown = []
        for incident in pixel.incidents:
            label = f"{escape_mrkdwn(incident.title)} ({escape_mrkdwn(incident.severity)})"
            shown.append(f"<{links[incident.id]}|{label}>" if incident.id in links else label)
        lines.append("Open: " + ", ".join(shown))
    if pixel.fixes:
        lines.append("Waiting for approval: " + ", ".join(
            f"`{escape_mrkdwn(f.kind)}` {escape_mrkdwn(f.id)} ({f.total_events:,} events)" for f in pixel.fixes))
    if pixel.note:
        lines.append(f"_{escape_mrkdwn(pixel.note)}_")
    if pixel.payload:
        lines.append("Accepted but useless:")
        lines.extend(f"• {escape_mrkdwn(_clip(note.line, EXAMPLE_LIMIT))}" for note in pixel.payload[:PAYLOAD_SHOWN])
        if len(pixel.payload) > PAYLOAD_SHOWN:
            lines.append(f"• and {len(pixel.payload) - PAYLOAD_SHOWN} more: `/capi audit` lists every finding")
    return "\n".join(lines)


def _packed(texts: list[str]) -> list[str]:
    """Pixel texts joined into section texts: at most PIXELS_PER_SECTION each, and within Slack's
    section limit when they fit (a pixel's payload findings make its text long)."""
    out: list[str] = []
    group: list[str] = []
    for text in texts:
        if group and (len(group) == PIXELS_PER_SECTION or len("\n\n".join([*group, text])) > SECTION_LIMIT):
            out.append("\n\n".join(group))
            group = []
        group.append(text)
    if group:
        out.append("\n\n".join(group))
    return out


def summary_blocks(summary: Summary, *, links: Mapping[str, str] | None = None,
                   late_sent_at: datetime | None = None, heading: str | None = None) -> list[Block]:
    """One summary: a header, the window and tally, pixels (open ones first, healthy folded)."""
    links = links or {}
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(heading or title(summary), HEADER_LIMIT)}},
        _context(escape_mrkdwn(f"{window_label(summary)} · {tally(summary)}")),
    ]
    shown, folded = split_folded(summary)
    texts = [pixel_text(pixel, links) for pixel in shown]
    if folded:
        ids = ", ".join(f"`{escape_mrkdwn(p.pixel_id)}`" for p in folded)
        texts.append(f"{MARK_EMOJI['healthy']} *{len(folded)} healthy pixels*: {ids}")
    blocks.extend(_section(text) for text in _packed(texts))
    if not texts:
        blocks.append(_section("No pixels."))
    if late_sent_at is not None:
        blocks.append(_context(f":hourglass_flowing_sand: Late: sent at {hhmm_utc(late_sent_at)}, after "
                               "Slack or capi-agent was unavailable."))
    if len(blocks) > MAX_BLOCKS:
        blocks = [*blocks[:MAX_BLOCKS - 1], _context("…more pixels: `capi-agent summary` lists them all.")]
    return blocks


def summary_fallback(summary: Summary, *, late: bool = False) -> str:
    """The notification text (push notifications, screen readers)."""
    text = f"{title(summary)}: {tally(summary)}"
    return escape_mrkdwn(text + (" (late)" if late else ""))


def day_heading(day_start: datetime, day_end: datetime, timezone: str) -> str:
    zone = ZoneInfo(timezone)
    start, end = day_start.astimezone(zone), day_end.astimezone(zone)
    return f"capi-agent · {start:%a %d %b %H:%M} → {end:%a %d %b %H:%M} ({timezone})"


def day_parent_blocks(summary: Summary, *, day_start: datetime, day_end: datetime, timezone: str,
                      links: Mapping[str, str] | None = None) -> list[Block]:
    """The day's parent message: the day, then the latest hour (edited in place every hour)."""
    latest = summary_blocks(summary, links=links, heading="Latest hour")
    return [
        {"type": "header", "text": {"type": "plain_text",
                                    "text": _clip(day_heading(day_start, day_end, timezone), HEADER_LIMIT)}},
        _context("Hourly summaries are in this thread; incidents get their own messages."),
        *[_section(f"*{escape_mrkdwn(block['text']['text'])}*") if block["type"] == "header" else block
          for block in latest],
    ][:MAX_BLOCKS]
