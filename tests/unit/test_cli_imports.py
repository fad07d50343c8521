"""Commands that start instantly: building the CLI (``--help``) and running ``normalize`` import none of
the heavy machinery (database, graphs, LLM, HTTP, Slack, servers, charts). Checked on the import graph
of a fresh interpreter, not with a timer (``evals/perf/bench_startup.py`` measures the time).

typer itself is allowed, and with it pydantic (typer 0.29 builds its parameter adapters on pydantic)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("sqlalchemy", "sqlmodel", "alembic", "psycopg", "langgraph", "langchain_core", "openai", "httpx",
         "httpcore", "slack_bolt", "slack_sdk", "starlette", "uvicorn", "matplotlib", "pydantic_settings",
         "tools.ledger", "tools.checks", "tools.relay", "tools.synth", "agent.wiring", "agent.settings",
         "agent.graphs", "agent.server", "agent.relay")

PROBE = """
import json, sys
from agent.cli import build_app
app = build_app()
try:
    app(args=ARGS, prog_name="capi-agent")
except SystemExit as exit_:
    code = exit_.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def loaded_after(args: list[str]) -> tuple[int, set[str]]:
    """Exit code and every module imported by a fresh interpreter that built the CLI and ran ``args``."""
    done = subprocess.run([sys.executable, "-c", PROBE.replace("ARGS", repr(args))], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["code"], set(result["modules"])


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(name for name in modules if any(name == heavy or name.startswith(heavy + ".")
                                                   for heavy in HEAVY))


@pytest.mark.parametrize("args", [["--help"], ["normalize", "ph", "(650)555-1212"],
                                  ["normalize", "em", "someone@example.com", "--json"], ["relay-key", "--help"]],
                         ids=["help", "normalize-ph", "normalize-em-json", "relay-key-help"])
def test_cli_start_imports_nothing_heavy(args: list[str]) -> None:
    code, modules = loaded_after(args)
    assert code in (0, None)
    assert "typer" in modules and "agent.cli" in modules
    assert heavy_in(modules) == []


def test_every_command_is_registered_without_importing_its_machinery() -> None:
    _code, modules = loaded_after(["--help"])
    commands = {name.rsplit(".", 1)[1] for name in modules if name.startswith("agent.commands.")}
    from agent.cli import COMMAND_MODULES

    assert set(COMMAND_MODULES) <= commands
