"""Prompt files with explicit placeholders.

Each prompt is ``prompts/<name>.md``, shipped as package data. It opens with a header naming the
placeholders it needs, then a ``---`` line, then the body in ``string.Template`` syntax::

    placeholders: catalogue, findings
    ---
    Body text using $catalogue and ${findings}. A literal dollar sign is written $$.

A prompt whose body uses a placeholder it does not declare (or declares one it does not use) fails
to load; rendering with a missing or an unexpected value fails with the names at fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_HEADER_KEY = "placeholders:"
_SEPARATOR = "---"


class PromptError(ValueError):
    """A prompt file that is malformed, or a render call whose values do not fit the prompt."""


@dataclass(frozen=True)
class Prompt:
    """One prompt: its name, the placeholders it requires, and its template body."""

    name: str
    placeholders: frozenset[str]
    body: str

    def render(self, **values: str | int | float) -> str:
        """Substitutes ``values`` into the body; every declared placeholder and nothing else."""
        missing = self.placeholders - values.keys()
        unexpected = values.keys() - self.placeholders
        if missing or unexpected:
            problems = []
            if missing:
                problems.append(f"missing {', '.join(sorted(missing))}")
            if unexpected:
                problems.append(f"unexpected {', '.join(sorted(unexpected))}")
            raise PromptError(f"prompt {self.name!r}: {'; '.join(problems)}")
        for key, value in values.items():
            # Structured data must be serialised by the caller (it knows the right encoder);
            # str() of a dict would put Python reprs in front of the model.
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise PromptError(
                    f"prompt {self.name!r}: value for {key!r} must be text (got {type(value).__name__}); "
                    "serialise structured data to JSON first"
                )
        return Template(self.body).substitute({key: str(value) for key, value in values.items()})


def _parse(name: str, text: str) -> Prompt:
    header, separator, body = text.partition(f"\n{_SEPARATOR}\n")
    if not separator or not header.strip().startswith(_HEADER_KEY):
        raise PromptError(f"prompt {name!r}: must start with '{_HEADER_KEY} ...' then a '{_SEPARATOR}' line")
    listed = header.strip()[len(_HEADER_KEY):]
    declared = frozenset(part.strip() for part in listed.split(",") if part.strip())
    template = Template(body)
    if not template.is_valid():
        raise PromptError(f"prompt {name!r}: invalid '$' use in the body (write a literal dollar as '$$')")
    used = frozenset(template.get_identifiers())
    if used != declared:
        raise PromptError(
            f"prompt {name!r}: header declares {sorted(declared)} but the body uses {sorted(used)}"
        )
    return Prompt(name=name, placeholders=declared, body=body)


@cache
def load_prompt(name: str) -> Prompt:
    """Loads ``prompts/<name>.md`` from the installed package."""
    if not _NAME.match(name):
        raise PromptError(f"invalid prompt name {name!r}")
    resource = resources.files(__name__).joinpath(f"{name}.md")
    if not resource.is_file():
        raise PromptError(f"no prompt named {name!r}; known: {', '.join(prompt_names())}")
    return _parse(name, resource.read_text(encoding="utf-8"))


def render(name: str, **values: str | int | float) -> str:
    """Renders the prompt ``name`` with exactly its declared placeholders."""
    return load_prompt(name).render(**values)


def prompt_names() -> list[str]:
    """Names of every prompt shipped in this package, sorted."""
    return sorted(
        entry.name[: -len(".md")]
        for entry in resources.files(__name__).iterdir()
        if entry.name.endswith(".md") and _NAME.match(entry.name[: -len(".md")])
    )
