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
from datetime import datetime

from tools.checks.evidence import ALARM_LLR, ShareShift, drop_profile, share_drop_llr, share_shift, shift_at
from tools.checks.series import ledger_by_event, span_label, week_earlier
from tools.checks.types import AuditInputs, Finding, Severity, make_finding
from tools.checks.witness import LOOKBACK_HOURS, settled_until
from tools.timeutil import hours_between, to_iso


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


# A key's coverage must fall below this share of its usual level (relative, on the share itself: a
# margin on the odds would leave a key on 90 % of events at 87 %, where four thin events without it
# already alarm, a chance of 1e-4 that the many keys and events tested meet every few days) and by at
# least KEY_MIN_FALL (absolute) before it is news: 90 % -> 60 % of emails is, 4 % -> 3 % of fbc is not.
KEY_MARGIN = 0.8
KEY_MIN_FALL = 0.10
# A key on at least KEY_GONE_FROM of the events (fbc: the click id, on the share that came from an ad)
# that falls to KEY_GONE_SHARE of its level is gone, however few points that is.
KEY_GONE_FROM = 0.03
KEY_GONE_SHARE = 0.1


# Chance alarms of the key test a pixel may raise in a week, all its series together.
KEY_CHANCE_ALARMS_PER_WEEK = 0.01
AUDITS_PER_WEEK = 7 * 24


def chance_alarm(tested: int) -> float:
    """The evidence against "nothing changed" a drop among ``tested`` key series needs (nats).

    The margin test (ALARM_LLR against a share at KEY_MARGIN of the usual) says the drop is large
    enough to matter; this one says it is not luck. Every hourly audit asks every key of every event
    whether its latest stretch is unusually bare: a shop sending ten keys on six events asks sixty
    series, 168 times a week, and a key on 15 % of PageViews absent from 72 in a row (12 nats against
    its usual share, a 6e-6 chance) turned up in long windows of healthy traffic. The likelihood ratio
    against the usual share bounds the stretch's probability by e^-llr (Chernoff), so asking
    ln(series x audits a week / KEY_CHANCE_ALARMS_PER_WEEK) is meant to keep chance alarms of the
    whole pixel below that rate (Bonferroni over the series and the week's audits). Not counted yet:
    the maximum over onsets, and keys that come and go together (a known customer brings em, ph,
    country... at once), which let one healthy shop's streak through in the whole-library eval.
    """
    return math.log(max(1, tested) * AUDITS_PER_WEEK / KEY_CHANCE_ALARMS_PER_WEEK)


def chance_llr(shift: ShareShift) -> float:
    """Evidence of ``shift``'s stretch against the usual share itself (not the margin below it)."""
    return share_drop_llr(shift.target_after, shift.target_after + shift.partner_after,
                          shift.reference_ratio / (1 + shift.reference_ratio))


def check_key_coverage(inputs: AuditInputs) -> list[Finding]:
    """emq.key_coverage_drop: a match key's share of server events fell.

    Judged like every share (``evidence.share_shift``): the events carrying the key against those
    without it, a change point in the last 7 days, the reference taken before it. Evidence adds up hour
    after hour, so a key lost on a thin event (Purchase at 3 an hour) shows within hours, and a key
    that was always missing is no change at all. One finding per event; ``metrics.key`` is the key that
    fell most, ``metrics.keys`` lists them all.
    """
    until = settled_until(inputs)
    hours = hours_between(inputs.history_start, until)
    if not hours:
        return []
    position = {h: i for i, h in enumerate(hours)}
    by_event: dict[str, tuple[list[float], dict[str, list[float]]]] = {}
    for name, rows in sorted(ledger_by_event(inputs).items()):
        events = [0.0] * len(hours)
        keys: dict[str, list[float]] = {}
        for hour, row in rows.items():
            i = position.get(hour)
            if i is None:
                continue
            # Repeats of an event_id already recorded (a sender's retries) are the same people again:
            # coverage is over distinct events, so a retry storm does not dilute it.
            events[i] += row.events - row.duplicate_event_ids
            for key, count in row.key_counts.items():
                series = keys.get(key)  # not setdefault: that builds a 4-week list every time
                if series is None:
                    series = keys[key] = [0.0] * len(hours)
                series[i] += count
        by_event[name] = (events, keys)
    chance = chance_alarm(sum(len(keys) for events, keys in by_event.values() if any(events)))
    out: list[Finding] = []
    for name, (events, keys) in by_event.items():
        finding = _key_drop(inputs, hours, name, events, keys, chance=chance)
        if finding is not None:
            out.append(finding)
    # A key lost on every event of a small shop: no one event may show it for a day, but the same
    # change point in several events does. Not pooled into one share (the mix of events moves with the
    # hour and the day, PageView carrying fewer keys than Purchase, so a pooled share shifts with no key
    # lost anywhere): each event keeps its own reference and the evidence of the events adds up.
    reported = {str(k) for f in out for k in str(f.metrics.get("keys") or "").split(",")}
    combined = _key_drop_across_events(inputs, hours, by_event, skip=reported)
    return [*out, *combined]


# Events that must share a key's change point before their evidence is added up, each with at least
# JOINT_EVENT_LLR of its own there (an event whose share merely wobbled adds nothing and is not named).
MIN_JOINT_EVENTS = 2
JOINT_EVENT_LLR = 0.5


def _key_drop_across_events(inputs: AuditInputs, hours: list[datetime],
                            by_event: dict[str, tuple[list[float], dict[str, list[float]]]],
                            skip: set[str]) -> list[Finding]:
    """emq.key_coverage_drop for a key that fell at the same hour on several events (event_name None)."""
    halves: dict[str, dict[str, tuple[list[float], list[float], int]]] = {}
    for name, (events, keys) in by_event.items():
        start = next((i for i, v in enumerate(events) if v > 0), None)
        if start is None:
            continue
        for key, series in keys.items():
            if key in skip:
                continue
            carried = [min(c, e) for c, e in zip(series, events, strict=True)]
            missing = [max(0.0, e - c) for e, c in zip(events, carried, strict=True)]
            halves.setdefault(key, {})[name] = (carried, missing, start)
    joint = {key: per_event for key, per_event in halves.items() if len(per_event) >= MIN_JOINT_EVENTS}
    chance = chance_alarm(len(joint))  # one series a key here: the events' evidence is added up
    out: list[Finding] = []
    for key, per_event in sorted(joint.items()):
        summed: dict[int, float] = {}
        for carried, missing, start in per_event.values():
            for onset, llr in drop_profile(carried, missing, lookback=LOOKBACK_HOURS, margin=KEY_MARGIN,
                                           known_from=start, on_share=True).items():
                if llr >= JOINT_EVENT_LLR:
                    summed[onset] = summed.get(onset, 0.0) + llr
        if not summed:
            continue
        onset = max(summed, key=lambda i: (summed[i], i))
        if summed[onset] < ALARM_LLR:
            continue
        shifts = {name: shift_at(c, m, onset, margin=KEY_MARGIN, known_from=start, on_share=True)
                  for name, (c, m, start) in per_event.items()}
        fell = {name: sh for name, sh in shifts.items() if sh is not None and sh.llr >= JOINT_EVENT_LLR}
        if len(fell) < MIN_JOINT_EVENTS or any(sh.recovered_from is not None for sh in fell.values()):
            continue
        if sum(chance_llr(sh) for sh in fell.values()) < chance:
            continue
        n = sum(sh.target_after + sh.partner_after for sh in fell.values())
        carried_n = sum(sh.target_after for sh in fell.values())
        expected = sum(sh.reference_ratio / (1 + sh.reference_ratio) * (sh.target_after + sh.partner_after)
                       for sh in fell.values())
        if not n or not _is_news(expected / n, carried_n / n):
            continue
        usual, share = expected / n, carried_n / n
        names = sorted(fell)
        out.append(make_finding(
            inputs, check="emq", code="emq.key_coverage_drop", event_name=None,
            severity="critical" if share < 0.05 and usual >= 0.5 else "warning",
            summary=f"Server events lost the '{key}' match key since {hours[onset]:%a %H:00} UTC, on "
                    f"{len(names)} events at once ({', '.join(names)}): {share:.0%} carry it, usually "
                    f"{usual:.0%}.",
            metrics={"key": key, "keys": key, "observed": round(share, 3), "baseline": round(usual, 3),
                     "threshold": KEY_MARGIN, "drop_points": round(100 * (usual - share), 1),
                     "events": int(n), "event_names": ",".join(names), "onset": to_iso(hours[onset]),
                     "evidence_llr": round(summed[onset], 1)},
            evidence=[f"since {hours[onset]:%Y-%m-%d %H:00} UTC: {key} on {sh.target_after:.0f} of "
                      f"{sh.target_after + sh.partner_after:.0f} {name} events (before: "
                      f"{sh.reference_ratio / (1 + sh.reference_ratio):.0%}); evidence {sh.llr:.1f} nats"
                      for name, sh in sorted(fell.items())],
        ))
    return out


def _is_news(usual: float, share: float) -> bool:
    """A fall worth saying: KEY_MIN_FALL points, or a key that was on a few percent and is now gone."""
    return usual - share >= KEY_MIN_FALL or (usual >= KEY_GONE_FROM and share <= KEY_GONE_SHARE * usual)


def _key_drop(inputs: AuditInputs, hours: list[datetime], name: str, events: list[float],
              keys: dict[str, list[float]], *, chance: float) -> Finding | None:
    """emq.key_coverage_drop for one event, or None."""
    start = next((i for i, v in enumerate(events) if v > 0), None)
    if start is None:
        return None
    drops: list[tuple[float, str, ShareShift]] = []
    for key, series in sorted(keys.items()):
        carried = [min(c, e) for c, e in zip(series, events, strict=True)]
        missing = [max(0.0, e - c) for e, c in zip(events, carried, strict=True)]
        shift = share_shift(carried, missing, [True] * len(hours), lookback=LOOKBACK_HOURS,
                            margin=KEY_MARGIN, known_from=start, on_share=True)
        if shift is None or not shift.alarm or chance_llr(shift) < chance:
            continue
        usual = shift.reference_ratio / (1 + shift.reference_ratio)
        n = shift.target_after + shift.partner_after
        share = shift.target_after / n if n else 0.0
        if _is_news(usual, share):
            drops.append((usual - share, key, shift))
    if not drops:
        return None
    drops.sort(key=lambda d: (-d[0], d[1]))
    fall, key, shift = drops[0]
    n = shift.target_after + shift.partner_after
    share = shift.target_after / n
    usual = shift.reference_ratio / (1 + shift.reference_ratio)
    onset = hours[shift.onset]
    return make_finding(
        inputs, check="emq", code="emq.key_coverage_drop", event_name=name,
        severity="critical" if share < 0.05 and usual >= 0.5 else "warning",
        summary=f"Server {name} events lost the '{key}' match key since {onset:%a %H:00} UTC: {share:.0%} "
                f"carry it, usually {usual:.0%}.",
        metrics={"key": key, "keys": ",".join(k for _, k, _ in drops), "observed": round(share, 3),
                 "baseline": round(usual, 3), "threshold": KEY_MARGIN, "drop_points": round(100 * fall, 1),
                 "events": int(n), "onset": to_iso(onset), "evidence_llr": round(shift.llr, 1)},
        evidence=[f"since {hours[s.onset]:%Y-%m-%d %H:00} UTC: {k} on {s.target_after:.0f} of "
                  f"{s.target_after + s.partner_after:.0f} {name} events (before: "
                  f"{s.reference_ratio / (1 + s.reference_ratio):.0%}); evidence {s.llr:.1f} nats"
                  for _, k, s in drops],
    )


def check_emq(inputs: AuditInputs) -> list[Finding]:
    """All EMQ findings for the audited window."""
    return [*check_scores(inputs), *check_key_coverage(inputs)]
