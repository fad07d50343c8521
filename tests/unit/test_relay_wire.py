"""The relay and the simulator share one wire-format module (``tools.meta.wire``); the production relay
depends on nothing of the simulator."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_relay_imports_nothing_from_the_simulator() -> None:
    files = [*sorted((ROOT / "tools" / "relay").glob("*.py")), *sorted((ROOT / "agent" / "relay").glob("*.py"))]
    assert files
    offenders = {str(path.relative_to(ROOT)): sorted(name for name in imported_modules(path)
                                                     if name.startswith("tools.meta.simulator"))
                 for path in files}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_relay_and_simulator_read_requests_with_the_same_module() -> None:
    for path in ("tools/relay/limits.py", "agent/relay/app.py", "tools/meta/simulator/app.py"):
        assert "tools.meta.wire" in imported_modules(ROOT / path), path
