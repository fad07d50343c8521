"""The ``capi-agent`` command line. Wiring only: each command lives in ``agent/commands/<name>.py``
and exposes ``register(app)``; modules are imported when the CLI is built, not at package import."""

from __future__ import annotations

import importlib
import logging

import typer

# Commands in help order. A module that is not there yet is skipped (the CLI still works).
COMMAND_MODULES = ("demo", "ingest", "audit", "summary", "report", "replay", "fixes", "normalize", "sim_meta", "serve",
                   "relay_key", "eval")


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="capi-agent",
        help="Audit, diagnose and repair a Meta Conversions API integration.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    # A callback keeps typer in multi-command mode even if only one command module is present.
    @app.callback()
    def _root() -> None:
        """Audit, diagnose and repair a Meta Conversions API integration."""
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"agent.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"agent.commands.{name}":
                continue
            raise
        module.register(app)
    return app


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    build_app()()


if __name__ == "__main__":
    main()
