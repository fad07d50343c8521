"""The preview of a fix: what it would send, by event name and hour, how many requests, what it must
skip and why, and which parameters it changes. A pure read of the ledger."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tools.fixes.rehash import pixel_default_country, relay_mode
from tools.fixes.replay import iter_payloads, payload_to_send, select_events
from tools.fixes.types import (
    RUNNABLE_KINDS,
    EventHourCount,
    FixParams,
    FixPreview,
    ParameterChange,
    SkipCount,
)
from tools.meta.client import MAX_EVENTS_PER_REQUEST
from tools.timeutil import floor_hour


def parse_params(kind: str, params: dict[str, Any]) -> FixParams:
    """Validated parameters for a runnable fix kind (ValueError otherwise)."""
    if kind not in RUNNABLE_KINDS:
        raise ValueError(f"{kind!r} fixes are done by a person, not executed")
    parsed = FixParams.model_validate(params)
    if kind == "repair_and_replay" and not parsed.parameter:
        parsed = parsed.model_copy(update={"parameter": "fbc"})
    return parsed


def build_preview(session: Session, *, pixel_id: str, kind: str, params: dict[str, Any], at: datetime,
                  batch_size: int = MAX_EVENTS_PER_REQUEST) -> FixPreview:
    """What executing this fix "at" this time would do. Reads only; writes nothing."""
    parsed = parse_params(kind, params)
    selection = select_events(session, pixel_id=pixel_id, kind=kind, params=parsed, at=at)
    hours: Counter[tuple[str, datetime]] = Counter(
        (candidate.event_name, floor_hour(candidate.event_time)) for candidate in selection.eligible)
    changes: Counter[tuple[str, str]] = Counter()
    if kind != "replay":
        country = pixel_default_country(session, pixel_id)
        for _, payload in iter_payloads(session, [c.id for c in selection.eligible]):
            if payload is not None:
                _, changed = payload_to_send(kind, parsed, payload, default_country=country)
                changes.update(changed.items())
    change_list = [ParameterChange(parameter=name, action=action, count=count)
                   for (name, action), count in sorted(changes.items())]
    if kind == "rehash" and relay_mode(session, pixel_id) != "repair":
        change_list.insert(0, ParameterChange(parameter="relay_mode", action="set_repair", count=1))
    total = len(selection.eligible)
    return FixPreview(
        kind=kind,  # type: ignore[arg-type]
        pixel_id=pixel_id, since=selection.since, until=selection.until,
        event_names=sorted(parsed.event_names), total_events=total,
        requests=math.ceil(total / batch_size) if total else 0,
        by_event_hour=[EventHourCount(event_name=name, hour=hour, count=count)
                       for (name, hour), count in sorted(hours.items(), key=_by_hour)],
        skipped=[SkipCount(reason=reason, count=count)
                 for reason, count in sorted(selection.skipped.items())],
        changes=change_list,
    )


def _by_hour(item: tuple[tuple[str, datetime], int]) -> tuple[datetime, str]:
    (name, hour), _ = item
    return hour, name
