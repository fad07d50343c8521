#!/usr/bin/env python3
"""Set-up and entry point for people and CI, with nothing but Python 3.11 installed.

    python3 dev.py demo [ARGS]   # create .venv if needed, then run `capi-agent demo`
    python3 dev.py test [ARGS]   # create .venv if needed, then run ruff, mypy and pytest
    python3 dev.py run ARGS      # any capi-agent command inside the venv
    python3 dev.py lock [--upgrade]   # regenerate requirements/*.lock (pip-compile, with hashes)

The venv is built from the hash-checked locks (requirements/runtime.lock, then dev.lock) and rebuilt
from scratch when a lock or pyproject.toml changes (a stamp file records their hash), so nothing left
over from an earlier lock stays installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("CAPI_VENV", ROOT / ".venv"))
REQUIREMENTS = ROOT / "requirements"
RUNTIME_LOCK = REQUIREMENTS / "runtime.lock"  # what the agent needs to run
DEV_LOCK = REQUIREMENTS / "dev.lock"  # tests and lint, pinned against the runtime lock
STAMP = VENV / ".capi-lock-sha256"
# pip-compile's version, in a venv of its own (.lock-venv, not the project's) so locking never changes
# what the project runs with.
PIP_TOOLS = "pip-tools==7.6.2"
COMPILE = ["--generate-hashes", "--strip-extras", "--allow-unsafe", "--no-emit-index-url", "--no-emit-find-links",
           "--quiet"]


def _bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def ensure_venv() -> None:
    inputs = (RUNTIME_LOCK, DEV_LOCK, ROOT / "pyproject.toml")
    want = hashlib.sha256(b"".join(path.read_bytes() for path in inputs)).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == want and _bin("capi-agent").exists():
        return
    print(f"[dev] building {VENV} from scratch from requirements/*.lock ...", flush=True)
    if VENV.exists():
        shutil.rmtree(VENV)
    venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(_bin("python")), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--require-hashes", "-r", str(RUNTIME_LOCK), "-r", str(DEV_LOCK)], check=True)
    subprocess.run([*pip, "install", "--no-deps", "-e", str(ROOT)], check=True)
    STAMP.write_text(want)


def lock(rest: list[str]) -> int:
    """Regenerate both locks from pyproject.toml and requirements/dev.in (``--upgrade`` to move pins)."""
    tools = ROOT / ".lock-venv"
    compile_ = tools / ("Scripts" if os.name == "nt" else "bin") / "pip-compile"
    if not compile_.exists():
        venv.EnvBuilder(with_pip=True).create(tools)
        subprocess.run([str(tools / "bin" / "python"), "-m", "pip", "-q", "install", PIP_TOOLS], check=True)
    extra = [arg for arg in rest if arg in ("--upgrade", "-U")]
    runtime, dev = (str(path.relative_to(ROOT)) for path in (RUNTIME_LOCK, DEV_LOCK))
    env = {**os.environ, "CUSTOM_COMPILE_COMMAND": "python3 dev.py lock"}  # the header's "regenerate with"
    steps = [
        [str(compile_), *COMPILE, *extra, "--output-file", runtime, "pyproject.toml"],
        [str(compile_), *COMPILE, *extra, "--constraint", runtime, "--output-file", dev,
         "requirements/dev.in"],
    ]
    for step in steps:
        if subprocess.run(step, cwd=ROOT, env=env).returncode != 0:
            return 1
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "run", "lock"}:
        print(__doc__)
        return 2
    if argv[0] == "lock":
        return lock(argv[1:])
    ensure_venv()
    command, rest = argv[0], argv[1:]
    if command == "test":
        ruff = subprocess.run([str(_bin("ruff")), "check", "agent", "tools", "prompts", "evals", "tests"],
                              cwd=ROOT)
        if ruff.returncode != 0:
            return ruff.returncode
        # Strict on tools/, default checks on agent/ and evals/ ([tool.mypy] in pyproject.toml).
        mypy = subprocess.run([str(_bin("mypy")), "tools", "agent", "evals"], cwd=ROOT)
        if mypy.returncode != 0:
            return mypy.returncode
        # Parallel across the machine's cores (pytest-xdist) unless the caller chose otherwise.
        parallel = [] if any(arg.startswith(("-n", "--numprocesses", "-p")) for arg in rest) else ["-n", "auto"]
        return subprocess.run([str(_bin("python")), "-m", "pytest", *parallel, *rest], cwd=ROOT).returncode
    if command == "demo":
        return subprocess.run([str(_bin("capi-agent")), "demo", *rest]).returncode
    return subprocess.run([str(_bin("capi-agent")), *rest]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
