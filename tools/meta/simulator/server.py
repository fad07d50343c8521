"""Serve the simulator with uvicorn on a real loopback socket, in a background thread (tests, demos)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

import uvicorn

from tools.meta.simulator.app import build_simulator_app
from tools.meta.simulator.state import SimState

STARTUP_TIMEOUT = 10.0


@dataclass
class RunningSimulator:
    """A simulator serving at ``url`` until ``stop()`` (also a context manager)."""

    url: str
    port: int
    state: SimState
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self) -> None:
        """Stop serving and wait for the thread to end (idempotent)."""
        self._server.should_exit = True
        self._thread.join(timeout=STARTUP_TIMEOUT)

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (port 0: the OS picks a free one)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def build_server(state: SimState, *, log_level: str) -> uvicorn.Server:
    """A uvicorn server for the simulator app. Its access log is off: uvicorn would print query
    strings, where SDK clients put their token; the app logs redacted request lines instead."""
    config = uvicorn.Config(build_simulator_app(state), log_level=log_level, access_log=False,
                            lifespan="off", timeout_graceful_shutdown=1)
    return uvicorn.Server(config)


def run_simulator_in_thread(
    state: SimState | None = None, host: str = "127.0.0.1", port: int = 0
) -> RunningSimulator:
    """Start a simulator over ``state`` (default: a fresh one) on ``host:port`` (0: a free port)."""
    sim_state = state if state is not None else SimState()
    sock = bind_socket(host, port)
    bound_port = sock.getsockname()[1]
    server = build_server(sim_state, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="sim-meta", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the Graph API simulator did not start")
        time.sleep(0.01)
    url_host = f"[{host}]" if ":" in host else host
    return RunningSimulator(url=f"http://{url_host}:{bound_port}", port=bound_port, state=sim_state,
                            _server=server, _thread=thread)
