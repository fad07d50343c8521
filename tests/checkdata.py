"""Builders of realistic AuditInputs for the check and diagnosis tests.

``ShopData`` makes four weeks of hourly traffic for a small shop: a daily curve (quiet at 4 a.m.,
busy in the afternoon), quieter weekends, seeded Poisson noise, a browser side that misses some
events (ad blockers), a server side through the relay, orders, and daily dataset-quality snapshots.
Its ``inject_*`` methods break one thing from an onset hour on, the way the real problem looks in
the data; ``inputs()`` freezes the result into AuditInputs.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from tools.checks.types import (
    LAG_BUCKET_EDGES,
    AuditInputs,
    DedupeKeyFeedback,
    DeliveryHour,
    EventHour,
    EventQuality,
    MetaHourlyCount,
    MetaReadError,
    OrderHour,
    QualitySnapshot,
    Thresholds,
)
from tools.timeutil import DAY, HOUR, hours_between

# Tuesday 2026-11-24, the audited hour is 14:00-15:00 UTC (busy afternoon).
WINDOW_END = datetime(2026, 11, 24, 15, tzinfo=UTC)
PIXEL = "1234567890"


@dataclass(frozen=True)
class EventProfile:
    peak: float  # mean events per hour at the weekday afternoon peak
    browser_rate: float  # share the browser pixel captures
    server_rate: float  # share the server sends (0: never sent server-side)
    emq: float | None  # Meta's composite score for the event


PROFILES: dict[str, EventProfile] = {
    "PageView": EventProfile(400, 0.9, 0.0, None),
    "ViewContent": EventProfile(150, 0.85, 1.0, 8.3),
    "AddToCart": EventProfile(40, 0.85, 1.0, 7.7),  # standing "below goal": info only
    "InitiateCheckout": EventProfile(15, 0.85, 1.0, 8.2),
    "Purchase": EventProfile(10, 0.8, 1.0, 8.8),
    "Lead": EventProfile(0.4, 0.8, 1.0, 8.0),  # low volume: many zero hours
}
KEY_SHARES = {"em": 0.85, "ph": 0.5, "external_id": 0.7, "client_ip_address": 1.0,
              "client_user_agent": 1.0, "fbp": 0.92, "fbc": 0.35}
QUALITY_KEY = {"em": "email", "ph": "phone", "external_id": "external_id", "fbc": "fbc",
               "client_ip_address": "ip_address", "client_user_agent": "user_agent"}
EVENTS_PER_REQUEST = 25


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def daily_shape(hour: datetime) -> float:
    """Traffic level of an hour: lowest at 04:00, highest at 16:00; weekends at 70 %."""
    level = 0.12 + 0.88 * (0.5 - 0.5 * math.cos(2 * math.pi * (hour.hour - 4) / 24))
    return level * (0.7 if hour.weekday() >= 5 else 1.0)


def _lag(n: int, bucket: int = 0) -> list[int]:
    buckets = [0] * (len(LAG_BUCKET_EDGES) + 1)
    if bucket == 0:
        buckets[0], buckets[1] = n - n // 10, n // 10
    else:
        buckets[bucket] = n
    return buckets


class ShopData:
    """Mutable hourly data of one pixel; see the module docstring."""

    def __init__(self, *, seed: int = 7, weeks: int = 4, window_end: datetime = WINDOW_END,
                 days_of_data: float | None = None, profiles: dict[str, EventProfile] | None = None) -> None:
        self.rng = random.Random(seed)
        self.window_end = window_end
        self.window_start = window_end - HOUR
        self.history_start = window_end - weeks * 7 * DAY
        data_start = window_end - days_of_data * DAY if days_of_data else self.history_start
        self.hours = hours_between(data_start, window_end)
        self.profiles = profiles or PROFILES
        self.browser: dict[tuple[datetime, str], int] = {}
        self.ledger: dict[tuple[datetime, str], dict] = {}
        self.orders: dict[datetime, dict] = {}
        self.delivery_errors: dict[datetime, dict[str, int]] = {}
        self.transport_errors: dict[datetime, int] = {}
        self.retried: dict[datetime, int] = {}
        self.unsent_hours: set[datetime] = set()
        self.meta_ok = True
        self.read_errors: list[MetaReadError] = []
        self.quality_now: dict[str, dict] = {}
        self.quality_history: list[tuple[datetime, dict[str, dict]]] = []
        self.meta_server_override: dict[tuple[datetime, str], int] = {}
        self.thresholds = Thresholds()
        for hour in self.hours:
            shape = daily_shape(hour)
            for name, profile in self.profiles.items():
                mean = profile.peak * shape
                self.browser[(hour, name)] = poisson(self.rng, mean * profile.browser_rate)
                if profile.server_rate:
                    self._set_server(hour, name, poisson(self.rng, mean * profile.server_rate))
            purchases = self.ledger.get((hour, "Purchase"), {}).get("events", 0)
            self.orders[hour] = {"orders": purchases, "matched": purchases, "value": 42.0 * purchases}
        self._build_quality()

    # -- normal data -------------------------------------------------------------------------
    def _set_server(self, hour: datetime, name: str, n: int) -> None:
        self.ledger[(hour, name)] = {
            "events": n, "with_event_id": n,
            "key_counts": {k: round(n * s) for k, s in KEY_SHARES.items()},
            "raw_pii": {}, "placeholder": {}, "uppercase_hex": {}, "not_sha256": {}, "must_not_hash": {},
            "malformed": {}, "top_value_share": {"em": 0.03} if n else {},
            "duplicate_event_ids": 0, "lag_buckets": _lag(n), "too_old": 0, "future_time": 0,
            "undelivered": 0,
        }

    def _build_quality(self) -> None:
        def snapshot() -> dict[str, dict]:
            return {
                name: {"score": p.emq, "coverage": {QUALITY_KEY[k]: 100 * s for k, s in KEY_SHARES.items()
                                                    if k in QUALITY_KEY},
                       "dedupe_server": 98.0, "freshness": "real_time"}
                for name, p in self.profiles.items() if p.emq is not None
            }
        self.quality_now = snapshot()
        for days in range(8, 0, -1):
            self.quality_history.append((self.window_end - days * DAY - 30 * 60 * timedelta(seconds=1),
                                         snapshot()))

    def since(self, onset: datetime | None) -> list[datetime]:
        start = onset or self.window_end - 3 * HOUR
        return [h for h in self.hours if h >= start]

    def server_events(self, names: list[str] | None = None) -> list[str]:
        return [n for n, p in self.profiles.items() if p.server_rate and (names is None or n in names)]

    # -- injections --------------------------------------------------------------------------
    def inject_browser_down(self, onset: datetime | None = None, events: list[str] | None = None) -> None:
        for hour in self.since(onset):
            for name in events or list(self.profiles):
                self.browser[(hour, name)] = 0

    def inject_server_down(self, onset: datetime | None = None, events: list[str] | None = None) -> None:
        for hour in self.since(onset):
            for name in self.server_events(events):
                self._set_server(hour, name, 0)
            if "Purchase" in self.server_events(events):
                self.orders[hour]["matched"] = 0

    def _undelivered(self, hour: datetime, name: str, bucket_cleared: bool = True) -> None:
        row = self.ledger[(hour, name)]
        row["undelivered"] = row["events"]
        if bucket_cleared:
            row["lag_buckets"] = _lag(0)
        self.meta_server_override[(hour, name)] = 0

    def inject_token_invalid(self, onset: datetime | None = None) -> None:
        for hour in self.since(onset):
            for name in self.server_events():
                self._undelivered(hour, name)
            self.delivery_errors[hour] = {"190/463": -1}  # -1: every attempt

    def inject_missed_batch(self, onset: datetime | None = None) -> None:
        for hour in self.since(onset):
            for name in self.server_events():
                self._undelivered(hour, name)
            self.unsent_hours.add(hour)

    def inject_malformed_fbc(self, onset: datetime | None = None) -> None:
        for hour in self.since(onset):
            for name in self.server_events():
                row = self.ledger[(hour, name)]
                row["malformed"] = {"fbc": row["key_counts"]["fbc"]}
                self._undelivered(hour, name)
            self.delivery_errors[hour] = {"100/2804001": -1}

    def inject_rate_limited(self, onset: datetime | None = None) -> None:
        for hour in self.since(onset):
            for name in self.server_events():
                row = self.ledger[(hour, name)]
                row["lag_buckets"] = _lag(row["events"], bucket=4)  # 1-3 h late after retries
            self.delivery_errors[hour] = {"17/2446079": -2}  # -2: half the attempts
            self.retried[hour] = -2

    def inject_late_delivery(self, onset: datetime | None = None, bucket: int = 5) -> None:
        for hour in self.since(onset):
            for name in self.server_events():
                row = self.ledger[(hour, name)]
                row["lag_buckets"] = _lag(row["events"], bucket=bucket)
        for quality in self.quality_now.values():
            quality["freshness"] = "hourly"

    def inject_dedup_broken(self, onset: datetime | None = None, events: list[str] | None = None) -> None:
        for hour in self.since(onset):
            for name in self.server_events(events):
                self.ledger[(hour, name)]["with_event_id"] = 0
        for name in self.server_events(events):
            if name in self.quality_now:
                self.quality_now[name]["dedupe_server"] = 3.0

    def inject_hashing(self, counter: str = "raw_pii", field: str = "em", share: float = 1.0,
                       onset: datetime | None = None) -> None:
        for hour in self.since(onset):
            for name in self.server_events():
                row = self.ledger[(hour, name)]
                if counter == "top_value_share":
                    row["top_value_share"] = {field: share}
                else:
                    row[counter] = {field: round(row["key_counts"].get(field, row["events"]) * share)}

    def inject_keys_lost(self, key: str = "fbc", onset: datetime | None = None,
                         events: list[str] | None = None, emq_fall: float = 1.5) -> None:
        for hour in self.since(onset):
            for name in self.server_events(events):
                self.ledger[(hour, name)]["key_counts"][key] = 0
        for name in self.server_events(events):
            if name in self.quality_now and self.quality_now[name]["score"] is not None:
                self.quality_now[name]["score"] -= emq_fall

    def inject_duplicates(self, onset: datetime | None = None, events: list[str] | None = None,
                          factor: int = 4, by: str = "double_order_ids") -> None:
        """The same orders sent ``factor`` times under new event_ids (a webhook registered twice):
        Meta counts every copy. ``by``: how the ledger recognises the copies (``double_order_ids``,
        ``double_purchase_keys``, or "" when no order id / user key links them)."""
        for hour in self.since(onset):
            for name in self.server_events(events or ["Purchase", "AddToCart"]):
                row = self.ledger[(hour, name)]
                n = row["events"]
                self._set_server(hour, name, n * factor)
                if by and name == "Purchase":
                    self.ledger[(hour, name)][by] = n * (factor - 1)

    def inject_retry_storm(self, onset: datetime | None = None, events: list[str] | None = None,
                           factor: int = 3) -> None:
        """Every event delivered ``factor`` times with its own event_id: Meta keeps one copy."""
        for hour in self.since(onset):
            for name in self.server_events(events or ["Purchase", "AddToCart"]):
                n = self.ledger[(hour, name)]["events"]
                self._set_server(hour, name, n * factor)
                self.ledger[(hour, name)]["duplicate_event_ids"] = n * (factor - 1)
                self.meta_server_override[(hour, name)] = n

    def inject_rename(self, old: str = "AddToCart", new: str = "add_to_cart",
                      onset: datetime | None = None) -> None:
        for hour in self.since(onset):
            self.browser[(hour, new)] = self.browser.pop((hour, old), 0)
            self.browser[(hour, old)] = 0
            row = self.ledger.pop((hour, old))
            self.ledger[(hour, new)] = row
            self._set_server(hour, old, 0)

    def inject_clock_skew(self, onset: datetime | None = None) -> None:
        for hour in self.since(onset):
            for name in self.server_events():
                row = self.ledger[(hour, name)]
                row["future_time"] = row["events"]

    def inject_sales_spike(self, factor: float = 4.0, hours: int = 1) -> None:
        """Everything up together: browser, server, orders (a flash sale)."""
        for hour in self.hours[-hours:]:
            for name, profile in self.profiles.items():
                mean = profile.peak * daily_shape(hour) * factor
                self.browser[(hour, name)] = poisson(self.rng, mean * profile.browser_rate)
                if profile.server_rate:
                    self._set_server(hour, name, poisson(self.rng, mean * profile.server_rate))
            n = self.ledger[(hour, "Purchase")]["events"]
            self.orders[hour] = {"orders": n, "matched": n, "value": 42.0 * n}

    def inject_meta_unreachable(self, kind: str = "unreachable", code: int | None = None) -> None:
        self.meta_ok = False
        self.read_errors = [
            MetaReadError(endpoint="stats", kind=kind, message="connection refused", code=code),  # type: ignore[arg-type]
            MetaReadError(endpoint="dataset_quality", kind=kind, message="connection refused", code=code),  # type: ignore[arg-type]
        ]

    # -- freeze ------------------------------------------------------------------------------
    def _delivery_hours(self) -> tuple[DeliveryHour, ...]:
        out: list[DeliveryHour] = []
        sent_by_hour: dict[datetime, int] = {}
        for (h, _), row in self.ledger.items():
            sent_by_hour[h] = sent_by_hour.get(h, 0) + row["events"]
        for hour in self.hours:
            if hour in self.unsent_hours:
                continue
            sent = sent_by_hour.get(hour, 0)
            attempts = math.ceil(sent / EVENTS_PER_REQUEST)
            if not attempts:
                continue
            errors = {}
            for key, count in self.delivery_errors.get(hour, {}).items():
                errors[key] = attempts if count == -1 else max(1, attempts // 2) if count == -2 else count
            failed = min(attempts, sum(errors.values()))
            failed_share = failed / attempts
            retried = self.retried.get(hour, 0)
            out.append(DeliveryHour(
                hour=hour, attempts=attempts, events_sent=sent,
                events_received=round(sent * (1 - failed_share)), failed_attempts=failed,
                retried_attempts=failed if retried == -2 else retried, errors=errors,
                transport_errors=self.transport_errors.get(hour, 0),
            ))
        return tuple(out)

    def _quality(self, fetched_at: datetime, events: dict[str, dict]) -> QualitySnapshot:
        return QualitySnapshot(fetched_at=fetched_at, events=tuple(
            EventQuality(
                event_name=name, composite_score=q["score"], match_key_coverage=dict(q["coverage"]),
                event_coverage_pct=80.0,
                dedupe_key_feedback=(DedupeKeyFeedback("event_id", 95.0, q["dedupe_server"], 90.0),),
                upload_frequency=q["freshness"],
            ) for name, q in sorted(events.items())
        ))

    def inputs(self, **overrides: object) -> AuditInputs:
        server_meta = {
            key: self.meta_server_override.get(key, row["events"]) for key, row in self.ledger.items()
        }
        meta = tuple(
            [MetaHourlyCount(h, n, "browser", c) for (h, n), c in sorted(self.browser.items()) if c]
            + [MetaHourlyCount(h, n, "server", c) for (h, n), c in sorted(server_meta.items()) if c]
        )
        inputs = AuditInputs(
            pixel_id=PIXEL, window_start=self.window_start, window_end=self.window_end,
            history_start=self.history_start,
            event_hours=tuple(EventHour(hour=h, event_name=n, **row)
                              for (h, n), row in sorted(self.ledger.items())),
            delivery_hours=self._delivery_hours(),
            order_hours=tuple(OrderHour(hour=h, **o) for h, o in sorted(self.orders.items())),
            meta_counts=meta if self.meta_ok else None,
            quality=self._quality(self.window_end - 20 * 60 * timedelta(seconds=1), self.quality_now)
            if self.meta_ok else None,
            quality_history=tuple(self._quality(at, q) for at, q in self.quality_history),
            meta_read_errors=tuple(self.read_errors),
            thresholds=self.thresholds, has_orders=True,
        )
        return replace(inputs, **overrides) if overrides else inputs


def healthy(seed: int = 7, **kwargs: object) -> ShopData:
    return ShopData(seed=seed, **kwargs)  # type: ignore[arg-type]
