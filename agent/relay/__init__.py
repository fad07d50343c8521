"""The relay's HTTP surface: a drop-in ``POST /{api_version}/{pixel_id}/events`` (see ``app``)."""

from agent.relay.app import RelayDeps, build_relay_app, forward_pending_with_wiring, relay_deps, relay_routes

__all__ = ["RelayDeps", "build_relay_app", "forward_pending_with_wiring", "relay_deps", "relay_routes"]
