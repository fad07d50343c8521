"""Base for the local stand-ins: an app served over real loopback HTTP in a thread."""

from __future__ import annotations

from typing import Any, Self

from starlette.applications import Starlette

from tools.loopback import ThreadedServer


class LoopbackFake:
    """Subclasses give ``routes()``; ``start()`` serves them and sets ``port`` (also a context manager)."""

    name = "fake"

    def __init__(self) -> None:
        self._server: ThreadedServer | None = None
        self.port: int | None = None

    def routes(self) -> list[Any]:
        raise NotImplementedError

    def start(self) -> Self:
        self._server = ThreadedServer(Starlette(routes=self.routes()), name=self.name).start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
