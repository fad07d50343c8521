"""Hashing check: are user_data fields hashed, normalized and formatted as Meta expects?

Works from the per-field counters the ledger keeps per event and hour (the values themselves are
never looked at here). One finding per code and event; ``metrics.field`` names the worst field and
``metrics.fields`` the fields whose share is news.

Each share of bad values is judged against the pixel's own history (``tools.checks.stats``): the
audited hour (pooled with the hours just before it when the event is rare) against the 7 days
before. A share above the allowed floor that is clearly higher than usual is a warning / critical
finding as it always was; one at the pixel's usual level (a steady 2 % of placeholder e-mails, a
shop that always sends ``country`` raw) is an ``info`` finding with ``metrics.standing = True``,
which the diagnosis leaves alone. It is news again only when it clearly worsens.

The dominant-value rule (one hash on too many events: a constant or a default is sent) depends on
the key's class: identity keys (``em``, ``ph``, ``external_id``) name one person each, so one value
on 30 % of events is a constant; names (``fn``, ``ln``) repeat among people (the commonest surname
of a whole country stays under ~40 %: Nguyen in Viet Nam), so only a near-constant counts; the
other keys (``country``, ``st``, ``ct``, ``zp``, ``ge``, ``db``) repeat by nature (a one-country shop
sends one ``country`` hash on every event, as Meta asks) and are never judged for dominance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from tools.checks.series import (
    MAX_POOLED_HOURS,
    MIN_SHARE_EVENTS,
    ledger_by_event,
    pool_until,
    span_label,
    window_hours,
)
from tools.checks.stats import ShareVerdict, judge_share, open_since, usual_counts
from tools.checks.types import AuditInputs, EventHour, Finding, Severity, make_finding
from tools.timeutil import DAY, HOUR

# counter attribute on EventHour -> (finding code, severity, what went wrong, in words)
COUNTERS: tuple[tuple[str, str, Severity, str], ...] = (
    ("raw_pii", "hashing.raw_pii", "critical", "arrived as raw, unhashed personal data"),
    ("placeholder", "hashing.placeholder", "warning", "hash a placeholder ('', 'null', test address)"),
    ("uppercase_hex", "hashing.uppercase_hex", "warning", "are upper-case hex (Meta needs lower-case)"),
    ("not_sha256", "hashing.not_sha256", "warning", "look hashed but are not SHA-256"),
    ("must_not_hash", "hashing.must_not_hash", "warning", "were hashed although Meta needs them in clear"),
)
# Values flagged by these counters are not counted in key_counts (the ledger does not count them as
# a usable match key), so the events carrying the field are key_counts + the flagged values.
NOT_IN_KEY_COUNTS = frozenset({"placeholder", "not_sha256", "must_not_hash", "malformed"})
FORMAT_FIELDS = ("fbc", "fbp")
# Key classes of the dominant-value rule (see the module docstring).
IDENTITY_KEYS = ("em", "ph", "external_id")
NAME_KEYS = ("fn", "ln")
# One name on more than this share of events is a constant, not a population (see above).
NAME_DOMINANCE = 0.8
# An hour's commonest value needs this many values of a field before it can "dominate" (with 5
# values, one repeat is already 40 %); smaller hours are left out of the dominant-value rule.
MIN_VALUES_FOR_DOMINANCE = 20
HISTORY_DAYS = 7
# Open incidents of these causes keep their hours out of the history (see stats.open_since).
CAUSES = ("hashing_error", "malformed_parameter")

# (bad, carrying) per field, in the window and per day of history.
Counts = dict[str, tuple[int, int]]
# rows, and the fields wanted (None: those with something to report) -> Counts
CountFn = Callable[[list[EventHour], tuple[str, ...] | None], Counts]


class _EventSeries:
    """One event's rows: the judged hours (window, pooled when rare) and 7 days before them."""

    def __init__(self, inputs: AuditInputs, name: str, rows: dict[datetime, EventHour]) -> None:
        events = {h: float(r.events) for h, r in rows.items()}
        self.hours = pool_until(inputs, lambda hs: sum(events.get(h, 0) for h in hs) >= MIN_SHARE_EVENTS)
        self.now = [rows[h] for h in self.hours if h in rows]
        start = self.hours[0]
        end = min(start, open_since(inputs, CAUSES, name) or start)
        self.days: list[list[EventHour]] = [[] for _ in range(HISTORY_DAYS)]
        for hour, row in rows.items():
            if hour < end and hour >= max(start - HISTORY_DAYS * DAY, inputs.history_start):
                self.days[(start - hour - HOUR) // DAY].append(row)

    def judge(self, count: CountFn, floor: float) -> dict[str, ShareVerdict]:
        now = count(self.now, None)
        per_day = [count(day, tuple(now)) for day in self.days]
        out: dict[str, ShareVerdict] = {}
        for field, (k, n) in now.items():
            k_hist, n_hist = usual_counts([day.get(field, (0, 0)) for day in per_day])
            verdict = judge_share(k, n, k_hist, n_hist, floor=floor)
            if verdict.above_floor:
                out[field] = verdict
        return out


def _bad_counts(attr: str, fields: tuple[str, ...] | None = None) -> CountFn:
    """(values flagged by ``attr``, events carrying the field) per field, summed over rows: the
    fields with a flagged value, or exactly ``only`` (with 0 flagged where none was)."""

    def count(rows: list[EventHour], only: tuple[str, ...] | None) -> Counts:
        bad: dict[str, int] = dict.fromkeys(only, 0) if only is not None else {}
        for row in rows:
            for field, value in getattr(row, attr).items():
                if value and (fields is None or field in fields) and (only is None or field in only):
                    bad[field] = bad.get(field, 0) + value
        out: Counts = {}
        for field, k in bad.items():
            carried = sum(r.key_counts.get(field, 0) for r in rows)
            if attr in NOT_IN_KEY_COUNTS:
                carried += k
            # Unknown key counts (older rollups): all events are the carriers.
            out[field] = (k, max(k, carried or sum(r.events for r in rows)))
        return {f: c for f, c in out.items() if c[1]}

    return count


def _dominance_counts(keys: tuple[str, ...]) -> CountFn:
    """(events carrying the commonest value, events carrying the field) per key of ``keys``, from
    the hours with enough values; the hour's leader share times its carriers, summed."""

    def count(rows: list[EventHour], only: tuple[str, ...] | None) -> Counts:
        wanted = keys if only is None else tuple(f for f in keys if f in only)
        return _leaders(rows, wanted)

    return count


def _leaders(rows: list[EventHour], keys: tuple[str, ...]) -> Counts:
    out: dict[str, list[int]] = {}
    for row in rows:
        for field, share in row.top_value_share.items():
            if field not in keys:
                continue
            n = row.key_counts.get(field, row.events)
            if n < MIN_VALUES_FOR_DOMINANCE:
                continue
            acc = out.setdefault(field, [0, 0])
            acc[0] += round(share * n)
            acc[1] += n
    return {field: (k, n) for field, (k, n) in out.items()}


def _finding(inputs: AuditInputs, series: _EventSeries, name: str, code: str, severity: Severity,
             verdicts: dict[str, ShareVerdict], describe: Callable[[str, ShareVerdict], str],
             threshold: float, counts: Counts, *, event_name: str | bool | None = True) -> Finding | None:
    if not verdicts:
        return None
    news = {f: v for f, v in verdicts.items() if v.news}
    standing = {f: v for f, v in verdicts.items() if v.standing}
    judged = news or standing
    worst = max(judged, key=lambda f: (judged[f].share, f))
    verdict = verdicts[worst]
    label = span_label(series.hours)
    evidence = []
    for field, v in sorted(verdicts.items()):
        k, n = counts[field]
        usual = "no history" if v.usual is None else f"previous {HISTORY_DAYS} days: {v.usual:.1%}"
        kind = "new or worse" if v.news else "as usual (standing)"
        evidence.append(f"{label}: {k} of {n} '{field}' values on {name} ({v.share:.1%}; {usual}; {kind})")
    k, n = counts[worst]
    summary = describe(worst, verdict)
    if not news:
        summary += f" This is the pixel's usual level (previous {HISTORY_DAYS} days: {verdict.usual or 0:.0%}): " \
                   "a standing condition, raised again only if it worsens."
    return make_finding(
        inputs, check="hashing", code=code, event_name=name if event_name is True else event_name or None,
        severity=severity if news else "info",
        summary=summary,
        metrics={"field": worst, "fields": ",".join(sorted(judged)), "observed": round(verdict.share, 3),
                 "baseline": None if verdict.usual is None else round(verdict.usual, 4),
                 "threshold": threshold, "bad_values": k, "events": n, "standing": not news,
                 "standing_fields": ",".join(sorted(standing)), "p_value": float(f"{verdict.p_value:.3g}"),
                 "hours": len(series.hours)},
        evidence=evidence,
    )


def _pixel_rows(by_event: dict[str, dict[datetime, EventHour]]) -> dict[datetime, EventHour]:
    """Every event name's rows added up per hour: a deploy that sends raw emails touches them all, and
    together they show it hours before a thin event alone can."""
    groups: dict[datetime, list[EventHour]] = {}
    for rows in by_event.values():
        for hour, row in rows.items():
            groups.setdefault(hour, []).append(row)
    # One merge per hour, not one copy per event name (this runs over the 4 weeks of every audit).
    out: dict[datetime, EventHour] = {}
    for hour, (first, *others) in groups.items():
        if not others:
            out[hour] = first
            continue
        sums = {attr: dict(getattr(first, attr)) for attr in ("key_counts", *(c[0] for c in COUNTERS), "malformed")}
        events = first.events
        for row in others:
            events += row.events
            for attr, merged in sums.items():
                for key, value in getattr(row, attr).items():
                    merged[key] = merged.get(key, 0) + value
        # The merged fields are named at run time (COUNTERS), so the call is checked by name, not by type.
        changes: dict[str, Any] = {"events": events, **sums}
        out[hour] = replace(first, **changes)
    return out


def _judge_event(inputs: AuditInputs, name: str, rows: dict[datetime, EventHour], *,
                 event_name: str | bool | None = True) -> tuple[_EventSeries, list[Finding]]:
    t = inputs.thresholds
    series = _EventSeries(inputs, name, rows)
    checks: list[tuple[str, Severity, CountFn, str]] = [
        (code, severity, _bad_counts(attr), what) for attr, code, severity, what in COUNTERS]
    checks += [(f"hashing.{field}_malformed", "warning", _bad_counts("malformed", (field,)),
                "are malformed (expected fb.<n>.<ms>.<id>)") for field in FORMAT_FIELDS]
    out: list[Finding] = []
    for code, severity, count, what in checks:
        verdicts = series.judge(count, t.hash_bad_share)

        def describe(field: str, v: ShareVerdict, what: str = what, name: str = name) -> str:
            return f"{v.share:.0%} of '{field}' values on {name} {what}."

        finding = _finding(inputs, series, name, code, severity, verdicts, describe,
                           t.hash_bad_share, count(series.now, None), event_name=event_name)
        if finding:
            out.append(finding)
    return series, out


def check_hashing(inputs: AuditInputs) -> list[Finding]:
    """hashing.* findings per event over the audited window, judged against the pixel's history; and
    for the pixel's events together, where a fault no single thin event can show yet shows."""
    window = window_hours(inputs)
    out: list[Finding] = []
    by_event = ledger_by_event(inputs)
    for name, rows in sorted(by_event.items()):
        if not any(h in rows and rows[h].events for h in window):
            continue  # nothing of this event in the audited hours: nothing to judge
        series, findings = _judge_event(inputs, name, rows)
        out.extend(findings)
        out.extend(_dominant(inputs, series, name))
    news = {f.code for f in out if f.severity != "info"}
    # Only the hours the pixel's series can look at (its pooled hours and the 7 days before them):
    # merging all 4 weeks of rows hour by hour was most of this check's time.
    since = window[0] - MAX_POOLED_HOURS * HOUR - HISTORY_DAYS * DAY
    pixel = _pixel_rows({name: {h: r for h, r in rows.items() if h >= since} for name, rows in by_event.items()})
    if any(h in pixel and pixel[h].events for h in window):
        _, together = _judge_event(inputs, "all events", pixel, event_name=None)
        out.extend(f for f in together if f.severity != "info" and f.code not in news)
    return out


def _dominant(inputs: AuditInputs, series: _EventSeries, name: str) -> list[Finding]:
    """hashing.dominant_value: one hashed value is shared by too many events (a constant sent)."""
    t = inputs.thresholds
    verdicts: dict[str, ShareVerdict] = {}
    for keys, floor in ((IDENTITY_KEYS, t.top_value_share), (NAME_KEYS, NAME_DOMINANCE)):
        verdicts.update(series.judge(_dominance_counts(keys), floor))

    def describe(field: str, v: ShareVerdict) -> str:
        return f"One '{field}' hash is on {v.share:.0%} of {name} events: a constant or default is sent."

    threshold = t.top_value_share if any(f in IDENTITY_KEYS for f in verdicts) else NAME_DOMINANCE
    finding = _finding(inputs, series, name, "hashing.dominant_value", "warning", verdicts, describe,
                       threshold, _leaders(series.now, IDENTITY_KEYS + NAME_KEYS))
    return [finding] if finding else []
