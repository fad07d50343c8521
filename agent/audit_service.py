"""Running an audit round for the CLI: the agent's services on a checkpointer over the same database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent.checkpoint import open_checkpointer
from agent.llm import LLMAdapter, llm_config_from_settings
from agent.runtime import Runtime
from agent.service import AgentServices
from tools.ledger.pixels import PixelConfig


def llm_adapter(runtime: Runtime) -> LLMAdapter | None:
    """The configured LLM, or None: the offline reasoner takes its place."""
    config = llm_config_from_settings(runtime.settings)
    return LLMAdapter.from_config(config) if config is not None else None


def run_audit_round(runtime: Runtime, *, pixels: list[PixelConfig], at: datetime) -> dict[str, Any]:
    with open_checkpointer(runtime.settings.database_url) as checkpointer:
        services = AgentServices(runtime=runtime, checkpointer=checkpointer, adapter=llm_adapter(runtime))
        return services.audit_round(pixels, at)
