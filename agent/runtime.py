"""Wiring shared by the CLI, the scheduler and Slack: settings -> engine, pixels, Graph clients.

Built on demand by ``open_runtime`` (never at import). Secrets stay in ``Settings`` and in the pixel
configuration; they are handed to the Graph client and never logged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from agent.settings import Settings, load_settings
from tools.ledger.db import make_engine, migrate
from tools.ledger.pixels import PixelConfig, list_pixels, load_pixels_toml, sync_pixels
from tools.meta.client import GraphClient


@dataclass
class Runtime:
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
def open_runtime(*, database_url: str | None = None, config_file: Path | None = None,
                 settings: Settings | None = None) -> Iterator[Runtime]:
    """Settings from the environment (overridable), a migrated engine, configured pixels synced."""
    settings = settings or load_settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    if config_file:
        settings = settings.model_copy(update={"config_file": config_file})
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        runtime = Runtime(settings=settings, engine=engine)
        configured = runtime.configured_pixels()
        if configured:
            with runtime.session() as session:
                sync_pixels(session, configured)
                session.commit()
        yield runtime
    finally:
        engine.dispose()
