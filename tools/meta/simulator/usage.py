"""Latency and rate limits of the simulator: how slow Meta answers, and Meta's usage headers.

- **Latency**: every Graph API call (not ``/_sim/``) is held back ``latency_ms`` (plus a pixel's own
  ``pixel_latency_ms``, for "one slow pixel"), asynchronously, so concurrent callers overlap as they
  would against Meta (real Graph API reads take 100-300 ms).
- **Usage headers**: every Graph API answer carries ``X-App-Usage`` (all calls of the app) and
  ``X-Business-Use-Case-Usage`` (the calls of the caller's business; one business per access token
  here), as percentages of ``call_budget`` calls per rolling ``window_seconds``.
- **Throttling**: with a budget set, a call that would go over it answers Meta's code 80004 (HTTP 400,
  the BUC limit) with ``estimated_time_to_regain_access`` (minutes, rounded up) in the header, until
  enough of the window has passed. Without a budget (the default) usage is reported and never enforced.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_WINDOW_SECONDS = 3600.0
# Without a budget, usage is reported as a share of this many calls per window: low, as Meta reports
# for a caller far from its limit (a smaller scale would make a long benchmark look throttled).
UNLIMITED_SCALE = 1_000_000


def business_id_for(token: str | None) -> str:
    """The simulated business behind an access token (stable, not the token)."""
    return "9" + str(int(hashlib.sha256((token or "").encode()).hexdigest()[:10], 16))[:14]


@dataclass
class UsageModel:
    """Latency and budget settings plus the calls seen (thread-safe)."""

    latency_ms: float = 0.0
    pixel_latency_ms: dict[str, float] = field(default_factory=dict)
    call_budget: int | None = None  # calls per window and business; None: report, never throttle
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    clock: Callable[[], float] = time.monotonic
    _app_calls: deque[float] = field(default_factory=deque)
    _calls: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    throttled: int = 0

    def configure(self, body: dict[str, Any]) -> None:
        """Apply a ``/_sim/usage`` body (only the keys given change)."""
        with self._lock:
            if "latency_ms" in body:
                self.latency_ms = max(0.0, float(body["latency_ms"] or 0))
            if "pixel_latency_ms" in body:
                self.pixel_latency_ms = {str(k): max(0.0, float(v)) for k, v in
                                         (body["pixel_latency_ms"] or {}).items()}
            if "call_budget" in body:
                budget = body["call_budget"]
                self.call_budget = None if budget is None else max(1, int(budget))
            if "window_seconds" in body:
                self.window_seconds = max(0.001, float(body["window_seconds"]))
            if body.get("reset"):
                self._app_calls.clear()
                self._calls.clear()
                self.throttled = 0

    def delay_seconds(self, pixel_id: str | None) -> float:
        with self._lock:
            extra = self.pixel_latency_ms.get(pixel_id, 0.0) if pixel_id else 0.0
            return (self.latency_ms + extra) / 1000.0

    def admit(self, token: str | None) -> tuple[bool, dict[str, str]]:
        """Count one call of ``token``'s business; (allowed, usage headers for the answer)."""
        business = business_id_for(token)
        with self._lock:
            now = self.clock()
            calls = self._calls.setdefault(business, deque())
            for queue in (self._app_calls, calls):
                while queue and queue[0] <= now - self.window_seconds:
                    queue.popleft()
            budget = self.call_budget
            allowed = budget is None or len(calls) < budget
            regain_minutes = 0
            if allowed:
                calls.append(now)
                self._app_calls.append(now)
            else:
                self.throttled += 1
                # The oldest counted call leaves the window first.
                regain_minutes = max(1, math.ceil((calls[0] + self.window_seconds - now) / 60.0))
            scale = budget if budget is not None else UNLIMITED_SCALE
            own = min(100, round(100 * len(calls) / scale)) if allowed else 100
            app = min(100, round(100 * len(self._app_calls) / (scale * max(1, len(self._calls)))))
            headers = {
                "X-App-Usage": json.dumps({"call_count": app, "total_cputime": max(0, app // 2),
                                           "total_time": max(0, app // 2)}, separators=(",", ":")),
                "X-Business-Use-Case-Usage": json.dumps({business: [{
                    "type": "ads_management", "call_count": own, "total_cputime": max(0, own // 2),
                    "total_time": max(0, own // 2), "estimated_time_to_regain_access": regain_minutes}]},
                    separators=(",", ":")),
            }
            return allowed, headers

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {"latency_ms": self.latency_ms, "pixel_latency_ms": dict(self.pixel_latency_ms),
                    "call_budget": self.call_budget, "window_seconds": self.window_seconds,
                    "calls": len(self._app_calls), "throttled": self.throttled}
