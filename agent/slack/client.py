"""The one Slack Web API client the app and the notifier share, with retries for transient failures."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)


def slack_retry_handlers(*, rate_limit_retries: int = 3, server_error_retries: int = 2,
                         connection_retries: int = 2) -> list[RetryHandler]:
    """Retries on HTTP 429 (honouring Retry-After), on 500/503 and on dropped connections (backoff)."""
    return [
        RateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),
        ServerErrorRetryHandler(max_retry_count=server_error_retries),
        ConnectionErrorRetryHandler(max_retry_count=connection_retries),
    ]


def build_web_client(*, token: str, base_url: str | None = None, timeout: int = 30) -> WebClient:
    """A WebClient for ``token``; ``base_url`` (SLACK_API_URL) points it at another Web API host."""
    url = base_url or WebClient.BASE_URL
    if not url.endswith("/"):
        url += "/"
    return WebClient(token=token, base_url=url, timeout=timeout, retry_handlers=slack_retry_handlers())
