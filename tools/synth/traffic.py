"""Healthy traffic of a synthetic shop, event by event: what happened, what the Pixel saw, what the
server sent and how Meta answered. Root causes are injected afterwards (``tools.synth.inject``).
"""

from __future__ import annotations

import base64
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tools.synth.people import build_user_data
from tools.synth.records import Attempt, BrowserHit, Order, ServerEvent, order_customer
from tools.synth.shop import (
    EVENT_PROFILES,
    EventProfile,
    ShopConfig,
    draw_int,
    hourly_blocked_share,
    hourly_noise,
    poisson,
    traffic_factor,
)
from tools.timeutil import from_unix, hours_between, to_unix

_TRACE_CLEAN = str.maketrans("+/", "xZ")
MAX_EVENTS_PER_REQUEST = 1000


@dataclass
class ShopTraffic:
    """Everything that happened in the shop over a period, before the audit's "now" cuts it."""

    server: list[ServerEvent] = field(default_factory=list)
    browser: list[BrowserHit] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)


def new_fbtrace_id(rng: random.Random) -> str:
    """A Meta-looking fbtrace_id (23 letters and digits)."""
    return "A" + base64.b64encode(rng.randbytes(18)).decode().translate(_TRACE_CLEAN)[:22]


def new_request_id(rng: random.Random) -> str:
    return f"req-{rng.getrandbits(64):016x}"


def _sku_price(sku: int) -> float:
    return round(9.9 + (sku * 37) % 200, 2)


def _custom_data(rng: random.Random, config: ShopConfig, name: str, order_id: str | None) -> dict[str, Any]:
    if name in ("PageView", "Lead"):
        return {}
    skus = [draw_int(rng, 1, 300) for _ in range(1 if name != "Purchase" else draw_int(rng, 1, 4))]
    data: dict[str, Any] = {
        "currency": config.currency,
        "value": round(sum(_sku_price(s) for s in skus), 2),
        "content_ids": [f"sku-{s}" for s in skus],
        "content_type": "product",
    }
    if name == "Purchase":
        data["order_id"] = order_id
        data["num_items"] = len(skus)
    return data


def _server_event(
    rng: random.Random, config: ShopConfig, profile: EventProfile, when: datetime, order_id: str | None
) -> ServerEvent:
    event_time = int(when.timestamp())
    user_data, customer = build_user_data(rng, config, profile, event_time * 1000)
    path = profile.path.replace("{sku}", str(draw_int(rng, 1, 300)))
    event: dict[str, Any] = {
        "event_name": profile.name,
        "event_time": event_time,
        "event_id": f"ord-{order_id}" if order_id else f"ev-{rng.getrandbits(64):016x}",
        "action_source": "website",
        "event_source_url": f"https://{config.domain}{path}",
        "user_data": user_data,
    }
    custom = _custom_data(rng, config, profile.name, order_id)
    if custom:
        event["custom_data"] = custom
    # The shop's server reaches the relay a few seconds after the event (rarely up to a minute).
    lag = min(60, max(1, round(rng.lognormvariate(math.log(4.0), 0.9))))
    received = when + timedelta(seconds=lag)
    return ServerEvent(true_time=when, event=event, received_at=received, request_id="", customer=customer)


_CRAWLER_AGENT = "Mozilla/5.0 (compatible; ExampleBot/2.1; +https://bot.example/)"
_CRAWLED = ("PageView", "ViewContent")


def _add_crawler(traffic: ShopTraffic, config: ShopConfig, hour: datetime, factor: float, *,
                 start: datetime, end: datetime, seed: int) -> None:
    """Server events a crawler causes in ``hour`` (``DemandEvent`` kind ``bots``): page views the
    server-side integration sends for it, with only an IP and the crawler's user agent."""
    bots = [e for e in config.demand_events if e.kind == "bots" and e.start <= hour < e.end]
    if not bots:
        return
    rng = random.Random(f"capi-synth:{seed}:crawler:{to_unix(hour)}")
    pages = EVENT_PROFILES[0].peak_per_hour * factor * sum(e.multiplier for e in bots)
    for _ in range(poisson(rng, pages)):
        when = hour + timedelta(seconds=draw_int(rng, 0, 3600))
        if not start <= when < end:
            continue
        name = _CRAWLED[draw_int(rng, 0, len(_CRAWLED))]
        profile = next(p for p in EVENT_PROFILES if p.name == name)
        record = _server_event(rng, config, profile, when, None)
        record.event["user_data"] = {"client_ip_address": f"203.0.113.{draw_int(rng, 1, 20)}",
                                     "client_user_agent": _CRAWLER_AGENT}
        record.customer = None
        record.request_id = new_request_id(rng)
        record.attempts = [Attempt(record.received_at + timedelta(seconds=1), fbtrace_id=new_fbtrace_id(rng))]
        traffic.server.append(record)


def simulate_traffic(config: ShopConfig, *, start: datetime, end: datetime, seed: int) -> ShopTraffic:
    """Healthy traffic for [start, end): seeded, so the same inputs give the same events.

    Each hour has its own random stream (seed + hour), so an hour's traffic does not depend on where
    the period starts: a shorter run reproduces the tail of a longer one exactly.
    """
    traffic = ShopTraffic()
    for hour in hours_between(start, end + timedelta(hours=1) - timedelta(microseconds=1)):
        hour_unix = to_unix(hour)
        rng = random.Random(f"capi-synth:{seed}:traffic:{hour_unix}")
        factor = traffic_factor(config, hour) * hourly_noise(config, rng)
        blocked = hourly_blocked_share(config, hour, seed)
        order_seq = 0
        for profile in EVENT_PROFILES:
            for _ in range(poisson(rng, profile.peak_per_hour * factor)):
                when = hour + timedelta(seconds=draw_int(rng, 0, 3600))
                order_id: str | None = None
                if profile.name == "Purchase":
                    order_seq += 1
                    order_id = f"{hour_unix // 3600}{order_seq:03d}"  # unique per shop hour
                browser_seen = rng.random() >= blocked
                with_id = rng.random() < config.browser_event_id_share
                server_sent = rng.random() < profile.server_share
                if not start <= when < end:
                    continue
                if browser_seen:
                    traffic.browser.append(BrowserHit(when, profile.name, with_id))
                if server_sent:
                    record = _server_event(rng, config, profile, when, order_id)
                    record.request_id = new_request_id(rng)
                    record.attempts = [
                        Attempt(record.received_at + timedelta(seconds=1), fbtrace_id=new_fbtrace_id(rng))
                    ]
                    traffic.server.append(record)
                if order_id is not None:
                    # The order takes its Purchase's value and customer (no draw of its own for the
                    # customer: the scenarios keep their random streams, hence their events).
                    purchase = traffic.server[-1].event if server_sent else None
                    value = purchase["custom_data"]["value"] if purchase else round(rng.uniform(10, 300), 2)
                    customer = order_customer(purchase) if purchase else None
                    traffic.orders.append(Order(order_id, when, value, config.currency, customer))
        _add_crawler(traffic, config, hour, factor, start=start, end=end, seed=seed)
    if config.batch_interval_minutes is not None:
        _send_in_batches(traffic.server, config.batch_interval_minutes, seed,
                         offset_minutes=config.batch_offset_minutes, jitter_seconds=config.batch_jitter_seconds)
    return traffic


def _send_in_batches(server: list[ServerEvent], interval_minutes: int, seed: int, *, offset_minutes: int = 0,
                     jitter_seconds: int = 0) -> None:
    """Regroup events into the requests of a batch job that flushes every N minutes, ``offset_minutes``
    past the grid (a cron at :17, not on the hour) and starting up to ``jitter_seconds`` late (at most
    1000 events a request); the relay receives and forwards each batch at its flush time."""
    step = interval_minutes * 60
    offset = offset_minutes * 60
    flushes: dict[int, list[ServerEvent]] = defaultdict(list)
    for record in server:
        flushes[((to_unix(record.true_time) - offset) // step + 1) * step + offset].append(record)
    for flush_unix in sorted(flushes):
        batch = flushes[flush_unix]
        rng = random.Random(f"capi-synth:{seed}:flush:{flush_unix}")
        late = int(rng.random() * jitter_seconds) if jitter_seconds else 0
        flushed_at = from_unix(flush_unix + late)
        for i in range(0, len(batch), MAX_EVENTS_PER_REQUEST):
            chunk = batch[i : i + MAX_EVENTS_PER_REQUEST]
            request_id, trace = new_request_id(rng), new_fbtrace_id(rng)
            for record in chunk:
                record.received_at = flushed_at
                record.request_id = request_id
                record.batch_size = len(chunk)
                record.attempts = [
                    Attempt(flushed_at + timedelta(seconds=1), fbtrace_id=trace, events_received=len(chunk))
                ]


def requests_of(server: list[ServerEvent]) -> dict[str, list[ServerEvent]]:
    """Records grouped by the request that carried them, in first-seen order."""
    groups: dict[str, list[ServerEvent]] = defaultdict(list)
    for record in server:
        groups[record.request_id].append(record)
    return groups


def cut_at(traffic: ShopTraffic, now: datetime) -> None:
    """Keep only what exists at ``now``: events received, attempts made, hits and orders so far."""
    kept: list[ServerEvent] = []
    for record in traffic.server:
        if record.received_at > now:
            continue
        if record.attempts:
            record.attempts = [a for a in record.attempts if a.at <= now]
        kept.append(record)
    traffic.server = kept
    traffic.browser = [hit for hit in traffic.browser if hit.time < now]
    traffic.orders = [order for order in traffic.orders if order.created_at < now]
