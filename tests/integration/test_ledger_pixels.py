"""Pixels configuration: the TOML file, its validation, and the pixels table."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, select
from sqlmodel import Session

from tests.fixtures.db import event_line, write_jsonl
from tools.ledger.ingest import ingest_events_jsonl
from tools.ledger.models import Pixel
from tools.ledger.pixels import list_pixels, load_pixels_toml, sync_pixels
from tools.timeutil import utcnow

TOML = """
[[pixels]]
id = "111"
name = "Main shop"
access_token = "EAAB-secret-token-canary"
timezone = "Europe/Paris"
slack_channel = "#capi"
relay_mode = "repair"
default_country = "fr"

[pixels.thresholds]
emq_floor = 6.5

[[pixels]]
id = "222"
access_token_env = "META_TOKEN_B"
"""


def test_toml_is_read_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "pixels.toml"
    path.write_text(TOML)
    main, other = load_pixels_toml(path)
    assert (main.id, main.name, main.timezone, main.relay_mode, main.default_country) == (
        "111", "Main shop", "Europe/Paris", "repair", "FR")
    assert main.access_token is not None
    assert main.access_token.get_secret_value() == "EAAB-secret-token-canary"
    assert main.thresholds.emq_floor == 6.5 and main.thresholds.emq_goal == 8.0
    assert (other.access_token_env, other.timezone, other.relay_mode) == ("META_TOKEN_B", "UTC", "observe")


@pytest.mark.parametrize("bad", ['timezone = "Mars/Olympus"', 'relay_mode = "fix"',
                                 'default_country = "USA"', "[pixels.thresholds]\nemq_floor = \"low\""])
def test_invalid_pixel_settings_are_rejected(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "pixels.toml"
    path.write_text(f'[[pixels]]\nid = "1"\n{bad}\n')
    with pytest.raises(ValidationError):
        load_pixels_toml(path)


def test_duplicate_pixel_ids_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "pixels.toml"
    path.write_text('[[pixels]]\nid = "1"\n[[pixels]]\nid = "1"\n')
    with pytest.raises(ValueError, match="configured twice"):
        load_pixels_toml(path)


def test_sync_stores_settings_but_never_the_token(ledger_engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "pixels.toml"
    path.write_text(TOML)
    with Session(ledger_engine) as session:
        sync_pixels(session, load_pixels_toml(path))
        session.commit()
        sync_pixels(session, load_pixels_toml(path))  # idempotent
        session.commit()
        rows = session.scalars(select(Pixel)).all()
        assert "EAAB-secret-token-canary" not in repr([r.settings for r in rows])
    ingest_events_jsonl(session_or_engine=ledger_engine, path=write_jsonl(
        tmp_path / "e.jsonl", [event_line(event_time=utcnow(), pixel_id="333")]))
    with Session(ledger_engine) as session:
        pixels = {p.id: p for p in list_pixels(session)}
    assert sorted(pixels) == ["111", "222", "333"]
    assert pixels["111"].thresholds.emq_floor == 6.5 and pixels["111"].access_token is None
    assert pixels["333"].timezone == "UTC" and pixels["333"].relay_mode == "observe"
