"""A summary as data: one line per pixel, JSON-able (it is the outbox payload and the CLI's JSON).

Only aggregates and the agent's own words go in: counts, scores, root causes, ids, and the payload
findings' masked examples (an event's name, masked event_id, time and the field at fault, never a
customer's value; ``tools.ledger.payload``). Never event payloads, user data or tokens, so a summary
cannot leak customer information wherever it is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Mark = Literal["critical", "warning", "audit_failed", "not_judged", "healthy"]
MARK_ORDER: dict[str, int] = {"critical": 0, "warning": 1, "audit_failed": 2, "not_judged": 3, "healthy": 4}
MARK_LABEL: dict[str, str] = {"critical": "critical", "warning": "warning", "audit_failed": "audit failed",
                              "not_judged": "not judged", "healthy": "healthy"}


@dataclass(frozen=True)
class Level:
    """Events Meta received in the window against their usual level (None: no history yet)."""

    count: int
    usual: float | None = None
    basis: str | None = None


@dataclass(frozen=True)
class OpenIncident:
    id: str
    root_cause: str
    title: str
    severity: str


@dataclass(frozen=True)
class WaitingFix:
    id: str
    kind: str
    incident_id: str | None
    total_events: int


@dataclass(frozen=True)
class PayloadNote:
    """An accepted-but-useless payload finding of the window (``payload.*``): most have no incident,
    so the summary is where the channel hears of them (info ones are standing, warnings are new)."""

    code: str
    severity: str
    count: int
    events: int
    what: str  # "server events", "Purchase events", ...: what ``events`` counts
    example: str | None = None  # masked (see the module docstring)

    @property
    def line(self) -> str:
        """``payload.test_event_code (warning): 139 of 139 server events (100%); e.g. ...``."""
        share = f" ({self.count / self.events:.0%})" if self.events else ""
        example = f"; e.g. {self.example}" if self.example else ""
        return f"{self.code} ({self.severity}): {self.count:,} of {self.events:,} {self.what}{share}{example}"


@dataclass(frozen=True)
class PixelLine:
    pixel_id: str
    name: str
    mark: Mark
    server: Level
    browser: Level
    emq: float | None = None
    incidents: list[OpenIncident] = field(default_factory=list)
    fixes: list[WaitingFix] = field(default_factory=list)
    note: str | None = None  # why not judged / that the audit failed
    payload: list[PayloadNote] = field(default_factory=list)

    @property
    def has_open(self) -> bool:
        return bool(self.incidents or self.fixes)


@dataclass(frozen=True)
class Summary:
    kind: Literal["hourly", "daily"]
    window_start: str  # ISO, UTC
    window_end: str
    timezone: str
    pixels: list[PixelLine]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Summary:
        pixels = [PixelLine(
            pixel_id=p["pixel_id"], name=p.get("name", ""), mark=p["mark"], server=Level(**p["server"]),
            browser=Level(**p["browser"]), emq=p.get("emq"),
            incidents=[OpenIncident(**i) for i in p.get("incidents", [])],
            fixes=[WaitingFix(**f) for f in p.get("fixes", [])], note=p.get("note"),
            payload=[PayloadNote(**n) for n in p.get("payload", [])]) for p in body["pixels"]]
        return cls(kind=body["kind"], window_start=body["window_start"], window_end=body["window_end"],
                   timezone=body.get("timezone", "UTC"), pixels=pixels)


def ordered(pixels: Sequence[PixelLine]) -> list[PixelLine]:
    """Pixels with something open first, then by how bad their mark is, then by id."""
    return sorted(pixels, key=lambda p: (not p.has_open, MARK_ORDER[p.mark], p.pixel_id))


def pixel_mark(*, audited: bool, failed: bool, critical: int, warning: int, no_data: bool,
               all_not_judged: bool) -> Mark:
    """The status mark of a pixel for a window (see the README for what each one means)."""
    if not audited:
        return "audit_failed" if failed else "not_judged"
    if critical:
        return "critical"
    if warning:
        return "warning"
    if no_data or all_not_judged:
        return "not_judged"
    return "healthy"


def counts_line(pixel: PixelLine) -> str:
    """``server 0 (usual 129) · browser 78 (usual 80) · EMQ 6.2``: the numbers of one pixel."""
    parts = [f"{name} {level.count:,}{_usual(level)}" for name, level in
             (("server", pixel.server), ("browser", pixel.browser))]
    parts.append(f"EMQ {pixel.emq:.1f}" if pixel.emq is not None else "EMQ n/a")
    return " · ".join(parts)


def _usual(level: Level) -> str:
    if level.usual is None:
        return " (no usual level yet)"
    return f" (usual {level.usual:,.0f})"
