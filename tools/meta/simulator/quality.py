"""The simulator's model of Meta's Dataset Quality API (``GET /{ver}/dataset_quality``).

Meta does not publish how it scores Event Match Quality; this model is deliberately simple and
documented so that scenarios can be scripted against it. For each web event name of a pixel:

- Windows (ending at the simulator clock): match keys and EMQ look at server events whose
  event_time falls in the last 48 hours; event coverage, dedupe-key feedback and data freshness at
  the last 7 days (browser counts are the scripted browser side).
- ``match_key_feedback``: for each identifier, coverage = events carrying the key / server events,
  in percent. Identifiers and the user_data keys behind them: email=em, phone=ph,
  external_id=external_id, ip_address=client_ip_address, user_agent=client_user_agent, fbc=fbc,
  fbp=fbp. ``potential_aly_acr_increase`` = the score points the missing coverage costs, x 10 (%).
- ``composite_score`` (0..10): first the signal s = sum over identifiers of weight x coverage
  fraction, with weights email 3.0, phone 1.5, fbc 1.5, external_id 1.0, fbp 1.0, ip_address 1.0,
  user_agent 1.0 (so s is 0..10); then a saturating curve, because each extra key adds less once
  a person is already matched: score = 10 x (1 - e^(-0.2 s)) / (1 - e^(-2)). Full coverage of every
  key scores 10; IP + user agent alone about 3.8 (Meta's "poor"); em + IP + UA + fbp on every event
  about 8.1; a typical shop's Purchase (em 65 %, ph 30 %, fbc 25 %, fbp 90 %, external_id 40 %,
  ip/ua 100 %) about 8. Rounded to 0.1. No server events in 48 h: no ``event_match_quality``.
- ``event_coverage.percentage`` = min(100, server / browser events x 100) over 7 days (goal 75);
  absent when there were no browser events.
- ``dedupe_key_feedback`` (key ``event_id``): browser and server shares of events carrying an
  event_id, and ``overall_browser_coverage_from_dedupe_key`` = min(browser with id, server with id)
  / browser events (the browser events a server event can deduplicate against); null when a side
  had no events.
- ``data_freshness.upload_frequency`` from the event-weighted median of the lag between event_time and
  receipt (seeded hours contribute their ``lag_seconds_p50``): ``real_time`` under 10 minutes,
  ``hourly`` under 2 hours, else ``daily``.
- ``diagnostics``: one entry when event coverage is below the goal, one per identifier below 50 %
  coverage among email, phone, fbc, fbp.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from tools.meta.simulator.state import BrowserHour, ServerHour

EMQ_WINDOW = timedelta(hours=48)
COVERAGE_WINDOW = timedelta(days=7)
EVENT_COVERAGE_GOAL = 75.0
# identifier -> (user_data key, weight in the composite score); weights sum to 10.
IDENTIFIERS: dict[str, tuple[str, float]] = {
    "email": ("em", 3.0),
    "phone": ("ph", 1.5),
    "fbc": ("fbc", 1.5),
    "external_id": ("external_id", 1.0),
    "fbp": ("fbp", 1.0),
    "ip_address": ("client_ip_address", 1.0),
    "user_agent": ("client_user_agent", 1.0),
}
EMQ_CURVE = 0.2
DIAGNOSED_IDENTIFIERS = ("email", "phone", "fbc", "fbp")
REAL_TIME_LAG = 600.0
HOURLY_LAG = 7200.0


def web_quality(
    browser: Mapping[tuple[datetime, str], BrowserHour],
    server: Mapping[tuple[datetime, str], ServerHour],
    *,
    now: datetime,
) -> list[dict[str, Any]]:
    """The ``web`` list of the Dataset Quality answer for one pixel at ``now`` (sorted by event name)."""
    week_start, emq_start = now - COVERAGE_WINDOW, now - EMQ_WINDOW
    names = {name for (hour, name) in [*browser, *server] if week_start <= hour < now}
    out = []
    for name in sorted(names):
        week_browser = [v for (hour, n), v in browser.items() if n == name and week_start <= hour < now]
        week_server = [v for (hour, n), v in server.items() if n == name and week_start <= hour < now]
        recent_server = [v for (hour, n), v in server.items() if n == name and emq_start <= hour < now]
        out.append(_event_quality(name, week_browser, week_server, recent_server))
    return out


def composite_score(coverage_fraction: Mapping[str, float]) -> float:
    """EMQ (0..10) from identifier -> coverage fraction (0..1): the weighted signal of ``IDENTIFIERS``
    through the saturating curve described in the module docstring."""
    signal = sum(weight * min(1.0, max(0.0, coverage_fraction.get(identifier, 0.0)))
                 for identifier, (_, weight) in IDENTIFIERS.items())
    score = 10.0 * (1 - math.exp(-EMQ_CURVE * signal)) / (1 - math.exp(-EMQ_CURVE * 10.0))
    return round(score, 1)


def _event_quality(name: str, week_browser: list[BrowserHour], week_server: list[ServerHour],
                   recent_server: list[ServerHour]) -> dict[str, Any]:
    item: dict[str, Any] = {"event_name": name}
    diagnostics: list[dict[str, Any]] = []
    recent_events = sum(hour.count for hour in recent_server)
    if recent_events:
        fractions = {
            identifier: sum(hour.match_keys.get(key, 0) for hour in recent_server) / recent_events
            for identifier, (key, _) in IDENTIFIERS.items()
        }
        item["event_match_quality"] = {
            "composite_score": composite_score(fractions),
            "match_key_feedback": [
                {"identifier": identifier,
                 "coverage": {"percentage": _pct(fraction)},
                 "potential_aly_acr_increase": {
                     "percentage": round((1 - min(1.0, fraction)) * IDENTIFIERS[identifier][1] * 10, 1),
                     "description": f"Share more {identifier} to improve matching."}}
                for identifier, fraction in fractions.items()
            ],
            "diagnostics": diagnostics,
        }
        for identifier in DIAGNOSED_IDENTIFIERS:
            if fractions[identifier] < 0.5:
                key = IDENTIFIERS[identifier][0]
                diagnostics.append({
                    "name": f"Low {identifier} coverage",
                    "description": f"Fewer than half of {name} events include {identifier}.",
                    "solution": f"Send user_data.{key} with every event where you have it.",
                    "percentage": _pct(fractions[identifier]),
                    "affected_event_count": recent_events - sum(h.match_keys.get(key, 0)
                                                                for h in recent_server),
                    "total_event_count": recent_events,
                })

    browser_events = sum(hour.count for hour in week_browser)
    server_events = sum(hour.count for hour in week_server)
    if browser_events:
        coverage = round(100.0 * min(1.0, server_events / browser_events), 1)
        item["event_coverage"] = {
            "percentage": coverage, "goal_percentage": EVENT_COVERAGE_GOAL,
            "description": "Share of browser events also received from the Conversions API (7-day average).",
        }
        if coverage < EVENT_COVERAGE_GOAL and "event_match_quality" in item:
            diagnostics.append({
                "name": "Event coverage below goal",
                "description": f"The Conversions API sends fewer {name} events than the pixel.",
                "solution": "Send every browser event from your server too, with the same event_id.",
                "percentage": coverage,
                "affected_event_count": browser_events - min(browser_events, server_events),
                "total_event_count": browser_events,
            })

    browser_with_id = sum(hour.with_event_id for hour in week_browser)
    server_with_id = sum(hour.with_event_id for hour in week_server)
    item["dedupe_key_feedback"] = [{
        "dedupe_key": "event_id",
        "browser_events_with_dedupe_key": {"percentage": _pct(_share(browser_with_id, browser_events))},
        "server_events_with_dedupe_key": {"percentage": _pct(_share(server_with_id, server_events))},
        "overall_browser_coverage_from_dedupe_key": {
            "percentage": _pct(_share(min(browser_with_id, server_with_id), browser_events))},
    }]

    lags = [lag for hour in week_server for lag in hour.lags]
    if lags:
        frequency = upload_frequency(weighted_median(lags))
        item["data_freshness"] = {"upload_frequency": frequency,
                                  "description": f"Server events arrive {frequency.replace('_', ' ')}."}
    return item


def upload_frequency(median_lag_seconds: float) -> str:
    if median_lag_seconds < REAL_TIME_LAG:
        return "real_time"
    if median_lag_seconds < HOURLY_LAG:
        return "hourly"
    return "daily"


def weighted_median(values: list[tuple[float, int]]) -> float:
    """Median of values given as (value, weight) pairs (lower median on ties)."""
    ordered = sorted((value, weight) for value, weight in values if weight > 0)
    total = sum(weight for _, weight in ordered)
    running = 0
    for value, weight in ordered:
        running += weight
        if running * 2 >= total:
            return value
    return 0.0


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else round(100.0 * fraction, 1)
