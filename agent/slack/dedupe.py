"""At-most-once handling of Slack deliveries.

Slack re-sends an event when it did not get a 2xx within 3 seconds, and one user message can arrive
twice (as ``app_mention`` and as ``message``). Neither may ask the chat graph twice.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from slack_bolt import BoltRequest, BoltResponse

RETRY_HEADER = "x-slack-retry-num"


class RecentKeys:
    """A bounded, thread-safe set of keys seen in the last ``ttl_seconds`` (per process)."""

    def __init__(self, *, ttl_seconds: float = 3600.0, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._max = max_keys
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, key: str) -> bool:
        """True the first time ``key`` is offered within the TTL; records it. False for repeats."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            if key in self._seen:
                return False
            self._seen[key] = now
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)
            return True

    def _expire(self, now: float) -> None:
        while self._seen:
            oldest_key, seen_at = next(iter(self._seen.items()))
            if now - seen_at < self._ttl:
                break
            del self._seen[oldest_key]


def retry_number(request: BoltRequest) -> int:
    """Slack's retry counter for this delivery (0 for a first delivery; Socket Mode sends 0 too)."""
    values = request.headers.get(RETRY_HEADER) or []
    try:
        return int(values[0]) if values else 0
    except ValueError:
        return 0


def ignore_event_retries(request: BoltRequest, next: Callable[[], BoltResponse]) -> BoltResponse | None:
    """Global middleware: an Events API retry is acknowledged and dropped.

    The first delivery was already acknowledged and is being handled (lazy listeners ack at once), so
    a retry is a duplicate. ``X-Slack-No-Retry`` asks Slack not to send more.
    """
    if request.body.get("type") == "event_callback" and retry_number(request) > 0:
        return BoltResponse(status=200, body="", headers={"x-slack-no-retry": "1"})
    return next()
