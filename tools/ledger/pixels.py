"""Pixel (dataset) configuration: a TOML file for several pixels, kept in the ``pixels`` table.

File format (``[[pixels]]`` tables; only ``id`` is required)::

    [[pixels]]
    id = "1234567890"
    name = "Main shop"
    access_token_env = "META_TOKEN_MAIN"     # or access_token = "..." (kept in memory, never stored)
    timezone = "Europe/Paris"                # IANA name; audits report in it
    slack_channel = "#capi-alerts"
    relay_mode = "observe"                   # observe | repair (switching to repair is a fix)
    default_country = "FR"                   # for phone numbers without a country code
    default_currency = "EUR"                 # repair mode: the currency of Purchases sent without one
    summaries = "hourly"                     # Slack summaries: hourly | daily | off
    email_to = ["ops@example.com"]           # incident alerts and summaries by email (CAPI_SMTP_URL)
    email_summaries = "daily"                # email summaries: hourly | daily | off
    weekly_report = "on"                     # the weekly report (Slack and email_to): on | off
    weekly_day = "mon"                       # its local weekday (mon..sun) and hour (0-23)
    weekly_hour = 9

    [pixels.thresholds]                      # any field of tools.checks.types.Thresholds
    emq_floor = 6.5

    [channels."#capi-alerts"]                # defaults for the pixels reporting to a channel
    summaries = "daily"

Pixels that appear in ingested data but are not configured get the defaults. The access token
itself is never written to the database: only the name of the variable that holds it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from tools.checks.types import Thresholds
from tools.ledger.models import Pixel, table_of
from tools.ledger.rollups import dialect_insert
from tools.timeutil import utcnow

SummaryMode = Literal["hourly", "daily", "off"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# What a [channels."#name"] table may set for its pixels.
CHANNEL_KEYS = frozenset({"summaries", "weekly_report", "weekly_day", "weekly_hour"})
# Deliberately loose: one @, no spaces or angle brackets (the SMTP server has the last word).
EMAIL_ADDRESS = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+")


class PixelConfig(BaseModel):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")
    name: str = ""
    access_token: SecretStr | None = None
    access_token_env: str | None = None
    timezone: str = "UTC"
    slack_channel: str | None = None
    relay_mode: Literal["observe", "repair"] = "observe"
    default_country: str = Field("US", min_length=2, max_length=2)
    # The shop's one currency, for the relay's repair mode to give Purchases sent without currency
    # (tools.relay.payload_repair); unset: nothing is guessed.
    default_currency: str | None = Field(None, pattern=r"^[A-Za-z]{3}$")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    # Set by the relay on a pixel it accepted only because the operator opted in to unconfigured
    # pixels (tools.relay.access): the operator's token is never used for it. Configuring it clears it.
    relay_unconfigured: bool = False
    summaries: SummaryMode = "hourly"
    email_to: list[str] = Field(default_factory=list)
    email_summaries: SummaryMode = "daily"
    weekly_report: Literal["on", "off"] = "on"
    weekly_day: Weekday = "mon"
    weekly_hour: int = Field(9, ge=0, le=23)

    @field_validator("email_to", mode="before")
    @classmethod
    def _addresses(cls, value: object) -> object:
        # One address may be written as a plain string.
        addresses = [value] if isinstance(value, str) else value
        if isinstance(addresses, list):
            for address in addresses:
                if not isinstance(address, str) or not EMAIL_ADDRESS.fullmatch(address):
                    raise ValueError("email_to must hold email addresses (name@domain)")
        return addresses

    @field_validator("weekly_report", mode="before")
    @classmethod
    def _on_off(cls, value: object) -> object:
        # TOML invites `weekly_report = true`: read it as "on".
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("default_country")
    @classmethod
    def _upper_country(cls, value: str) -> str:
        return value.upper()

    @field_validator("default_currency")
    @classmethod
    def _upper_currency(cls, value: str | None) -> str | None:
        return value.upper() if value else None

    def stored_settings(self) -> dict[str, object]:
        """What goes in ``pixels.settings``: everything but the token itself."""
        return self.model_dump(mode="json", exclude={"id", "name", "access_token"})

    @classmethod
    def from_row(cls, row: Pixel) -> PixelConfig:
        return cls(id=row.id, name=row.name, **(row.settings or {}))


def load_pixels_toml(path: Path | str) -> list[PixelConfig]:
    """Read ``[[pixels]]`` tables (format in the module docstring); raises ValueError when invalid."""
    with Path(path).open("rb") as handle:
        document = tomllib.load(handle)
    entries = document.get("pixels", [])
    if not isinstance(entries, list):
        raise ValueError("'pixels' must be an array of tables ([[pixels]])")
    channels = document.get("channels", {})
    if not isinstance(channels, dict) or any(not isinstance(v, dict) or set(v) - CHANNEL_KEYS
                                             for v in channels.values()):
        raise ValueError(f"'channels' must map a Slack channel to a table of {sorted(CHANNEL_KEYS)}")
    # A channel's setting is the default of the pixels reporting there; a pixel's own setting wins.
    entries = [{**channels.get(entry.get("slack_channel"), {}), **entry} if isinstance(entry, dict) else entry
               for entry in entries]
    configs = [PixelConfig.model_validate(entry) for entry in entries]
    seen: set[str] = set()
    for config in configs:
        if config.id in seen:
            raise ValueError(f"pixel {config.id} is configured twice")
        seen.add(config.id)
    return configs


def sync_pixels(session: Session, configs: Iterable[PixelConfig], *, now: datetime | None = None) -> None:
    """Insert or update the configured pixels (pixels not in ``configs`` are left as they are)."""
    now = now or utcnow()
    for config in configs:
        row = session.get(Pixel, config.id)
        if row is None:
            session.add(Pixel(id=config.id, name=config.name, settings=config.stored_settings(),
                              created_at=now, updated_at=now))
        else:
            row.name, row.settings, row.updated_at = config.name, config.stored_settings(), now
    session.flush()


def ensure_pixels(session: Session, pixel_ids: Iterable[str], *, default_country: str = "US",
                  now: datetime | None = None) -> None:
    """Give pixels seen in data but never configured a row with default settings."""
    now = now or utcnow()
    rows = [{"id": pixel_id, "name": "", "created_at": now, "updated_at": now,
             "settings": PixelConfig(id=pixel_id, default_country=default_country).stored_settings()}
            for pixel_id in sorted(set(pixel_ids))]
    if rows:
        session.execute(dialect_insert(session, table_of(Pixel)).on_conflict_do_nothing(), rows)


def mark_relay_unconfigured(session: Session, pixel_id: str) -> None:
    """Flag a pixel the relay accepted only through the opt-in for unconfigured pixels (no commit)."""
    row = session.get(Pixel, pixel_id)
    if row is not None and not (row.settings or {}).get("relay_unconfigured"):
        row.settings = {**(row.settings or {}), "relay_unconfigured": True}
        session.flush()


def list_pixels(session: Session) -> list[PixelConfig]:
    """Every known pixel, configured or only seen in data, by id."""
    return [PixelConfig.from_row(row) for row in session.scalars(select(Pixel).order_by(col(Pixel.id)))]
