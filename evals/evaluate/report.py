"""The eval report: per-scenario rows from the scorers, overall metrics, text rendering and floors.

Top-level JSON keys (a contract CI and people read): ``root_cause_accuracy``, ``detection_rate``,
``median_hours_to_detect``, ``false_alarms_per_pixel_week``, ``fix_correctness``, ``unsafe_actions``,
``tokens_per_audit``, plus ``cause_found_rate``, counts, and ``scenarios`` (one row per scenario).

Honest-scoring keys: ``confusion`` (expected cause -> top-1 found -> scenarios), ``families`` (per
family: scenarios, detected, within target, median and worst hours to detect against the family's
target), ``false_incidents_per_pixel_week`` (healthy audited hours that raised an incident) and the
same on the real-demand healthy set (``..._real_demand``), ``within_target_rate``,
``extra_incident_rate`` (problem scenarios that also raised an incident with a wrong cause), and
``missed``: every problem scenario that was not detected within its target, or whose top-1 cause was
wrong, or that raised a wrong incident, and every healthy one that alarmed, with what was found.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from evals.evaluate.metrics import (
    HOURS_PER_WEEK,
    score_detection,
    score_false_alarms,
    score_false_incidents,
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
    incidents = score_false_incidents(outputs=outputs, reference=reference)
    audits = outputs["audits"]
    row: dict[str, Any] = {
        "id": outputs["scenario_id"], "healthy": reference["healthy"],
        "family": reference.get("family") or outputs["scenario_id"].split(".")[0],
        "real_demand": bool(reference.get("real_demand")), "wrong_causes": list(cause.wrong_causes),
        "found_root_causes": sorted({i["root_cause"] for a in audits for i in a["incidents"]}),
        "serious_findings": sorted({c for a in audits for c in a["serious_findings"]}),
        "expected_root_causes": reference["root_causes"], "top1_root_cause": cause.top1,
        "root_cause_correct": cause.correct, "audits": tokens.audits,
        "proposals": fixes.proposals, "proposals_correct": fixes.correct, "fix_problems": list(fixes.problems),
        "unsafe_actions": safety.unsafe_actions, "tokens": tokens.tokens, "reasoner": outputs.get("reasoner"),
        "seconds": round(sum(outputs.get("timings", {}).values()), 1),
    }
    if reference["healthy"]:
        row.update(false_alarms=alarms.alarms, audited_hours=alarms.audited_hours,
                   false_incidents=incidents.audits_with_incident,
                   alarm_codes=sorted({c for a in outputs["audits"] for c in a["serious_findings"]}))
    else:
        target = reference.get("target_hours")
        within = detection.hours_to_detect is not None and (target is None or detection.hours_to_detect <= target)
        row.update(detected=detection.detected, hours_to_detect=_round(detection.hours_to_detect),
                   cause_found=detection.cause_found, hours_to_diagnose=_round(detection.hours_to_diagnose),
                   target_hours=target, within_target=within)
    return row


def _round(hours: float | None) -> float | None:
    return None if hours is None else round(hours, 2)


def _label(causes: Sequence[str]) -> str:
    return "+".join(sorted(causes)) or "none"


def confusion_matrix(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Expected cause(s) -> top-1 cause found at the deciding audit ("none": no incident) -> count."""
    matrix: dict[str, dict[str, int]] = {}
    for row in rows:
        found = row["top1_root_cause"] or "none"
        cell = matrix.setdefault(_label(row["expected_root_causes"]), {})
        cell[found] = cell.get(found, 0) + 1
    return {expected: dict(sorted(found.items())) for expected, found in sorted(matrix.items())}


def family_table(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per problem family: how many, detected, within target, median and worst hours to detect (an
    undetected scenario makes the worst ``None`` and counts in ``undetected``), top-1 and cause found."""
    table: dict[str, dict[str, Any]] = {}
    for family in sorted({r["family"] for r in rows if not r["healthy"]}):
        mine = [r for r in rows if not r["healthy"] and r["family"] == family]
        hours = [r["hours_to_detect"] for r in mine if r["hours_to_detect"] is not None]
        diagnosed = [r["hours_to_diagnose"] for r in mine if r["hours_to_diagnose"] is not None]
        targets = sorted({r["target_hours"] for r in mine if r["target_hours"] is not None})
        undetected = sum(not r["detected"] for r in mine)
        table[family] = {
            "scenarios": len(mine), "detected": len(mine) - undetected, "undetected": undetected,
            "within_target": sum(r["within_target"] for r in mine),
            "target_hours": (targets[0] if len(targets) == 1 else [targets[0], targets[-1]]) if targets else None,
            "median_hours_to_detect": statistics.median(hours) if hours else None,
            "worst_hours_to_detect": None if undetected or not hours else max(hours),
            "median_hours_to_diagnose": statistics.median(diagnosed) if diagnosed else None,
            "top1_correct": sum(r["root_cause_correct"] for r in mine),
            "cause_found": sum(r["cause_found"] for r in mine),
            "wrong_incidents": sum(bool(r["wrong_causes"]) for r in mine),
        }
    return table


def missed_scenarios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every scenario the audit got wrong, with why and what it found instead."""
    missed = []
    for row in rows:
        why: list[str] = []
        if row["healthy"]:
            if row["false_alarms"]:
                why.append(f"{row['false_alarms']} alarmed hour(s) of {row['audited_hours']}")
            if row["false_incidents"]:
                why.append(f"incidents in {row['false_incidents']} hour(s)")
        else:
            if not row["detected"]:
                why.append("not detected")
            elif not row["within_target"]:
                why.append(f"detected after {row['hours_to_detect']:g} h (target {row['target_hours']:g} h)")
            if not row["root_cause_correct"]:
                why.append(f"top-1 {row['top1_root_cause'] or 'none'}")
            if row["wrong_causes"]:
                why.append(f"wrong incident(s) {', '.join(row['wrong_causes'])}")
        if why:
            missed.append({"id": row["id"], "family": row["family"], "expected": row["expected_root_causes"],
                           "top1": row["top1_root_cause"], "found_root_causes": row["found_root_causes"],
                           "serious_findings": row["serious_findings"], "why": "; ".join(why)})
    return missed


def _per_week(hits: int, hours: int) -> float:
    return round(hits * HOURS_PER_WEEK / hours, 3) if hours else 0.0


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
    real = [r for r in healthy if r["real_demand"]]
    real_hours = sum(r["audited_hours"] for r in real)
    return {
        "root_cause_accuracy": _rate(sum(r["root_cause_correct"] for r in problems), len(problems)),
        "detection_rate": _rate(sum(r["detected"] for r in problems), len(problems)),
        "cause_found_rate": _rate(sum(r["cause_found"] for r in problems), len(problems)),
        "median_hours_to_detect": statistics.median(hours) if hours else None,
        "false_alarms_per_pixel_week": round(sum(r["false_alarms"] for r in healthy) * HOURS_PER_WEEK
                                             / audited_hours, 3) if audited_hours else 0.0,
        "healthy_quiet_rate": _rate(sum(r["false_alarms"] == 0 for r in healthy), len(healthy)),
        "within_target_rate": _rate(sum(r["within_target"] for r in problems), len(problems)),
        "extra_incident_rate": _rate(sum(bool(r["wrong_causes"]) for r in problems), len(problems)),
        "false_incidents_per_pixel_week": _per_week(sum(r["false_incidents"] for r in healthy), audited_hours),
        "false_incidents_per_pixel_week_real_demand": _per_week(sum(r["false_incidents"] for r in real), real_hours),
        "false_alarms_per_pixel_week_real_demand": _per_week(sum(r["false_alarms"] for r in real), real_hours),
        "real_demand_audited_hours": real_hours,
        "fix_correctness": _rate(sum(r["proposals_correct"] for r in rows), proposals),
        "proposals": proposals,
        "unsafe_actions": sum(r["unsafe_actions"] for r in rows),
        "tokens_per_audit": round(sum(r["tokens"] for r in rows) / audits, 1) if audits else 0.0,
        "audits": audits,
        "problem_scenarios": len(problems),
        "healthy_scenarios": len(healthy),
        "confusion": confusion_matrix(problems),
        "families": family_table(rows),
        "missed": missed_scenarios(rows),
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
    lines += _render_families(summary) + _render_confusion(summary) + _render_missed(summary)
    for key in ("root_cause_accuracy", "detection_rate", "cause_found_rate", "within_target_rate",
                "extra_incident_rate", "median_hours_to_detect", "false_alarms_per_pixel_week",
                "false_incidents_per_pixel_week", "false_alarms_per_pixel_week_real_demand",
                "false_incidents_per_pixel_week_real_demand", "healthy_quiet_rate", "fix_correctness",
                "unsafe_actions", "tokens_per_audit"):
        lines.append(f"{key:<44} {_fmt(summary.get(key))}")
    lines.append(f"{summary['problem_scenarios']} problem and {summary['healthy_scenarios']} healthy scenario(s), "
                 f"{summary['audits']} audits, {summary['proposals']} proposal(s)")
    return "\n".join(lines)


def _render_families(summary: dict[str, Any]) -> list[str]:
    lines = [f"{'family':<34} {'n':>4} {'det':>4} {'in tgt':>6} {'target h':>9} {'median h':>8} {'worst h':>7} "
             f"{'top-1':>5} {'wrong':>5}"]
    for family, f in summary.get("families", {}).items():
        target = f["target_hours"]
        target_text = "-" if target is None else (_fmt(target) if not isinstance(target, list)
                                                   else f"{_fmt(target[0])}-{_fmt(target[1])}")
        worst = "miss" if f["undetected"] else _fmt(f["worst_hours_to_detect"])
        lines.append(f"{family:<34} {f['scenarios']:>4} {f['detected']:>4} {f['within_target']:>6} {target_text:>9} "
                     f"{_fmt(f['median_hours_to_detect']):>8} {worst:>7} {f['top1_correct']:>5} "
                     f"{f['wrong_incidents']:>5}")
    return [*lines, ""]


def _render_confusion(summary: dict[str, Any]) -> list[str]:
    lines = ["Confusion (expected -> top-1 found: scenarios)"]
    for expected, found in summary.get("confusion", {}).items():
        cells = ", ".join(f"{name} {count}" for name, count in found.items())
        lines.append(f"  {expected:<44} {cells}")
    return [*lines, ""]


def _render_missed(summary: dict[str, Any]) -> list[str]:
    missed = summary.get("missed", [])
    lines = [f"Missed or wrong ({len(missed)})"]
    for m in missed:
        lines.append(f"  {m['id']:<52} {m['why']}; found {', '.join(m['found_root_causes']) or 'no incident'}"
                     f" [{', '.join(m['serious_findings']) or 'no warning'}]")
    return [*lines, ""]
