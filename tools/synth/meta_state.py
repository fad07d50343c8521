"""Meta's side of a generated shop, in the state format the Graph API simulator loads.

``server_hours`` is what Meta received: delivered events only (by ``now``), bucketed by the hour of
their event_time, duplicates counted. ``browser_hours`` is the Pixel side. Hours with no events are
left out (the stats endpoint returns no bucket for them).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime
from typing import Any

from tools.synth.records import BrowserHit, ServerEvent, to_iso
from tools.timeutil import from_unix, to_unix

# The user_data keys the simulator reports as match keys.
MATCH_KEYS: tuple[str, ...] = (
    "em",
    "ph",
    "fbc",
    "fbp",
    "client_ip_address",
    "client_user_agent",
    "external_id",
)
# The token the agent reads Meta with in simulations (the simulator accepts it unless expired).
SIM_READ_TOKEN = "sim-token"


def _has(value: object) -> bool:
    return bool(value) and value != [""]


def server_hours(records: list[ServerEvent], now: datetime) -> list[dict[str, Any]]:
    """Per (event_time hour, event name): what Meta received and accepted by ``now``."""
    buckets: dict[tuple[int, str], dict[str, Any]] = {}
    lags: dict[tuple[int, str], list[int]] = defaultdict(list)
    for record in records:
        delivered_at = record.delivered_at
        if delivered_at is None or delivered_at > now:
            continue
        event = record.event
        key = (int(event["event_time"]) // 3600 * 3600, str(event["event_name"]))
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = {
                "count": 0,
                "with_event_id": 0,
                "match_keys": dict.fromkeys(MATCH_KEYS, 0),
            }
        bucket["count"] += 1
        bucket["with_event_id"] += 1 if event.get("event_id") else 0
        user_data = event.get("user_data", {})
        for match_key in MATCH_KEYS:
            if _has(user_data.get(match_key)):
                bucket["match_keys"][match_key] += 1
        lags[key].append(to_unix(delivered_at) - int(event["event_time"]))
    return [
        {
            "hour": to_iso(from_unix(hour)),
            "event_name": name,
            **buckets[(hour, name)],
            "lag_seconds_p50": int(statistics.median_low(lags[(hour, name)])),
        }
        for hour, name in sorted(buckets)
    ]


def browser_hours(hits: list[BrowserHit]) -> list[dict[str, Any]]:
    """Per (hour, event name): Pixel events Meta counted, and how many carried an eventID."""
    buckets: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    for hit in hits:
        bucket = buckets[(to_unix(hit.time) // 3600 * 3600, hit.event_name)]
        bucket[0] += 1
        bucket[1] += 1 if hit.with_event_id else 0
    return [
        {"hour": to_iso(from_unix(hour)), "event_name": name, "count": counts[0], "with_event_id": counts[1]}
        for (hour, name), counts in sorted(buckets.items())
    ]


def build_meta_state(
    *,
    pixel_id: str,
    now: datetime,
    server: list[ServerEvent],
    browser: list[BrowserHit],
    valid_tokens: list[str],
    expired_tokens: list[str],
) -> dict[str, Any]:
    """The simulator state for one pixel as seen at ``now``."""
    return {
        "now": to_iso(now),
        "tokens": {"valid": valid_tokens, "expired": expired_tokens},
        "pixels": {
            pixel_id: {"browser_hours": browser_hours(browser), "server_hours": server_hours(server, now)}
        },
    }
