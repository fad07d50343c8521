"""Start-up time of the CLI: ``capi-agent --help`` and ``capi-agent normalize`` against a bare interpreter.

Each command runs ``--runs`` times in a fresh interpreter (as ``hyperfine`` would); prints a table and
one JSON object (median / min / max seconds per command, and the median minus the bare baseline).

Run: ``.venv/bin/python -m evals.perf.bench_startup [--runs 15]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMANDS: dict[str, list[str]] = {
    "python -c pass (baseline)": ["-c", "pass"],
    "capi-agent --help": ["-m", "agent.cli", "--help"],
    "capi-agent normalize em ...": ["-m", "agent.cli", "normalize", "em", "someone@example.com"],
}


def time_command(args: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` fresh interpreters running ``args`` (one warm-up run not counted)."""
    timings = []
    for run in range(runs + 1):
        began = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        if run:
            timings.append(time.perf_counter() - began)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    results = {}
    for name, command in COMMANDS.items():
        timings = time_command(command, args.runs)
        results[name] = {"median_s": round(statistics.median(timings), 4), "min_s": round(min(timings), 4),
                         "max_s": round(max(timings), 4), "runs": len(timings)}
    baseline = results["python -c pass (baseline)"]["median_s"]
    for result in results.values():
        result["over_baseline_s"] = round(result["median_s"] - baseline, 4)
    print(f"{'command':<30} {'median':>8} {'min':>8} {'max':>8} {'- bare':>8}")
    for name, result in results.items():
        print(f"{name:<30} {result['median_s']:>8.3f} {result['min_s']:>8.3f} {result['max_s']:>8.3f} "
              f"{result['over_baseline_s']:>8.3f}")
    print(json.dumps({"python": sys.version.split()[0], "results": results}))


if __name__ == "__main__":
    main()
