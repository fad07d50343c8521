"""Serve the simulator with uvicorn on a real loopback socket, in a background thread (tests, demos)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.loopback import ThreadedServer
from tools.meta.simulator.app import build_simulator_app
from tools.meta.simulator.state import SimState


@dataclass
class RunningSimulator:
    """A simulator serving at ``url`` until ``stop()`` (also a context manager)."""

    url: str
    port: int
    state: SimState
    _server: ThreadedServer = field(repr=False)

    def stop(self) -> None:
        """Stop serving and wait for the thread to end (idempotent)."""
        self._server.stop()

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def run_simulator_in_thread(
    state: SimState | None = None, host: str = "127.0.0.1", port: int = 0
) -> RunningSimulator:
    """Start a simulator over ``state`` (default: a fresh one) on ``host:port`` (0: a free port).

    Uvicorn's access log stays off (SDK clients put their token in the query string); the app logs
    redacted request lines instead."""
    sim_state = state if state is not None else SimState()
    server = ThreadedServer(build_simulator_app(sim_state), host=host, port=port, name="sim-meta").start()
    return RunningSimulator(url=server.url, port=server.port, state=sim_state, _server=server)
