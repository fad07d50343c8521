"""The fix kinds that run, by name: the one list every other place derives from.

Each kind is a module under ``tools/fixes/kinds/`` exposing ``KIND``, a ``FixKindSpec``
(``kinds/base.py``): its name, typed parameters, which items it selects (and why others are skipped),
what it sends for each, a step before execution, and its preview. The literals (``FixKindToRun``,
``FixKind``), the chat tool's proposable kinds, previews and the journaled execution all read this list.

Adding a kind: write ``tools/fixes/kinds/<name>.py`` and add one line below.

The list holds module paths, imported on first use: ``tools.fixes.types`` and
``tools.diagnosis.types`` read the names, and the kinds themselves import those modules.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tools.fixes.kinds.base import FixKindSpec

KIND_MODULES: dict[str, str] = {
    "replay": "tools.fixes.kinds.replay",
    "repair_and_replay": "tools.fixes.kinds.repair_and_replay",
    "rehash": "tools.fixes.kinds.rehash",
    "backfill_from_orders": "tools.fixes.kinds.backfill_from_orders",
}
RUNNABLE_KINDS: tuple[str, ...] = tuple(KIND_MODULES)


class UnknownFixKind(ValueError):
    """A kind outside the registry (``manual`` fixes are done by a person, never executed)."""


@functools.cache
def fix_kind(name: str) -> FixKindSpec:
    """The kind registered under ``name`` (UnknownFixKind otherwise)."""
    if name not in KIND_MODULES:
        raise UnknownFixKind(f"{name!r} fixes are done by a person, not executed "
                             f"(runnable kinds: {', '.join(RUNNABLE_KINDS)})")
    spec: FixKindSpec = importlib.import_module(KIND_MODULES[name]).KIND
    if spec.name != name:
        raise RuntimeError(f"{KIND_MODULES[name]} registers {spec.name!r}, not {name!r}")
    return spec


def all_kinds() -> list[FixKindSpec]:
    """Every runnable kind, in registry order."""
    return [fix_kind(name) for name in RUNNABLE_KINDS]
