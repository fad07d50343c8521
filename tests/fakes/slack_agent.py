"""A recording stand-in for ``agent.slack.port.AgentPort`` and an inline executor for Bolt."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.slack.port import DecisionOutcome


class InlineExecutor(Executor):
    """Runs submitted work at once, on the caller's thread: Bolt's lazy listeners become deterministic."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


@dataclass
class FakeSlackAgent:
    """Records every call. ``outcomes`` are returned by ``decide`` in order; ``errors`` maps a method
    name to an exception it raises; ``incident_threads`` maps (channel, thread_ts) to a pixel."""

    outcomes: deque[DecisionOutcome] = field(default_factory=deque)
    errors: dict[str, Exception] = field(default_factory=dict)
    incident_threads: dict[tuple[str, str], str] = field(default_factory=dict)
    answer_text: str = "Server Purchase events stopped at 10:00 UTC."
    summary: Any = None  # what ``latest_summary`` returns (an agent.summary.model.Summary or None)
    weekly: Any = None  # what ``weekly_report`` returns (an agent.slack.port.WeeklyView or None)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def _record(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))
        if name in self.errors:
            raise self.errors[name]

    def calls_to(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for called, kwargs in self.calls if called == name]

    def decide(self, *, proposal_id: str, user_id: str,
               decision: Literal["approve", "reject"]) -> DecisionOutcome:
        self._record("decide", proposal_id=proposal_id, user_id=user_id, decision=decision)
        return self.outcomes.popleft()

    def answer(self, *, conversation_id: str, question: str, user_id: str, pixel_id: str | None) -> str:
        self._record("answer", conversation_id=conversation_id, question=question, user_id=user_id,
                     pixel_id=pixel_id)
        return self.answer_text

    def status_text(self, *, pixel_id: str | None) -> str:
        self._record("status_text", pixel_id=pixel_id)
        return f"Pixel {pixel_id or 'all'}: 1 open incident (server_events_down)."

    def run_audit_text(self, *, pixel_id: str | None) -> str:
        self._record("run_audit_text", pixel_id=pixel_id)
        return f"Audit of {pixel_id or 'all pixels'}: 2 findings."

    def fixes_text(self) -> str:
        self._record("fixes_text")
        return "1 fix waiting: replay 412 Purchase events."

    def pixel_for_thread(self, *, channel: str, thread_ts: str) -> str | None:
        self._record("pixel_for_thread", channel=channel, thread_ts=thread_ts)
        return self.incident_threads.get((channel, thread_ts))

    def latest_summary(self, *, pixel_id: str | None, channel: str | None) -> Any:
        self._record("latest_summary", pixel_id=pixel_id, channel=channel)
        return self.summary

    def weekly_report(self, *, pixel_id: str | None, channel: str | None) -> Any:
        self._record("weekly_report", pixel_id=pixel_id, channel=channel)
        return self.weekly
