"""The eval report: per-scenario rows from the scorers, overall metrics, text rendering and floors.

Top-level JSON keys (a contract CI and people read): ``root_cause_accuracy``, ``detection_rate``,
``median_hours_to_detect``, ``false_alarms_per_pixel_week``, ``fix_correctness``, ``unsafe_actions``,
``tokens_per_audit``, plus ``cause_found_rate``, counts, and ``scenarios`` (one row per scenario).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from evals.evaluate.metrics import (
    HOURS_PER_WEEK,
    score_detection,
    score_false_alarms,
    score_fixes,
    score_root_cause,
    score_safety,
    score_tokens,
)


def scenario_row(outputs: dict[str, Any]) -> dict[str, Any]:
    """One scenario's scores, flat and JSON-ready."""
    reference = outputs["reference"]
    detection = score_detection(outputs=outputs, reference=reference)
    cause = score_root_cause(outputs=outputs, reference=reference)
    alarms = score_false_alarms(outputs=outputs, reference=reference)
    fixes = score_fixes(outputs=outputs, reference=reference)
    safety = score_safety(outputs=outputs, reference=reference)
    tokens = score_tokens(outputs=outputs, reference=reference)
    row: dict[str, Any] = {
        "id": outputs["scenario_id"], "healthy": reference["healthy"],
        "expected_root_causes": reference["root_causes"], "top1_root_cause": cause.top1,
        "root_cause_correct": cause.correct, "audits": tokens.audits,
        "proposals": fixes.proposals, "proposals_correct": fixes.correct, "fix_problems": list(fixes.problems),
        "unsafe_actions": safety.unsafe_actions, "tokens": tokens.tokens, "reasoner": outputs.get("reasoner"),
        "seconds": round(sum(outputs.get("timings", {}).values()), 1),
    }
    if reference["healthy"]:
        row.update(false_alarms=alarms.alarms, audited_hours=alarms.audited_hours,
                   alarm_codes=sorted({c for a in outputs["audits"] for c in a["serious_findings"]}))
    else:
        row.update(detected=detection.detected, hours_to_detect=detection.hours_to_detect,
                   cause_found=detection.cause_found, hours_to_diagnose=detection.hours_to_diagnose)
    return row


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def summarize(outputs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The whole eval: overall metrics at the top level and one row per scenario."""
    rows = [scenario_row(o) for o in outputs]
    problems = [r for r in rows if not r["healthy"]]
    healthy = [r for r in rows if r["healthy"]]
    hours = [r["hours_to_detect"] for r in problems if r["hours_to_detect"] is not None]
    audited_hours = sum(r["audited_hours"] for r in healthy)
    proposals = sum(r["proposals"] for r in rows)
    audits = sum(r["audits"] for r in rows)
    return {
        "root_cause_accuracy": _rate(sum(r["root_cause_correct"] for r in problems), len(problems)),
        "detection_rate": _rate(sum(r["detected"] for r in problems), len(problems)),
        "cause_found_rate": _rate(sum(r["cause_found"] for r in problems), len(problems)),
        "median_hours_to_detect": statistics.median(hours) if hours else None,
        "false_alarms_per_pixel_week": round(sum(r["false_alarms"] for r in healthy) * HOURS_PER_WEEK
                                             / audited_hours, 3) if audited_hours else 0.0,
        "healthy_quiet_rate": _rate(sum(r["false_alarms"] == 0 for r in healthy), len(healthy)),
        "fix_correctness": _rate(sum(r["proposals_correct"] for r in rows), proposals),
        "proposals": proposals,
        "unsafe_actions": sum(r["unsafe_actions"] for r in rows),
        "tokens_per_audit": round(sum(r["tokens"] for r in rows) / audits, 1) if audits else 0.0,
        "audits": audits,
        "problem_scenarios": len(problems),
        "healthy_scenarios": len(healthy),
        "scenarios": rows,
    }


# Floors: "<metric>" is a minimum, "<metric>_max" a maximum.
def floor_failures(summary: dict[str, Any], floors: dict[str, Any]) -> list[str]:
    """Each floor the summary breaks, as a readable line; empty when all hold."""
    failures: list[str] = []
    for key, limit in floors.items():
        if key.startswith("_"):
            continue  # comments
        metric, is_max = (key[:-4], True) if key.endswith("_max") else (key, False)
        value = summary.get(metric)
        if value is None:
            failures.append(f"{metric}: no value (floor {limit})")
        elif is_max and value > limit:
            failures.append(f"{metric} = {value} is above the maximum {limit}")
        elif not is_max and value < limit:
            failures.append(f"{metric} = {value} is below the floor {limit}")
    return failures


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def render_text(summary: dict[str, Any]) -> str:
    lines = [f"{'scenario':<40} {'expected':<34} {'top-1':<22} {'ok':>3} {'det h':>5} {'alarms':>6} "
             f"{'fixes':>5} {'unsafe':>6} {'tokens':>6}"]
    for row in summary["scenarios"]:
        expected = ",".join(row["expected_root_causes"])
        detect = "" if row["healthy"] else _fmt(row["hours_to_detect"])
        alarms = _fmt(row["false_alarms"]) if row["healthy"] else ""
        lines.append(f"{row['id']:<40} {expected:<34} {_fmt(row['top1_root_cause']):<22} "
                     f"{_fmt(row['root_cause_correct']):>3} {detect:>5} {alarms:>6} "
                     f"{row['proposals_correct']}/{row['proposals']:<3} {row['unsafe_actions']:>6} {row['tokens']:>6}")
        for problem in row["fix_problems"]:
            lines.append(f"    fix problem: {problem}")
        if row["healthy"] and row["false_alarms"]:
            lines.append(f"    alarms: {', '.join(row['alarm_codes'])}")
    lines.append("")
    for key in ("root_cause_accuracy", "detection_rate", "cause_found_rate", "median_hours_to_detect",
                "false_alarms_per_pixel_week", "healthy_quiet_rate", "fix_correctness", "unsafe_actions",
                "tokens_per_audit"):
        lines.append(f"{key:<28} {_fmt(summary[key])}")
    lines.append(f"{summary['problem_scenarios']} problem and {summary['healthy_scenarios']} healthy scenario(s), "
                 f"{summary['audits']} audits, {summary['proposals']} proposal(s)")
    return "\n".join(lines)
