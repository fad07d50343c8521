"""``capi-agent normalize FIELD VALUE``: show how a customer-information value is normalized and hashed
for Meta, so a person can compare with what their integration sends."""

from __future__ import annotations

import json

import typer

FIELD_HELP = "user_data field Meta hashes: em ph fn ln ge db ct st zp country external_id"


def normalize(
    field: str = typer.Argument(..., help=FIELD_HELP),
    value: str = typer.Argument(..., help="the raw value (never stored or logged)"),
    country: str = typer.Option(
        "US", "--country", help="default country (ISO alpha-2) for phones, zips and dates"
    ),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of two lines"),
) -> None:
    """Print the normalized value and its SHA-256 as Meta expects them (exit 2 if it cannot be normalized)."""
    # Imported here (phonenumbers, pycountry): building the CLI for another command stays cheap.
    from tools.meta.normalize import NormalizationError, is_placeholder_hash, normalize_field, sha256_hex

    if len(country.strip()) != 2 or not country.strip().isalpha():
        typer.echo("error: --country must be a 2-letter ISO country code", err=True)
        raise typer.Exit(2)
    try:
        normalized = normalize_field(field.strip(), value, default_country=country.strip().upper())
    except NormalizationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    digest = sha256_hex(normalized)
    if as_json:
        payload = {"field": field.strip(), "normalized": normalized, "sha256": digest,
                   "placeholder": is_placeholder_hash(digest)}
        typer.echo(json.dumps(payload, ensure_ascii=False))
        return
    typer.echo(f"normalized: {normalized}")
    typer.echo(f"sha256: {digest}")
    if is_placeholder_hash(digest):
        typer.echo("warning: this is a placeholder value; Meta cannot match it to a person", err=True)


def register(app: typer.Typer) -> None:
    """Add the ``normalize`` command to the CLI."""
    app.command("normalize")(normalize)
