"""Detection speed: hours from a failure's onset to the first warning, capi-agent's checks side by
side with a plain day-over-day rule, on the same generated data.

    python -m evals.perf.detection_speed [--days D] [--horizon H] [--format text|json]

Cases: sudden failures (every server event stops; server Purchase stops; 60% of server events
lost) and gradual ones (server events fade out linearly over 6 and 12 hours). A gradual failure is
built from consecutive one-hour ``server_events_down`` injections of rising share, so the synth
injector needs no ramp parameter. Each case is generated and ingested once; the checks audit it
hour by hour from the onset (the simulator's clock set per audit) and stop at the first warning+
finding. The baseline reads the same server events (events.jsonl, by event hour) and alerts when
the hourly count is more than 50 % below the same hour the day before, on all server events
together and per event name (with a minimum volume). Its alerts in the healthy week before the onset
are counted too, since speed bought with false alarms is no speed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from evals.harness import scenario_world
from tools.synth.scenario import Scenario
from tools.timeutil import DAY, HOUR, floor_hour

ONSET = datetime(2026, 11, 12, 10, 0, tzinfo=UTC)  # a Thursday morning, Paris
DROP_RULE = 0.5  # the baseline alerts when a count falls more than this share below yesterday's
PER_EVENT_MINIMUM = 20  # per-event rule: ignore names with fewer events yesterday (else it cries wolf)


@dataclass(frozen=True)
class SpeedRow:
    case: str
    kind: str  # sudden | gradual
    agent_hours: int | None  # hours from onset to the end of the first audit window with a warning
    agent_codes: list[str]
    # The plain rule on all server events together, and per event name (yesterday's count >= 20).
    dod_total_hours: int | None
    dod_per_event_hours: int | None
    dod_total_false_alarms_week_before: int
    dod_per_event_false_alarms_week_before: int


def _down(onset: datetime, *, end: datetime | None = None, share: float = 1.0,
          events: list[str] | None = None) -> dict[str, Any]:
    return {"cause": "server_events_down", "onset": onset, "end": end, "events": events, "magnitude": share,
            "params": {}}


def ramp(onset: datetime, hours: int) -> list[dict[str, Any]]:
    """A linear fade-out: share k/hours lost in hour k (k = 1..hours), then everything lost."""
    steps = [_down(onset + k * HOUR, end=onset + (k + 1) * HOUR, share=(k + 1) / (hours + 1))
             for k in range(hours)]
    return [*steps, _down(onset + hours * HOUR)]


CASES: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "server_total_stop": ("sudden", [_down(ONSET)]),
    "server_purchase_stop": ("sudden", [_down(ONSET, events=["Purchase"])]),
    "server_partial_60pct": ("sudden", [_down(ONSET, share=0.6)]),
    "server_fade_6h": ("gradual", ramp(ONSET, 6)),
    "server_fade_12h": ("gradual", ramp(ONSET, 12)),
}


def case_scenario(name: str, injections: list[dict[str, Any]], *, days: int, horizon: int) -> Scenario:
    audit_at = ONSET + horizon * HOUR
    start = floor_hour(ONSET).replace(hour=0) - timedelta(days=days - 1)
    return Scenario.model_validate({
        "id": f"speed_{name}.v1", "description": f"detection speed: {name}", "seed": 900 + len(name),
        "pixel_id": "1100000900", "timezone": "Europe/Paris", "start": start,
        "days": (floor_hour(audit_at).replace(hour=0) - start).days + 1,
        "shop": {"scale": 1.0, "sales_spikes": []}, "injections": injections, "audit_at": audit_at,
        "expect": {"root_causes": ["server_events_down"], "healthy": False}})


def hourly_counts(events_path: Path) -> Counter[tuple[str, datetime]]:
    """Server events by (event name, event hour), as the shop recorded them."""
    counts: Counter[tuple[str, datetime]] = Counter()
    with events_path.open(encoding="utf-8") as lines:
        for line in lines:
            event = json.loads(line)["event"]
            hour = floor_hour(datetime.fromtimestamp(int(event["event_time"]), tz=UTC))
            counts[(event["event_name"], hour)] += 1
    return counts


def _dropped(now: int, yesterday: int, minimum: int) -> bool:
    return yesterday >= minimum and now < (1 - DROP_RULE) * yesterday


def dod_total_alert(counts: Counter[tuple[str, datetime]], hour: datetime) -> bool:
    """All server events of ``hour`` more than 50 % below the same hour yesterday."""
    total = Counter[datetime]()
    for (_, when), count in counts.items():
        total[when] += count
    return _dropped(total[hour], total[hour - DAY], 1)


def dod_per_event_alert(counts: Counter[tuple[str, datetime]], hour: datetime,
                        minimum: int = PER_EVENT_MINIMUM) -> bool:
    """Some event name more than 50 % below the same hour yesterday (when yesterday had ``minimum``)."""
    names = {name for name, _ in counts}
    return any(_dropped(counts[(name, hour)], counts[(name, hour - DAY)], minimum) for name in names)


def _first_hour(alert: Any, counts: Counter[tuple[str, datetime]], horizon: int) -> int | None:
    return next((k for k in range(1, horizon + 1) if alert(counts, ONSET + (k - 1) * HOUR)), None)


def _week_before(alert: Any, counts: Counter[tuple[str, datetime]]) -> int:
    return sum(bool(alert(counts, ONSET - k * HOUR)) for k in range(1, 7 * 24 + 1))


def measure(name: str, kind: str, injections: list[dict[str, Any]], *, days: int, horizon: int,
            workdir: Path) -> SpeedRow:
    scenario = case_scenario(name, injections, days=days, horizon=horizon)
    agent_hours: int | None = None
    codes: list[str] = []
    with scenario_world(scenario, workdir) as world:
        for k in range(1, horizon + 1):
            audit = world.audit(ONSET + k * HOUR)
            serious = sorted({f.code for f in audit.findings if f.severity in ("warning", "critical")})
            if serious:
                agent_hours, codes = k, serious
                break
        counts = hourly_counts(world.files.events_path)
    return SpeedRow(case=name, kind=kind, agent_hours=agent_hours, agent_codes=codes,
                    dod_total_hours=_first_hour(dod_total_alert, counts, horizon),
                    dod_per_event_hours=_first_hour(dod_per_event_alert, counts, horizon),
                    dod_total_false_alarms_week_before=_week_before(dod_total_alert, counts),
                    dod_per_event_false_alarms_week_before=_week_before(dod_per_event_alert, counts))


def _h(value: int | None) -> str:
    return "-" if value is None else str(value)


def render(rows: list[SpeedRow]) -> str:
    lines = [f"{'case':<22} {'kind':<8} {'capi-agent':>10} {'dod total':>9} {'dod/event':>9} "
             f"{'dod total FA/wk':>15} {'dod/event FA/wk':>15}  first capi-agent warnings"]
    for row in rows:
        lines.append(f"{row.case:<22} {row.kind:<8} {_h(row.agent_hours):>10} {_h(row.dod_total_hours):>9} "
                     f"{_h(row.dod_per_event_hours):>9} {row.dod_total_false_alarms_week_before:>15} "
                     f"{row.dod_per_event_false_alarms_week_before:>15}  {', '.join(row.agent_codes)}")
    lines.append("hours from the onset to the end of the first hour that raised a warning ('-': none within the "
                 "horizon). dod = plain day-over-day rule (same hour yesterday, drop > 50 %) on all server events "
                 f"(total) or per event name (yesterday >= {PER_EVENT_MINIMUM}); FA/wk = hours of the healthy "
                 "week before the onset on which that rule alerted.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=15, help="days of history before the onset (>= 15 "
                        "gives the volume check its weekday levels)")
    parser.add_argument("--horizon", type=int, default=14, help="hours after the onset to look at")
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    wanted = {part for part in args.only.split(",") if part}
    rows: list[SpeedRow] = []
    started = time.perf_counter()
    for name, (kind, injections) in CASES.items():
        if wanted and name not in wanted:
            continue
        with tempfile.TemporaryDirectory(prefix="capi-speed-") as tmp:
            rows.append(measure(name, kind, injections, days=args.days, horizon=args.horizon, workdir=Path(tmp)))
    print(json.dumps([asdict(r) for r in rows], indent=2) if args.format == "json" else render(rows))
    print(f"{len(rows)} case(s) in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
