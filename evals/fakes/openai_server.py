"""A fake OpenAI-compatible server (tests, benchmarks): ``POST /v1/chat/completions`` over a real loopback port.

Responses come from a script, one item a request, in order:

- ``str`` or :class:`Answer`: a final assistant message;
- a list of ``(name, arguments)`` pairs or :class:`ToolCalls`: an assistant turn calling tools
  (``arguments`` a dict, or a raw string to send malformed JSON);
- :class:`HTTPError`: an error status with an OpenAI-style error body;
- :class:`Delay`: wait, then answer with the next item it wraps (provokes client timeouts);
- a callable ``(request_body) -> item``.

Every request body is recorded in ``requests`` (what the client really sent: canary tests assert
on it). Usage numbers are realistic (about four characters a token) unless a script item sets them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from evals.fakes.loopback import LoopbackFake


@dataclass(frozen=True)
class Answer:
    content: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True)
class ToolCalls:
    calls: list[tuple[str, dict[str, Any] | str]]
    content: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True)
class HTTPError:
    status: int
    body: dict[str, Any] | None = None
    # e.g. {"retry-after-ms": "5"} keeps the client's retry back-off short in tests.
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delay:
    seconds: float
    then: ScriptItem = "{}"


ScriptItem = str | Answer | ToolCalls | HTTPError | Delay | list | Callable[[dict[str, Any]], Any]


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


class FakeOpenAIServer(LoopbackFake):
    """The fake server. ``start()``/``stop()`` (or ``with``); ``url`` is the base URL ending in ``/v1``."""

    def __init__(self, *, api_key: str | None = None) -> None:
        self.api_key = api_key  # when set, other bearer tokens get a 401 like the real service
        self.requests: list[dict[str, Any]] = []
        self._queue: deque[ScriptItem] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        super().__init__()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *items: ScriptItem) -> FakeOpenAIServer:
        """Queues responses, one per coming request."""
        with self._lock:
            self._queue.extend(items)
        return self

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()

    @property
    def pending(self) -> int:
        """Scripted responses not yet served."""
        return len(self._queue)

    # --- serving -------------------------------------------------------------------------------

    def _next_item(self, body: dict[str, Any]) -> ScriptItem | None:
        with self._lock:
            self.requests.append(body)
            return self._queue.popleft() if self._queue else None

    async def _chat_completions(self, request: Request) -> JSONResponse:
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        item = self._next_item(body)
        if item is None:
            return _error(500, "fake server: no scripted response left", "server_error")
        return await self._respond(item, body)

    async def _respond(self, item: ScriptItem, body: dict[str, Any]) -> JSONResponse:
        if callable(item) and not isinstance(item, type):
            item = item(body)
        if isinstance(item, Delay):
            await asyncio.sleep(item.seconds)
            return await self._respond(item.then, body)
        if isinstance(item, HTTPError):
            payload = item.body or {"error": {"message": f"fake error {item.status}", "type": "server_error",
                                              "param": None, "code": None}}
            return JSONResponse(payload, status_code=item.status, headers=item.headers)
        if isinstance(item, str):
            item = Answer(item)
        if isinstance(item, list):
            item = ToolCalls(item)
        if isinstance(item, Answer | ToolCalls):
            return JSONResponse(self._completion(item, body))
        raise TypeError(f"unsupported script item: {item!r}")

    def _completion(self, item: Answer | ToolCalls, body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
        if isinstance(item, Answer):
            message["content"] = item.content
            finish_reason, completion_text = "stop", item.content
        else:
            message["content"] = item.content
            message["tool_calls"] = [
                {
                    "id": f"call_{next(self._ids):06d}",
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                    },
                }
                for name, arguments in item.calls
            ]
            finish_reason = "tool_calls"
            completion_text = json.dumps(message["tool_calls"])
        prompt_text = json.dumps(body.get("messages", [])) + json.dumps(body.get("tools", []))
        prompt_tokens = _estimate_tokens(prompt_text) if item.prompt_tokens is None else item.prompt_tokens
        completion_tokens = (
            _estimate_tokens(completion_text) if item.completion_tokens is None else item.completion_tokens
        )
        return {
            "id": f"chatcmpl-fake{next(self._ids):06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake-model"),
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    # --- lifecycle -----------------------------------------------------------------------------

    name = "fake OpenAI server"

    def routes(self) -> list[Any]:
        return [Route("/v1/chat/completions", self._chat_completions, methods=["POST"])]


def _error(status: int, message: str, error_type: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}, status_code=status
    )
