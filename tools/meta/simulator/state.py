"""What the Graph API simulator knows: clock, tokens, per-pixel hourly aggregates, received events, faults.

The state file (written by the synthetic traffic generator) looks like::

    {"now": "2026-11-20T12:00:00Z" | null,
     "tokens": {"valid": ["sim-token"], "expired": ["old-token"]},
     "app_secret": null,
     "pixels": {"1234567890": {
         "browser_hours": [{"hour": ISO, "event_name": "Purchase", "count": 12, "with_event_id": 12}],
         "server_hours":  [{"hour": ISO, "event_name": "Purchase", "count": 11, "with_event_id": 11,
                            "match_keys": {"em": 10, "ph": 3, ...}, "lag_seconds_p50": 30}]}}}

Extra keys are ignored. ``"pixel_aliases": {"alias": "source"}`` serves many pixels from one's
aggregates (benchmarks). ``now: null`` means real time. With no valid token configured, ``sim-token``
is valid. Pixels: a pixel not in the state is created when its first event arrives; reads of an
unknown pixel answer empty data, or (``strict``) Meta's 100/33 "object does not exist" error.

Events received live update the same hourly aggregates as the seeded history (bucketed by the hour
of ``event_time``, as Meta's stats are); events sent with ``test_event_code`` are kept in the received
list but counted nowhere. All methods are thread-safe (the app runs in uvicorn's thread).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from tools.meta.simulator.usage import UsageModel
from tools.timeutil import as_utc, floor_hour, from_unix, parse_iso, to_iso, utcnow

DEFAULT_TOKEN = "sim-token"
# user_data keys the simulator counts as match keys (Meta's names).
MATCH_KEYS = ("em", "ph", "external_id", "client_ip_address", "client_user_agent", "fbc", "fbp")
FaultMode = Literal["unavailable", "timeout", "rate_limit", "transient", "token_invalid"]
FaultEndpoint = Literal["events", "stats", "dataset_quality", "*"]
FAULT_MODES = ("unavailable", "timeout", "rate_limit", "transient", "token_invalid")
FAULT_ENDPOINTS = ("events", "stats", "dataset_quality", "*")
TokenStatus = Literal["valid", "expired", "unknown"]


@dataclass
class BrowserHour:
    count: int = 0
    with_event_id: int = 0


@dataclass
class ServerHour:
    count: int = 0
    with_event_id: int = 0
    match_keys: dict[str, int] = field(default_factory=dict)
    # (lag seconds from event_time to receipt, events with that lag): seeded hours give their p50.
    lags: list[tuple[float, int]] = field(default_factory=list)


@dataclass
class PixelState:
    browser: dict[tuple[datetime, str], BrowserHour] = field(default_factory=dict)
    server: dict[tuple[datetime, str], ServerHour] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Fault:
    """The next ``remaining`` requests to ``endpoint`` fail with ``mode``."""

    mode: FaultMode
    remaining: int = 1
    endpoint: FaultEndpoint = "*"
    code: int | None = None  # rate_limit: 4 | 17 | 613 | 80004; token_invalid: 190
    subcode: int | None = None
    retry_after: float | None = None  # rate_limit: sent as a Retry-After header when set
    delay_seconds: float = 5.0  # timeout: how long the answer is held back


class SimState:
    """Mutable, lock-protected simulator state (see module docstring)."""

    def __init__(
        self,
        *,
        now: datetime | None = None,
        valid_tokens: Iterable[str] = (),
        expired_tokens: Iterable[str] = (),
        strict: bool = False,
        app_secret: str | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._now = as_utc(now) if now else None
        self.valid_tokens: set[str] = set(valid_tokens) or {DEFAULT_TOKEN}
        self.expired_tokens: set[str] = set(expired_tokens)
        self.strict = strict
        self.app_secret = app_secret
        self.pixels: dict[str, PixelState] = {}
        self.faults: list[Fault] = []
        self.usage = UsageModel()  # latency, usage headers, throttling (kept across state reloads)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> SimState:
        """Build a state from the state-file shape (extra keys ignored)."""
        tokens = data.get("tokens") or {}
        state = cls(
            now=parse_iso(data["now"]) if data.get("now") else None,
            valid_tokens=tokens.get("valid") or (),
            expired_tokens=tokens.get("expired") or (),
            strict=bool(data.get("strict", strict)),
            app_secret=data.get("app_secret"),
        )
        for pixel_id, pixel in (data.get("pixels") or {}).items():
            state.set_browser_hours(str(pixel_id), pixel.get("browser_hours") or [])
            state.add_server_hours(str(pixel_id), pixel.get("server_hours") or [])
        for alias, source in (data.get("pixel_aliases") or {}).items():
            state.alias_pixel(str(alias), str(source))
        return state

    def alias_pixel(self, alias: str, source: str) -> None:
        """Serve ``alias`` from ``source``'s aggregates (shared, not copied: benchmarks of many pixels)."""
        with self._lock:
            self.pixels[alias] = self.pixels.setdefault(source, PixelState())

    @classmethod
    def load(cls, path: str | Path, *, strict: bool = False) -> SimState:
        return cls.from_dict(json.loads(Path(path).read_text()), strict=strict)

    def replace_with(self, other: SimState) -> None:
        """Take over another state's contents (keeps this object, which a running app holds)."""
        with self._lock:
            self._now = other._now
            self.valid_tokens, self.expired_tokens = set(other.valid_tokens), set(other.expired_tokens)
            self.strict, self.app_secret = other.strict, other.app_secret
            self.pixels, self.faults = other.pixels, other.faults

    def reset(self) -> None:
        """Forget all pixels, received events and faults (tokens and clock stay)."""
        with self._lock:
            self.pixels, self.faults = {}, []

    # ------------------------------------------------------------------ clock and tokens

    def current_time(self) -> datetime:
        with self._lock:
            return self._now or utcnow()

    def set_now(self, now: datetime | None) -> None:
        """Freeze the clock at ``now``; None returns to real time."""
        with self._lock:
            self._now = as_utc(now) if now else None

    def token_status(self, token: str | None) -> TokenStatus:
        with self._lock:
            if token and token in self.valid_tokens:
                return "valid"
            if token and token in self.expired_tokens:
                return "expired"
            return "unknown"

    # ------------------------------------------------------------------ pixels

    def pixel(self, pixel_id: str, *, create: bool = False) -> PixelState | None:
        with self._lock:
            if pixel_id not in self.pixels and create:
                self.pixels[pixel_id] = PixelState()
            return self.pixels.get(pixel_id)

    def knows_pixel(self, pixel_id: str) -> bool:
        with self._lock:
            return pixel_id in self.pixels

    def set_browser_hours(self, pixel_id: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Set (replace) browser counts per hour and event name."""
        with self._lock:
            pixel = self.pixel(pixel_id, create=True)
            assert pixel is not None
            for row in rows:
                key = (floor_hour(parse_iso(row["hour"])), str(row["event_name"]))
                count = int(row.get("count", 0))
                pixel.browser[key] = BrowserHour(count, int(row.get("with_event_id", count)))

    def add_server_hours(self, pixel_id: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add seeded server aggregates (on top of whatever the hour already holds)."""
        with self._lock:
            pixel = self.pixel(pixel_id, create=True)
            assert pixel is not None
            for row in rows:
                key = (floor_hour(parse_iso(row["hour"])), str(row["event_name"]))
                hour = pixel.server.setdefault(key, ServerHour())
                count = int(row.get("count", 0))
                hour.count += count
                hour.with_event_id += int(row.get("with_event_id", count))
                for name, keyed in (row.get("match_keys") or {}).items():
                    hour.match_keys[name] = hour.match_keys.get(name, 0) + int(keyed)
                if row.get("lag_seconds_p50") is not None and count:
                    hour.lags.append((float(row["lag_seconds_p50"]), count))

    def record_events(
        self, pixel_id: str, events: Sequence[Mapping[str, Any]], *, test_event_code: str | None = None
    ) -> None:
        """Keep an accepted batch: in the received list, and (unless a test batch) in the aggregates."""
        with self._lock:
            received_at = self.current_time()
            pixel = self.pixel(pixel_id, create=True)
            assert pixel is not None
            for event in events:
                pixel.received.append({"received_at": to_iso(received_at), "test_event_code": test_event_code,
                                       "event": dict(event)})
                if test_event_code:
                    continue
                event_time = _event_time(event, received_at)
                hour = pixel.server.setdefault((floor_hour(event_time), str(event.get("event_name"))),
                                               ServerHour())
                hour.count += 1
                hour.with_event_id += 1 if event.get("event_id") else 0
                user_data = event.get("user_data") or {}
                for name in MATCH_KEYS:
                    if user_data.get(name) not in (None, "", []):
                        hour.match_keys[name] = hour.match_keys.get(name, 0) + 1
                hour.lags.append((max(0.0, (received_at - event_time).total_seconds()), 1))

    def received(self, pixel_id: str | None = None) -> list[dict[str, Any]]:
        """Received events, oldest first per pixel: ``{"pixel_id", "received_at", "test_event_code",
        "event"}``."""
        with self._lock:
            return [{"pixel_id": pid, **item} for pid, pixel in self.pixels.items()
                    if pixel_id is None or pid == pixel_id for item in pixel.received]

    def stats(self, pixel_id: str, source: Literal["browser", "server"] | None,
              start: datetime, end: datetime) -> list[tuple[datetime, dict[str, int]]]:
        """Hour -> event name -> count for hours in ``[start, end)``, oldest first, empty hours left out."""
        with self._lock:
            pixel = self.pixels.get(pixel_id)
            if pixel is None:
                return []
            buckets: dict[datetime, dict[str, int]] = {}
            sides: list[Mapping[tuple[datetime, str], BrowserHour | ServerHour]] = []
            if source in (None, "browser"):
                sides.append(pixel.browser)
            if source in (None, "server"):
                sides.append(pixel.server)
            for side in sides:
                for (hour, name), counts in side.items():
                    if start <= hour < end and counts.count:
                        bucket = buckets.setdefault(hour, {})
                        bucket[name] = bucket.get(name, 0) + counts.count
            return sorted(buckets.items())

    def snapshot(self, pixel_id: str) -> tuple[dict[tuple[datetime, str], BrowserHour],
                                                dict[tuple[datetime, str], ServerHour]] | None:
        """Copies of a pixel's browser and server aggregates (for the quality model)."""
        with self._lock:
            pixel = self.pixels.get(pixel_id)
            if pixel is None:
                return None
            return (dict(pixel.browser), {key: ServerHour(v.count, v.with_event_id, dict(v.match_keys),
                                                          list(v.lags)) for key, v in pixel.server.items()})

    def add_tokens(self, *, valid: Iterable[str] = (), expired: Iterable[str] = ()) -> None:
        """Make tokens known; a token listed as expired stops being valid."""
        with self._lock:
            self.valid_tokens.update(valid)
            self.expired_tokens.update(expired)
            self.valid_tokens.difference_update(self.expired_tokens)

    def summary(self) -> dict[str, Any]:
        """Clock, pixels (sizes only, no event contents) and armed faults, for ``GET /_sim/state``."""
        with self._lock:
            return {
                "now": to_iso(self.current_time()),
                "frozen_clock": self._now is not None,
                "strict": self.strict,
                "pixels": {pid: {"browser_hours": len(p.browser), "server_hours": len(p.server),
                                 "received": len(p.received)} for pid, p in self.pixels.items()},
                "faults": self.armed_faults(),
            }

    # ------------------------------------------------------------------ faults

    def armed_faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(fault) for fault in self.faults]

    def clear_faults(self) -> None:
        with self._lock:
            self.faults = []

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def take_fault(self, endpoint: str) -> Fault | None:
        """The first armed fault matching ``endpoint``, consuming one of its uses."""
        with self._lock:
            for fault in self.faults:
                if fault.remaining > 0 and fault.endpoint in ("*", endpoint):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self.faults.remove(fault)
                    return fault
            return None


def _event_time(event: Mapping[str, Any], fallback: datetime) -> datetime:
    try:
        return from_unix(int(float(event["event_time"])))
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return fallback
