"""A fake Slack Web API on a real loopback port, for the Slack surface tests.

Implements what capi-agent calls: ``auth.test``, ``chat.postMessage``, ``chat.update``,
``chat.postEphemeral``, ``conversations.replies``, the three steps of ``files_upload_v2``
(``files.getUploadURLExternal``, the upload URL, ``files.completeUploadExternal``), and slash-command
``response_url`` hooks. Every call is recorded (:class:`SlackCall`); responses look like Slack's
(``ok``, ``channel``, ``ts``...). Failures are scripted per method for the next N calls:
``fail`` (``{"ok": false, "error": ...}``), ``rate_limit`` (HTTP 429 + Retry-After) and
``server_error`` (HTTP 500).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes.loopback import LoopbackFake

BOT_USER_ID = "UBOT0001"
BOT_ID = "BBOT0001"
TEAM_ID = "T0000001"
RESPONSE_URL_METHOD = "response_url"
UPLOAD_METHOD = "upload"


@dataclass
class SlackCall:
    """One request the fake received. ``args`` are the form or JSON arguments, decoded."""

    method: str
    args: dict[str, Any]
    token: str | None = None
    content: bytes = b""

    def text_blob(self) -> str:
        """Everything a user could see from this call, as one string (for "does not contain" checks)."""
        return json.dumps(self.args, ensure_ascii=False)


@dataclass(frozen=True)
class _Failure:
    kind: str  # "error" | "ratelimit" | "server"
    error: str = ""
    retry_after: int = 1
    status: int = 500


@dataclass
class _Message:
    channel: str
    ts: str
    args: dict[str, Any] = field(default_factory=dict)


class FakeSlackAPI(LoopbackFake):
    """The fake Web API. ``start()``/``stop()`` (or ``with``); ``url`` is the WebClient base URL."""

    def __init__(self, *, bot_token: str | None = None) -> None:
        self.bot_token = bot_token  # when set, other tokens get invalid_auth like the real API
        self.calls: list[SlackCall] = []
        self.uploads: dict[str, bytes] = {}
        self.messages: dict[tuple[str, str], _Message] = {}
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._file_ids = itertools.count(1)
        super().__init__()
        self.port = 0

    # --- addresses and scripting -----------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/api/"

    def response_url(self, name: str = "cmd") -> str:
        """A slash command ``response_url`` whose posts are recorded as method ``response_url``."""
        return f"{self.base}/respond/{name}"

    def fail(self, method: str, error: str, times: int = 1) -> None:
        self._script(method, _Failure("error", error=error), times)

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        self._script(method, _Failure("ratelimit", retry_after=retry_after), times)

    def server_error(self, method: str, times: int = 1, status: int = 500) -> None:
        self._script(method, _Failure("server", status=status), times)

    def _script(self, method: str, failure: _Failure, times: int) -> None:
        with self._lock:
            self._failures[method].extend([failure] * times)

    def recover(self) -> None:
        """Ends a scripted outage: failures still queued for any method are dropped."""
        with self._lock:
            self._failures.clear()

    def posted(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Messages accepted by ``chat.postMessage`` (as edited since), in posting order; each has
        ``ts`` and ``blocks`` decoded."""
        with self._lock:
            return [{**m.args, "ts": m.ts, "blocks": _blocks(m.args)} for m in self.messages.values()
                    if channel is None or m.channel == channel]

    def calls_to(self, method: str) -> list[SlackCall]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.uploads.clear()
            self.messages.clear()
            self._failures.clear()

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[SlackCall]:
        """Waits until ``count`` calls to ``method`` arrived (for work done on other threads)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            calls = self.calls_to(method)
            if len(calls) >= count:
                return calls
            time.sleep(0.01)
        raise AssertionError(f"expected {count} call(s) to {method}, got {len(self.calls_to(method))}")

    # --- serving -----------------------------------------------------------------------------------

    async def _api(self, request: Request) -> Response:
        method = request.path_params["method"]
        args = await _read_args(request)
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() or args.pop("token", None)
        with self._lock:
            self.calls.append(SlackCall(method=method, args=args, token=token))
            failure = self._failures[method].popleft() if self._failures[method] else None
        if failure is not None:
            return _failure_response(failure)
        if self.bot_token is not None and token != self.bot_token:
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return JSONResponse({"ok": False, "error": "unknown_method"})
        return JSONResponse(handler(args))

    async def _upload(self, request: Request) -> Response:
        file_id = request.path_params["file_id"]
        content = await request.body()
        with self._lock:
            self.calls.append(SlackCall(method=UPLOAD_METHOD, args={"file_id": file_id}, content=content))
            failure = self._failures[UPLOAD_METHOD].popleft() if self._failures[UPLOAD_METHOD] else None
            if failure is None:
                self.uploads[file_id] = content
        if failure is not None:
            return PlainTextResponse("failed", status_code=failure.status)
        return PlainTextResponse(f"OK - {len(content)}")

    async def _respond(self, request: Request) -> Response:
        args = json.loads(await request.body() or b"{}")
        args["_hook"] = request.path_params["name"]
        with self._lock:
            self.calls.append(SlackCall(method=RESPONSE_URL_METHOD, args=args))
        return PlainTextResponse("ok")

    def _next_ts(self) -> str:
        return f"{1763632800 + next(self._ts)}.{next(self._ts):06d}"

    # --- methods (named _m_<method with dots as underscores>) ------------------------------------

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://fake-workspace.slack.com/", "team": "Fake Workspace",
                "user": "capi-agent", "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID,
                "is_enterprise_install": False}

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("text") and not args.get("blocks"):
            return {"ok": False, "error": "no_text"}
        ts = self._next_ts()
        with self._lock:
            self.messages[(channel, ts)] = _Message(channel=channel, ts=ts, args=args)
        message = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": ts,
                   "text": args.get("text", ""), "blocks": _blocks(args)}
        if args.get("thread_ts"):
            message["thread_ts"] = args["thread_ts"]
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (args.get("channel", ""), args.get("ts", ""))
        with self._lock:
            known = self.messages.get(key)
            if known is not None:
                known.args = {**known.args, **args}
        if known is None:
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": key[0], "ts": key[1], "text": args.get("text", ""),
                "message": {"text": args.get("text", ""), "blocks": _blocks(args)}}

    def _m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel") or not args.get("user"):
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True, "message_ts": self._next_ts()}

    def _m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            replies = [m.args for (channel, _), m in self.messages.items()
                       if channel == args.get("channel")
                       and (m.ts == args.get("ts") or m.args.get("thread_ts") == args.get("ts"))]
        return {"ok": True, "messages": replies, "has_more": False}

    def _m_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("filename") or not str(args.get("length", "")).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._file_ids):08d}"
        return {"ok": True, "upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}

    def _m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        files = json.loads(files) if isinstance(files, str) else files or []
        with self._lock:
            missing = [f["id"] for f in files if f["id"] not in self.uploads]
        if missing:
            return {"ok": False, "error": "file_not_found"}
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title"), "name": f.get("title"),
                                       "mimetype": "image/png"} for f in files]}

    # --- lifecycle -------------------------------------------------------------------------------

    name = "fake Slack API"

    def routes(self) -> list[Any]:
        return [
            Route("/api/{method}", self._api, methods=["POST", "GET"]),
            Route("/upload/{file_id}", self._upload, methods=["POST"]),
            Route("/respond/{name}", self._respond, methods=["POST"]),
        ]


async def _read_args(request: Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        args.update(json.loads(body or b"{}"))
    elif body:
        args.update(parse_qsl(body.decode(), keep_blank_values=True))
    return args


def _blocks(args: dict[str, Any]) -> list[Any]:
    blocks = args.get("blocks") or []
    return json.loads(blocks) if isinstance(blocks, str) else blocks


def _failure_response(failure: _Failure) -> Response:
    if failure.kind == "ratelimit":
        return JSONResponse({"ok": False, "error": "ratelimited"}, status_code=429,
                            headers={"Retry-After": str(failure.retry_after)})
    if failure.kind == "server":
        return PlainTextResponse("upstream error", status_code=failure.status)
    return JSONResponse({"ok": False, "error": failure.error})
