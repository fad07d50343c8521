"""Payload retention for ``capi-agent serve``: the stored payloads of events (kept for replays) are
dropped once older than ``CAPI_PAYLOAD_RETENTION_DAYS`` (default 8: Meta takes events up to 7 days
old, so a replay never needs an older one). Rows, flags and rollups stay; audits are unaffected.

The purge runs in a background loop of the server (hourly); ``/healthz`` reports its last run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from tools.ledger.store import purge_payloads
from tools.timeutil import to_iso

PURGE_INTERVAL_SECONDS = 3600.0


@dataclass
class PurgeStatus:
    """What this process's purge loop did last (read by ``/healthz``)."""

    retention_days: float
    last_at: datetime | None = None
    last_purged: int | None = None
    purged_total: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {"retention_days": self.retention_days,
                    "last_at": to_iso(self.last_at) if self.last_at else None,
                    "last_purged": self.last_purged, "purged_total": self.purged_total}


def purge_round(session_factory: Callable[[], Session], status: PurgeStatus, *, now: datetime) -> int:
    """Drop the payloads of events received before ``now`` minus the retention; commits."""
    with session_factory() as session:
        purged = purge_payloads(session, older_than=now - timedelta(days=status.retention_days))
        session.commit()
    with status._lock:
        status.last_at, status.last_purged = now, purged
        status.purged_total += purged
    return purged
