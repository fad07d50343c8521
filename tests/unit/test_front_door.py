"""One front door: only ``agent/wiring.py`` turns settings into the agent's parts (engine, checkpointer,
LLM client, the services that run the graphs), so every surface (CLI, serve, Slack, scheduler, demo,
eval) gets the same token choice, ``appsecret_proof``, approvals and trail. Read from the source with
``ast``: a call to one of these builders anywhere else is a second door."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FRONT_DOOR = "agent/wiring.py"
# What only the front door may call: the ledger's engine, the checkpointer, the LLM client, the services.
BUILDERS = {"make_engine", "open_checkpointer", "from_config", "AgentServices"}
# Surfaces that open the agent: the application, and the eval's runner (its benchmarks build worlds).
SURFACES = ("agent", "evals/evaluate")
# Not a surface: where the builders themselves live.
DEFINED_IN = {"agent/checkpoint.py", "agent/agent_services.py", "agent/llm/adapter.py"}


def called_names(source: str) -> list[tuple[int, str]]:
    """(line, name) of every call whose callee is a plain name or an attribute (``x.from_config``)."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            callee = node.func
            name = callee.id if isinstance(callee, ast.Name) else callee.attr if isinstance(
                callee, ast.Attribute) else None
            if name is not None:
                calls.append((node.lineno, name))
    return calls


def second_doors(root: Path) -> list[str]:
    found = []
    for surface in SURFACES:
        for path in sorted((root / surface).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel == FRONT_DOOR or rel in DEFINED_IN:
                continue
            found += [f"{rel}:{line}: {name}(...)" for line, name in called_names(path.read_text("utf-8"))
                      if name in BUILDERS]
    return found


def test_only_the_front_door_builds_the_agent() -> None:
    assert second_doors(ROOT) == []


def test_a_second_door_is_found(tmp_path: Path) -> None:
    (tmp_path / "agent" / "commands").mkdir(parents=True)
    (tmp_path / "evals" / "evaluate").mkdir(parents=True)
    (tmp_path / "agent" / "wiring.py").write_text("def open_agent():\n    return AgentServices(wiring=1)\n")
    (tmp_path / "agent" / "commands" / "x.py").write_text(
        "def run():\n    from agent.checkpoint import open_checkpointer\n"
        "    with open_checkpointer(url) as saver:\n        return LLMAdapter.from_config(c), saver\n")
    (tmp_path / "evals" / "evaluate" / "runner.py").write_text("engine = make_engine(url)\n")
    assert second_doors(tmp_path) == ["agent/commands/x.py:3: open_checkpointer(...)",
                                      "agent/commands/x.py:4: from_config(...)",
                                      "evals/evaluate/runner.py:1: make_engine(...)"]
