"""Crawler surplus: server events no person caused, set apart before the checks count anything.

A server-side integration that sends a PageView (or ViewContent) for every page it serves sends one
for every page a crawler fetches too. No browser runs the Pixel for the crawler, so the server side
jumps while the browser side does not, and the surplus carries no cookie and no customer key. Left
in, every test reads it as a tracking failure: the browser's share of the event fell
(``browser_pixel_down``), the match keys' share of the event fell (``match_keys_lost``), and thin
events fell against a pool the crawler inflated (``server_events_down``).

What tells a crawler apart from a tracking failure is the ``_fbp`` cookie, set by the Pixel on every
visitor whose browser runs it: the server events that carry it are the people the browser also
counts. So a crawler surplus is, for one event name,
- the share of server events with ``_fbp`` fell (the same change-point test as a match key's
  coverage, ``evidence.share_shift``), while
- the events with ``_fbp`` kept their usual relation to the browser's count of the event (Meta's
  stats: no drop with even ``PEOPLE_DROP_LLR`` of evidence), and
- the events without it at least doubled (``MIN_SURPLUS_RATIO``): blockers hide a few points more or
  less of the visitors from week to week, a crawler adds their number again or more within hours.

A lost ``fbp`` (the sender stops forwarding the cookie) fails the second condition: the events with
it fall against the browser too. The surplus is then taken out of the ledger's server counts and out
of Meta's server counts of those hours (the anonymous events of each hour, pro rata), and reported by
``check_crawler`` as ``volume.crawler_surplus`` (info: Meta receives those events as real traffic,
which the shop should filter, but no tracking broke).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from tools.checks.emq import KEY_MARGIN
from tools.checks.evidence import ALARM_LLR, share_shift, shift_at
from tools.checks.series import ledger_by_event, meta_counts
from tools.checks.types import AuditInputs, CrawlerSurplus, EventHour, Finding, MetaHourlyCount, make_finding
from tools.checks.witness import CROSS_MARGIN, LOOKBACK_HOURS
from tools.timeutil import hours_between, to_iso

COOKIE = "fbp"
# Evidence that the cookie-carrying events fell against the browser's count above which the change is
# a loss of the cookie (or of the people), not a surplus of others.
PEOPLE_DROP_LLR = 2.0
# The cookieless events must at least double over the surplus hours.
MIN_SURPLUS_RATIO = 2.0


@dataclass(frozen=True)
class _Series:
    events: list[float]
    cookie: list[float]
    browser: list[float]
    start: int


def set_apart_crawler(inputs: AuditInputs) -> AuditInputs:
    """``inputs`` without the crawler surplus of any event (unchanged when there is none), the surplus
    kept in ``inputs.crawler_surplus``. Needs Meta's browser counts to tell (none: unchanged)."""
    if inputs.meta_counts is None or inputs.crawler_surplus:
        return inputs
    hours = hours_between(inputs.history_start, inputs.window_end)
    if not hours:
        return inputs
    found: list[tuple[CrawlerSurplus, dict[datetime, float]]] = []
    by_meta = meta_counts(inputs)
    position = {h: i for i, h in enumerate(hours)}
    for name, rows in sorted(ledger_by_event(inputs).items()):
        series = _series(position, rows, by_meta.get((name, "browser"), {}))
        if series is not None:
            surplus = _surplus(hours, name, series)
            if surplus is not None:
                found.append(surplus)
    if not found:
        return inputs
    removed = {(s.event_name, hour): count for s, per_hour in found for hour, count in per_hour.items()}
    event_hours = tuple(_without(row, removed.get((row.event_name, row.hour), 0.0)) for row in inputs.event_hours)
    before = {(row.event_name, row.hour): row.events for row in inputs.event_hours}
    counts = tuple(_scaled(c, removed.get((c.event_name, c.hour), 0.0), before.get((c.event_name, c.hour), 0))
                   for c in inputs.meta_counts)
    return replace(inputs, event_hours=event_hours, meta_counts=counts,
                   crawler_surplus=tuple(s for s, _ in found))


def _series(position: dict[datetime, int], rows: dict[datetime, EventHour],
             browser_by_hour: dict[datetime, float]) -> _Series | None:
    """An event's distinct server events, those with the cookie, and the browser's count, by hour index."""
    events = [0.0] * len(position)
    cookie = [0.0] * len(position)
    browser = [0.0] * len(position)
    for hour, row in rows.items():
        i = position.get(hour)
        if i is None:
            continue
        distinct = row.events - row.duplicate_event_ids
        events[i] = float(distinct)
        cookie[i] = float(min(row.key_counts.get(COOKIE, 0), distinct))
    for hour, count in browser_by_hour.items():
        i = position.get(hour)
        if i is not None:
            browser[i] = count
    start = next((i for i, v in enumerate(events) if v > 0), None)
    if start is None or not any(browser) or not any(cookie):
        return None
    return _Series(events, cookie, browser, start)


def _surplus(hours: list[datetime], name: str, s: _Series) -> tuple[CrawlerSurplus, dict[datetime, float]] | None:
    """The crawler surplus of one event name and what to take out of each hour, or None."""
    anonymous = [e - c for e, c in zip(s.events, s.cookie, strict=True)]
    shift = share_shift(s.cookie, anonymous, [True] * len(hours), lookback=LOOKBACK_HOURS, margin=KEY_MARGIN,
                        known_from=s.start, on_share=True)
    if shift is None or shift.llr < ALARM_LLR:
        return None
    people = shift_at(s.cookie, s.browser, shift.onset, margin=CROSS_MARGIN, known_from=s.start)
    if people is None or people.llr >= PEOPLE_DROP_LLR:
        return None
    end = shift.recovered_from if shift.recovered_from is not None else len(hours)
    span = range(shift.onset, end)
    usual = shift.reference_ratio / (1 + shift.reference_ratio)
    cookie_total = sum(s.cookie[i] for i in span)
    anonymous_total = sum(anonymous[i] for i in span)
    expected = cookie_total * (1 - usual) / usual if usual > 0 else 0.0
    if anonymous_total <= 0 or anonymous_total < MIN_SURPLUS_RATIO * max(expected, 1.0):
        return None
    excess = anonymous_total - expected
    # The crawler's events are anonymous: each hour gives up the same part of its anonymous events.
    part = excess / anonymous_total
    per_hour = {hours[i]: anonymous[i] * part for i in span if anonymous[i] > 0}
    server = sum(s.events[i] for i in span)
    surplus = CrawlerSurplus(event_name=name, start=hours[shift.onset], end=hours[end - 1],
                             removed=round(excess), server_events=round(server),
                             usual_cookie_share=round(usual, 3), cookie_share=round(cookie_total / server, 3),
                             evidence_llr=round(shift.llr, 1))
    return surplus, per_hour


def _without(row: EventHour, removed: float) -> EventHour:
    if removed <= 0:
        return row
    return replace(row, events=max(0, row.events - round(removed)))


def _scaled(count: MetaHourlyCount, removed: float, ledger_events: int) -> MetaHourlyCount:
    """Meta's server count of an hour less the crawler's part of it (the ledger's share of the hour)."""
    if removed <= 0 or count.source != "server" or ledger_events <= 0:
        return count
    kept = max(0.0, 1.0 - removed / ledger_events)
    return replace(count, count=round(count.count * kept))


def check_crawler(inputs: AuditInputs) -> list[Finding]:
    """volume.crawler_surplus (info): what ``set_apart_crawler`` took out, per event name."""
    out = []
    for s in inputs.crawler_surplus:
        out.append(make_finding(
            inputs, check="volume", code="volume.crawler_surplus", event_name=s.event_name, severity="info",
            summary=f"About {s.removed} server {s.event_name} events since {s.start:%a %H:00} UTC came from no "
                    f"browser (no _fbp cookie, and nothing more on the Pixel's side): a crawler or bot "
                    f"the server-side integration reports as visits. Left out of the audit's counts; Meta "
                    f"counts them as traffic, so filter bots before sending.",
            metrics={"observed": s.removed, "baseline": s.server_events - s.removed, "onset": to_iso(s.start),
                     "until": to_iso(s.end), "cookie_share": s.cookie_share,
                     "usual_cookie_share": s.usual_cookie_share, "evidence_llr": s.evidence_llr},
            evidence=[f"{s.event_name}: {s.cookie_share:.0%} of {s.server_events} server events carried _fbp "
                      f"from {to_iso(s.start)} to {to_iso(s.end)} (usually {s.usual_cookie_share:.0%}), while "
                      f"those that did kept their usual relation to the browser's count"],
        ))
    return out
