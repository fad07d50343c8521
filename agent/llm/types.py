"""Typed inputs and results of the LLM adapter (domain-free)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

StopReason = Literal["answer", "budget", "rounds"]


@dataclass(frozen=True)
class ToolSpec:
    """A read-only tool the model may call. ``parameters`` is a JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        """The Chat Completions ``tools`` entry for this tool."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass
class Usage:
    """Tokens and calls spent over a run."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> Usage:
        """Adds ``other`` into this usage and returns it."""
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.calls += other.calls
        return self


@dataclass(frozen=True)
class ToolCallRecord:
    """One tool call the model asked for and what the model was told in return.

    ``arguments`` is None when the model sent arguments that are not a JSON object; ``error`` is
    set when the call did not run (unknown tool, bad arguments, the tool raised)."""

    call_id: str
    name: str
    arguments: dict[str, Any] | None
    result: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ToolLoopResult:
    """The outcome of :meth:`LLMAdapter.run_tool_loop`.

    ``content`` is the model's final text (None when it gave none, e.g. the budget ran out);
    ``rounds`` counts the model calls made; ``scrubbed`` counts values masked by the PII guard."""

    content: str | None
    tool_calls: list[ToolCallRecord]
    usage: Usage
    rounds: int
    stopped: StopReason
    scrubbed: dict[str, int] = field(default_factory=dict)
