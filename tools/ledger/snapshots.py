"""Snapshots of what Meta reported (pixel stats, dataset quality), each kept with its fetch time.

Bodies are stored as the typed dataclasses of ``tools.checks.types`` turned into JSON, so that
reading them back gives exactly what the Graph API client produced.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import insert, select
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.checks.types import DedupeKeyFeedback, EventQuality, MetaHourlyCount, QualitySnapshot
from tools.ledger.models import MetaSnapshot, table_of
from tools.timeutil import as_utc, parse_iso, to_iso

SnapshotKind = Literal["stats", "dataset_quality"]


def save_snapshot(session: Session, *, pixel_id: str, kind: SnapshotKind, fetched_at: datetime,
                  body: dict[str, Any], window_start: datetime | None = None,
                  window_end: datetime | None = None) -> int:
    """Store one read of Meta (a JSON body); returns the snapshot id. No commit."""
    row = {"pixel_id": pixel_id, "kind": kind, "fetched_at": as_utc(fetched_at), "body": body,
           "window_start": None if window_start is None else as_utc(window_start),
           "window_end": None if window_end is None else as_utc(window_end)}
    table = table_of(MetaSnapshot)
    return int(session.execute(insert(table).returning(table.c.id), [row]).scalar_one())


def quality_to_json(snapshot: QualitySnapshot) -> dict[str, Any]:
    return {"fetched_at": to_iso(snapshot.fetched_at), "events": [asdict(e) for e in snapshot.events]}


def quality_from_json(body: dict[str, Any]) -> QualitySnapshot:
    events = []
    for item in body.get("events", []):
        feedback = tuple(DedupeKeyFeedback(**fb) for fb in item.get("dedupe_key_feedback", ()))
        events.append(EventQuality(**{**item, "dedupe_key_feedback": feedback}))
    return QualitySnapshot(fetched_at=parse_iso(body["fetched_at"]), events=tuple(events))


def save_quality_snapshot(session: Session, *, pixel_id: str, snapshot: QualitySnapshot) -> int:
    return save_snapshot(session, pixel_id=pixel_id, kind="dataset_quality",
                         fetched_at=snapshot.fetched_at, body=quality_to_json(snapshot))


def load_quality_history(session: Session, *, pixel_id: str, since: datetime,
                         until: datetime) -> tuple[QualitySnapshot, ...]:
    """Dataset-quality snapshots fetched in [since, until), oldest first."""
    query = (select(col(MetaSnapshot.body)).where(
        col(MetaSnapshot.pixel_id) == pixel_id, col(MetaSnapshot.kind) == "dataset_quality",
        col(MetaSnapshot.fetched_at) >= as_utc(since), col(MetaSnapshot.fetched_at) < as_utc(until))
        .order_by(col(MetaSnapshot.fetched_at), col(MetaSnapshot.id)))
    return tuple(quality_from_json(body) for body in session.scalars(query))


def save_meta_counts(session: Session, *, pixel_id: str, counts: tuple[MetaHourlyCount, ...] | list[
        MetaHourlyCount], fetched_at: datetime, window_start: datetime, window_end: datetime) -> int:
    """Store one read of ``/{pixel}/stats`` (hourly counts per event and source)."""
    body = {"counts": [{"hour": to_iso(c.hour), "event_name": c.event_name, "source": c.source,
                        "count": c.count} for c in counts]}
    return save_snapshot(session, pixel_id=pixel_id, kind="stats", fetched_at=fetched_at, body=body,
                         window_start=window_start, window_end=window_end)


def load_meta_counts(session: Session, *, pixel_id: str, start: datetime,
                     end: datetime) -> tuple[MetaHourlyCount, ...]:
    """Hourly Meta counts in [start, end); where snapshots overlap, the latest fetch wins."""
    query = (select(col(MetaSnapshot.body)).where(
        col(MetaSnapshot.pixel_id) == pixel_id, col(MetaSnapshot.kind) == "stats",
        col(MetaSnapshot.window_end) > as_utc(start), col(MetaSnapshot.window_start) < as_utc(end))
        .order_by(col(MetaSnapshot.fetched_at), col(MetaSnapshot.id)))
    latest: dict[tuple[datetime, str, str], int] = {}
    start, end = as_utc(start), as_utc(end)
    hours: dict[str, datetime] = {}  # overlapping snapshots repeat the same hours: parse each once
    for body in session.scalars(query):
        for item in body.get("counts", []):
            text = item["hour"]
            hour = hours.get(text)
            if hour is None:
                hour = hours[text] = parse_iso(text)
            if start <= hour < end:
                latest[(hour, item["event_name"], item["source"])] = int(item["count"])
    # Positional arguments: half the cost of keywords on the thousands of counts of 4 weeks.
    return tuple(MetaHourlyCount(h, n, s, c)  # type: ignore[arg-type]
                 for (h, n, s), c in sorted(latest.items()))
