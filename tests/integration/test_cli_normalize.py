"""``capi-agent normalize FIELD VALUE`` through the real CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agent.cli import build_app


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def test_prints_normalized_value_and_hash(runner: CliRunner) -> None:
    result = runner.invoke(build_app(), ["normalize", "ph", "(650)555-1212"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "normalized: 16505551212",
        "sha256: e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176",
    ]


def test_json_output(runner: CliRunner) -> None:
    result = runner.invoke(build_app(), ["normalize", "em", " John_Smith@gmail.com ", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "field": "em",
        "normalized": "john_smith@gmail.com",
        "sha256": "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
        "placeholder": False,
    }


def test_json_keeps_utf8(runner: CliRunner) -> None:
    result = runner.invoke(build_app(), ["normalize", "fn", "Valéry", "--json"])
    assert json.loads(result.stdout)["normalized"] == "valéry"
    assert "valéry" in result.stdout


def test_country_option_changes_the_phone_default(runner: CliRunner) -> None:
    result = runner.invoke(build_app(), ["normalize", "ph", "07700 900123", "--country", "gb"])
    assert result.exit_code == 0, result.output
    assert "normalized: 447700900123" in result.stdout


def test_placeholder_is_warned_about(runner: CliRunner) -> None:
    result = runner.invoke(build_app(), ["normalize", "em", "test@test.com"])
    assert result.exit_code == 0
    assert "placeholder" in result.stderr


def test_unknown_field_exits_2(runner: CliRunner) -> None:
    result = runner.invoke(build_app(), ["normalize", "email", "a@b.co"])
    assert result.exit_code == 2
    assert "email: not a customer-information field" in result.stderr
    assert result.stdout == ""


def test_must_not_hash_field_exits_2(runner: CliRunner) -> None:
    result = runner.invoke(build_app(), ["normalize", "fbc", "fb.1.1763632000000.AbCd"])
    assert result.exit_code == 2
    assert "must not be hashed" in result.stderr


def test_value_that_cannot_be_normalized_exits_2_without_echoing_it(runner: CliRunner) -> None:
    result = runner.invoke(build_app(), ["normalize", "em", "jane.secret.example"])
    assert result.exit_code == 2
    assert "em: not an email address" in result.stderr
    assert "secret" not in result.output


def test_bad_country_option_exits_2(runner: CliRunner) -> None:
    result = runner.invoke(build_app(), ["normalize", "ph", "650 555 1212", "--country", "USA"])
    assert result.exit_code == 2
    assert "--country" in result.stderr
