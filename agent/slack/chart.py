"""A PNG chart of hourly browser vs server vs baseline counts for an incident's events.

Uses matplotlib's object API with the Agg canvas: one ``Figure`` per call, no pyplot global state,
so charts can be drawn from worker threads.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

SeriesSource = Literal["browser", "server", "baseline"]

# Colour says the source; the marker tells events apart when several are drawn.
_SOURCE_STYLE: dict[SeriesSource, dict[str, Any]] = {
    "browser": {"color": "tab:blue", "linestyle": "-"},
    "server": {"color": "tab:orange", "linestyle": "-"},
    "baseline": {"color": "tab:gray", "linestyle": "--", "alpha": 0.8},
}
_EVENT_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


@dataclass(frozen=True)
class ChartSeries:
    """Hourly counts of one event from one source; ``points`` are (hour start UTC, count)."""

    event_name: str
    source: SeriesSource
    points: list[tuple[datetime, float]] = field(default_factory=list)


def render_parity_chart(series: list[ChartSeries], title: str,
                        mark: tuple[datetime, datetime] | None = None) -> bytes:
    """Returns PNG bytes: one line per (event, source), the incident window ``mark`` shaded."""
    # matplotlib is imported here, not with the module: it costs ``serve`` some 30 MB resident, and
    # only an incident's message draws a chart (a healthy fleet never does).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    markers: dict[str, str] = {}
    for line in series:
        if not line.points:
            continue
        marker = markers.setdefault(line.event_name, _EVENT_MARKERS[len(markers) % len(_EVENT_MARKERS)])
        hours = [point[0] for point in line.points]
        counts = [point[1] for point in line.points]
        # matplotlib takes datetimes through its date unit converter (which also picks the date
        # ticks); its stubs only name floats.
        axes.plot(hours, counts, label=f"{line.event_name} · {line.source}",  # type: ignore[arg-type]
                  marker=marker, markersize=3, **_SOURCE_STYLE[line.source])
    if mark is not None:
        axes.axvspan(mark[0], mark[1], color="tab:red", alpha=0.12,  # type: ignore[arg-type]
                     label="incident window")
    axes.set_title(title)
    axes.set_ylabel("events per hour")
    axes.set_ylim(bottom=0)
    axes.xaxis.set_major_formatter(DateFormatter("%m-%d %H:%M"))
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize="small")
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    figure.clear()
    return buffer.getvalue()
