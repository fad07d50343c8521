"""``capi-agent serve``: the relay, Slack, the health endpoint and the hourly scheduler in one process."""

from __future__ import annotations

import logging
from pathlib import Path

import typer


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on"),
    port: int = typer.Option(8080, "--port", help="port to listen on"),
    database_url: str | None = typer.Option(None, "--database-url", help="default: CAPI_DATABASE_URL"),
    config: Path | None = typer.Option(None, "--config", exists=True, dir_okay=False,
                                       help="pixels TOML (default: CAPI_CONFIG)"),
    no_scheduler: bool = typer.Option(False, "--no-scheduler", help="serve requests only (no background loops)"),
) -> None:
    """Serve until interrupted: relay at /{version}/{pixel}/events, Slack at /slack/events, /healthz."""
    from agent.memory import limit_malloc_arenas

    limit_malloc_arenas()  # before any thread allocates: see agent.memory

    import uvicorn

    from agent.email.smtp import mailer_from_settings
    from agent.memory import limit_sqlite_heap, start_tracing
    from agent.server import ServerParts, build_server_app, slack_parts
    from agent.wiring import open_agent, open_wiring
    from tools.meta.redact import install_log_redaction

    install_log_redaction()
    logging.getLogger().setLevel(logging.INFO)
    with open_wiring(database_url=database_url, config_file=config) as wiring, open_agent(wiring) as services:
        slack_app, notifier, socket_handler = slack_parts(wiring, services)
        settings = wiring.settings
        start_tracing(settings.tracemalloc_top)
        limit_sqlite_heap(wiring.engine, settings.sqlite_heap_mib)
        parts = ServerParts(wiring=wiring, services=services, slack_app=slack_app, notifier=notifier,
                            mailer=mailer_from_settings(settings.smtp_url, settings.email_from))
        app = build_server_app(parts, run_loops=not no_scheduler)
        if socket_handler is not None:
            socket_handler.connect()  # Socket Mode: Slack comes to us over a websocket
        mode = "socket mode" if socket_handler else ("HTTP mode at /slack/events" if slack_app else "not configured")
        typer.echo(f"capi-agent serving on http://{host}:{port} (relay at /<version>/<pixel>/events, "
                   f"Slack: {mode}, email: {'on' if parts.mailer else 'off'}, "
                   f"scheduler: {'off' if no_scheduler else 'on'})")
        try:
            # access_log off: SDK callers put their access token in the query string.
            uvicorn.run(app, host=host, port=port, access_log=False, log_level="info")
        finally:
            if socket_handler is not None:
                socket_handler.close()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
