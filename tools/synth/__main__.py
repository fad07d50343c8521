"""``python -m tools.synth SCENARIO_ID_OR_FILE --out DIR``: write a scenario's three files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tools.synth.scenario import find_scenario, load_scenarios, materialize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.synth", description=__doc__)
    parser.add_argument("scenario", nargs="?", help="scenario id (e.g. browser_pixel_down.v1) or a JSON file")
    parser.add_argument("--out", type=Path, help="folder for events.jsonl, orders.jsonl, meta_state.json")
    parser.add_argument("--list", action="store_true", help="list the packaged scenarios and exit")
    args = parser.parse_args(argv)
    if args.list:
        for scenario in load_scenarios():
            print(f"{scenario.id}\t{scenario.description}")
        return 0
    if not args.scenario or args.out is None:
        parser.error("a scenario and --out are required (or --list)")
    try:
        scenario = find_scenario(args.scenario)
    except KeyError as exc:
        parser.error(str(exc))
    files = materialize(scenario, args.out)
    print(
        f"{scenario.id}: {files.server_events} server events ({files.delivered_events} delivered), "
        f"{files.browser_events} browser events, {files.orders} orders at {files.now:%Y-%m-%dT%H:%MZ} "
        f"-> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
