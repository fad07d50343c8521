"""A token budget for one LLM run (a diagnosis, a chat answer), charged from each response's usage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBudget:
    """At most ``max_tokens`` (prompt + completion) over a run.

    The budget is checked before each call and charged after it, so a single call may overshoot it:
    the run then stops before the next call rather than in the middle of an answer."""

    max_tokens: int
    spent: int = 0

    def __post_init__(self) -> None:
        if self.max_tokens < 0:
            raise ValueError("max_tokens must not be negative")

    @property
    def remaining(self) -> int:
        return max(self.max_tokens - self.spent, 0)

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.max_tokens

    def charge(self, tokens: int) -> None:
        """Records ``tokens`` as spent (negative counts from a confused server count as zero)."""
        self.spent += max(tokens, 0)
