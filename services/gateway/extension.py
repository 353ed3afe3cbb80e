"""The plug-in point for other features (runs, event-bus subscriptions, jobs, chat) to join the gateway.

An extension is built with a :class:`~services.gateway.context.GatewayContext`, adds HTTP routes and
declares the WebSocket client messages it handles::

    class RunsExtension:
        name = "runs"

        def __init__(self, ctx: GatewayContext) -> None:
            self.ctx = ctx  # ctx.nc, .js, .subjects, .authenticator, .settings, .metrics, .open_stream
            self.handles: Handlers = {AgentStream: self.agent_stream}  # type -> async handler(conn, message)

        def routes(self) -> list[web.RouteDef]:
            return [web.post("/v1/runs", self.create_run)]

        async def start(self) -> None: ...  # NATS is connected: ctx.nc works from here on

        async def stop(self) -> None: ...

        async def agent_stream(self, conn: Connection, message: AgentStream) -> None:
            await conn.subscribe_nats(self.ctx.nc, ..., cb=...)  # undone at disconnect

        async def on_disconnect(self, conn: Connection) -> None: ...

Add the message Structs to ``proto.gateway.ClientMessage`` / ``ServerMessage`` (one line each) and the
extension to :func:`services.gateway.extensions.default_extensions` (one line). Every route and message needs
an access rule: the built-in ones are in ``shared.access`` (``ROUTES``, ``MESSAGES``); an extension from
elsewhere declares its own as ``access_rules`` (``{("GET", "/v1/x"): Access(Rule.OWNER, "x", "read"),
"x_message": Access(...)}``). A route or message without one is refused. An optional ``on_reauth(conn)`` is
called after a connection authenticated again (same subject, maybe fewer grants): drop what it no longer grants.
The gateway builds one table from every extension's ``handles`` (and the core's) at start-up; a type claimed
twice stops it.
A handler runs in the connection's receive loop, in order: return quickly (spawn long work with
``conn.spawn``); raise a typed error (a :class:`shared.errors.StreamingError`, e.g.
``services.gateway.errors.forbidden(kind, name)``) to answer the client with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from aiohttp import web

from proto.base import ClientRequest
from services.gateway.connection import Connection

# The message's own Struct type, not the union: a table entry knows the one type it gets.
Handler = Callable[[Connection, Any], Awaitable[None]]
Handlers = Mapping[type[ClientRequest], Handler]


class GatewayExtension(Protocol):
    name: str

    @property
    def handles(self) -> Handlers:
        """The client message types this extension handles, each with its handler."""
        ...

    def routes(self) -> list[web.RouteDef]:
        """HTTP routes, added before the gateway starts."""
        ...

    async def start(self) -> None:
        """Called once NATS is connected, before the gateway accepts connections."""
        ...

    async def stop(self) -> None:
        """Called on drain, after client connections were closed."""
        ...

    async def on_disconnect(self, conn: Connection) -> None:
        """The connection is gone (its owned NATS subscriptions and tasks are released right after)."""
        ...
