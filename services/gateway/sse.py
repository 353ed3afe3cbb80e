"""Server-Sent Events: a channel as an event stream, and ``open_stream`` for extensions' own streams.

An SSE stream is a :class:`Connection` of kind ``sse``: it counts against the connection limit, gets
the same frames (as ``event: <type>`` / ``data: <json>``), the same slow-consumer policy, and a
keep-alive comment when quiet. Each event is a wire message; the first is ``welcome``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.http import HttpVersion11

from proto.gateway import Limits, Welcome
from services.gateway.addresses import ClientAddresses
from services.gateway.auth import Authenticator
from services.gateway.channels import ChannelHub, check_channel
from services.gateway.connection import Connection, ConnectionContext
from services.gateway.errors import (
    forbidden,
    gateway_unavailable,
    too_many_connections,
)
from services.gateway.metrics import GatewayCounters
from services.gateway.registry import ConnectionRegistry
from services.gateway.responses import error_response
from services.gateway.settings import GatewaySettings
from shared.errors import StreamingError
from shared.identity import Identity

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
}


class SseStream:
    """An open SSE response and the connection that writes to it."""

    __slots__ = ("conn", "response")

    def __init__(self, conn: Connection, response: web.StreamResponse) -> None:
        self.conn = conn
        self.response = response


class SseStreams:
    def __init__(self, settings: GatewaySettings, *, instance_id: str, authenticator: Authenticator,
                 registry: ConnectionRegistry, counters: GatewayCounters, connection_context: ConnectionContext,
                 hub: ChannelHub, accepting: Callable[[], bool],
                 disconnect: Callable[[Connection], Awaitable[None]],
                 addresses: ClientAddresses | None = None) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.authenticator = authenticator
        self.registry = registry
        self.counters = counters
        self.connection_context = connection_context
        self.hub = hub
        self.accepting = accepting
        self.disconnect = disconnect
        self.addresses = addresses or ClientAddresses()

    @contextlib.asynccontextmanager
    async def open_stream(self, request: web.Request, identity: Identity) -> AsyncIterator[SseStream]:
        """Start an SSE response; on exit (or when the client is gone) its connection is cleaned up.

        Raises :class:`StreamingError` before anything was sent (answer it with ``error_response``);
        the handler returns ``stream.response`` after the ``async with``.
        """
        if not self.accepting():
            raise gateway_unavailable("not accepting connections")
        address = self.addresses.of(request)
        try:
            self.registry.check(identity, address)
        except StreamingError:
            self.counters.refused["max_connections"] += 1
            raise
        if not self.registry.reserve():
            self.counters.refused["max_connections"] += 1
            raise too_many_connections(self.registry.max_connections)
        try:
            response = web.StreamResponse(headers=SSE_HEADERS)
            chunked = request.version >= HttpVersion11
            if chunked:
                response.enable_chunked_encoding()
            else:
                response.force_close()
            await response.prepare(request)
        except BaseException:
            self.registry.unreserve()
            raise
        transport = request.transport
        if transport is None:
            self.registry.unreserve()
            raise gateway_unavailable("client went away")
        conn = Connection(self.connection_context, transport, identity, kind="sse",
                          sse_chunked=chunked, address=address)
        self.registry.add(conn)
        self.counters.connections_opened["sse"] += 1
        s = self.settings
        conn.send_nowait(Welcome(
            connection_id=conn.id, instance=self.instance_id, auth_required=self.authenticator.required,
            heartbeat_interval=s.heartbeat_interval, subject=identity.subject,
            limits=Limits(max_message_size=s.max_message_size, rate_limit=s.rate_limit,
                          max_subscriptions=s.max_subscriptions),
        ))
        try:
            yield SseStream(conn, response)
        finally:
            await self.disconnect(conn)

    async def channel_events(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/channels/{channel}/events``: the channel's messages as they happen (no history).

        ``?presence=1`` adds its ``joined``/``left`` events; auth as for REST (Bearer or ``?token=``).
        """
        try:
            identity = self.authenticator.require(request)
            name = check_channel(request.match_info["channel"])
            if not identity.may("channel", name):
                raise forbidden("channel", name)
            async with self.open_stream(request, identity) as stream:
                try:
                    await self.hub.join(stream.conn, name, presence=request.query.get("presence") in ("1", "true"))
                except StreamingError as exc:
                    await stream.conn.send_error(exc.code, exc.message)
                else:
                    await stream.conn.wait_closed()
            return stream.response
        except StreamingError as exc:
            return error_response(exc)
