"""The plug-in point for other features (runs, event-bus subscriptions, jobs, chat) to join the gateway.

An extension adds HTTP routes and handles the WebSocket client messages the core does not own::

    class RunsExtension:
        name = "runs"

        def routes(self) -> list[web.RouteDef]:
            return [web.post("/v1/runs", self.create_run)]

        async def start(self, gateway: GatewayApp) -> None:
            self.gateway = gateway  # gateway.nc, .js, .subjects, .authenticator, .settings ...

        async def stop(self) -> None: ...

        async def handle(self, conn: Connection, message: ClientMessage) -> bool:
            match message:
                case AgentStream():
                    await conn.subscribe_nats(self.gateway.nc, ..., cb=...)  # undone at disconnect
                    return True
            return False

        async def on_disconnect(self, conn: Connection) -> None: ...

Add the message Structs to ``proto.gateway.ClientMessage`` / ``ServerMessage`` (one line each) and the
extension to :func:`services.gateway.extensions.default_extensions` (one line). ``handle`` runs in the
connection's receive loop, in order: return quickly (spawn long work with ``conn.spawn``); raise a
:class:`services.gateway.errors.GatewayError` to answer the client with a typed error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from proto.gateway import ClientMessage
from services.gateway.connection import Connection

if TYPE_CHECKING:
    from services.gateway.app import GatewayApp


class GatewayExtension(Protocol):
    name: str

    def routes(self) -> list[web.RouteDef]:
        """HTTP routes, added before the gateway starts."""
        ...

    async def start(self, gateway: GatewayApp) -> None:
        """Called once NATS is connected, before the gateway accepts connections."""
        ...

    async def stop(self) -> None:
        """Called on drain, after client connections were closed."""
        ...

    async def handle(self, conn: Connection, message: ClientMessage) -> bool:
        """A decoded client message the core does not own; True if this extension handled it."""
        ...

    async def on_disconnect(self, conn: Connection) -> None:
        """The connection is gone (its owned NATS subscriptions and tasks are released right after)."""
        ...
