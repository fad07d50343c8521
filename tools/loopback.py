"""Serving an ASGI app with uvicorn on a real socket in a background thread.

Used by the Graph API simulator when embedded (tests, the demo) and by the tests' local stand-ins
(fake Slack Web API, fake OpenAI server), so they all talk real HTTP over loopback.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Literal

import uvicorn

STARTUP_TIMEOUT = 10.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: the OS picks a free one)."""
    # proto IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it every keep-alive answer waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class ThreadedServer:
    """``app`` served until ``stop()``; ``url`` and ``port`` are known once started.

    Uvicorn's access log is off: it would print query strings, where Graph API clients put tokens.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, name: str = "asgi",
                 log_level: str = "warning", lifespan: Literal["auto", "on", "off"] = "off") -> None:
        self.name = name
        self._sock = bind_socket(host, port)
        self.port: int = self._sock.getsockname()[1]
        url_host = f"[{host}]" if ":" in host else host
        self.url = f"http://{url_host}:{self.port}"
        config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan=lifespan,
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name=name, daemon=True)

    def start(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                self._sock.close()
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread (idempotent)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=STARTUP_TIMEOUT)

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
