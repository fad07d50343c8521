"""``capi-agent relay-key issue|list|revoke``: keys the relay accepts for a pixel in place of its Meta
token, so a sender (a shop plug-in, a tag server) never holds the Meta token. A key is printed once;
only its SHA-256 is stored."""

from __future__ import annotations

from pathlib import Path

import typer

relay_key_app = typer.Typer(help="Keys a sender may use with the relay instead of the pixel's Meta token.",
                            no_args_is_help=True)

DATABASE_HELP = "default: CAPI_DATABASE_URL"
CONFIG_HELP = "pixels TOML (default: CAPI_CONFIG)"


@relay_key_app.command("issue")
def issue(
    pixel: str = typer.Option(..., "--pixel", help="pixel (dataset) id the key is for"),
    label: str = typer.Option("", "--label", help="who holds it (e.g. 'shopify plug-in')"),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_HELP),
    config: Path | None = typer.Option(None, "--config", exists=True, dir_okay=False, help=CONFIG_HELP),
) -> None:
    """Issue a key for one pixel and print it (once: only its hash is kept)."""
    from agent.wiring import open_wiring
    from tools.relay.keys import issue_key
    from tools.timeutil import utcnow

    with open_wiring(database_url=database_url, config_file=config) as wiring:
        known = {p.id: p for p in wiring.pixels()}
        if pixel not in known or known[pixel].relay_unconfigured:
            typer.echo(f"warning: pixel {pixel} is not configured: events sent with this key wait until it "
                       "has an access token (CAPI_CONFIG or META_ACCESS_TOKEN)", err=True)
        with wiring.session() as session:
            key, row = issue_key(session, pixel_id=pixel, now=utcnow(), label=label)
            session.commit()
            key_id = row.id
    typer.echo(f"relay key {key_id} for pixel {pixel}{f' ({label})' if label else ''}:")
    typer.echo(key)
    typer.echo("Shown once (only its hash is stored). The sender uses it as its access token "
               "(Authorization: Bearer <key>, or access_token=<key>).", err=True)


@relay_key_app.command("list")
def list_(
    pixel: str | None = typer.Option(None, "--pixel", help="only this pixel's keys"),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_HELP),
) -> None:
    """List keys (id, pixel, label, issued, revoked); never the keys themselves."""
    from agent.wiring import open_wiring
    from tools.relay.keys import list_keys
    from tools.timeutil import to_iso

    with open_wiring(database_url=database_url) as wiring, wiring.session() as session:
        rows = list_keys(session, pixel)
    if not rows:
        typer.echo("no relay keys")
    for row in rows:
        revoked = f" revoked {to_iso(row.revoked_at)}" if row.revoked_at else ""
        typer.echo(f"{row.id:>5}  pixel {row.pixel_id}  issued {to_iso(row.created_at)}{revoked}  {row.label}")


@relay_key_app.command("revoke")
def revoke(
    key_id: int = typer.Argument(..., help="the key's id (relay-key list)"),
    database_url: str | None = typer.Option(None, "--database-url", help=DATABASE_HELP),
) -> None:
    """Revoke a key: the relay refuses it from now on."""
    from agent.wiring import open_wiring
    from tools.relay.keys import revoke_key
    from tools.timeutil import utcnow

    with open_wiring(database_url=database_url) as wiring, wiring.session() as session:
        done = revoke_key(session, key_id=key_id, now=utcnow())
        session.commit()
    if not done:
        typer.echo(f"error: no live relay key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"relay key {key_id} revoked")


def register(app: typer.Typer) -> None:
    app.add_typer(relay_key_app, name="relay-key")
