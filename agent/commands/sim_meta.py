"""``capi-agent sim-meta``: serve the local Graph API simulator until interrupted."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from tools.meta.redact import install_log_redaction
from tools.timeutil import parse_iso


def register(app: typer.Typer) -> None:
    app.command("sim-meta")(sim_meta)


def sim_meta(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (keep it on loopback)."),
    port: int = typer.Option(8765, help="Port to listen on (0: any free port)."),
    state: Path | None = typer.Option(None, "--state", exists=True, dir_okay=False,
                                      help="State file (e.g. written by the synthetic traffic generator)."),
    now: str | None = typer.Option(None, help="Freeze the simulator clock at this ISO time "
                                              "(default: the state file's, else real time)."),
    token: list[str] | None = typer.Option(None, "--token", help="Valid access token (repeatable; "
                                                                   "default: sim-token)."),
    strict: bool = typer.Option(False, help="Unknown pixels answer Meta's 100/33 instead of empty data."),
) -> None:
    """Serve a local stand-in for Meta's Graph API (events, stats, dataset_quality) until Ctrl-C."""
    # Imported here: building the CLI must stay cheap and free of server machinery.
    import uvicorn

    from tools.loopback import bind_socket
    from tools.meta.simulator.app import build_simulator_app
    from tools.meta.simulator.state import DEFAULT_TOKEN, SimState

    install_log_redaction()
    logging.getLogger("capi_agent.sim_meta").setLevel(logging.INFO)
    sim_state = SimState.load(state, strict=strict) if state else SimState(strict=strict)
    if now:
        sim_state.set_now(parse_iso(now))
    if token:
        if sim_state.valid_tokens == {DEFAULT_TOKEN}:
            sim_state.valid_tokens = set()  # the default applies only when no token is configured
        sim_state.add_tokens(valid=token)
    sock = bind_socket(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}"
    typer.echo(f"Graph API simulator listening on {url} (clock: "
               f"{'frozen at ' + now if now else 'from state file or real time'})")
    typer.echo("Point capi-agent at it:")
    typer.echo(f"  export META_GRAPH_URL={url}")
    typer.echo("  export META_ACCESS_TOKEN=<one of the valid tokens>")
    typer.echo(f"Script it through {url}/_sim/ (clock, state, faults, received). Ctrl-C to stop.")
    # Access log off: SDK clients put their token in the query string; the app logs redacted lines.
    config = uvicorn.Config(build_simulator_app(sim_state), log_level="info", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
