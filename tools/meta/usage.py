"""Meta's rate-limit usage headers, and a governor that keeps concurrent reads under the budget.

Meta reports how much of a rate limit a caller has used on (most) Graph API answers:

- ``X-App-Usage: {"call_count": 28, "total_cputime": 25, "total_time": 25}`` (platform limit of the
  app, percentages of the rolling-hour budget);
- ``X-Business-Use-Case-Usage: {"<business object id>": [{"type": "ads_management", "call_count": 95,
  "total_cputime": 20, "total_time": 20, "estimated_time_to_regain_access": 19}]}`` (BUC limits, per
  business; ``estimated_time_to_regain_access`` is in **minutes**, 0 while not throttled);
- ``X-Ad-Account-Usage: {"acc_id_util_pct": 9.67, "reset_time_duration": 0}`` (per ad account;
  ``reset_time_duration`` in seconds).

At 100 % of any of them Meta throttles: calls fail with codes 4 (app), 17 (user), 32 (page), 613 or
80004 until usage drops. ``parse_usage`` reads all three into one ``Usage``; ``UsageGovernor`` is what
a batch of concurrent reads consults before each call: below ``slow_at`` (75 %) it lets everything
through; above it, fewer calls may be in flight at once and each waits a little; after a throttling
error the budget is closed until Meta's estimate (or ``Retry-After``, or a default) has passed, and a
caller that would have to wait longer than ``max_wait`` is told to give up (``BudgetExhausted``) so that
one throttled business does not hold up a whole round. Clock and sleep are injected (tests).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tools.meta.errors import RateLimitedError

USAGE_FIELDS = ("call_count", "total_cputime", "total_time")
APP_HEADER = "x-app-usage"
BUSINESS_HEADER = "x-business-use-case-usage"
AD_ACCOUNT_HEADER = "x-ad-account-usage"
DEFAULT_THROTTLE_SECONDS = 60.0  # when Meta throttles without saying for how long
MAX_THROTTLE_SECONDS = 3600.0


@dataclass(frozen=True)
class Usage:
    """The highest usage any header reported (percent), and how long Meta says access is cut."""

    app_pct: float | None = None
    business_pct: dict[str, float] = field(default_factory=dict)  # business id -> highest percent
    ad_account_pct: float | None = None
    regain_seconds: float = 0.0  # estimated_time_to_regain_access (converted) / reset_time_duration

    @property
    def max_pct(self) -> float:
        values = [v for v in (self.app_pct, self.ad_account_pct, *self.business_pct.values()) if v is not None]
        return max(values, default=0.0)

    @property
    def reported(self) -> bool:
        return self.app_pct is not None or bool(self.business_pct) or self.ad_account_pct is not None


def _json(raw: str | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _pct(entry: Mapping[str, Any], names: tuple[str, ...] = USAGE_FIELDS) -> float | None:
    values = []
    for name in names:
        try:
            values.append(float(entry[name]))
        except (KeyError, TypeError, ValueError):
            continue
    return max(values) if values else None


def parse_usage(headers: Mapping[str, str]) -> Usage | None:
    """The usage headers of one answer; None when Meta sent none (absence is not zero usage)."""
    lowered = {str(k).lower(): v for k, v in headers.items()}
    app = _json(lowered.get(APP_HEADER))
    app_pct = _pct(app) if isinstance(app, Mapping) else None
    business: dict[str, float] = {}
    regain = 0.0
    buc = _json(lowered.get(BUSINESS_HEADER))
    if isinstance(buc, Mapping):
        for business_id, entries in buc.items():
            for entry in entries if isinstance(entries, list) else []:
                if not isinstance(entry, Mapping):
                    continue
                pct = _pct(entry)
                if pct is not None:
                    business[str(business_id)] = max(pct, business.get(str(business_id), 0.0))
                with contextlib.suppress(TypeError, ValueError):
                    regain = max(regain, float(entry.get("estimated_time_to_regain_access") or 0) * 60.0)
    account = _json(lowered.get(AD_ACCOUNT_HEADER))
    account_pct = _pct(account, ("acc_id_util_pct",)) if isinstance(account, Mapping) else None
    if isinstance(account, Mapping):
        with contextlib.suppress(TypeError, ValueError):
            regain = max(regain, float(account.get("reset_time_duration") or 0))
    usage = Usage(app_pct=app_pct, business_pct=business, ad_account_pct=account_pct,
                  regain_seconds=min(regain, MAX_THROTTLE_SECONDS))
    return usage if usage.reported else None


class BudgetExhausted(RateLimitedError):
    """Meta throttled this budget and access comes back later than the caller may wait: the read is
    deferred (reported like a rate limit, never retried within the round)."""


@dataclass
class _Budget:
    pct: float = 0.0
    blocked_until: float = 0.0  # monotonic seconds
    in_flight: int = 0


class UsageGovernor:
    """Shared by every client of a round; thread-safe.

    ``max_in_flight`` calls at once while usage is low; from ``slow_at`` % the limit falls linearly to
    one call at ``stop_at`` %, and each call first waits ``slow_delay`` scaled the same way. A throttling
    error closes the budget until Meta's estimate has passed. ``key`` separates budgets (one per
    business/token); the app's own usage (``X-App-Usage``) applies to every key.
    """

    GLOBAL = "*"

    def __init__(self, *, max_in_flight: int = 16, slow_at: float = 75.0, stop_at: float = 95.0,
                 slow_delay: float = 1.0, max_wait: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.max_in_flight = max(1, max_in_flight)
        self.slow_at, self.stop_at = slow_at, max(stop_at, slow_at + 1.0)
        self.slow_delay = slow_delay
        self.max_wait = max_wait
        self._clock, self._sleep = clock, sleep
        self._cond = threading.Condition()
        self._budgets: dict[str, _Budget] = {}
        self.throttled_calls = 0
        self.slowed_calls = 0
        self.deferred_calls = 0
        self.peak_in_flight = 0

    # --- what callers see -------------------------------------------------------------------------

    def limit(self, key: str | None = None) -> int:
        """How many calls of this budget may be in flight now."""
        with self._cond:
            return self._limit(self._pct(key))

    def acquire(self, key: str | None = None) -> None:
        """Wait for room under the budget; raise ``BudgetExhausted`` if Meta throttled it for longer
        than ``max_wait``. Pair with ``release``."""
        key = key or self.GLOBAL
        delay = 0.0
        with self._cond:
            while True:
                blocked = self._blocked_until(key) - self._clock()
                if blocked > self.max_wait:
                    self.deferred_calls += 1
                    raise BudgetExhausted(
                        f"Meta throttled this budget; access expected back in {blocked:.0f} s, later than "
                        f"this round waits ({self.max_wait:.0f} s)", code=4, retry_after=blocked)
                budget = self._budget(key)
                if blocked <= 0 and budget.in_flight < self._limit(self._pct(key)):
                    budget.in_flight += 1
                    self.peak_in_flight = max(self.peak_in_flight, budget.in_flight)
                    pct = self._pct(key)
                    if pct >= self.slow_at:
                        self.slowed_calls += 1
                        delay = self.slow_delay * min(1.0, (pct - self.slow_at) / (self.stop_at - self.slow_at))
                    break
                if blocked > 0:
                    self._cond.release()
                    try:
                        self._sleep(blocked)  # backs off, then resumes
                    finally:
                        self._cond.acquire()
                else:
                    self._cond.wait(timeout=0.5)
        if delay > 0:
            self._sleep(delay)

    def release(self, key: str | None = None) -> None:
        with self._cond:
            budget = self._budget(key or self.GLOBAL)
            budget.in_flight = max(0, budget.in_flight - 1)
            self._cond.notify_all()

    def observe(self, usage: Usage | None, key: str | None = None) -> None:
        """Record the usage headers of an answer."""
        if usage is None:
            return
        with self._cond:
            if usage.app_pct is not None:
                self._budget(self.GLOBAL).pct = usage.app_pct
            own = max([*usage.business_pct.values(), usage.ad_account_pct or 0.0], default=0.0)
            if key and key != self.GLOBAL and (usage.business_pct or usage.ad_account_pct is not None):
                self._budget(key).pct = own
            if usage.regain_seconds > 0 and usage.max_pct >= 100:
                self._block(key, usage.regain_seconds)
            self._cond.notify_all()

    def throttled(self, error: RateLimitedError, key: str | None = None, usage: Usage | None = None) -> float:
        """Meta refused a call for rate limiting: close the budget (app-wide for code 4, else this key)
        until access is expected back; returns the seconds it stays closed."""
        seconds = (usage.regain_seconds if usage is not None and usage.regain_seconds > 0
                   else error.retry_after if error.retry_after else DEFAULT_THROTTLE_SECONDS)
        seconds = min(max(seconds, 1.0), MAX_THROTTLE_SECONDS)
        with self._cond:
            self.throttled_calls += 1
            self._block(self.GLOBAL if error.code == 4 else key, seconds)
            self._cond.notify_all()
        return seconds

    def blocked_for(self, key: str | None = None) -> float:
        with self._cond:
            return max(0.0, self._blocked_until(key or self.GLOBAL) - self._clock())

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {"throttled": self.throttled_calls, "slowed": self.slowed_calls,
                    "deferred": self.deferred_calls, "peak_in_flight": self.peak_in_flight,
                    "usage_pct": {k: b.pct for k, b in self._budgets.items()}}

    # --- plumbing (lock held) ---------------------------------------------------------------------

    def _budget(self, key: str | None) -> _Budget:
        return self._budgets.setdefault(key or self.GLOBAL, _Budget())

    def _pct(self, key: str | None) -> float:
        own = self._budgets.get(key or self.GLOBAL)
        glob = self._budgets.get(self.GLOBAL)
        return max(own.pct if own else 0.0, glob.pct if glob else 0.0)

    def _blocked_until(self, key: str) -> float:
        own = self._budgets.get(key)
        glob = self._budgets.get(self.GLOBAL)
        return max(own.blocked_until if own else 0.0, glob.blocked_until if glob else 0.0)

    def _block(self, key: str | None, seconds: float) -> None:
        budget = self._budget(key)
        budget.blocked_until = max(budget.blocked_until, self._clock() + seconds)

    def _limit(self, pct: float) -> int:
        if pct < self.slow_at:
            return self.max_in_flight
        if pct >= self.stop_at:
            return 1
        share = 1.0 - (pct - self.slow_at) / (self.stop_at - self.slow_at)
        return max(1, int(self.max_in_flight * share))
