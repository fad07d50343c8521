"""The agent's reasoning layer: read-only tools over an audit, LLM diagnosis validated against the
catalogue (with an offline fallback), template narratives, and the chat's context."""

from agent.reasoning.context import ChatContext, context_digest
from agent.reasoning.diagnose import DiagnosisOutcome, diagnose_incident
from agent.reasoning.offline import narrate
from agent.reasoning.slack_text import slack_safe
from agent.reasoning.toolbox import Toolbox, build_toolbox

__all__ = [
    "ChatContext",
    "DiagnosisOutcome",
    "Toolbox",
    "build_toolbox",
    "context_digest",
    "diagnose_incident",
    "narrate",
    "slack_safe",
]
