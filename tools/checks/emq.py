"""EMQ check: Meta's Event Match Quality per event, and which match key fell (from the ledger).

Severity of ``emq.below_floor``: critical when the score is newly below the floor (it was at or
above it about a week ago: something just broke). A score that has been low all along, or with no
earlier snapshot to tell, is info: a standing weakness for the daily digest, not an outage to page
anyone about every hour. ``emq.below_goal`` is a warning when newly below the goal, info otherwise.

The ledger's per-key coverage sees a key disappear within the hour, before Meta's score moves, and
says *which* key it was.
"""

from __future__ import annotations

import math

from tools.checks.series import (
    MIN_SHARE_EVENTS,
    history_hours,
    ledger_by_event,
    pool_until,
    span_label,
    week_earlier,
)
from tools.checks.types import AuditInputs, Finding, Severity, make_finding


def check_scores(inputs: AuditInputs) -> list[Finding]:
    """emq.below_floor / emq.below_goal / emq.drop from the dataset-quality snapshots."""
    if inputs.quality is None:
        return []
    t = inputs.thresholds
    before = week_earlier(inputs)
    previous = {q.event_name: q.composite_score for q in before.events} if before else {}
    out: list[Finding] = []
    for quality in inputs.quality.events:
        score = quality.composite_score
        if score is None:
            continue
        name = quality.event_name
        then = previous.get(name)
        metrics = {"observed": score, "baseline": then, "week_earlier": then}
        evidence = [f"EMQ of {name} is {score:.1f}/10 (Dataset Quality API, "
                    f"{span_label([inputs.quality.fetched_at.replace(minute=0, second=0, microsecond=0)])})"]
        if then is not None and before is not None:
            evidence.append(f"it was {then:.1f} on {before.fetched_at.date().isoformat()}")
        if score < t.emq_floor:
            severity: Severity = "critical" if then is not None and then >= t.emq_floor else "info"
            out.append(make_finding(
                inputs, check="emq", code="emq.below_floor", event_name=name, severity=severity,
                summary=f"Match quality of {name} is {score:.1f}/10, below the floor of {t.emq_floor:g}.",
                metrics={**metrics, "threshold": t.emq_floor}, evidence=evidence,
            ))
        elif score < t.emq_goal:
            severity = "warning" if then is not None and then >= t.emq_goal else "info"
            out.append(make_finding(
                inputs, check="emq", code="emq.below_goal", event_name=name, severity=severity,
                summary=f"Match quality of {name} is {score:.1f}/10, below the goal of {t.emq_goal:g}.",
                metrics={**metrics, "threshold": t.emq_goal}, evidence=evidence,
            ))
        if then is not None and then - score >= t.emq_drop:
            out.append(make_finding(
                inputs, check="emq", code="emq.drop", event_name=name, severity="warning",
                summary=f"Match quality of {name} fell from {then:.1f} to {score:.1f} in about a week.",
                metrics={**metrics, "threshold": t.emq_drop, "drop": round(then - score, 2)},
                evidence=evidence,
            ))
    return out


def check_key_coverage(inputs: AuditInputs) -> list[Finding]:
    """emq.key_coverage_drop: a match key's share of server events fell against the last week.

    One finding per event; when several keys fell, ``metrics.key`` is the one that fell most and
    ``metrics.keys`` lists them all.
    """
    t = inputs.thresholds
    out: list[Finding] = []
    for name, rows in sorted(ledger_by_event(inputs).items()):
        events = {h: float(r.events) for h, r in rows.items()}
        hours = pool_until(inputs, lambda hs, e=events: sum(e.get(h, 0) for h in hs) >= MIN_SHARE_EVENTS)
        now = [rows[h] for h in hours if h in rows]
        past = [rows[h] for h in history_hours(inputs, 7) if h in rows]
        n, past_n = sum(r.events for r in now), sum(r.events for r in past)
        if n < MIN_SHARE_EVENTS or past_n < MIN_SHARE_EVENTS:
            continue
        drops: list[tuple[float, str, float, float]] = []
        for key in sorted({k for r in past for k in r.key_counts}):
            usual = sum(r.key_counts.get(key, 0) for r in past) / past_n
            share = sum(r.key_counts.get(key, 0) for r in now) / n
            fall_pts = 100 * (usual - share)
            # Binomial noise of the window's share; the fall must clear it as well as the threshold.
            noise = math.sqrt(max(usual * (1 - usual), 0.01) / n)
            if fall_pts >= t.key_coverage_drop_pct and (usual - share) / noise >= t.volume_z:
                drops.append((fall_pts, key, usual, share))
        if not drops:
            continue
        drops.sort(reverse=True)
        fall_pts, key, usual, share = drops[0]
        out.append(make_finding(
            inputs, check="emq", code="emq.key_coverage_drop", event_name=name,
            severity="critical" if share < 0.05 and usual >= 0.5 else "warning",
            summary=f"Server {name} events lost the '{key}' match key: {share:.0%} carry it, "
                    f"usually {usual:.0%}.",
            metrics={"key": key, "keys": ",".join(k for _, k, _, _ in drops), "observed": round(share, 3),
                     "baseline": round(usual, 3), "threshold": t.key_coverage_drop_pct,
                     "drop_points": round(fall_pts, 1), "events": n},
            evidence=[f"{span_label(hours)}: {k} on {s:.0%} of {n} {name} events (previous 7 days: {u:.0%} "
                      f"of {past_n})" for _, k, u, s in drops],
        ))
    return out


def check_emq(inputs: AuditInputs) -> list[Finding]:
    """All EMQ findings for the audited window."""
    return [*check_scores(inputs), *check_key_coverage(inputs)]
