"""The weekly report as words: plain text (terminal, email) and Slack blocks.

Every pixel is listed in the text; the Slack message details the ``SLACK_DETAILED`` worst and names
the rest by group (its picture shows up to 24 panels). Names come from configuration and are escaped
in Slack, so the report cannot mention people or forge links.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from agent.slack.blocks import HEADER_LIMIT, Block, _clip, _context, _section, escape_mrkdwn, hhmm_utc
from agent.summary.weekly import AppliedFix, PixelWeek, WeeklyReport, week_label

TITLE = "capi-agent weekly report"
SLACK_DETAILED = 10
PIXELS_PER_SECTION = 5


def verdict(pixel: PixelWeek) -> str:
    """One word for a pixel's week: critical, warning, findings, audit failed, no data or healthy."""
    if pixel.count_open("critical"):
        return "critical"
    if pixel.open_incidents:
        return "warning"
    if pixel.hours_with_incidents:
        return "findings"
    if pixel.hours_failed:
        return "audit failed"
    return "healthy" if pixel.has_data else "no data"


def tally(report: WeeklyReport) -> str:
    counts: dict[str, int] = {}
    for pixel in report.pixels:
        counts[verdict(pixel)] = counts.get(verdict(pixel), 0) + 1
    order = ("critical", "warning", "findings", "audit failed", "no data", "healthy")
    noun = "pixel" if len(report.pixels) == 1 else "pixels"
    parts = [f"{counts[word]} {word}" for word in order if word in counts]
    return f"{len(report.pixels)} {noun}: " + ", ".join(parts) if parts else "no pixels"


def _pct(value: float | None) -> str:
    return f"{value:.0f} %" if value is not None else "n/a"


def figures_line(pixel: PixelWeek) -> str:
    """``coverage 62 % (-30 pts) · server/browser 0.61 · EMQ 6.1 · 5 h with findings of 168 audited``."""
    drop = pixel.coverage_drop
    change = f" ({-drop:+.0f} pts)" if drop else ""
    ratio = f"{pixel.ratio:.2f}" if pixel.ratio is not None else "n/a"
    emq = f"{pixel.emq:.1f}" if pixel.emq is not None else "n/a"
    line = (f"coverage {_pct(pixel.coverage)}{change} · server/browser {ratio} · EMQ {emq} · "
            f"{pixel.hours_with_incidents} h with findings of {pixel.hours_audited} audited")
    if pixel.hours_failed:
        line += f" · {pixel.hours_failed} failed"
    return line


def fix_line(fix: AppliedFix) -> str:
    verified = {True: ", resolved", False: ", not resolved", None: ""}[fix.resolved]
    by = f" (approved by {fix.approved_by})" if fix.approved_by else ""
    return f"{fix.kind} {fix.id} {fix.status}{by}: {fix.sent:,} sent, {fix.received:,} received{verified}"


def pixel_lines(rank: int, pixel: PixelWeek) -> list[str]:
    name = f" {pixel.name}" if pixel.name else ""
    lines = [f"{rank}. [{verdict(pixel)}] {pixel.pixel_id}{name}"]
    if not pixel.has_data:
        lines.append("  no data this week: Meta counted no event")
    lines.append(f"  {figures_line(pixel)}")
    lines.append(f"  incidents: {len(pixel.open_incidents)} open at the end, {pixel.opened} opened, "
                 f"{pixel.resolved} resolved during the week")
    for incident in pixel.open_incidents:
        lines.append(f"  open: {incident.title} ({incident.severity}, {incident.root_cause}) since "
                     f"{incident.opened_at}")
    for fix in pixel.fixes:
        lines.append(f"  fix: {fix_line(fix)}")
    return lines


def render_text(report: WeeklyReport) -> str:
    lines = [f"{TITLE}, {week_label(report)}", tally(report),
             "worst first: open incidents (critical, then warning), hours with findings, failed audits, "
             "no data, coverage drop", ""]
    for rank, pixel in enumerate(report.pixels, start=1):
        lines += pixel_lines(rank, pixel)
    if not report.pixels:
        lines.append("No pixels.")
    return "\n".join(lines)


VERDICT_EMOJI = {"critical": ":red_circle:", "warning": ":warning:", "findings": ":large_yellow_circle:",
                 "audit failed": ":x:", "no data": ":grey_question:", "healthy": ":white_check_mark:"}


def _slack_pixel(rank: int, pixel: PixelWeek, links: Mapping[str, str]) -> str:
    word = verdict(pixel)
    name = f" {escape_mrkdwn(pixel.name)}" if pixel.name else ""
    lines = [f"{VERDICT_EMOJI[word]} *{rank}. {word}* · `{escape_mrkdwn(pixel.pixel_id)}`{name}"]
    if not pixel.has_data:
        lines.append("_no data this week: Meta counted no event_")
    lines.append(escape_mrkdwn(figures_line(pixel)))
    if pixel.open_incidents:
        shown = []
        for incident in pixel.open_incidents:
            label = f"{escape_mrkdwn(incident.title)} ({escape_mrkdwn(incident.severity)})"
            shown.append(f"<{links[incident.id]}|{label}>" if incident.id in links else label)
        lines.append("Open: " + ", ".join(shown))
    if pixel.fixes:
        lines.append("Fixes: " + "; ".join(escape_mrkdwn(fix_line(f)) for f in pixel.fixes))
    return "\n".join(lines)


def slack_blocks(report: WeeklyReport, *, picture: bool = True, links: Mapping[str, str] | None = None,
                 late_sent_at: datetime | None = None) -> list[Block]:
    """The message: the ten worst pixels in detail (open incidents linked to their Slack messages,
    the agent's own links only), the others by group, and a note when it goes out late."""
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(TITLE, HEADER_LIMIT)}},
        _context(escape_mrkdwn(f"{week_label(report)} · {tally(report)}")),
    ]
    detailed = report.pixels[:SLACK_DETAILED]
    texts = [_slack_pixel(rank, pixel, links or {}) for rank, pixel in enumerate(detailed, start=1)]
    for start in range(0, len(texts), PIXELS_PER_SECTION):
        blocks.append(_section("\n\n".join(texts[start:start + PIXELS_PER_SECTION])))
    rest = report.pixels[SLACK_DETAILED:]
    if rest:
        groups: dict[str, list[str]] = {}
        for pixel in rest:
            groups.setdefault(verdict(pixel), []).append(pixel.pixel_id)
        parts = [f"{len(ids)} {word}" + (f" ({', '.join(ids[:20])}{', …' if len(ids) > 20 else ''})"
                                         if word != "healthy" else "") for word, ids in groups.items()]
        blocks.append(_context(escape_mrkdwn(f"and {len(rest)} more pixel(s): " + "; ".join(parts)
                                             + ". Every pixel: capi-agent report --week --format text")))
    if not report.pixels:
        blocks.append(_section("No pixels."))
    if late_sent_at is not None:
        blocks.append(_context(f"_Late: sent at {hhmm_utc(late_sent_at)}, after Slack or capi-agent was "
                               "unavailable._"))
    if picture:
        blocks.append(_context("The picture of the week (coverage, server/browser, EMQ per pixel, worst "
                               "first) follows."))
    return blocks


def fallback(report: WeeklyReport) -> str:
    return escape_mrkdwn(f"{TITLE}, {week_label(report)}: {tally(report)}")
