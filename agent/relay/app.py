"""Starlette routes of the relay: ``POST /{api_version}/{pixel_id}/events``, a drop-in for Meta's.

Parsing reads what the Graph API reads (JSON, form or multipart bodies, ``data`` as objects or JSON
strings, the token from ``Authorization`` or ``access_token``) within the limits of
``tools.relay.limits`` (body size, nesting, strings, event_time): anything else is Meta's 400; the work is
``tools.relay.accept_batch``, run in a worker thread (the ledger and the Graph client are synchronous),
whose ledger writes join the group commits of ``RelayDeps.writer`` (``tools.relay.writer``).
Who may send: ``tools.relay.access`` (the pixel's configured token, a relay key issued for it, or, when
the operator opted in, any token for a pixel that is not configured); anything else is Meta's 190,
counted per sender address in ``relay_refusals`` and never stored. Each sender address has a token
bucket (``tools.relay.ratelimit``); past it, Meta's rate-limit answer (code 4). Forwarding goes to
``META_GRAPH_URL`` with the version the caller used and the token ``tools.relay.access`` chose.
Log lines name the pixel, the event count and the status: never the token, the query string or events.
Whoever serves these routes must keep uvicorn's access log off (it prints query strings, where the
SDK puts its token).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.wiring import AgentWiring
from tools.meta.client import GraphClient
from tools.meta.wire import (
    BadRequest,
    access_token,
    graph_error,
    invalid_parameter,
    token_invalid,
    token_missing,
    unknown_object,
)
from tools.relay.accept import PIXEL_ID_RE, PolicyCache, RelayRequest, accept_batch
from tools.relay.access import KnownPixel, RefusalReason, RelayAuth, record_refusal
from tools.relay.forward import ForwardReport, forward_pending
from tools.relay.limits import check_events, decode_events, parse_body, read_body
from tools.relay.ratelimit import RateLimiter, retry_after_header
from tools.relay.sending import passthrough
from tools.relay.writer import LedgerWriter
from tools.timeutil import utcnow

logger = logging.getLogger("capi_agent.relay")

VERSION_RE = re.compile(r"^v\d+\.\d+$")
# Meta recommends 1.5 s when sending from a request path; a slower answer is queued, not waited for.
FORWARD_TIMEOUT = 1.5
MAX_CACHED_CLIENTS = 256


class CallerClients:
    """One Graph client per (caller token, API version), kept in memory only (tokens are never stored),
    so connections to Meta are reused across requests."""

    def __init__(self, *, graph_url: str, timeout: float, max_cached: int = MAX_CACHED_CLIENTS) -> None:
        self._graph_url = graph_url
        self._timeout = timeout
        self._max = max_cached
        self._clients: OrderedDict[str, GraphClient] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str, api_version: str) -> GraphClient:
        key = hashlib.sha256(f"{api_version}|{token}".encode()).hexdigest()
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                # No retries here: a failed forward is queued and delivered later by forward_pending.
                client = GraphClient(base_url=self._graph_url, api_version=api_version, access_token=token,
                                     timeout=self._timeout, max_retries=0)
                self._clients[key] = client
                if len(self._clients) > self._max:
                    # Dropped, not closed: another request may still be using it; GC closes its sockets.
                    self._clients.popitem(last=False)
            else:
                self._clients.move_to_end(key)
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


@dataclass
class RelayDeps:
    """What the relay needs: a session per unit of work, Meta's base URL, and a clock."""

    session_factory: Callable[[], Session]
    graph_url: str = "https://graph.facebook.com"
    forward_timeout: float = FORWARD_TIMEOUT
    clock: Callable[[], datetime] = utcnow
    clients: CallerClients | None = field(default=None)
    # Who may send (default: nobody but holders of a relay key) and how fast each sender may.
    auth: RelayAuth = field(default_factory=RelayAuth)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    # META_APP_SECRET: the appsecret_proof of the pixel's token when a relay key stands in for it.
    app_secret: str | None = field(default=None, repr=False)
    # The ledger writes of all requests, grouped into short transactions (tools.relay.writer).
    writer: LedgerWriter | None = field(default=None)
    # Each pixel's relay mode and default country, read at most every 2 s.
    policies: PolicyCache = field(default_factory=PolicyCache)

    def __post_init__(self) -> None:
        if self.clients is None:
            self.clients = CallerClients(graph_url=self.graph_url, timeout=self.forward_timeout)
        if self.writer is None:
            self.writer = LedgerWriter(self.session_factory)

    def close(self) -> None:
        """Write what is queued and close the connections to Meta."""
        if self.writer is not None:
            self.writer.close()
        if self.clients is not None:
            self.clients.close()


def relay_auth(wiring: AgentWiring) -> RelayAuth:
    """The relay's access rule over the wiring's pixels (configured in TOML or known to the ledger)
    with the tokens the agent itself uses for them."""
    def known() -> dict[str, KnownPixel]:
        return {pixel.id: KnownPixel(token=wiring.pixel_token(pixel), unconfigured=pixel.relay_unconfigured)
                for pixel in wiring.pixels()}

    return RelayAuth(pixels=known, accept_unconfigured=wiring.settings.relay_accept_unconfigured)


def relay_deps(wiring: AgentWiring, *, clock: Callable[[], datetime] = utcnow) -> RelayDeps:
    settings = wiring.settings
    return RelayDeps(session_factory=wiring.session, graph_url=settings.meta_graph_url, clock=clock,
                     auth=relay_auth(wiring),
                     limiter=RateLimiter(rate=settings.relay_rate_per_second, burst=settings.relay_burst),
                     app_secret=settings.meta_app_secret.get_secret_value() if settings.meta_app_secret else None)


def sender_address(request: Request) -> str:
    """The sender's address (a server's, never a customer's: customers' IPs travel inside events)."""
    return request.client.host if request.client is not None else "unknown"


def rate_limited(wait: float) -> Response:
    """Meta's answer when an app is over its rate limit (code 4, transient), plus Retry-After."""
    return graph_error(400, "(#4) Application request limit reached", code=4, is_transient=True,
                       headers={"Retry-After": retry_after_header(wait)})


def _note_refusal(deps: RelayDeps, *, pixel_id: str, source: str, reason: RefusalReason, events: int,
                  requests: int = 1) -> None:
    with deps.session_factory() as session:
        record_refusal(session, pixel_id=pixel_id, source=source, reason=reason, events=events,
                       requests=requests, at=deps.clock())
        session.commit()


def relay_routes(source: AgentWiring | RelayDeps) -> list[Route]:
    """The relay's routes, for mounting beside Slack's in the one ASGI app of ``capi-agent serve``."""
    deps = source if isinstance(source, RelayDeps) else relay_deps(source)

    async def post_events(request: Request) -> Response:
        try:
            return await handle(request)
        except Exception as exc:  # the ledger is down, a bug: Meta's transient answer, so the caller retries
            logger.error("relay: internal error %s", type(exc).__name__)
            return graph_error(500, "An unexpected error has occurred. Please retry your request later.",
                               code=2, is_transient=True)

    async def handle(request: Request) -> Response:
        version = request.path_params["api_version"]
        pixel_id = request.path_params["pixel_id"]
        source = sender_address(request)
        wait = deps.limiter.take(source)
        if wait is not None:
            throttled = deps.limiter.report_due(source)
            if throttled and PIXEL_ID_RE.match(pixel_id):
                await run_in_threadpool(_note_refusal, deps, pixel_id=pixel_id, source=source,
                                        reason="rate_limited", events=0, requests=throttled)
            logger.info("relay %s pixel %s: rate limited (%s)", version, pixel_id, source)
            return rate_limited(wait)
        if not VERSION_RE.match(version):
            return graph_error(400, "Unknown path components: /" + version[:20], code=2500)
        if not PIXEL_ID_RE.match(pixel_id):
            return unknown_object(pixel_id)
        try:
            body = await read_body(request.stream(), request.headers.get("content-length"))
            params = parse_body(request.query_params, request.headers.get("content-type", ""), body)
            events = decode_events(params.get("data"))
            check_events(events)
        except BadRequest as exc:
            logger.info("relay %s pixel %s: malformed request -> 400", version, pixel_id)
            return invalid_parameter(f"(#100) {exc}")
        token = access_token(request, params)
        access = (await run_in_threadpool(deps.auth.decide, deps.session_factory, pixel_id=pixel_id,
                                          presented=token) if token else None)
        if access is None or not access.allowed:
            reason: RefusalReason = access.reason if access is not None and access.reason else "bad_token"
            await run_in_threadpool(_note_refusal, deps, pixel_id=pixel_id, source=source, reason=reason,
                                    events=len(events))
            logger.info("relay %s pixel %s: %d events refused (%s) from %s", version, pixel_id, len(events),
                        reason, source)
            return token_missing() if not token else token_invalid()
        assert deps.clients is not None
        client = deps.clients.get(access.forward_token, version) if access.forward_token else None
        extra = passthrough(params)
        if access.kind == "relay_key":  # the caller's proof was made with its key, not the pixel's token
            extra.pop("appsecret_proof", None)
            if deps.app_secret and access.forward_token:
                extra["appsecret_proof"] = hmac.new(deps.app_secret.encode(), access.forward_token.encode(),
                                                    hashlib.sha256).hexdigest()
        relay_request = RelayRequest(pixel_id=pixel_id, events=events, params=extra,
                                     unconfigured=access.kind == "unconfigured",
                                     user_agent=request.headers.get("user-agent"))
        # A worker thread: validation and hashing are CPU work, Meta's answer is waited for without a
        # transaction, and the writes join the writer's next group commit.
        answer = await run_in_threadpool(accept_batch, deps.session_factory, relay_request, client=client,
                                         now=deps.clock(), writes=deps.writer, policies=deps.policies)
        logger.info("relay %s pixel %s: %d events -> %s", version, pixel_id, len(events), answer.status)
        return JSONResponse(answer.body, status_code=answer.status)

    return [Route("/{api_version}/{pixel_id}/events", post_events, methods=["POST"])]


def build_relay_app(deps: RelayDeps) -> Starlette:
    """A Starlette app serving only the relay (tests, benchmarks); closes its clients on shutdown."""
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            deps.close()

    return Starlette(routes=relay_routes(deps), lifespan=lifespan)


def forward_pending_with_wiring(wiring: AgentWiring, *, now: datetime | None = None) -> ForwardReport:
    """``forward_pending`` with each pixel's configured token (never a caller's); for the scheduler."""
    pixels = {pixel.id: pixel for pixel in wiring.pixels()}
    with ExitStack() as stack:
        def client_for_pixel(pixel_id: str) -> GraphClient | None:
            pixel = pixels.get(pixel_id)
            client = wiring.graph_client(pixel) if pixel is not None else None
            return stack.enter_context(client) if client is not None else None

        return forward_pending(wiring.session, client_for_pixel=client_for_pixel, now=now or utcnow())
