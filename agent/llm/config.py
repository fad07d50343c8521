"""Which OpenAI-compatible model to talk to, and the limits of one run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, SecretStr

if TYPE_CHECKING:
    from agent.settings import Settings

# Local servers (llama.cpp, vLLM, Ollama) ignore the key, but the openai client insists on one.
LOCAL_SERVER_API_KEY = "not-needed"


class LLMConfig(BaseModel):
    """Connection and per-run limits for the LLM adapter. A value passed for a run beats these."""

    model_config = ConfigDict(frozen=True)

    model: str = Field(min_length=1, description="Model name as the server knows it")
    base_url: str | None = Field(default=None, description="None: the openai client's default")
    api_key: SecretStr = Field(repr=False)
    timeout_seconds: float = Field(default=30, gt=0, description="Per HTTP request")
    max_retries: int = Field(default=2, ge=0, description="Client retries on timeouts, 429 and 5xx")
    max_tokens_per_run: int = Field(default=20000, gt=0, description="Prompt + completion tokens")
    max_tool_rounds: int = Field(default=6, ge=0, description="Model turns that may call tools")
    temperature: float = Field(default=0, ge=0, le=2)


def llm_config_from_settings(settings: Settings) -> LLMConfig | None:
    """Returns the LLM configuration, or None when no LLM is configured (the offline reasoner then
    does the diagnosis).

    A model is always needed (``CAPI_LLM_MODEL``), plus either ``OPENAI_API_KEY`` or
    ``OPENAI_BASE_URL``: a local server that needs no key gets a placeholder one."""
    model = (settings.llm_model or "").strip()
    if not model:
        return None
    base_url = (settings.openai_base_url or "").strip() or None
    key = settings.openai_api_key.get_secret_value().strip() if settings.openai_api_key else ""
    if not key:
        if base_url is None:
            return None
        key = LOCAL_SERVER_API_KEY
    return LLMConfig(model=model, base_url=base_url, api_key=SecretStr(key))
