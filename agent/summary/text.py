"""A summary as plain text: the terminal (``capi-agent summary``), ``/capi summary`` and the text part
of summary emails. The Slack blocks (``agent.slack.summary_blocks``) say the same with markup."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from agent.summary.model import MARK_LABEL, PixelLine, Summary, counts_line
from tools.timeutil import parse_iso

FOLD_HEALTHY_AFTER = 3  # more healthy pixels than this, with nothing open, share one line


def window_label(summary: Summary) -> str:
    """``2026-11-12 18:00 → 19:00 UTC`` (and the local times when the zone is not UTC)."""
    start, end = parse_iso(summary.window_start), parse_iso(summary.window_end)
    label = f"{start:%Y-%m-%d %H:%M} → {_end(start, end)} UTC"
    if summary.timezone != "UTC":
        zone = ZoneInfo(summary.timezone)
        local_start, local_end = start.astimezone(zone), end.astimezone(zone)
        label += f" ({local_start:%H:%M} → {_end(local_start, local_end)} {summary.timezone})"
    return label


def _end(start: datetime, end: datetime) -> str:
    return f"{end:%H:%M}" if end.date() == start.date() or end.hour == 0 else f"{end:%Y-%m-%d %H:%M}"


def title(summary: Summary) -> str:
    return "capi-agent hourly summary" if summary.kind == "hourly" else "capi-agent daily digest"


def tally(summary: Summary) -> str:
    """``2 pixels: 1 critical, 1 healthy``."""
    counts: dict[str, int] = {}
    for pixel in summary.pixels:
        counts[pixel.mark] = counts.get(pixel.mark, 0) + 1
    parts = [f"{n} {MARK_LABEL[mark]}" for mark, n in sorted(counts.items(), key=lambda kv: list(MARK_LABEL)
                                                               .index(kv[0]))]
    noun = "pixel" if len(summary.pixels) == 1 else "pixels"
    return f"{len(summary.pixels)} {noun}: " + ", ".join(parts) if parts else "no pixels"


def split_folded(summary: Summary) -> tuple[list[PixelLine], list[PixelLine]]:
    """(pixels shown one by one, healthy pixels folded into one line)."""
    quiet = [p for p in summary.pixels if p.mark == "healthy" and not p.has_open and not p.payload]
    if len(quiet) <= FOLD_HEALTHY_AFTER:
        return list(summary.pixels), []
    return [p for p in summary.pixels if p not in quiet], quiet


def render_text(summary: Summary, *, links: Mapping[str, str] | None = None) -> str:
    """The whole summary as text; ``links`` maps incident ids to their Slack thread."""
    links = links or {}
    lines = [f"{title(summary)}, {window_label(summary)}", tally(summary), ""]
    shown, folded = split_folded(summary)
    for pixel in shown:
        name = f" {pixel.name}" if pixel.name else ""
        lines.append(f"[{MARK_LABEL[pixel.mark]}] {pixel.pixel_id}{name}")
        lines.append(f"  {counts_line(pixel)}")
        for incident in pixel.incidents:
            link = f" {links[incident.id]}" if incident.id in links else ""
            lines.append(f"  open incident: {incident.title} ({incident.severity}, {incident.root_cause}){link}")
        for fix in pixel.fixes:
            lines.append(f"  waiting for approval: {fix.kind} {fix.id} ({fix.total_events:,} events)")
        if pixel.note:
            lines.append(f"  {pixel.note}")
        for note in pixel.payload:
            lines.append(f"  accepted but useless: {note.line}")
    if folded:
        lines.append(f"[healthy] {len(folded)} pixels: " + ", ".join(p.pixel_id for p in folded))
    if not summary.pixels:
        lines.append("No pixels.")
    return "\n".join(lines)
