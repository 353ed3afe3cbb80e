"""``GET /ws``: origin and capacity checks, the upgrade, ``welcome``, the receive loop, clean disconnect."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

from proto.errors import ErrorCode
from proto.gateway import CloseCode, Limits, Welcome
from services.gateway import wsresponse
from services.gateway.addresses import ClientAddresses
from services.gateway.auth import Authenticator, OriginCheck
from services.gateway.connection import Connection, ConnectionContext, pong_frame
from services.gateway.dispatch import MessageHandler
from services.gateway.errors import AuthenticationFailed
from services.gateway.hooks import GatewayHooks
from services.gateway.metrics import GatewayCounters
from services.gateway.registry import ConnectionRegistry
from services.gateway.responses import error_response
from services.gateway.settings import GatewaySettings
from shared.errors import StreamingError
from shared.identity import Identity

log = logging.getLogger("raaf.gateway.ws")

_DATA = (WSMsgType.TEXT, WSMsgType.BINARY)


class WebSocketEndpoint:
    def __init__(self, settings: GatewaySettings, *, instance_id: str, authenticator: Authenticator,
                 origin_check: OriginCheck, registry: ConnectionRegistry, counters: GatewayCounters,
                 connection_context: ConnectionContext, hooks: GatewayHooks, handler: MessageHandler,
                 accepting: Callable[[], bool], disconnect: Callable[[Connection], Awaitable[None]],
                 addresses: ClientAddresses | None = None) -> None:
        self.instance_id = instance_id
        self.authenticator = authenticator
        self.origin_check = origin_check
        self.registry = registry
        self.counters = counters
        self.connection_context = connection_context
        self.hooks = hooks
        self.handler = handler
        self.accepting = accepting
        self.disconnect = disconnect
        self.addresses = addresses or ClientAddresses()
        s = settings
        self.settings = s
        self.limits = Limits(max_message_size=s.max_message_size, rate_limit=s.rate_limit,
                             max_subscriptions=s.max_subscriptions)
        self.response_class = wsresponse.install(s.ws_fast_path)  # aiohttp's shape is checked once, here

    def _response(self) -> web.WebSocketResponse:
        s = self.settings
        return self.response_class(
            compress=s.enable_compression, autoping=False, max_msg_size=s.max_frame_size,
            timeout=s.close_timeout, decode_text=False,
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        counters = self.counters
        try:
            self.origin_check.check(request)
        except StreamingError as exc:
            counters.refused["origin"] += 1
            return error_response(exc)
        if not self.accepting():
            counters.refused["unavailable"] += 1
            return await self._refuse(request, CloseCode.TRY_AGAIN_LATER, "gateway not ready")
        if not self.registry.reserve():
            counters.refused["max_connections"] += 1
            return await self._refuse(request, CloseCode.TRY_AGAIN_LATER, "too many connections")
        auth_error: AuthenticationFailed | None = None
        identity: Identity
        try:
            try:
                identity = self.authenticator.from_request(request) or self.authenticator.anonymous()
            except AuthenticationFailed as exc:
                identity, auth_error = self.authenticator.anonymous(), exc
            address = self.addresses.of(request)
            if not self.registry.admits(identity):
                self.registry.unreserve()
                counters.refused["max_connections"] += 1
                return await self._refuse(request, CloseCode.TRY_AGAIN_LATER, "too many connections for this identity "
                                          "(GATEWAY_MAX_CONNECTIONS_PER_IDENTITY)")
            if not self.registry.admits_address(address):
                self.registry.unreserve()
                counters.refused["max_connections"] += 1
                return await self._refuse(request, CloseCode.TRY_AGAIN_LATER, "too many connections from this address "
                                          "(GATEWAY_MAX_CONNECTIONS_PER_ADDRESS)")
            ws = self._response()
            await ws.prepare(request)
        except BaseException:
            self.registry.unreserve()
            raise
        transport = request.transport
        if transport is None:  # gone during the handshake
            self.registry.unreserve()
            return ws
        conn = Connection(self.connection_context, transport, identity, ws=ws, address=address,
                          deflate_wbits=int(ws.compress))  # the negotiated window bits; 0: none
        self.registry.add(conn)
        counters.connections_opened["ws"] += 1
        try:
            conn.send_nowait(Welcome(
                connection_id=conn.id, instance=self.instance_id,
                auth_required=self.authenticator.required, heartbeat_interval=self.settings.heartbeat_interval,
                limits=self.limits, subject=identity.subject,
            ))
            if auth_error is not None:
                counters.refused["unauthorized"] += 1
                await conn.send_error(ErrorCode.UNAUTHORIZED, auth_error.message)
                await conn.close(CloseCode.UNAUTHORIZED, auth_error.reason or auth_error.message)
            else:
                await self.hooks.fire_connection(conn)
                await self._receive(conn, ws)
        finally:
            if conn.close_code is None and ws.close_code is not None:
                conn.close_code = ws.close_code
            await self.disconnect(conn)
        return ws

    async def _receive(self, conn: Connection, ws: web.WebSocketResponse) -> None:
        handler = self.handler
        while True:
            msg = await ws.receive()
            conn.last_rx = time.monotonic()
            conn.ping_at = 0.0
            kind = msg.type
            if kind in _DATA:
                if conn.open:
                    await handler.handle(conn, msg.data)
            elif kind is WSMsgType.PING:
                conn.write(pong_frame(msg.data))
            elif kind is WSMsgType.PONG:
                pass
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                if kind is WSMsgType.ERROR and conn.close_code is None:
                    conn.close_code = ws.close_code or CloseCode.PROTOCOL_ERROR
                return

    async def _refuse(self, request: web.Request, code: CloseCode, reason: str) -> web.StreamResponse:
        """Finish the handshake and close at once, so browsers see a close code (not a bare failure)."""
        ws = self._response()
        await ws.prepare(request)
        await ws.close(code=code, message=reason.encode())
        return ws
