"""The preview of a fix: what it would send, by event name and hour, how many requests, what it must
skip and why, which parameters it changes and, for kinds that send the shop's records, which ones and
their value. A pure read of the ledger; the kind (``tools/fixes/registry.py``) does the selecting."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tools.fixes.registry import fix_kind
from tools.fixes.rehash import pixel_default_country
from tools.fixes.types import MAX_PREVIEW_REFS, EventHourCount, FixParams, FixPreview, SkipCount
from tools.meta.client import MAX_EVENTS_PER_REQUEST
from tools.timeutil import floor_hour


def parse_params(kind: str, params: dict[str, Any]) -> FixParams:
    """Validated parameters for a runnable fix kind (ValueError otherwise)."""
    return fix_kind(kind).parse_params(params)


def build_preview(session: Session, *, pixel_id: str, kind: str, params: dict[str, Any], at: datetime,
                  batch_size: int = MAX_EVENTS_PER_REQUEST) -> FixPreview:
    """What executing this fix "at" this time would do. Reads only; writes nothing."""
    spec = fix_kind(kind)
    parsed = spec.parse_params(params)
    selection = spec.select(session, pixel_id=pixel_id, params=parsed, at=at)
    hours: Counter[tuple[str, datetime]] = Counter(
        (candidate.event_name, floor_hour(candidate.event_time)) for candidate in selection.eligible)
    values: dict[str, float] = {}
    for candidate in selection.eligible:
        if candidate.value is not None:
            currency = candidate.currency or "?"
            values[currency] = values.get(currency, 0) + candidate.value
    changes = spec.preview_changes(session, pixel_id=pixel_id, params=parsed, selection=selection,
                                   country=pixel_default_country(session, pixel_id))
    total = len(selection.eligible)
    return FixPreview(
        kind=kind,
        pixel_id=pixel_id, since=selection.since, until=selection.until,
        event_names=sorted(parsed.event_names), total_events=total,
        requests=math.ceil(total / batch_size) if total else 0,
        by_event_hour=[EventHourCount(event_name=name, hour=hour, count=count)
                       for (name, hour), count in sorted(hours.items(), key=_by_hour)],
        skipped=[SkipCount(reason=reason, count=count)
                 for reason, count in sorted(selection.skipped.items())],
        changes=changes,
        refs=[c.ref for c in selection.eligible if c.ref is not None][:MAX_PREVIEW_REFS],
        value_by_currency={currency: round(total_value, 2) for currency, total_value in sorted(values.items())},
    )


def records_text(preview: FixPreview, *, shown: int = 10) -> str:
    """For kinds that send the shop's records: which ones and their value, in one line ("" otherwise)."""
    if not preview.refs and not preview.value_by_currency:
        return ""
    more = preview.total_events - min(shown, len(preview.refs))
    refs = ", ".join(preview.refs[:shown]) + (f" and {more} more" if more > 0 else "")
    value = ", ".join(f"{amount:,.2f} {currency}" for currency, amount in preview.value_by_currency.items())
    return f"orders {refs}" + (f" (value {value})" if value else "")


def _by_hour(item: tuple[tuple[str, datetime], int]) -> tuple[datetime, str]:
    (name, hour), _ = item
    return hour, name
