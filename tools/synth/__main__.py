"""``python -m tools.synth SCENARIO_ID_OR_FILE --out DIR [--at TIME]``: write a scenario's files, dated so
that its audit falls in the hour of ``--at`` (default: now).

Besides the three files an audit runs on (events.jsonl, orders.jsonl, meta_state.json) it writes
``scenario.env``, the dates the scenario got, for a shell (``. DIR/scenario.env``): ``PIXEL_ID``,
``AUDIT_AT`` (the audit the scenario expects), ``SINCE`` and ``UNTIL`` (the hours of its injected
failures, ``UNTIL`` capped at the audited hour's end: the window a replay would resend).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from tools.synth.scenario import Scenario, find_scenario, load_scenarios, materialize, redate
from tools.timeutil import HOUR, audit_window, floor_hour, parse_iso, to_iso, utcnow

ENV_FILE = "scenario.env"


def _time(text: str) -> datetime:
    try:
        return parse_iso(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r} (e.g. 2026-12-01T10:00:00Z)") from None


def scenario_env(scenario: Scenario) -> dict[str, str]:
    """The dates of a (re-dated) scenario, as shell variables."""
    audited_until = audit_window(scenario.audit_at)[1]
    variables = {"SCENARIO_ID": scenario.id, "PIXEL_ID": scenario.pixel_id, "AUDIT_AT": to_iso(scenario.audit_at)}
    if scenario.injections:
        since = floor_hour(min(injection.onset for injection in scenario.injections))
        ends = [injection.end or (injection.onset + HOUR if injection.cause == "missed_batch" else audited_until)
                for injection in scenario.injections]
        variables["SINCE"] = to_iso(since)
        variables["UNTIL"] = to_iso(min(max(ends), audited_until))
    return variables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.synth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", nargs="?", help="scenario id (e.g. browser_pixel_down.v1) or a JSON file")
    parser.add_argument("--out", type=Path, help="folder for events.jsonl, orders.jsonl, meta_state.json")
    parser.add_argument("--at", type=_time, default=None,
                        help="date the scenario so that its audit falls in this hour (ISO-8601, default: now); "
                             "Meta takes events up to 7 days old, so a replay needs a recent --at")
    parser.add_argument("--list", action="store_true", help="list the packaged scenarios and exit")
    args = parser.parse_args(argv)
    if args.list:
        for scenario in load_scenarios():
            print(f"{scenario.id}\t{scenario.description}")
        return 0
    if not args.scenario or args.out is None:
        parser.error("a scenario and --out are required (or --list)")
    try:
        scenario = redate(find_scenario(args.scenario), args.at or floor_hour(utcnow()))
    except (KeyError, ValueError) as exc:
        parser.error(str(exc))
    files = materialize(scenario, args.out)
    env = scenario_env(scenario)
    (args.out / ENV_FILE).write_text("".join(f"{key}={value}\n" for key, value in env.items()), encoding="utf-8")
    print(
        f"{scenario.id}: {files.server_events} server events ({files.delivered_events} delivered), "
        f"{files.browser_events} browser events, {files.orders} orders at {files.now:%Y-%m-%dT%H:%MZ} "
        f"-> {args.out}"
    )
    print("  " + " ".join(f"{key}={value}" for key, value in env.items() if key != "SCENARIO_ID")
          + f"  (. {args.out / ENV_FILE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
