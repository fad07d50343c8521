"""LLM configuration from settings: when an LLM is configured, and when the offline reasoner runs."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from agent.llm.adapter import build_openai_client
from agent.llm.config import LOCAL_SERVER_API_KEY, LLMConfig, llm_config_from_settings
from agent.settings import Settings

LLM_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CAPI_LLM_MODEL")


@pytest.fixture
def settings_for(monkeypatch):
    for name in LLM_ENV:
        monkeypatch.delenv(name, raising=False)

    def make(**values: str) -> Settings:
        return Settings(_env_file=None, **values)

    return make


def test_no_model_means_no_llm(settings_for):
    assert llm_config_from_settings(settings_for()) is None
    assert llm_config_from_settings(settings_for(OPENAI_API_KEY="sk-x")) is None


def test_a_model_without_key_or_base_url_means_no_llm(settings_for):
    assert llm_config_from_settings(settings_for(CAPI_LLM_MODEL="gpt-test")) is None


def test_key_and_model_configure_the_llm(settings_for):
    config = llm_config_from_settings(settings_for(OPENAI_API_KEY="sk-real", CAPI_LLM_MODEL="gpt-test"))
    assert config is not None
    assert (config.model, config.base_url, config.api_key.get_secret_value()) == ("gpt-test", None, "sk-real")
    assert (config.timeout_seconds, config.max_retries, config.max_tokens_per_run,
            config.max_tool_rounds, config.temperature) == (30, 2, 20000, 6, 0)


def test_a_local_server_needs_no_key(settings_for):
    config = llm_config_from_settings(
        settings_for(OPENAI_BASE_URL="http://127.0.0.1:11434/v1", CAPI_LLM_MODEL="llama3")
    )
    assert config is not None
    assert config.base_url == "http://127.0.0.1:11434/v1"
    assert config.api_key.get_secret_value() == LOCAL_SERVER_API_KEY


def test_the_key_never_shows_in_reprs():
    config = LLMConfig(model="m", api_key=SecretStr("sk-very-secret"))
    assert "sk-very-secret" not in repr(config) and "sk-very-secret" not in str(config.model_dump())


def test_limits_are_validated():
    with pytest.raises(ValidationError):
        LLMConfig(model="m", api_key=SecretStr("k"), timeout_seconds=0)
    with pytest.raises(ValidationError):
        LLMConfig(model="", api_key=SecretStr("k"))


def test_the_client_gets_timeout_and_retries_from_the_config():
    config = LLMConfig(model="m", base_url="http://127.0.0.1:9/v1", api_key=SecretStr("k"),
                       timeout_seconds=7, max_retries=1)
    client = build_openai_client(config)
    try:
        assert client.timeout == 7 and client.max_retries == 1
        assert str(client.base_url).startswith("http://127.0.0.1:9/v1")
    finally:
        client.close()
