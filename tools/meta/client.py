"""A small synchronous Graph API client for what capi-agent needs from Meta.

- ``send_events``: ``POST /{ver}/{pixel}/events`` (Conversions API), at most 1000 events a request.
- ``pixel_stats``: ``GET /{ver}/{pixel}/stats?aggregation=event`` hourly counts, browser or server.
- ``dataset_quality``: ``GET /{ver}/dataset_quality`` (EMQ, match keys, coverage, dedup, freshness).

The access token travels in the ``Authorization: Bearer`` header (the Graph API accepts it there as
well as in ``access_token``), never in a URL, because httpx logs request URLs at INFO. Failures raise
the typed errors of ``tools.meta.errors``. Transient errors, 5xx, timeouts and rate limits are retried
with exponential backoff (longer for rate limits, ``Retry-After`` honoured); 190 and 100 never are.
Note: a retried ``send_events`` after a timeout may reach Meta twice; Meta deduplicates server events
sharing ``event_id`` and event name, which is why callers should always set ``event_id``.

Meta's usage headers (``X-App-Usage``, ``X-Business-Use-Case-Usage``, ``X-Ad-Account-Usage``) are
parsed on every answer (``last_usage``). For many pixels at once, clients share one pooled HTTP client
(``pooled_http`` + ``use_http``) and one ``tools.meta.usage.UsageGovernor`` (``use_governor``), which
slows calls down near the budget and closes it after a throttling error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from tools.checks.types import DedupeKeyFeedback, EventQuality, MetaHourlyCount, QualitySnapshot, Source
from tools.meta.errors import MetaApiError, MetaUnreachableError, RateLimitedError, error_from_response
from tools.meta.redact import install_log_redaction, redact, register_secret
from tools.meta.usage import Usage, UsageGovernor, parse_usage
from tools.timeutil import as_utc, floor_hour, from_unix, parse_iso, to_unix, utcnow

MAX_EVENTS_PER_REQUEST = 1000
MAX_STATS_WINDOW = timedelta(days=7)
EVENT_SOURCE = {"browser": "WEB_ONLY", "server": "SERVER_ONLY"}
DATASET_QUALITY_FIELDS = (
    "web{event_name,event_match_quality{composite_score,match_key_feedback,diagnostics},"
    "event_coverage{percentage,goal_percentage,description},"
    "dedupe_key_feedback{dedupe_key,browser_events_with_dedupe_key,server_events_with_dedupe_key,"
    "overall_browser_coverage_from_dedupe_key},data_freshness{upload_frequency,description},acr}"
)
# Backoff (seconds): transient errors start small; rate limits start at 5 s. Both are capped so an
# hourly audit is never stuck for long; Retry-After, when Meta sends it, is honoured up to its cap.
TRANSIENT_BACKOFF = (0.5, 8.0)
RATE_LIMIT_BACKOFF = (5.0, 60.0)
MAX_RETRY_AFTER = 300.0
MAX_PAGES = 1000  # a guard against a paging loop


@dataclass(frozen=True)
class SendResult:
    """Meta's answer to one accepted batch."""

    events_received: int
    messages: tuple[str, ...]
    fbtrace_id: str | None
    attempts: int


class GraphClient:
    """Synchronous Graph API client; one instance per token, reusable across calls, close() when done.

    ``timeout`` (seconds, per attempt) defaults to 10 for reads and batch jobs; Meta recommends 1.5 s
    for sending events from a request path, so a relay forwarding live traffic should pass that.
    """

    def __init__(
        self,
        *,
        base_url: str = "https://graph.facebook.com",
        api_version: str = "v25.0",
        access_token: str,
        app_secret: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 4,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not access_token:
            raise ValueError("access_token is required")
        register_secret(access_token)
        install_log_redaction()  # defence in depth; idempotent, process-wide
        self._base = base_url.rstrip("/")
        self._version = api_version.strip("/")
        self._token = access_token
        self._proof = (hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()
                       if app_secret else None)
        self._max_retries = max(0, max_retries)
        self._sleep = sleep
        self._timeout = timeout
        self._transport = transport
        self._auth = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        # Made on first use, so a client that only ever reads a shared pool (``use_http``) costs nothing.
        self._own_http: httpx.Client | None = None
        self._shared_http: httpx.Client | None = None
        self._governor: UsageGovernor | None = None
        self._budget_key: str | None = None
        self.last_usage: Usage | None = None  # the usage headers of the latest answer, if Meta sent any

    @property
    def _http(self) -> httpx.Client:
        if self._shared_http is not None:
            return self._shared_http
        if self._own_http is None:
            self._own_http = httpx.Client(timeout=httpx.Timeout(self._timeout), transport=self._transport)
        return self._own_http

    def use_http(self, http: httpx.Client, *, timeout: float | None = None,
                 max_retries: int | None = None) -> GraphClient:
        """Send through ``http`` (a pooled client shared by many GraphClients; see ``pooled_http``),
        which this client never closes (ignored when the client was given its own transport).
        ``timeout`` (seconds per attempt) and ``max_retries``, when given, replace this client's: a
        round reading many pixels cuts a slow answer short rather than let it hold a connection."""
        if self._transport is None:
            self._shared_http = http
        if timeout is not None:
            self._timeout = timeout
        if max_retries is not None:
            self._max_retries = max(0, max_retries)
        return self

    def use_governor(self, governor: UsageGovernor | None, key: str | None = None) -> GraphClient:
        """Consult ``governor`` before every request and report Meta's usage headers to it.

        ``key`` names the budget this token draws on (default: a fingerprint of the token). With a
        governor, a rate-limited call is not retried here: the governor closes the budget and the
        caller defers the read (or waits, if access comes back soon)."""
        self._governor = governor
        self._budget_key = key or hashlib.sha256(self._token.encode()).hexdigest()[:12]
        return self

    # ------------------------------------------------------------------ Conversions API

    def send_events(
        self, pixel_id: str, events: Sequence[Mapping[str, Any]], *, test_event_code: str | None = None,
        extra_params: Mapping[str, str] | None = None,
    ) -> SendResult:
        """Send one batch (1..1000 events) in one request; raise a ``MetaApiError`` if Meta rejects it.

        Meta accepts or rejects a batch as a whole, so on success all events were received.
        ``extra_params`` are request parameters sent beside ``data`` (partner_agent, namespace_id,
        upload_id, upload_tag, upload_source, a caller's appsecret_proof).
        """
        if not events:
            raise ValueError("no events to send")
        if len(events) > MAX_EVENTS_PER_REQUEST:
            raise ValueError(f"{len(events)} events in one request; Meta accepts at most "
                             f"{MAX_EVENTS_PER_REQUEST} (use send_events_batched)")
        payload: dict[str, Any] = {**(extra_params or {}), "data": [dict(event) for event in events]}
        if test_event_code:
            payload["test_event_code"] = test_event_code
        body, attempts = self._call("POST", self._url(pixel_id, "events"), json_body=payload)
        messages = body.get("messages") or []
        return SendResult(
            events_received=int(body.get("events_received", 0)),
            messages=tuple(str(message) for message in messages),
            fbtrace_id=body.get("fbtrace_id"),
            attempts=attempts,
        )

    def send_events_batched(
        self,
        pixel_id: str,
        events: Sequence[Mapping[str, Any]],
        *,
        test_event_code: str | None = None,
        batch_size: int = MAX_EVENTS_PER_REQUEST,
    ) -> list[SendResult]:
        """Send events in order, ``batch_size`` (<= 1000) a request; stops at the first rejected batch
        (the error propagates; earlier batches were accepted)."""
        if not 1 <= batch_size <= MAX_EVENTS_PER_REQUEST:
            raise ValueError(f"batch_size must be between 1 and {MAX_EVENTS_PER_REQUEST}")
        return [
            self.send_events(pixel_id, events[i:i + batch_size], test_event_code=test_event_code)
            for i in range(0, len(events), batch_size)
        ]

    # ------------------------------------------------------------------ reads

    def pixel_stats(
        self, pixel_id: str, *, start: datetime, end: datetime, source: Source, page_size: int | None = None
    ) -> list[MetaHourlyCount]:
        """Hourly per-event counts Meta reports for ``[start, end)`` from one source.

        Windows longer than Meta's 7-day limit are split; every page is followed. Sorted by hour, name.
        ``page_size`` (the Graph API's ``limit``) asks for that many hourly buckets a page (200 holds
        a whole 7-day window: one call instead of seven at the default 25).
        """
        start, end = as_utc(start), as_utc(end)
        if end <= start:
            return []
        counts: dict[tuple[datetime, str], int] = {}
        for window_start, window_end in _stats_windows(start, end):
            params = {"aggregation": "event", "event_source": EVENT_SOURCE[source],
                      "start_time": str(to_unix(window_start)), "end_time": str(to_unix(window_end))}
            if page_size:
                params["limit"] = str(page_size)
            for page in self._pages(self._url(pixel_id, "stats"), params):
                for bucket in page.get("data") or []:
                    hour = floor_hour(_parse_time(bucket.get("start_time")))
                    if not start <= hour < end:
                        continue
                    for row in bucket.get("data") or []:
                        key = (hour, str(row.get("value")))
                        counts[key] = counts.get(key, 0) + int(row.get("count") or 0)
        return [MetaHourlyCount(hour=hour, event_name=name, source=source, count=count)
                for (hour, name), count in sorted(counts.items())]

    def dataset_quality(self, dataset_id: str, *, fetched_at: datetime | None = None) -> QualitySnapshot:
        """Meta's Dataset Quality API for the web events of ``dataset_id`` (the pixel id)."""
        params = {"dataset_id": dataset_id, "fields": DATASET_QUALITY_FIELDS}
        body, _ = self._call("GET", f"{self._base}/{self._version}/dataset_quality", params=params)
        events = tuple(parse_event_quality(item) for item in body.get("web") or [] if isinstance(item, dict))
        return QualitySnapshot(fetched_at=as_utc(fetched_at) if fetched_at else utcnow(), events=events)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        if self._own_http is not None:
            self._own_http.close()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _url(self, object_id: str, edge: str) -> str:
        if not str(object_id).strip() or "/" in str(object_id):
            raise ValueError("invalid Graph object id")
        return f"{self._base}/{self._version}/{object_id}/{edge}"

    def _pages(self, url: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        next_url: str | None = url
        next_params: dict[str, str] | None = params
        for _ in range(MAX_PAGES):
            if next_url is None:
                return
            body, _ = self._call("GET", next_url, params=next_params)
            yield body
            paging = body.get("paging") or {}
            next_url = _without_token(paging["next"]) if paging.get("next") else None
            next_params = None  # the next URL carries every parameter
        raise MetaApiError(f"more than {MAX_PAGES} pages of stats; giving up")

    def _call(
        self, method: str, url: str, *, params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], int]:
        """One logical call with retries; returns (parsed body, attempts made)."""
        query = dict(params or {})
        if self._proof:
            query["appsecret_proof"] = self._proof
        governed = self._governor is not None
        retrying = Retrying(
            stop=stop_after_attempt(self._max_retries + 1),
            wait=_backoff,
            retry=retry_if_exception(lambda exc: isinstance(exc, MetaApiError) and exc.retryable
                                     and not (governed and isinstance(exc, RateLimitedError))),
            sleep=self._sleep,
            reraise=True,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    body = self._send_once(method, url, query, json_body)
        except MetaApiError as exc:
            exc.attempts = attempts
            raise
        return body, attempts

    def _send_once(
        self, method: str, url: str, query: Mapping[str, str], json_body: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        content = None
        headers = dict(self._auth)
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":"), default=str).encode()
            headers["Content-Type"] = "application/json"
        governor, key = self._governor, self._budget_key
        if governor is not None:
            governor.acquire(key)  # may wait (slow down, back off) or raise BudgetExhausted
        try:
            response = self._http.request(method, url, params=query or None, content=content,
                                          headers=headers, timeout=httpx.Timeout(self._timeout))
        except httpx.TimeoutException as exc:
            raise MetaUnreachableError(self._scrub(f"timed out: {type(exc).__name__}")) from None
        except httpx.TransportError as exc:
            reason = f"connection failed: {type(exc).__name__}: {exc}"
            raise MetaUnreachableError(self._scrub(reason)) from None
        finally:
            if governor is not None:
                governor.release(key)
        usage = parse_usage(response.headers)
        if usage is not None:
            self.last_usage = usage
        if governor is not None:
            governor.observe(usage, key)
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400 or (isinstance(body, dict) and "error" in body):
            retry_after = _retry_after(response.headers.get("Retry-After"))
            if retry_after is None and usage is not None and usage.regain_seconds > 0:
                retry_after = min(usage.regain_seconds, MAX_RETRY_AFTER)
            error = error_from_response(response.status_code, body, retry_after=retry_after)
            error.message = self._scrub(error.message)
            error.user_msg = self._scrub(error.user_msg) if error.user_msg else error.user_msg
            error.args = (error.describe(),)
            if governor is not None and isinstance(error, RateLimitedError):
                governor.throttled(error, key, usage)
            raise error
        if not isinstance(body, dict):
            raise MetaApiError("Graph API answered without a JSON object", http_status=response.status_code)
        return body

    def _scrub(self, text: str) -> str:
        return redact(text.replace(self._token, "***"))


def pooled_http(*, max_connections: int = 32, timeout: float = 10.0) -> httpx.Client:
    """One pooled HTTP client for many ``GraphClient``s (``use_http``): keep-alive connections are
    reused across pixels instead of one connection set per pixel. Carries no token (each request
    sends its own); the caller closes it."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.Client(timeout=httpx.Timeout(timeout), limits=limits)


def parse_event_quality(item: Mapping[str, Any]) -> EventQuality:
    """One entry of the Dataset Quality ``web`` list -> ``EventQuality`` (missing parts become None)."""
    emq = item.get("event_match_quality") or {}
    coverage: dict[str, float] = {}
    for feedback in emq.get("match_key_feedback") or []:
        pct = _pct(feedback.get("coverage"))
        if feedback.get("identifier") and pct is not None:
            coverage[str(feedback["identifier"])] = pct
    dedupe = tuple(
        DedupeKeyFeedback(
            dedupe_key=str(entry.get("dedupe_key")),
            browser_pct=_pct(entry.get("browser_events_with_dedupe_key")),
            server_pct=_pct(entry.get("server_events_with_dedupe_key")),
            overall_browser_coverage_pct=_pct(entry.get("overall_browser_coverage_from_dedupe_key")),
        )
        for entry in item.get("dedupe_key_feedback") or [] if isinstance(entry, dict)
    )
    score = emq.get("composite_score")
    return EventQuality(
        event_name=str(item.get("event_name")),
        composite_score=float(score) if score is not None else None,
        match_key_coverage=coverage,
        event_coverage_pct=_pct(item.get("event_coverage")),
        dedupe_key_feedback=dedupe,
        upload_frequency=(item.get("data_freshness") or {}).get("upload_frequency"),
    )


def _pct(value: Any) -> float | None:
    if isinstance(value, Mapping):
        value = value.get("percentage")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _stats_windows(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    windows = []
    while start < end:
        stop = min(start + MAX_STATS_WINDOW, end)
        windows.append((start, stop))
        start = stop
    return windows


def _parse_time(value: Any) -> datetime:
    """Stats bucket times come as ISO ("2026-11-20T10:00:00+0000") or unix seconds."""
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        return from_unix(int(value))
    return parse_iso(str(value))


def _without_token(url: str) -> str:
    """A paging URL minus any access_token Meta put in it (ours travels in the header)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in ("access_token", "appsecret_proof")]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _retry_after(value: str | None) -> float | None:
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER) if value else None
    except ValueError:
        return None


def _backoff(state: RetryCallState) -> float:
    """Seconds to wait before the next attempt: Retry-After if given, else exponential by error kind."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, MetaApiError) and exc.retry_after is not None:
        return exc.retry_after
    first, cap = RATE_LIMIT_BACKOFF if isinstance(exc, RateLimitedError) else TRANSIENT_BACKOFF
    return min(cap, first * 2.0 ** (state.attempt_number - 1))
