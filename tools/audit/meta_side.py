"""Reading Meta's side of a pixel for an audit, with a snapshot cache.

Pixel stats are stored as snapshots on every read. An audit only asks Meta for the hours it has not
seen yet plus the last day (Meta keeps revising recent buckets), and takes older hours from the
snapshots, so the number of Graph API calls per audit stays constant. When a read fails, the
failure is reported and that side is left out (None) rather than replaced with stale or empty data,
which would look like an outage to the checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tools.checks.types import MetaHourlyCount, MetaReadError, QualitySnapshot
from tools.ledger.models import MetaSnapshot
from tools.ledger.snapshots import load_meta_counts, save_meta_counts, save_quality_snapshot
from tools.meta.client import GraphClient
from tools.meta.errors import MetaApiError
from tools.timeutil import DAY, as_utc

# Meta revises recent hourly buckets as late events arrive; re-read this much every audit.
REFRESH_SPAN = DAY


@dataclass(frozen=True)
class MetaSide:
    counts: tuple[MetaHourlyCount, ...] | None
    quality: QualitySnapshot | None
    errors: tuple[MetaReadError, ...]


def read_error(endpoint: str, exc: Exception) -> MetaReadError:
    """A read failure as the checks see it; the message is Meta's (never contains the token)."""
    if isinstance(exc, MetaApiError):
        return MetaReadError(endpoint=endpoint, kind=exc.read_error_kind,  # type: ignore[arg-type]
                             message=str(exc)[:300], code=exc.code, subcode=exc.subcode)
    return MetaReadError(endpoint=endpoint, kind="other", message=type(exc).__name__)  # type: ignore[arg-type]


def _fetch_start(session: Session, *, pixel_id: str, history_start: datetime,
                 window_end: datetime) -> datetime:
    """The first hour that must be read from Meta: everything after what the snapshots already cover."""
    covered_from = session.scalar(select(func.min(MetaSnapshot.window_start)).where(
        MetaSnapshot.pixel_id == pixel_id, MetaSnapshot.kind == "stats"))
    covered_to = session.scalar(select(func.max(MetaSnapshot.window_end)).where(
        MetaSnapshot.pixel_id == pixel_id, MetaSnapshot.kind == "stats"))
    if covered_from is None or covered_to is None or as_utc(covered_from) > history_start:
        return history_start
    return max(history_start, min(as_utc(covered_to), window_end) - REFRESH_SPAN)


def read_meta_side(session: Session, client: GraphClient | None, *, pixel_id: str, history_start: datetime,
                   window_end: datetime, at: datetime) -> MetaSide:
    """Read stats (browser and server) and dataset quality, store them as snapshots, and return the
    full history window. ``client`` None means Meta is not configured: an "unreachable" error."""
    if client is None:
        missing = MetaReadError(endpoint="stats", kind="unreachable",
                                message="no Meta access token configured for this pixel")
        return MetaSide(counts=None, quality=None, errors=(missing,))
    errors: list[MetaReadError] = []
    counts: tuple[MetaHourlyCount, ...] | None = None
    fetch_start = _fetch_start(session, pixel_id=pixel_id, history_start=history_start, window_end=window_end)
    try:
        fresh = [*client.pixel_stats(pixel_id, start=fetch_start, end=window_end, source="browser"),
                 *client.pixel_stats(pixel_id, start=fetch_start, end=window_end, source="server")]
        save_meta_counts(session, pixel_id=pixel_id, counts=fresh, fetched_at=at,
                         window_start=fetch_start, window_end=window_end)
        counts = load_meta_counts(session, pixel_id=pixel_id, start=history_start, end=window_end)
    except Exception as exc:
        errors.append(read_error("stats", exc))
    quality: QualitySnapshot | None = None
    try:
        quality = client.dataset_quality(pixel_id, fetched_at=at)
        save_quality_snapshot(session, pixel_id=pixel_id, snapshot=quality)
    except Exception as exc:
        errors.append(read_error("dataset_quality", exc))
    return MetaSide(counts=counts, quality=quality, errors=tuple(errors))


def quality_history_start(window_end: datetime) -> datetime:
    """Dataset-quality snapshots kept for comparisons: a little over a week back."""
    return window_end - timedelta(days=8)
