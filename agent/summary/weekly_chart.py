"""The weekly report's picture: small multiples, one panel per pixel, worst first.

Each panel shows the week day by day: coverage and the server/browser ratio (as a percentage, on
the left axis, 0-150 %) and EMQ (0-10, on the right axis). A pixel with no data that week gets an
empty panel saying so. At most ``MAX_PANELS`` panels keep the picture readable; the report's text
names the other pixels. matplotlib's object API with the Agg canvas (no pyplot state), as
``agent.slack.chart``.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

from agent.summary.weekly import PixelWeek, WeeklyReport, week_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_PANELS = 24
COLUMNS = 4
PANEL_INCHES = (3.3, 2.1)
DPI = 80
PANEL_GID = "weekly-panel"  # marks the panels' main axes (the twin EMQ axes are not panels)
RATIO_CAP = 150.0  # percent; a server sending 3x the browser would flatten every other line


def panel_title(rank: int, pixel: PixelWeek) -> str:
    name = f" {pixel.name}" if pixel.name else ""
    label = f"{rank}. {pixel.pixel_id}{name}"
    return label if len(label) <= 34 else label[:33] + "…"


def panel_note(pixel: PixelWeek) -> str:
    if not pixel.has_data:
        return "no data this week"
    parts = []
    critical, warning = pixel.count_open("critical"), pixel.count_open("warning")
    if critical or warning:
        parts.append(f"open: {critical} crit, {warning} warn")
    if pixel.hours_with_incidents:
        parts.append(f"{pixel.hours_with_incidents} h w/ findings")
    if pixel.fixes:
        parts.append(f"{len(pixel.fixes)} fix(es)")
    return " · ".join(parts) or "healthy"


def build_figure(report: WeeklyReport, *, max_panels: int = MAX_PANELS) -> Figure:
    """The figure (one axes with gid ``PANEL_GID`` per shown pixel), not yet rendered."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = report.pixels[:max_panels]
    columns = max(1, min(COLUMNS, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    figure = Figure(figsize=(PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows + 0.8), dpi=DPI)
    FigureCanvasAgg(figure)
    more = len(report.pixels) - len(shown)
    heading = f"Weekly health, worst first · {week_label(report)}"
    if more:
        heading += f" · {more} more pixel(s) listed in the text"
    figure.suptitle(heading, fontsize=10)
    if not shown:
        figure.text(0.5, 0.5, "no pixels", ha="center", va="center")
    for index, pixel in enumerate(shown):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.set_gid(PANEL_GID)
        _panel(axes, index + 1, pixel)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    return figure


def _panel(axes: Axes, rank: int, pixel: PixelWeek) -> None:
    bad = pixel.count_open("critical") or pixel.count_open("warning")
    colour = "tab:red" if pixel.count_open("critical") else "tab:orange" if bad else "black"
    axes.set_title(panel_title(rank, pixel), fontsize=8, loc="left", color=colour)
    axes.tick_params(labelsize=6)
    days = list(range(len(pixel.days)))
    axes.set_xticks(days, [d.day[5:] for d in pixel.days])
    axes.set_ylim(0, RATIO_CAP)
    axes.grid(True, alpha=0.3)
    if not pixel.has_data:
        axes.text(0.5, 0.5, "no data this week", transform=axes.transAxes, ha="center", va="center",
                  fontsize=8, color="gray")
        return
    coverage = [d.coverage if d.coverage is not None else math.nan for d in pixel.days]
    ratio = [min(RATIO_CAP, 100 * d.ratio) if d.ratio is not None else math.nan for d in pixel.days]
    # Coverage is the ratio capped at 100 % when read from counts: drawn wide and pale underneath,
    # so the ratio stays visible where the two coincide.
    axes.plot(days, coverage, color="tab:blue", linewidth=4, alpha=0.35, label="coverage %")
    axes.plot(days, ratio, color="tab:orange", linewidth=1.2, marker="s", markersize=2, label="server/browser %")
    emq_axes = axes.twinx()
    emq_axes.set_ylim(0, 10)
    emq_axes.tick_params(labelsize=6)
    emq = [d.emq if d.emq is not None else math.nan for d in pixel.days]
    emq_axes.plot(days, emq, color="tab:green", linestyle="--", marker="^", markersize=2, label="EMQ")
    axes.text(0.02, 0.04, panel_note(pixel), transform=axes.transAxes, fontsize=6, color=colour)
    if rank == 1:
        handles = axes.get_legend_handles_labels()
        extra = emq_axes.get_legend_handles_labels()
        axes.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=5, loc="upper right")


def render_png(report: WeeklyReport, *, max_panels: int = MAX_PANELS) -> bytes:
    figure = build_figure(report, max_panels=max_panels)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    figure.clear()
    return buffer.getvalue()
