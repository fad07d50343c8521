"""The LLM layer: a domain-free adapter over any OpenAI-compatible server (tool loop, token budget,
PII guard). Nothing is built at import: use ``LLMAdapter.from_config(llm_config_from_settings(...))``."""

from agent.llm.adapter import LLMAdapter, build_openai_client
from agent.llm.budget import TokenBudget
from agent.llm.config import LLMConfig, llm_config_from_settings
from agent.llm.errors import LLMUnavailable
from agent.llm.guard import PromptLeak, assert_prompt_safe, scrub
from agent.llm.types import ToolCallRecord, ToolLoopResult, ToolSpec, Usage

__all__ = [
    "LLMAdapter",
    "LLMConfig",
    "LLMUnavailable",
    "PromptLeak",
    "TokenBudget",
    "ToolCallRecord",
    "ToolLoopResult",
    "ToolSpec",
    "Usage",
    "assert_prompt_safe",
    "build_openai_client",
    "llm_config_from_settings",
    "scrub",
]
