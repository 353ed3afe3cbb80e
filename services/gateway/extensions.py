"""The extensions every gateway runs: features from other services add one line each here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.gateway.chat import ChatExtension
from services.gateway.extension import GatewayExtension
from services.gateway.jobs import JobsExtension
from services.gateway.runs import RunsExtension

if TYPE_CHECKING:
    from services.gateway.app import GatewayApp


def default_extensions(gateway: GatewayApp) -> list[GatewayExtension]:
    """Built in ``GatewayApp.__init__``; their routes are installed there, started after NATS connects."""
    # Imported here: the events extension uses the raaf package, whose __init__ imports the gateway app.
    from services.gateway.events import EventsExtension

    return [
        # One line per extension, e.g. RunsExtension(gateway),
        ChatExtension(gateway),
        RunsExtension(gateway),
        EventsExtension(gateway),
        JobsExtension(gateway),
    ]
