"""The weekly agency view: every pixel's week in one report, worst first.

Read only from what the ledger stores about a pixel (Meta's hourly counts and Dataset Quality reads
kept as snapshots, the agent's audits, incidents and fix proposals with their trail), never from
events, so the report cannot carry customer information.

Per pixel and local day of the week:

* **coverage**: Meta's *event coverage* (Dataset Quality API: server events as a share of the
  browser's, capped at 100 %), the mean over the events of the day's last read that carries it; on
  a day without such a read, the same formula over Meta's counts of that day;
* **EMQ**: the mean Event Match Quality of the day's last Dataset Quality read;
* **server/browser ratio**: the day's server events over its browser events, as Meta counted them.

**Worst first** (``worst_key``): open incidents at the end of the week by severity (critical, then
warning), then the audited hours of the week with a warning or critical finding, then hours whose
audit failed, then pixels of which Meta counted no event that week (silence is suspicious), then the drop in
coverage against the week before (in points), then the pixel id.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from agent.summary.collect import failed_hours, latest_audits
from tools.checks.types import QualitySnapshot
from tools.diagnosis.catalogue import cause_info
from tools.fixes.models import FixProposalRow, FixTrailRow
from tools.ledger.models import IncidentRow
from tools.ledger.pixels import PixelConfig
from tools.ledger.snapshots import load_meta_counts, load_quality_history
from tools.timeutil import as_utc, parse_iso, to_iso

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAYS = 7
APPLIED_ACTIONS = ("executed", "failed")  # trail entries that end a fix run


@dataclass(frozen=True)
class DayPoint:
    day: str  # local date, ISO
    server: int
    browser: int
    ratio: float | None  # server / browser; None without browser events
    coverage: float | None  # percent, 0..100
    coverage_source: str | None  # "meta" (Dataset Quality) | "counts" | None
    emq: float | None


@dataclass(frozen=True)
class WeekIncident:
    id: str
    root_cause: str
    title: str
    severity: str
    opened_at: str


@dataclass(frozen=True)
class AppliedFix:
    id: str
    kind: str
    status: str  # executed | failed
    at: str
    approved_by: str | None
    incident_id: str | None
    sent: int
    received: int
    resolved: bool | None  # the verification's verdict (None: not verified)


@dataclass(frozen=True)
class PixelWeek:
    pixel_id: str
    name: str
    days: list[DayPoint]
    server: int
    browser: int
    ratio: float | None
    coverage: float | None  # mean of the days that have one
    previous_coverage: float | None  # the week before, the same way
    emq: float | None  # the last day with a read
    hours_audited: int
    hours_with_incidents: int
    hours_failed: int
    open_incidents: list[WeekIncident] = field(default_factory=list)
    opened: int = 0  # incidents opened during the week
    resolved: int = 0  # incidents resolved during the week
    fixes: list[AppliedFix] = field(default_factory=list)

    @property
    def has_data(self) -> bool:
        """Did Meta count any event of the pixel this week? (Audits of a silent pixel are no data.)"""
        return bool(self.server or self.browser)

    @property
    def coverage_drop(self) -> float | None:
        """Points of coverage lost against the week before (negative: gained)."""
        if self.coverage is None or self.previous_coverage is None:
            return None
        return round(self.previous_coverage - self.coverage, 1)

    def count_open(self, severity: str) -> int:
        return sum(i.severity == severity for i in self.open_incidents)

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["has_data"] = self.has_data
        body["coverage_drop"] = self.coverage_drop
        return body


@dataclass(frozen=True)
class WeeklyReport:
    week_start: str  # ISO, UTC
    week_end: str
    timezone: str
    pixels: list[PixelWeek]  # worst first

    def to_json(self) -> dict[str, Any]:
        return {"week_start": self.week_start, "week_end": self.week_end, "timezone": self.timezone,
                "order": "open incidents (critical, then warning), hours with incidents, failed audit "
                         "hours, no data, coverage drop vs the week before, pixel id",
                "pixels": [p.to_json() for p in self.pixels]}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> WeeklyReport:
        pixels = []
        for p in body["pixels"]:
            fields = {k: v for k, v in p.items() if k not in ("has_data", "coverage_drop")}
            fields["days"] = [DayPoint(**d) for d in p["days"]]
            fields["open_incidents"] = [WeekIncident(**i) for i in p["open_incidents"]]
            fields["fixes"] = [AppliedFix(**f) for f in p["fixes"]]
            pixels.append(PixelWeek(**fields))
        return cls(week_start=body["week_start"], week_end=body["week_end"], timezone=body["timezone"],
                   pixels=pixels)


def worst_key(pixel: PixelWeek) -> tuple:
    """Sort key, worst first (the order is documented in the module docstring and the README)."""
    drop = pixel.coverage_drop
    return (-pixel.count_open("critical"), -pixel.count_open("warning"), -pixel.hours_with_incidents,
            -pixel.hours_failed, pixel.has_data, -(drop if drop is not None else 0.0), pixel.pixel_id)


# --- the week's bounds ------------------------------------------------------------------------------

def week_end_at(now: datetime, *, timezone: str, weekday: str = "mon", hour: int = 9) -> datetime:
    """The latest ``weekday`` ``hour``:00 local at or before ``now`` (UTC): when a weekly report is due."""
    zone = ZoneInfo(timezone)
    local = as_utc(now).astimezone(zone)
    back = (local.weekday() - WEEKDAYS.index(weekday)) % DAYS
    day = local.date() - timedelta(days=back)
    candidate = datetime(day.year, day.month, day.day, hour, tzinfo=zone)
    if as_utc(candidate) > as_utc(now):
        day -= timedelta(days=DAYS)
        candidate = datetime(day.year, day.month, day.day, hour, tzinfo=zone)
    return as_utc(candidate)


def local_days(end: datetime, timezone: str) -> list[tuple[date, datetime, datetime]]:
    """The seven local days (date, start UTC, end UTC) of the week that ends at ``end``; each runs
    from the report's hour to the same hour the next day, so a DST change keeps whole days."""
    zone = ZoneInfo(timezone)
    local_end = as_utc(end).astimezone(zone)
    days = []
    for n in range(DAYS, 0, -1):
        start_day = (local_end - timedelta(days=n)).date()
        end_day = start_day + timedelta(days=1)
        start = datetime(start_day.year, start_day.month, start_day.day, local_end.hour, tzinfo=zone)
        stop = datetime(end_day.year, end_day.month, end_day.day, local_end.hour, tzinfo=zone)
        days.append((start_day, as_utc(start), as_utc(stop)))
    return days


# --- reading the ledger -----------------------------------------------------------------------------

def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def _day_index(days: list[tuple[date, datetime, datetime]], at: datetime) -> int | None:
    return next((index for index, (_, start, end) in enumerate(days) if start <= at < end), None)


def _day_points(session: Session, pixel_id: str, days: list[tuple[date, datetime, datetime]]) -> list[DayPoint]:
    """One point per day of ``days`` (any number of consecutive days, read in two queries)."""
    start, end = days[0][1], days[-1][2]
    totals: dict[int, dict[str, int]] = defaultdict(lambda: {"server": 0, "browser": 0})
    for count in load_meta_counts(session, pixel_id=pixel_id, start=start, end=end):
        index = _day_index(days, count.hour)
        if index is not None:
            totals[index][count.source] += count.count
    reads: dict[int, QualitySnapshot] = {}
    for read in load_quality_history(session, pixel_id=pixel_id, since=start, until=end):
        index = _day_index(days, as_utc(read.fetched_at))
        if index is not None:
            reads[index] = read  # oldest first: the day's last read wins
    points = []
    for index, (day, _, _) in enumerate(days):
        server, browser = totals[index]["server"], totals[index]["browser"]
        ratio = round(server / browser, 3) if browser else None
        snapshot = reads.get(index)
        meta_coverage = _mean([e.event_coverage_pct for e in snapshot.events
                               if e.event_coverage_pct is not None]) if snapshot else None
        coverage, source = (meta_coverage, "meta") if meta_coverage is not None else (
            (round(min(100.0, 100.0 * server / browser), 1), "counts") if browser else (None, None))
        emq = _mean([e.composite_score for e in snapshot.events
                     if e.composite_score is not None]) if snapshot else None
        points.append(DayPoint(day=day.isoformat(), server=server, browser=browser, ratio=ratio,
                               coverage=coverage, coverage_source=source, emq=emq))
    return points


def _title(root_cause: str) -> str:
    try:
        return cause_info(root_cause).title
    except KeyError:  # a cause from a newer catalogue: its code says enough
        return root_cause


def _incidents(session: Session, pixel_id: str, start: datetime, end: datetime
               ) -> tuple[list[WeekIncident], int, int]:
    """(open at ``end`` worst first, opened during the week, resolved during the week)."""
    rows = session.scalars(select(IncidentRow).where(  # those the week saw: not resolved before it
        col(IncidentRow.pixel_id) == pixel_id, col(IncidentRow.opened_at) < end,
        or_(col(IncidentRow.resolved_at).is_(None), col(IncidentRow.resolved_at) >= start))
        .order_by(col(IncidentRow.opened_at), col(IncidentRow.id))).all()
    still_open = [r for r in rows if r.resolved_at is None or as_utc(r.resolved_at) >= end]
    opened = sum(start <= as_utc(r.opened_at) for r in rows)
    resolved = sum(r.resolved_at is not None and start <= as_utc(r.resolved_at) < end for r in rows)
    incidents = [WeekIncident(id=r.id, root_cause=r.root_cause, title=_title(r.root_cause), severity=r.severity,
                              opened_at=to_iso(r.opened_at)) for r in still_open]
    rank = {"critical": 0, "warning": 1}
    return sorted(incidents, key=lambda i: (rank.get(i.severity, 2), i.opened_at, i.id)), opened, resolved


def _fixes(session: Session, pixel_id: str, start: datetime, end: datetime) -> list[AppliedFix]:
    """Fix runs that ended during the week (the trail's ``executed`` / ``failed`` entries)."""
    rows = session.execute(select(FixTrailRow, FixProposalRow).join(
        FixProposalRow, col(FixProposalRow.id) == col(FixTrailRow.proposal_id)).where(
        col(FixProposalRow.pixel_id) == pixel_id, col(FixTrailRow.action).in_(APPLIED_ACTIONS),
        col(FixTrailRow.at) >= start, col(FixTrailRow.at) < end)
        .order_by(col(FixTrailRow.at), col(FixTrailRow.id))).all()
    fixes = []
    for entry, proposal in rows:
        detail = entry.detail or {}
        verification = proposal.verification or {}
        fixes.append(AppliedFix(id=proposal.id, kind=proposal.kind, status=entry.action, at=to_iso(entry.at),
                                approved_by=proposal.decided_by, incident_id=proposal.incident_id,
                                sent=int(detail.get("sent", 0)), received=int(detail.get("received", 0)),
                                resolved=verification.get("resolved") if verification else None))
    return fixes


def pixel_week(session: Session, *, pixel: PixelConfig, end: datetime, timezone: str) -> PixelWeek:
    """One pixel's week ending at ``end`` (days in ``timezone``), with the week before for the drop."""
    days = local_days(end, timezone)
    start = days[0][1]
    both = _day_points(session, pixel.id, local_days(start, timezone) + days)  # the week before, then this one
    previous, points = both[:DAYS], both[DAYS:]
    audits = latest_audits(session, pixel_id=pixel.id, start=start, end=end)
    audited = {as_utc(a.window_end) for a in audits}
    failed = [h for h in failed_hours(session, pixel_id=pixel.id, start=start, end=end) if h not in audited]
    errored = [a for a in audits if a.status == "error"]
    judged = [a for a in audits if a.status != "error"]
    open_incidents, opened, resolved = _incidents(session, pixel.id, start, end)
    server, browser = sum(p.server for p in points), sum(p.browser for p in points)
    emq = next((p.emq for p in reversed(points) if p.emq is not None), None)
    return PixelWeek(
        pixel_id=pixel.id, name=pixel.name, days=points, server=server, browser=browser,
        ratio=round(server / browser, 3) if browser else None,
        coverage=_mean([p.coverage for p in points if p.coverage is not None]),
        previous_coverage=_mean([p.coverage for p in previous if p.coverage is not None]),
        emq=emq, hours_audited=len(judged), hours_with_incidents=sum(bool(a.critical or a.warning) for a in judged),
        hours_failed=len(failed) + len(errored), open_incidents=open_incidents, opened=opened,
        resolved=resolved, fixes=_fixes(session, pixel.id, start, end))


def build_weekly(session: Session, *, pixels: Sequence[PixelConfig], end: datetime,
                 timezone: str = "UTC") -> WeeklyReport:
    """The report of the week ending at ``end`` over ``pixels``, worst first."""
    end = as_utc(end)
    start = local_days(end, timezone)[0][1]
    weeks = sorted((pixel_week(session, pixel=p, end=end, timezone=timezone) for p in pixels), key=worst_key)
    return WeeklyReport(week_start=to_iso(start), week_end=to_iso(end), timezone=timezone, pixels=weeks)


def week_label(report: WeeklyReport) -> str:
    """``Mon 23 Nov 09:00 → Mon 30 Nov 09:00 (Europe/London)``."""
    zone = ZoneInfo(report.timezone)
    start = parse_iso(report.week_start).astimezone(zone)
    end = parse_iso(report.week_end).astimezone(zone)
    return f"{start:%a %d %b %H:%M} → {end:%a %d %b %Y %H:%M} ({report.timezone})"
