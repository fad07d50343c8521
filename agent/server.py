"""The always-on service: one ASGI app with the relay, Slack and a health endpoint, plus background
loops for the hourly audits, Slack deliveries, the relay's store-and-forward and the payload purge.

    POST /{version}/{pixel_id}/events   the relay (drop-in for graph.facebook.com)
    POST /slack/events                   Slack HTTP mode (events, buttons, /capi), when configured
    GET  /healthz                        database reachable, queue sizes, last audit, last payload purge

Every background loop runs in its own daemon thread, logs and survives its own failures, and stops
with the app. Several replicas may run against one Postgres database: audits are claimed per
pixel-hour, relay rows per chunk, and outbox messages are deduplicated by key.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text
from sqlmodel import col
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agent.agent_services import AgentServices
from agent.announce import after_round, enqueue_summaries
from agent.email.deliver import EMAIL_KINDS, deliver_email_outbox
from agent.email.smtp import Mailer
from agent.memory import log_resident, log_top_allocations, release_free_memory
from agent.relay.app import forward_pending_with_wiring, relay_deps, relay_routes
from agent.retention import PURGE_INTERVAL_SECONDS, PurgeStatus, purge_round
from agent.scheduler import RunRecord, Scheduler
from agent.slack.agent import SlackAgent
from agent.slack.notifier import SlackNotifier
from agent.slack.outbox import SLACK_KINDS, deliver_outbox
from agent.wiring import AgentWiring
from tools.ledger.models import Audit, Event
from tools.ledger.outbox import OutboxMessage
from tools.ledger.pixels import PixelConfig
from tools.timeutil import parse_iso, to_iso, utcnow

if TYPE_CHECKING:
    from slack_bolt import App
    from slack_bolt.adapter.socket_mode import SocketModeHandler

log = logging.getLogger(__name__)


@dataclass
class Loop:
    """A named background job run every ``interval`` seconds until the app stops."""

    name: str
    interval: float
    job: Callable[[], Any]
    thread: threading.Thread | None = None

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.job()
            except Exception:  # a failing round is logged and retried next interval
                log.exception("background loop %s failed; retrying in %.0fs", self.name, self.interval)
            stop.wait(self.interval)


@dataclass
class ServerParts:
    wiring: AgentWiring
    services: AgentServices
    slack_app: App | None = None
    notifier: SlackNotifier | None = None
    mailer: Mailer | None = None  # when CAPI_SMTP_URL is set
    scheduler_interval: float = 60.0
    outbox_interval: float = 15.0
    forward_interval: float = 30.0
    purge_interval: float = PURGE_INTERVAL_SECONDS
    purge: PurgeStatus | None = None  # the payload purge's last run (made from the settings when None)
    clock: Callable[[], datetime] = utcnow
    loops: list[Loop] = field(default_factory=list)


def on_audit(parts: ServerParts) -> Callable[[PixelConfig, dict], None]:
    """After each scheduled audit: the summaries it completed (the audit itself queued its incident
    messages and, normally, these summaries too: queueing is idempotent)."""
    def hook(pixel: PixelConfig, state: dict) -> None:
        with parts.wiring.session() as session:
            enqueue_summaries(session, pixels=parts.wiring.pixels(),
                              hours=[parse_iso(state["report"]["window"]["end"])])
            session.commit()
    return hook


def scheduled_round(parts: ServerParts, scheduler: Scheduler) -> None:
    """One scheduler round, then the summaries of the hours it audited (those a failed audit settled);
    then, when it audited anything, the round's freed memory goes back to the system (``agent.memory``;
    not every minute for nothing: a full collection costs a fraction of a second)."""
    records: list[RunRecord] = []
    try:
        records = scheduler.run_once()
        with parts.wiring.session() as session:
            after_round(session, pixels=parts.wiring.pixels(), audited=[r.window_end for r in records],
                        now=parts.clock())
            session.commit()
    finally:
        if records:
            release_free_memory()
            log_resident(f"a round of {len(records)} audits")
            log_top_allocations(parts.wiring.settings.tracemalloc_top, f"a round of {len(records)} audits")


def build_loops(parts: ServerParts) -> list[Loop]:
    scheduler = Scheduler(services_factory=parts.services, clock=parts.clock, on_audit=on_audit(parts))
    loops = [Loop("scheduler", parts.scheduler_interval, lambda: scheduled_round(parts, scheduler)),
             Loop("relay-forward", parts.forward_interval,
                  lambda: forward_pending_with_wiring(parts.wiring, now=parts.clock())),
             Loop("payload-purge", parts.purge_interval,
                  lambda: purge_round(parts.wiring.session, purge_status(parts), now=parts.clock()))]
    notifier, mailer = parts.notifier, parts.mailer
    if notifier is not None:
        loops.append(Loop("slack-outbox", parts.outbox_interval,
                          lambda: deliver_outbox(parts.wiring.session, notifier, now=parts.clock())))
    if mailer is not None:
        loops.append(Loop("email-outbox", parts.outbox_interval,
                          lambda: deliver_email_outbox(parts.wiring.session, mailer, now=parts.clock())))
    return loops


def purge_status(parts: ServerParts) -> PurgeStatus:
    if parts.purge is None:
        parts.purge = PurgeStatus(retention_days=parts.wiring.settings.payload_retention_days)
    return parts.purge


def health(parts: ServerParts) -> Callable[[Request], Any]:
    async def healthz(_: Request) -> JSONResponse:
        try:
            with parts.wiring.session() as session:
                session.execute(text("SELECT 1"))
                last_audit = session.scalar(select(func.max(col(Audit.window_end))))
                queued = session.scalar(select(func.count()).select_from(Event).where(
                    col(Event.delivery_status) == "pending"))
                waiting: dict[str, int] = dict(session.execute(select(col(OutboxMessage.kind), func.count()).where(
                    col(OutboxMessage.status) == "pending").group_by(col(OutboxMessage.kind))).all())
                outbox = sum(n for kind, n in waiting.items() if kind in SLACK_KINDS)
                emails = sum(n for kind, n in waiting.items() if kind in EMAIL_KINDS)
        except Exception:
            log.exception("health check: database unreachable")
            return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "last_audit_window_end": to_iso(last_audit) if last_audit else None,
                             "relay_pending_events": queued, "slack_outbox_pending": outbox,
                             "email_outbox_pending": emails,
                             "slack": parts.slack_app is not None,
                             "payload_purge": purge_status(parts).as_json(),
                             "loops": {loop.name: bool(loop.thread and loop.thread.is_alive())
                                       for loop in parts.loops}})
    return healthz


def build_server_app(parts: ServerParts, *, run_loops: bool = True) -> Starlette:
    """The ASGI app; with ``run_loops`` its lifespan starts and stops the background loops."""
    from agent.slack.app import slack_routes

    routes: list[Route] = [Route("/healthz", health(parts), methods=["GET"])]
    if parts.slack_app is not None:
        routes += slack_routes(parts.slack_app)
    # The relay reads the app's clock too (validation of event_time, store-and-forward stamps).
    relay = relay_deps(parts.wiring, clock=parts.clock)  # with who may send and how fast (settings)
    routes += relay_routes(relay)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        stop = threading.Event()
        if run_loops:
            parts.loops = build_loops(parts)
            for loop in parts.loops:
                loop.thread = threading.Thread(target=loop.run, args=(stop,), name=f"capi-{loop.name}",
                                               daemon=True)
                loop.thread.start()
        try:
            yield
        finally:
            stop.set()
            for loop in parts.loops:
                if loop.thread is not None:
                    loop.thread.join(timeout=10)
            if relay.clients is not None:
                relay.clients.close()

    return Starlette(routes=routes, lifespan=lifespan)


def slack_parts(wiring: AgentWiring, services: AgentServices
                ) -> tuple[App | None, SlackNotifier | None, SocketModeHandler | None]:
    """(bolt app, notifier, socket-mode handler) when Slack is configured, else Nones."""
    settings = wiring.settings
    if settings.slack_bot_token is None:
        return None, None, None
    from agent.slack.app import build_slack_app, socket_mode_handler

    service = SlackAgent(services=services, approvers=settings.approver_ids)
    app = build_slack_app(settings=settings, service=service, approvers=settings.approver_ids)
    handler = socket_mode_handler(app, settings=settings) if settings.slack_app_token is not None else None
    return app, SlackNotifier(app.client), handler
