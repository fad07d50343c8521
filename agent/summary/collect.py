"""One pixel's window, read from the ledger: its audits, Meta's counts, EMQ, open incidents, fixes.

Reads only aggregates (rollups, Meta's stats and quality snapshots, the agent's own audits and
incidents), never events: a summary cannot carry customer information because it never sees any.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from agent.summary.levels import usual_level, window_total
from agent.summary.model import (
    Level,
    OpenIncident,
    PayloadNote,
    PixelLine,
    Summary,
    WaitingFix,
    ordered,
    pixel_mark,
)
from tools.diagnosis.catalogue import cause_info
from tools.fixes.planner import list_proposals
from tools.ledger.models import Audit, FindingRow, IncidentRow
from tools.ledger.pixels import PixelConfig
from tools.ledger.snapshots import load_meta_counts, load_quality_history
from tools.schedule.claims import AuditClaim
from tools.timeutil import HOUR, as_utc, to_iso

LOOKBACK_WEEKS = 4
EMQ_LOOKBACK = timedelta(days=2)


def latest_audits(session: Session, *, pixel_id: str, start: datetime, end: datetime) -> list[Audit]:
    """The last audit of each hour ending in (start, end], oldest hour first."""
    rows = session.scalars(select(Audit).where(
        col(Audit.pixel_id) == pixel_id, col(Audit.window_end) > as_utc(start),
        col(Audit.window_end) <= as_utc(end))
        .order_by(col(Audit.window_end), col(Audit.id)))
    by_hour: dict[datetime, Audit] = {}
    for row in rows:
        by_hour[as_utc(row.window_end)] = row
    return [by_hour[hour] for hour in sorted(by_hour)]


def failed_hours(session: Session, *, pixel_id: str, start: datetime, end: datetime) -> list[datetime]:
    """Hours ending in (start, end] whose scheduled audit failed (the claim says so)."""
    return [as_utc(end_) for end_ in session.scalars(select(col(AuditClaim.window_end)).where(
        col(AuditClaim.pixel_id) == pixel_id, col(AuditClaim.status) == "failed",
        col(AuditClaim.window_end) > as_utc(start), col(AuditClaim.window_end) <= as_utc(end)))]


def not_judged_of(result: dict[str, Any] | None, pixel_id: str) -> list[dict[str, Any]]:
    """The series an audit found too thin to judge, wherever the audit result carries them (the key
    is optional: older audits have none)."""
    if not result:
        return []
    items = result.get("not_judged")
    if items is None:
        entry: dict[str, Any] = next(
            (p for p in result.get("pixels", []) if p.get("pixel_id") == pixel_id), {})
        items = entry.get("not_judged")
    return [item for item in items or [] if isinstance(item, dict)]


def _title(root_cause: str) -> str:
    try:
        return cause_info(root_cause).title
    except KeyError:  # a cause from a newer catalogue: its code says enough
        return root_cause


def open_at(session: Session, *, pixel_id: str, at: datetime) -> list[OpenIncident]:
    """Incidents of the pixel open at ``at`` (opened by then and not resolved by then), worst first."""
    rows = session.scalars(select(IncidentRow).where(
        col(IncidentRow.pixel_id) == pixel_id, col(IncidentRow.opened_at) <= as_utc(at),
        or_(col(IncidentRow.resolved_at).is_(None), col(IncidentRow.resolved_at) > as_utc(at)))
        .order_by(col(IncidentRow.opened_at), col(IncidentRow.id)))
    incidents = [OpenIncident(id=row.id, root_cause=row.root_cause, title=_title(row.root_cause),
                              severity=row.severity) for row in rows]
    return sorted(incidents, key=lambda i: (i.severity != "critical", i.severity != "warning", i.id))


def mean_emq(session: Session, *, pixel_id: str, end: datetime) -> float | None:
    """Mean Event Match Quality over events in the latest quality snapshot read by ``end``."""
    history = load_quality_history(session, pixel_id=pixel_id, since=end - EMQ_LOOKBACK, until=end + HOUR)
    if not history:
        return None
    scores = [e.composite_score for e in history[-1].events if e.composite_score is not None]
    return round(sum(scores) / len(scores), 1) if scores else None


PAYLOAD_PREFIX = "payload."
# What a payload finding's ``events`` counts, from the words of its summary (tools.checks.payload_quality).
_COUNTED = ("server events with an IP address", "Purchase events", "website events", "server events")


def _counted(summary: str) -> str:
    return next((words for words in _COUNTED if f" {words} " in summary), "events")


def payload_notes(session: Session, audits: Sequence[Audit]) -> list[PayloadNote]:
    """The window's ``payload.*`` findings, one per code as its latest audit had it, worst first."""
    if not audits:
        return []
    rows = session.execute(select(col(FindingRow.audit_id), col(FindingRow.code), col(FindingRow.body)).where(
        col(FindingRow.audit_id).in_([a.id for a in audits]),
        col(FindingRow.code).startswith(PAYLOAD_PREFIX)).order_by(col(FindingRow.id)))
    order = {a.id: i for i, a in enumerate(audits)}
    latest: dict[str, tuple[int, dict[str, Any]]] = {}
    for audit_id, code, body in rows:
        rank = order.get(audit_id, -1)
        if code not in latest or rank >= latest[code][0]:
            latest[code] = (rank, body)
    notes = []
    for code, (_, body) in latest.items():
        metrics = body.get("metrics") or {}
        example = next((line.removeprefix("example: ") for line in body.get("evidence") or []
                        if line.startswith("example: ")), None)
        notes.append(PayloadNote(code=code, severity=str(body.get("severity", "info")),
                                 count=int(metrics.get("count") or 0), events=int(metrics.get("events") or 0),
                                 what=_counted(str(body.get("summary", ""))), example=example))
    return sorted(notes, key=lambda n: (n.severity != "critical", n.severity != "warning", n.code))


def pixel_line(session: Session, *, pixel: PixelConfig, start: datetime, end: datetime) -> PixelLine:
    """The summary line of one pixel for the window [start, end)."""
    start, end = as_utc(start), as_utc(end)
    counts = load_meta_counts(session, pixel_id=pixel.id, start=start - LOOKBACK_WEEKS * timedelta(days=7),
                              end=end)
    hourly: dict[str, dict[datetime, float]] = defaultdict(dict)
    series: set[tuple[str, str]] = set()
    for count in counts:
        bucket = hourly[count.source]
        bucket[count.hour] = bucket.get(count.hour, 0.0) + count.count
        if count.count:
            series.add((count.event_name, count.source))
    since = min((c.hour for c in counts), default=None)
    levels = {}
    for source in ("server", "browser"):
        usual = usual_level(hourly[source], start=start, end=end, since=since)
        levels[source] = Level(count=int(window_total(hourly[source], start, end)),
                               usual=round(usual.value, 1) if usual else None,
                               basis=usual.basis if usual else None)

    audits = latest_audits(session, pixel_id=pixel.id, start=start, end=end)
    audited = {as_utc(a.window_end) for a in audits}
    failed = [hour for hour in failed_hours(session, pixel_id=pixel.id, start=start, end=end)
              if hour not in audited]
    errored = [a for a in audits if a.status == "error"]
    judged = [a for a in audits if a.status != "error"]
    thin = [not_judged_of(a.result, pixel.id) for a in judged]
    covered = [{(i.get("event_name"), i.get("source")) for i in items} for items in thin]
    all_not_judged = bool(judged) and all(items and series <= cover for items, cover in zip(thin, covered,
                                                                                            strict=True))
    mark = pixel_mark(audited=bool(judged), failed=bool(failed or errored),
                      critical=sum(a.critical for a in judged), warning=sum(a.warning for a in judged),
                      no_data=not series, all_not_judged=all_not_judged)
    note = None
    if mark == "audit_failed":
        failures = len(failed) + len(errored)
        note = "the audit of this hour failed" if failures == 1 else f"{failures} audits failed"
    elif mark == "not_judged":
        note = ("not audited" if not judged else "no events yet" if not series
                else "too few events to judge")
    incidents = open_at(session, pixel_id=pixel.id, at=end)
    fixes = [WaitingFix(id=p.id, kind=p.kind, incident_id=p.incident_id, total_events=p.preview.total_events)
             for p in list_proposals(session, pixel_id=pixel.id, status="proposed")
             if as_utc(p.created_at) <= end + HOUR]
    return PixelLine(pixel_id=pixel.id, name=pixel.name, mark=mark, server=levels["server"],
                     browser=levels["browser"], emq=mean_emq(session, pixel_id=pixel.id, end=end),
                     incidents=incidents, fixes=fixes, note=note, payload=payload_notes(session, judged))


def build_summary(session: Session, *, pixels: Sequence[PixelConfig], start: datetime, end: datetime,
                  timezone: str = "UTC") -> Summary:
    """The summary of [start, end) over ``pixels`` (hourly for one hour, daily for a day)."""
    lines = ordered([pixel_line(session, pixel=pixel, start=start, end=end) for pixel in pixels])
    kind: Literal["hourly", "daily"] = "hourly" if as_utc(end) - as_utc(start) <= HOUR else "daily"
    return Summary(kind=kind, window_start=to_iso(start), window_end=to_iso(end), timezone=timezone,
                   pixels=lines)


def latest_hour(session: Session, *, pixel_ids: Sequence[str], at: datetime | None = None) -> datetime | None:
    """End of the latest hour audited for any of ``pixel_ids`` (up to ``at``)."""
    if not pixel_ids:
        return None
    query = select(func.max(col(Audit.window_end))).where(col(Audit.pixel_id).in_(list(pixel_ids)))
    if at is not None:
        query = query.where(col(Audit.window_end) <= as_utc(at))
    end = session.scalar(query)
    return as_utc(end) if end is not None else None
