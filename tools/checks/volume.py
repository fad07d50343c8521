"""Volume check: hourly counts per event and source against the hour-of-week baseline.

Counts come from Meta (browser and server) when Meta answered, else from the ledger (server).
Rules that keep it quiet on normal traffic:
- a deviation must pass both a ratio (``volume_drop_ratio`` / ``volume_spike_ratio``) and a
  noise-aware z-score (``volume_z``), so a quiet night hour or a weekend dip is not an outage;
- a series whose expectation is below ``min_baseline_events`` an hour is judged on the pooled last
  hours, and not at all when even that stays small;
- a spike that shows on both sides (or on most events at once) is a sales peak: reported as info.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tools.checks.baseline import HourlyBaseline, judged_span
from tools.checks.parity import witness_metrics
from tools.checks.series import (
    MAX_POOLED_HOURS,
    first_hour,
    ledger_counts,
    merge_same_problem,
    meta_counts,
    span_label,
    total,
    window_hours,
)
from tools.checks.types import AuditInputs, Finding, Source, make_finding
from tools.checks.witness import (
    ALL_EVENTS,
    CROSS_MARGIN,
    POOL_MARGIN,
    WitnessReport,
    WitnessVerdict,
    describe,
    drop_severity,
    witness_report,
)
from tools.timeutil import DAY, HOUR, parse_iso

# A name needs at least a day of the pixel's history behind it before it can be called "new", and
# stays "new" for a day after its first event (a rename is seen while it is still fresh).
NEW_EVENT_MIN_HISTORY = DAY
NEW_EVENT_FRESH_FOR = 7 * DAY  # the witness look-back: a rename days before the first audit
# A new name needs this many events since it first appeared (any rate: a renamed Lead is thin). One event
# of an unknown name may be a hand-made test call; two come from a sender, and a renamed Purchase at one an
# hour must be paired as soon as the two unmatched orders that show its loss.
NEW_EVENT_MIN_EVENTS = 2
# A share drop with this much evidence (about 20:1), starting within RENAME_WINDOW of a new name's
# first event, is reported with it: the two together are a rename.
RENAME_CORROBORATION_LLR = 3.0
RENAME_WINDOW = 6 * HOUR


@dataclass(frozen=True)
class SeriesVerdict:
    event_name: str
    source: Source
    origin: str  # "meta" | "ledger"
    hours: list[datetime]
    observed: float
    expected: float
    z: float
    # The audited window alone (no pooling), to compare series with each other.
    window_observed: float
    window_expected: float

    @property
    def ratio(self) -> float:
        return self.observed / self.expected if self.expected > 0 else float("inf")


@dataclass(frozen=True)
class SeriesSet:
    """The hourly series the volume check judges, where they come from, and when each side starts."""

    origin: str  # "meta" | "ledger"
    series: dict[tuple[str, Source], dict[datetime, float]]
    starts: dict[Source, datetime | None]


def _series_sets(inputs: AuditInputs) -> tuple[str, dict[tuple[str, Source], dict[datetime, float]]]:
    if inputs.meta_counts is not None:
        return "meta", meta_counts(inputs)
    return "ledger", {(name, "server"): s for name, s in ledger_counts(inputs).items()}


def judge_series(inputs: AuditInputs) -> tuple[list[SeriesVerdict], SeriesSet]:
    """Observed vs expected for every (event, source) with enough volume to judge."""
    origin, all_series = _series_sets(inputs)
    t = inputs.thresholds
    window = window_hours(inputs)
    # Data start per source: before it the pixel sent nothing at all, so its hours are unknown.
    starts: dict[Source, datetime | None] = {}
    for source in ("browser", "server"):
        starts[source] = first_hour(s for (_, src), s in all_series.items() if src == source)
    verdicts: list[SeriesVerdict] = []
    for (name, source), series in sorted(all_series.items()):
        known_from = starts[source]
        if known_from is None or known_from >= window[0]:
            continue
        baseline = HourlyBaseline(
            series, known_from=known_from, until=window[0], weeks=t.baseline_weeks,
            timezone=inputs.timezone,
        )
        judged = judged_span(
            baseline, window, min_expected=t.min_baseline_events, wanted_expected=t.volume_z**2 + 4,
            max_hours=MAX_POOLED_HOURS, earliest=known_from,
        )
        if judged is None:
            continue
        hours, expectation = judged
        observed = total(series, hours)
        in_window = baseline.expect_span(window)
        verdicts.append(SeriesVerdict(
            name, source, origin, hours, observed, expectation.expected, expectation.z(observed),
            total(series, window), in_window.expected if in_window else 0.0,
        ))
    return verdicts, SeriesSet(origin, all_series, starts)


def _metrics(v: SeriesVerdict, threshold: float) -> dict[str, float | int | str | None]:
    return {
        "source": v.source,
        "origin": v.origin,
        "observed": int(v.observed),
        "baseline": round(v.expected, 1),
        "threshold": threshold,
        "ratio": round(v.ratio, 3) if v.expected > 0 else None,
        "z": round(v.z, 2),
        "hours": len(v.hours),
    }


def _evidence(v: SeriesVerdict) -> list[str]:
    where = "Meta stats" if v.origin == "meta" else "the ledger"
    return [
        f"{v.event_name} {v.source} events in {span_label(v.hours)}: {int(v.observed)} per {where}, "
        f"expected about {v.expected:.0f} from the same hours in previous weeks and recent days",
    ]


def _rest_ratio(spike: SeriesVerdict, verdicts: list[SeriesVerdict]) -> float | None:
    """How much the rest of the pixel's traffic (other events, the other side) rose in the window.

    A flash sale lifts everything together; a duplicated or looping sender lifts one series.
    """
    others = [v for v in verdicts if (v.event_name, v.source) != (spike.event_name, spike.source)]
    expected = sum(v.window_expected for v in others)
    if expected <= 0:
        return None
    return sum(v.window_observed for v in others) / expected


def _share_rise(spike: SeriesVerdict, ctx: SeriesSet) -> float | None:
    """How much the spiking series' share of its witnesses (the same channel's other events and the
    same event on the other channel) rose over the judged hours, against the 7 days before them."""
    other: Source = "browser" if spike.source == "server" else "server"
    target = ctx.series.get((spike.event_name, spike.source), {})
    partners = [s for (n, src), s in ctx.series.items()
                if (src == spike.source and n != spike.event_name) or (n, src) == (spike.event_name, other)]
    before = [spike.hours[0] - k * HOUR for k in range(1, 7 * 24 + 1)]
    t_now, t_ref = total(target, spike.hours), total(target, before)
    p_now = sum(total(s, spike.hours) for s in partners)
    p_ref = sum(total(s, before) for s in partners)
    if not (t_ref and p_now and p_ref):
        return None
    return (t_now / p_now) / (t_ref / p_ref)


def check_volume(inputs: AuditInputs) -> list[Finding]:
    """volume.drop / volume.zero / volume.spike per event and source, and volume.new_event."""
    t = inputs.thresholds
    verdicts, ctx = judge_series(inputs)
    witnesses = witness_report(inputs)
    findings: list[Finding] = []
    for v in verdicts:
        if v.ratio < t.volume_drop_ratio and witnesses.judged(v.event_name, v.source):
            continue  # its witnesses judge it (below); a fall in volume alone is demand, not tracking
        if v.observed == 0 and v.z <= -t.volume_z:
            findings.append(make_finding(
                inputs, check="volume", code="volume.zero", event_name=v.event_name, severity="critical",
                summary=f"No {v.event_name} events from the {v.source} side in {span_label(v.hours)} "
                        f"(usually about {v.expected:.0f}).",
                metrics=_metrics(v, t.volume_drop_ratio), evidence=_evidence(v),
            ))
        elif v.ratio < t.volume_drop_ratio and v.z <= -t.volume_z:
            findings.append(make_finding(
                inputs, check="volume", code="volume.drop", event_name=v.event_name, severity="warning",
                summary=f"{v.event_name} {v.source} events fell to {v.observed:.0f} "
                        f"({v.ratio:.0%} of the usual {v.expected:.0f}).",
                metrics=_metrics(v, t.volume_drop_ratio), evidence=_evidence(v),
            ))
        elif v.ratio >= t.volume_spike_ratio and v.z >= t.volume_z:
            rest = _rest_ratio(v, verdicts)
            rise = _share_rise(v, ctx)
            # Demand lifts the event's witnesses too (the rest of the traffic, the other channel): its
            # share of them barely moves. A looping or duplicated sender lifts one series alone.
            sales_peak = (rest is not None and rest >= max(1.5, t.volume_spike_ratio / 2)) or (
                rise is not None and rise < max(1.5, t.volume_spike_ratio / 2))
            findings.append(make_finding(
                inputs, check="volume", code="volume.spike", event_name=v.event_name,
                severity="info" if sales_peak else "warning",
                summary=f"{v.event_name} {v.source} events jumped to {v.observed:.0f} "
                        f"({v.ratio:.1f}x the usual {v.expected:.0f})"
                        + (", with the rest of the traffic: looks like a sales peak." if sales_peak else "."),
                metrics={**_metrics(v, t.volume_spike_ratio),
                         "rest_of_traffic_ratio": round(rest, 2) if rest is not None else None,
                         "share_rise": round(rise, 2) if rise is not None else None},
                evidence=_evidence(v),
            ))
    findings.extend(_witnessed_drops(inputs, witnesses))
    findings.extend(_demand_change(inputs, verdicts, findings))
    new_names = _new_events(inputs, ctx)
    findings.extend(new_names)
    findings.extend(_corroborated_drops(inputs, witnesses, new_names, findings))
    return merge_same_problem(findings)


def _corroborated_drops(inputs: AuditInputs, report: WitnessReport, new_names: list[Finding],
                        findings: list[Finding]) -> list[Finding]:
    """volume.drop for a series whose share fell with moderate evidence (20:1) at the time a new name
    appeared: together they are strong evidence of a rename, which a thin series (Purchase at 2 an
    hour) could not show alone within a few hours. Only when no series already shows a clear drop (that
    one is the rename), on every channel the new name appeared on, and the most convincing one."""
    if any((f.severity != "info" and f.code in ("volume.zero", "volume.drop")) or "_below_" in f.code
           for f in findings):
        return []
    out: list[Finding] = []
    by_name: dict[str, list[Finding]] = {}
    for new in new_names:
        by_name.setdefault(str(new.event_name), []).append(new)
    for name, news in sorted(by_name.items()):
        sources = {str(n.metrics.get("source")) for n in news}
        first_seen = min(parse_iso(str(n.metrics["first_seen"])) for n in news)
        candidates: dict[str, list[WitnessVerdict]] = {}
        for v in report.verdicts:
            if (v.event_name in (name, ALL_EVENTS) or v.source not in sources or v.alarm
                    or v.shift.llr < RENAME_CORROBORATION_LLR
                    or abs((v.onset - first_seen).total_seconds()) > RENAME_WINDOW.total_seconds()):
                continue
            candidates.setdefault(v.event_name, []).append(v)
        complete = {old: vs for old, vs in candidates.items() if {v.source for v in vs} == sources}
        if not complete:
            continue
        old = max(complete, key=lambda n: sum(v.shift.llr for v in complete[n]))
        for v in complete[old]:
            out.append(make_finding(
                inputs, check="volume", code="volume.drop", event_name=v.event_name, severity="warning",
                summary=f"{v.event_name} {v.source} events fell to {v.ratio:.0%} of their "
                        f"usual share since {v.onset:%a %H:00} UTC, when '{name}' appeared.",
                metrics={**witness_metrics(v, POOL_MARGIN if v.witness == "pool" else CROSS_MARGIN),
                         "corroborated_by": name},
                evidence=[f"{v.event_name} {v.source} " + describe(v), f"'{name}' first seen {first_seen:%a %H:00}"],
            ))
    return out


def _witnessed_drops(inputs: AuditInputs, report: WitnessReport) -> list[Finding]:
    """volume.zero / volume.drop for a series whose share of its pool fell (another event of the same
    channel and the same event on the other channel carry on) while the same-event cross-channel test
    did not fire (then parity reports it)."""
    crossed = {(v.event_name, v.source) for v in report.verdicts if v.witness == "cross" and v.alarm}
    pools = {(v.event_name, v.source): v for v in report.verdicts if v.witness == "pool"}
    out: list[Finding] = []
    for v in report.verdicts:
        if v.witness != "pool" or not v.alarm or (v.event_name, v.source) in crossed:
            continue
        zero = v.shift.target_after == 0
        # The same event fell against its pool on the other channel too, and neither is gone: the event
        # itself fell (its conversion rate on a news spike), not one channel's tracking, which would
        # move the ratio between the channels (parity). Info; a rename still pairs with it
        # (tools.diagnosis.rules). An event gone from both channels while the rest carries on is a
        # tag removed, not demand: that stays a drop.
        other = pools.get((v.event_name, "browser" if v.source == "server" else "server"))
        both = (other is not None and other.ratio < POOL_MARGIN and other.shift.llr >= RENAME_CORROBORATION_LLR
                and not zero and other.shift.target_after > 0)
        out.append(make_finding(
            inputs, check="volume", code="volume.zero" if zero else "volume.drop", event_name=v.event_name,
            severity="info" if both else drop_severity(v),
            summary=(f"No {v.event_name} events from the {v.source} side since {v.onset:%a %H:00} UTC"
                     if zero else
                     f"{v.event_name} {v.source} events fell to {v.ratio:.0%} of their "
                     f"usual share since {v.onset:%a %H:00} UTC")
                    + (f"; the {v.event_name} events of the other channel fell with them (the event's own "
                       "demand, not one channel's tracking)." if both else
                       f" while the rest of the traffic carried on (about {v.expected:.0f} expected)."),
            metrics={**witness_metrics(v, POOL_MARGIN), "both_channels": int(both)},
            evidence=[f"{v.event_name} {v.source} vs the pixel's other events and the other channel "
                      + describe(v)],
        ))
    return out


def _demand_change(inputs: AuditInputs, verdicts: list[SeriesVerdict],
                   findings: list[Finding]) -> list[Finding]:
    """volume.demand_drop (info): the whole pixel fell on every channel together (a storm, a holiday,
    a site outage); no channel lost its share, so it is not a tracking incident."""
    t = inputs.thresholds
    if any(f.severity != "info" and f.code in ("volume.zero", "volume.drop") for f in findings):
        return []
    by_source: dict[str, tuple[float, float]] = {}
    for v in verdicts:
        observed, expected = by_source.get(v.source, (0.0, 0.0))
        by_source[v.source] = (observed + v.window_observed, expected + v.window_expected)
    falls = {s: o / e for s, (o, e) in by_source.items() if e >= t.min_baseline_events}
    if not falls or max(falls.values()) >= t.volume_drop_ratio:
        return []
    observed = sum(o for o, _ in by_source.values())
    expected = sum(e for _, e in by_source.values())
    return [make_finding(
        inputs, check="volume", code="volume.demand_drop", severity="info",
        summary=f"Traffic fell on every channel together to {observed / expected:.0%} of the usual level "
                "(demand, a holiday or a site outage, not tracking: no channel lost its share).",
        metrics={"observed": int(observed), "baseline": round(expected, 1), "threshold": t.volume_drop_ratio,
                 **{f"{s}_ratio": round(r, 3) for s, r in falls.items()}},
        evidence=[f"{s}: {o:.0f} events in the window, about {e:.0f} usual"
                  for s, (o, e) in sorted(by_source.items())],
    )]


def _new_events(inputs: AuditInputs, ctx: SeriesSet) -> list[Finding]:
    """Names first seen within the last three days, after a day of the pixel's history without them
    (info on their own; the rename rule pairs them with a name that fell silent)."""
    window = window_hours(inputs)
    out: list[Finding] = []
    for (name, source), series in sorted(ctx.series.items()):
        start = ctx.starts[source]
        seen = [h for h, v in series.items() if v > 0]
        if start is None or not seen:
            continue
        first = min(seen)
        if first - start < NEW_EVENT_MIN_HISTORY or window[0] - first >= NEW_EVENT_FRESH_FOR:
            continue
        since_first = [h for h in series if h >= first]
        observed = total(series, since_first)
        if observed < NEW_EVENT_MIN_EVENTS:
            continue
        span_hours = max(1.0, (window[-1] - first).total_seconds() / 3600 + 1)
        out.append(make_finding(
            inputs, check="volume", code="volume.new_event", event_name=name, severity="info",
            summary=f"A new event name '{name}' appeared on the {source} side with {observed:.0f} events.",
            metrics={"source": source, "origin": ctx.origin, "observed": int(observed), "baseline": 0,
                     "threshold": NEW_EVENT_MIN_EVENTS, "first_seen": span_label([first]),
                     "observed_per_hour": round(observed / span_hours, 3)},
            evidence=[f"{name} {source}: {observed:.0f} events since it first appeared; first seen "
                      f"{span_label([first])}, none between {span_label([start])} and then"],
        ))
    return out
