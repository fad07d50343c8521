"""Bolt listeners by kind (actions, events, commands). ``register_listeners`` wires them all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from slack_bolt import App

from agent.slack.dedupe import RecentKeys
from agent.slack.port import AgentPort
from tools.timeutil import utcnow


@dataclass(frozen=True)
class ListenerDeps:
    """What the listeners need: the agent service, who may approve, and per-process dedupe state."""

    service: AgentPort
    approvers: frozenset[str]
    answered_messages: RecentKeys = field(default_factory=RecentKeys)
    clock: Callable[[], datetime] = utcnow


def register_listeners(app: App, deps: ListenerDeps) -> None:
    from agent.slack.listeners import actions, commands, events

    actions.register(app, deps)
    events.register(app, deps)
    commands.register(app, deps)
