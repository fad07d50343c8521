#!/usr/bin/env python3
"""Set-up and entry point for people and CI, with nothing but Python 3.11 installed.

    python3 dev.py demo [ARGS]   # create .venv if needed, then run `capi-agent demo`
    python3 dev.py test [ARGS]   # create .venv if needed, then run ruff and pytest
    python3 dev.py run ARGS      # any capi-agent command inside the venv

The venv is rebuilt when requirements.lock changes (a stamp file records its hash).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("CAPI_VENV", ROOT / ".venv"))
LOCK = ROOT / "requirements.lock"
STAMP = VENV / ".capi-lock-sha256"


def _bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def ensure_venv() -> None:
    want = hashlib.sha256(LOCK.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == want and _bin("capi-agent").exists():
        return
    print(f"[dev] preparing {VENV} from requirements.lock ...", flush=True)
    if not _bin("python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(_bin("python")), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-r", str(LOCK)], check=True)
    subprocess.run([*pip, "install", "--no-deps", "-e", str(ROOT)], check=True)
    STAMP.write_text(want)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "run"}:
        print(__doc__)
        return 2
    ensure_venv()
    command, rest = argv[0], argv[1:]
    if command == "test":
        ruff = subprocess.run([str(_bin("ruff")), "check", "agent", "tools", "prompts", "evals", "tests"],
                              cwd=ROOT)
        if ruff.returncode != 0:
            return ruff.returncode
        # Parallel across the machine's cores (pytest-xdist) unless the caller chose otherwise.
        parallel = [] if any(arg.startswith(("-n", "--numprocesses", "-p")) for arg in rest) else ["-n", "auto"]
        return subprocess.run([str(_bin("python")), "-m", "pytest", *parallel, *rest], cwd=ROOT).returncode
    if command == "demo":
        return subprocess.run([str(_bin("capi-agent")), "demo", *rest]).returncode
    return subprocess.run([str(_bin("capi-agent")), *rest]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
