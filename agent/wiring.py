"""The agent's one front door: settings -> engine, pixels, Graph clients, LLM, checkpointer, services.

Every surface starts here: the CLI commands, ``capi-agent serve`` (the scheduler, Slack and the relay
it runs), the demo and the eval. ``open_wiring`` gives the ledger side (a migrated engine, the
configured pixels, a Graph client per pixel with its token and ``appsecret_proof``); ``open_agent``
adds a checkpointer on the same database and the configured LLM (or the offline reasoner) and yields
the ``AgentServices`` whose audit, fix and chat graphs every surface runs. So a fix approved in Slack,
at the terminal or by the eval chooses its token, asks for approval and writes its trail the same way.

Nothing is built at import. Secrets stay in ``Settings`` and in the pixel configuration; they are
handed to the Graph client and never logged.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from agent.settings import Settings, load_settings
from tools.ledger.db import make_engine, migrate
from tools.ledger.pixels import PixelConfig, list_pixels, load_pixels_toml, sync_pixels
from tools.meta.client import GraphClient
from tools.timeutil import utcnow

if TYPE_CHECKING:  # the graphs and the LLM client are imported when an agent is opened, not before
    from agent.agent_services import AgentServices
    from agent.llm import LLMAdapter

CONFIGURED: Literal["configured"] = "configured"


@dataclass
class AgentWiring:
    """The settings and the ledger's engine, and what is derived from them: sessions, the pixels and
    a Graph client per pixel."""

    settings: Settings
    engine: Engine

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def pixel_token(self, pixel: PixelConfig) -> str | None:
        if pixel.relay_unconfigured:  # its events came from callers with their own tokens: never ours
            return None
        if pixel.access_token is not None:
            return pixel.access_token.get_secret_value()
        if pixel.access_token_env and os.environ.get(pixel.access_token_env):
            return os.environ[pixel.access_token_env]
        if self.settings.meta_access_token is not None:
            return self.settings.meta_access_token.get_secret_value()
        return None

    def graph_client(self, pixel: PixelConfig, *, timeout: float = 10.0) -> GraphClient | None:
        """A Graph API client for this pixel, or None when no token is configured anywhere."""
        token = self.pixel_token(pixel)
        if token is None:
            return None
        secret = self.settings.meta_app_secret.get_secret_value() if self.settings.meta_app_secret else None
        return GraphClient(base_url=self.settings.meta_graph_url, api_version=self.settings.meta_api_version,
                           access_token=token, app_secret=secret, timeout=timeout)

    def pixels(self, only: list[str] | None = None) -> list[PixelConfig]:
        """Configured pixels (TOML, kept in the database) plus pixels only seen in data.

        Tokens given inline in the TOML are not stored, so configured pixels are read from the file."""
        configured = {p.id: p for p in self.configured_pixels()}
        with self.session() as session:
            known = {p.id: p for p in list_pixels(session)}
        known.update(configured)
        if only:
            missing = [pid for pid in only if pid not in known]
            if missing:
                raise KeyError(f"unknown pixel(s): {', '.join(missing)}")
            return [known[pid] for pid in only]
        return [known[pid] for pid in sorted(known)]

    def configured_pixels(self) -> list[PixelConfig]:
        path = self.settings.config_file
        return load_pixels_toml(path) if path else []


@contextmanager
def open_wiring(*, database_url: str | None = None, config_file: Path | None = None,
                settings: Settings | None = None) -> Iterator[AgentWiring]:
    """Settings from the environment (overridable), a migrated engine, configured pixels synced."""
    settings = settings or load_settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    if config_file:
        settings = settings.model_copy(update={"config_file": config_file})
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        wiring = AgentWiring(settings=settings, engine=engine)
        configured = wiring.configured_pixels()
        if configured:
            with wiring.session() as session:
                sync_pixels(session, configured)
                session.commit()
        yield wiring
    finally:
        engine.dispose()


def llm_adapter(wiring: AgentWiring) -> LLMAdapter | None:
    """The configured LLM, or None: the offline reasoner takes its place."""
    from agent.llm import LLMAdapter, llm_config_from_settings

    config = llm_config_from_settings(wiring.settings)
    return LLMAdapter.from_config(config) if config is not None else None


@contextmanager
def open_agent(wiring: AgentWiring, *, adapter: LLMAdapter | Literal["configured"] | None = CONFIGURED,
               clock: Callable[[], datetime] = utcnow, auto_approve_kinds: frozenset[str] = frozenset(),
               client_factory: Callable[[PixelConfig], GraphClient | None] | None = None,
               ) -> Iterator[AgentServices]:
    """The agent's services over ``wiring``: a checkpointer on the ledger's database (so a fix run
    waiting for approval survives a restart) and the configured LLM unless ``adapter`` says otherwise
    (None: the offline reasoner). ``client_factory`` replaces the wiring's Graph clients (the demo's
    and the eval's simulator)."""
    from agent.agent_services import AgentServices
    from agent.checkpoint import open_checkpointer

    llm = llm_adapter(wiring) if isinstance(adapter, str) else adapter
    with open_checkpointer(wiring.settings.database_url) as checkpointer:
        yield AgentServices(wiring=wiring, checkpointer=checkpointer, adapter=llm,
                            clock=clock, auto_approve_kinds=auto_approve_kinds, client_factory=client_factory)

