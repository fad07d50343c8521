"""The narrow port the Slack layer talks to. ``agent.slack.agent.SlackAgent`` implements it over the
agent's services; the Bolt app and its listeners depend only on this protocol."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from agent.summary.model import Summary
    from agent.summary.weekly import WeeklyReport

DecisionStatus = Literal[
    "approved_executed",
    "approved_failed",
    "rejected",
    "not_allowed",
    "already_decided",
    "expired",
    "not_found",
]


@dataclass(frozen=True)
class DecisionOutcome:
    """What happened to an approve/reject click. ``message`` is short and safe to show in Slack."""

    status: DecisionStatus
    message: str
    proposal_id: str
    decided_by: str | None = None
    decided_at: datetime | None = None
    result_summary: str | None = None


@dataclass(frozen=True)
class WeeklyView:
    """The weekly report for ``/capi weekly`` and the Slack messages of its open incidents
    (incident id -> message link)."""

    report: WeeklyReport
    links: dict[str, str]


class AgentPort(Protocol):
    def decide(
        self, *, proposal_id: str, user_id: str, decision: Literal["approve", "reject"]
    ) -> DecisionOutcome:
        """Records the decision once; executes an approved fix. A second call returns already_decided."""
        ...

    def answer(self, *, conversation_id: str, question: str, user_id: str, pixel_id: str | None) -> str:
        """Answers a question asked in a Slack thread (conversation id: ``channel:thread_ts``)."""
        ...

    def status_text(self, *, pixel_id: str | None) -> str: ...

    def run_audit_text(self, *, pixel_id: str | None) -> str: ...

    def fixes_text(self) -> str: ...

    def release_uncertain_text(self, *, proposal_id: str, user_id: str) -> str:
        """An approver's release of a fix's uncertain events (trail entry under their name), then the
        fix run resends them; returns what happened."""
        ...

    def latest_summary(self, *, pixel_id: str | None, channel: str | None) -> Summary | None:
        """The summary of the latest audited hour: of ``pixel_id``, else of the pixels reporting to
        ``channel``, else of all pixels; None when nothing was audited yet."""
        ...

    def weekly_report(self, *, pixel_id: str | None, channel: str | None) -> WeeklyView | None:
        """The report of the latest complete week (as the weekly post has it): of ``pixel_id``, else of
        the pixels reporting to ``channel``, else of all pixels; None when no pixel is configured."""
        ...

    def pixel_for_thread(self, *, channel: str, thread_ts: str) -> str | None:
        """The pixel of the incident whose message starts this thread, or None if it is not one."""
        ...
