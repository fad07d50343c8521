"""The layers hold: who may import whom, read from the source with ``ast`` (imports inside functions,
relative imports and ``importlib.import_module("...")`` included), not from what happens to be loaded.

- ``tools/`` (the deterministic domain) imports nothing from ``agent``, ``evals``, ``prompts`` or
  ``tests``, and reads no file of the ``evals`` package (its scenario library lives in
  ``tools/synth/data``);
- ``agent/`` imports ``evals`` only in the ``eval`` command;
- ``evals/`` imports nothing from ``tests`` (the benchmarks' fakes live in ``evals/fakes``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Crossing:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute name of a ``from ... import`` (``from .x import y`` in ``tools.synth.scenario``
    is ``tools.synth.x``)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_docstring(node: ast.Constant, parents: dict[ast.AST, ast.AST]) -> bool:
    statement = parents.get(node)
    owner = parents.get(statement) if statement is not None else None
    body = getattr(owner, "body", None)
    return isinstance(statement, ast.Expr) and isinstance(body, list) and bool(body) and body[0] is statement


def imports_of(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """Every module ``source`` imports, anywhere in it, with its line: ``import a.b``, ``from a import b``
    (as ``a.b`` too, since ``b`` may be a submodule), relative imports resolved, and
    ``importlib.import_module("a.b")`` / ``__import__("a")`` with a literal name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, is_package)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def evals_file_reads(source: str) -> list[tuple[int, str]]:
    """String literals (docstrings aside) that name the ``evals`` package or a path inside it:
    ``files("evals")``, ``"evals/scenarios"``, ``Path("evals") / ...``."""
    tree = ast.parse(source)
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and not _is_docstring(node, parents)
            and (node.value == "evals" or node.value.startswith(("evals/", "evals.")))]


def _under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def crossings(root: Path, layer: str, forbidden: tuple[str, ...], *, allowed_files: tuple[str, ...] = (),
              check_evals_reads: bool = False) -> list[Crossing]:
    """Imports of ``forbidden`` packages (and, optionally, reads of the evals package) in ``root/layer``."""
    found: list[Crossing] = []
    for path in sorted((root / layer).rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative in allowed_files:
            continue
        source = path.read_text(encoding="utf-8")
        module = module_name(path, root)
        for line, name in imports_of(source, module, is_package=path.name == "__init__.py"):
            if _under(name, forbidden):
                found.append(Crossing(relative, line, f"imports {name}"))
        if check_evals_reads:
            found += [Crossing(relative, line, f"reads the evals package ({text!r})")
                      for line, text in evals_file_reads(source)]
    return sorted(set(found), key=lambda c: (c.path, c.line, c.what))


LAYERS = {
    "tools": dict(layer="tools", forbidden=("agent", "evals", "prompts", "tests"), check_evals_reads=True),
    "agent": dict(layer="agent", forbidden=("evals",), allowed_files=("agent/commands/eval.py",)),
    "evals": dict(layer="evals", forbidden=("tests",)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_no_layer_is_crossed(name: str) -> None:
    assert (ROOT / name).is_dir()
    found = crossings(ROOT, **LAYERS[name])  # type: ignore[arg-type]
    assert [str(c) for c in found] == []


def test_the_eval_command_is_the_agents_one_door_to_evals() -> None:
    """The exception is used (else it should go): the eval command does import the eval package."""
    source = (ROOT / "agent/commands/eval.py").read_text(encoding="utf-8")
    assert any(_under(name, ("evals",)) for _line, name in imports_of(source, "agent.commands.eval"))


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_the_check_sees_every_kind_of_crossing(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "tools/__init__.py": "",
        "tools/a.py": '"""Docstrings may name evals/scenarios."""\nimport agent.cli\n',
        "tools/b.py": "def later():\n    from evals.harness import SIM_TOKEN\n    return SIM_TOKEN\n",
        "tools/c.py": "import importlib\nharness = importlib.import_module('tests.fakes')\n",
        "tools/d.py": "from importlib.resources import files\nDATA = files('evals').joinpath('scenarios')\n",
        "tools/e.py": "from prompts import diagnose\n",
        "tools/fine.py": "import json\nfrom tools import a\nfrom .a import agent\n",
        "agent/__init__.py": "",
        "agent/commands/__init__.py": "",
        "agent/commands/demo.py": "def demo():\n    import evals.harness\n",
        "agent/commands/eval.py": "def run():\n    from evals.evaluate import runner\n",
    })
    found = crossings(root, **LAYERS["tools"])  # type: ignore[arg-type]
    assert {(c.path, c.line) for c in found} == {
        ("tools/a.py", 2), ("tools/b.py", 2), ("tools/c.py", 2), ("tools/d.py", 2), ("tools/e.py", 1)}
    assert [(c.path, c.line) for c in crossings(root, **LAYERS["agent"])] == [  # type: ignore[arg-type]
        ("agent/commands/demo.py", 2)]


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"evals/__init__.py": "", "evals/perf/__init__.py": "",
                            "evals/perf/bench.py": "from ...tests.fakes import openai_server\n",
                            "evals/perf/ok.py": "from ..harness import SIM_TOKEN\nfrom . import bench\n"})
    assert [str(c) for c in crossings(root, **LAYERS["evals"])] == [  # type: ignore[arg-type]
        "evals/perf/bench.py:1: imports tests.fakes", "evals/perf/bench.py:1: imports tests.fakes.openai_server"]
