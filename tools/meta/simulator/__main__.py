"""``python -m tools.meta.simulator``: serve the Graph API simulator, with Meta's latency and limits.

    python -m tools.meta.simulator [--state FILE] [--port 8765] [--now ISO] [--latency-ms 150]
                                   [--call-budget N --window-seconds S]

Prints ``listening on URL`` once serving (benchmarks run it as a separate process, so the simulator
does not share the client's interpreter, as Meta does not). ``--latency-ms`` holds every Graph API
answer back that long; ``--call-budget`` throttles each business beyond N calls per window.
"""

from __future__ import annotations

import argparse
import logging

from tools.timeutil import parse_iso


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.meta.simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--state", default=None, help="state file (synthetic traffic generator)")
    parser.add_argument("--now", default=None, help="freeze the simulator clock at this ISO time")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="hold every Graph API answer back")
    parser.add_argument("--call-budget", type=int, default=None, help="calls per window and business")
    parser.add_argument("--window-seconds", type=float, default=3600.0)
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args(argv)

    import uvicorn

    from tools.loopback import bind_socket
    from tools.meta.redact import install_log_redaction
    from tools.meta.simulator.app import build_simulator_app
    from tools.meta.simulator.state import SimState

    install_log_redaction()
    logging.getLogger("capi_agent.sim_meta").setLevel(logging.WARNING)
    state = SimState.load(args.state, strict=args.strict) if args.state else SimState(strict=args.strict)
    if args.now:
        state.set_now(parse_iso(args.now))
    state.usage.configure({"latency_ms": args.latency_ms, "call_budget": args.call_budget,
                           "window_seconds": args.window_seconds})
    sock = bind_socket(args.host, args.port)
    print(f"listening on http://{args.host}:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(build_simulator_app(state), log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
