"""Selecting what a fix sends: the window, Meta's 7-day limit, and which undelivered ledger events a
resending kind takes (``select_events``) and why it leaves others out.

Shared by the kinds (``tools/fixes/kinds/``) at planning time (the preview) and again at send time,
so that an event delivered in between, or grown too old, is never sent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.fixes.types import FixParams
from tools.ledger.bulk import chunked
from tools.ledger.db import by_name
from tools.ledger.models import Event
from tools.timeutil import META_MAX_EVENT_AGE, as_utc, parse_iso

# Meta rejects the whole request if one event is older than 7 days; keep a margin for the time
# the request takes to be built and travel.
SEND_MARGIN = timedelta(minutes=5)
_COLUMNS = (col(Event.id), col(Event.event_name), col(Event.event_time), col(Event.delivery_status),
            col(Event.last_error_code), col(Event.last_error_subcode),
            col(Event.payload).is_not(None).label("has_payload"))


@dataclass(frozen=True)
class Candidate:
    """One item a fix would send: a ledger event row, or (backfill) an order row with its own id,
    value and currency, which the preview lists."""

    id: int
    event_name: str
    event_time: datetime
    ref: str | None = None
    value: float | None = None
    currency: str | None = None


@dataclass
class Selection:
    """The events a fix would send, in (event_time, id) order, and skipped events by reason."""

    since: datetime
    until: datetime
    eligible: list[Candidate] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def too_old_cutoff(now: datetime) -> datetime:
    """Events with an event_time before this must not be sent at ``now``."""
    return as_utc(now) - META_MAX_EVENT_AGE + SEND_MARGIN


def resolve_window(params: FixParams, at: datetime) -> tuple[datetime, datetime]:
    """[since, until) of event_time; missing ends: the last 7 days before ``at``."""
    until = parse_iso(params.until) if params.until else as_utc(at)
    since = parse_iso(params.since) if params.since else as_utc(at) - META_MAX_EVENT_AGE
    return since, until


def skip_reason(row: Mapping[str, Any], *, params: FixParams, cutoff: datetime,
                row_skip: Callable[[Mapping[str, Any]], str | None] | None = None) -> str | None:
    """Why this event must not be sent now (None: send it)."""
    if row["delivery_status"] == "delivered":
        return "already_delivered"
    if row["delivery_status"] not in params.statuses:
        return "status_not_selected"
    own = row_skip(row) if row_skip is not None else None
    if own is not None:
        return own
    if as_utc(row["event_time"]) < cutoff:
        return "too_old"
    if not row["has_payload"]:
        return "no_payload"
    return None


def select_events(session: Session, *, pixel_id: str, params: FixParams, at: datetime,
                  row_skip: Callable[[Mapping[str, Any]], str | None] | None = None) -> Selection:
    """Events of the window (names, statuses) a fix sends "at" this time, and the ones it skips.
    ``row_skip``: the kind's own reason to leave an undelivered event out (None: send it)."""
    since, until = resolve_window(params, at)
    selection = Selection(since=since, until=until)
    window = [col(Event.pixel_id) == pixel_id, col(Event.event_time) >= since, col(Event.event_time) < until]
    if params.event_names:
        window.append(col(Event.event_name).in_(params.event_names))
    delivered = session.scalar(select(func.count()).select_from(Event).where(
        *window, col(Event.delivery_status) == "delivered")) or 0
    if delivered:
        selection.skipped["already_delivered"] = int(delivered)
    query = (select(*_COLUMNS).where(*window, col(Event.delivery_status).in_(params.statuses))
             .order_by(col(Event.event_time), col(Event.id)))
    cutoff = too_old_cutoff(at)
    for row in session.execute(query):
        reason = skip_reason(by_name(row), params=params, cutoff=cutoff, row_skip=row_skip)
        if reason is None:
            selection.eligible.append(Candidate(row.id, row.event_name, as_utc(row.event_time)))
        else:
            selection.skipped[reason] += 1
    return selection


def current_rows(session: Session, *, pixel_id: str, event_ids: Sequence[int]) -> list[Mapping[str, Any]]:
    """The journal's events as the ledger holds them now (status, errors, payload presence)."""
    rows: list[Mapping[str, Any]] = []
    for chunk in chunked(list(event_ids)):
        query = select(*_COLUMNS).where(col(Event.pixel_id) == pixel_id, col(Event.id).in_(chunk))
        rows.extend(by_name(row) for row in session.execute(query))
    order = {event_id: index for index, event_id in enumerate(event_ids)}
    return sorted(rows, key=lambda row: order[row["id"]])


def load_payloads(session: Session, event_ids: Iterable[int]) -> dict[int, dict[str, Any] | None]:
    out: dict[int, dict[str, Any] | None] = {}
    for chunk in chunked(list(event_ids)):
        query = select(col(Event.id), col(Event.payload)).where(col(Event.id).in_(chunk))
        out.update((row.id, row.payload) for row in session.execute(query))
    return out


def iter_payloads(session: Session, event_ids: Sequence[int], size: int = 1000
                  ) -> Iterator[tuple[int, dict[str, Any] | None]]:
    for start in range(0, len(event_ids), size):
        part = event_ids[start:start + size]
        payloads = load_payloads(session, part)
        for event_id in part:
            yield event_id, payloads.get(event_id)
