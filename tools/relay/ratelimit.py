"""A token bucket per sender address, so that no one source can flood the relay (or its ledger).

In memory, per process: with several replicas each one allows the rate, and a restart refills the
buckets. That is enough to stop a flood (the limit is far above a shop's sending rate and far below
what fills a database) without a shared store. The number of buckets is bounded (least recently seen
sources are dropped first), so spoofed or many sources cannot exhaust memory either.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# Defaults: 50 requests a second sustained and bursts of 200, per sender address. A shop's server
# sends at most a few requests a second (events are batched up to 1000 a request).
DEFAULT_RATE = 50.0
DEFAULT_BURST = 200
MAX_SOURCES = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float
    throttled: int = 0  # refused since the last report
    reported: float | None = None  # when refusals were last reported (None: never)


class RateLimiter:
    """``take(source)`` spends one request from the source's bucket; ``retry_after`` when refused."""

    def __init__(self, *, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST,
                 max_sources: int = MAX_SOURCES, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self.max_sources, self.clock = rate, float(burst), max_sources, clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, source: str) -> float | None:
        """None when allowed; otherwise the seconds until the next request would be."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(source)
            if bucket is None:
                bucket = self._buckets[source] = _Bucket(tokens=self.burst, updated=now)
                if len(self._buckets) > self.max_sources:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(source)
                bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
                bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return None
            bucket.throttled += 1
            return max(0.001, (1 - bucket.tokens) / self.rate)

    def report_due(self, source: str, every: float = 60.0) -> int:
        """Requests refused for ``source`` since the last report: at the first refusal, then at most once
        every ``every`` seconds (else 0), so a flood is counted without one write per refused request."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(source)
            if bucket is None or not bucket.throttled or (
                    bucket.reported is not None and now - bucket.reported < every):
                return 0
            count, bucket.throttled, bucket.reported = bucket.throttled, 0, now
            return count


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
