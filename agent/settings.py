"""Process-wide settings and secrets, read from the environment (or a .env file).

Per-run knobs (the time an audit runs at, thresholds, dry-run) are passed explicitly, never read
from here. Nothing is read at import time: call ``load_settings()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default="sqlite:///capi-agent.db", validation_alias="CAPI_DATABASE_URL",
        description="SQLAlchemy URL; postgresql+psycopg://... for Postgres",
    )
    config_file: Path | None = Field(default=None, validation_alias="CAPI_CONFIG",
                                     description="TOML file describing pixels")
    meta_graph_url: str = Field(default="https://graph.facebook.com", validation_alias="META_GRAPH_URL")
    meta_api_version: str = Field(default="v25.0", validation_alias="META_API_VERSION")
    meta_access_token: SecretStr | None = Field(default=None, validation_alias="META_ACCESS_TOKEN")
    meta_app_secret: SecretStr | None = Field(default=None, validation_alias="META_APP_SECRET")
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    llm_model: str | None = Field(default=None, validation_alias="CAPI_LLM_MODEL")
    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str | None = Field(default=None, validation_alias="SLACK_API_URL")
    relay_accept_unconfigured: bool = Field(
        default=False, validation_alias="CAPI_RELAY_ACCEPT_UNCONFIGURED",
        description="Relay events for pixels that are not configured (with the caller's own token)")
    relay_rate_per_second: float = Field(default=50.0, gt=0, validation_alias="CAPI_RELAY_RATE_PER_SECOND",
                                         description="Relay requests per second allowed per sender address")
    relay_burst: int = Field(default=200, ge=1, validation_alias="CAPI_RELAY_BURST",
                             description="Relay requests a sender address may send at once")
    payload_retention_days: float = Field(
        default=8.0, gt=0, validation_alias="CAPI_PAYLOAD_RETENTION_DAYS",
        description="Days the event payloads (kept for replays) are stored; `serve` purges older ones hourly")
    approvers: str = Field(default="", validation_alias="CAPI_APPROVERS",
                           description="Comma-separated Slack user ids allowed to approve fixes")
    smtp_url: SecretStr | None = Field(
        default=None, validation_alias="CAPI_SMTP_URL",
        description="smtp://user:pass@host:port, smtps://... or smtp+starttls://... (holds a password)")
    email_from: str | None = Field(default=None, validation_alias="CAPI_EMAIL_FROM",
                                   description="From address of incident and summary emails")
    sqlite_heap_mib: int = Field(
        default=16, ge=0, validation_alias="CAPI_SQLITE_HEAP_MIB",
        description="serve on a SQLite ledger: MiB of page cache all its connections share (0: no limit)")
    tracemalloc_top: int = Field(
        default=0, ge=0, validation_alias="CAPI_TRACEMALLOC",
        description="serve: trace Python allocations and log this many biggest sites after each round (slow)")

    @property
    def approver_ids(self) -> frozenset[str]:
        return frozenset(part.strip() for part in self.approvers.split(",") if part.strip())


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
