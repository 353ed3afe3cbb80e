"""``GET /ws``: origin and capacity checks, the upgrade, ``welcome``, the receive loop, clean disconnect."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from proto.errors import ErrorCode
from proto.gateway import CloseCode, Limits, Welcome
from services.gateway import wsresponse
from services.gateway.connection import Connection, pong_frame
from services.gateway.errors import AuthenticationFailed, GatewayError
from services.gateway.identity import Identity
from services.gateway.responses import error_response

if TYPE_CHECKING:
    from services.gateway.app import GatewayApp

log = logging.getLogger("raaf.gateway.ws")

_DATA = (WSMsgType.TEXT, WSMsgType.BINARY)


class WebSocketEndpoint:
    def __init__(self, gateway: GatewayApp) -> None:
        self.gateway = gateway
        s = gateway.gateway_settings
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
        gw = self.gateway
        counters = gw.counters
        try:
            gw.origin_check.check(request)
        except GatewayError as exc:
            counters.refused["origin"] += 1
            return error_response(exc)
        if not gw.accepting:
            counters.refused["unavailable"] += 1
            return await self._refuse(request, CloseCode.TRY_AGAIN_LATER, "gateway not ready")
        if not gw.registry.reserve():
            counters.refused["max_connections"] += 1
            return await self._refuse(request, CloseCode.TRY_AGAIN_LATER, "too many connections")
        auth_error: AuthenticationFailed | None = None
        identity: Identity
        try:
            try:
                identity = gw.authenticator.from_request(request) or gw.authenticator.anonymous()
            except AuthenticationFailed as exc:
                identity, auth_error = gw.authenticator.anonymous(), exc
            ws = self._response()
            await ws.prepare(request)
        except BaseException:
            gw.registry.unreserve()
            raise
        transport = request.transport
        if transport is None:  # gone during the handshake
            gw.registry.unreserve()
            return ws
        conn = Connection(gw.connection_context, transport, identity, ws=ws,
                          deflate_wbits=int(ws.compress))  # the negotiated window bits; 0: none
        gw.registry.add(conn)
        counters.connections_opened["ws"] += 1
        try:
            conn.send_nowait(Welcome(
                connection_id=conn.id, instance=gw.runtime.instance_id,
                auth_required=gw.authenticator.required, heartbeat_interval=self.settings.heartbeat_interval,
                limits=self.limits, subject=identity.subject,
            ))
            if auth_error is not None:
                counters.refused["unauthorized"] += 1
                await conn.send_error(ErrorCode.UNAUTHORIZED, auth_error.message)
                await conn.close(CloseCode.UNAUTHORIZED, auth_error.reason)
            else:
                await gw.hooks.fire_connection(conn)
                await self._receive(conn, ws)
        finally:
            if conn.close_code is None and ws.close_code is not None:
                conn.close_code = ws.close_code
            await gw.disconnect(conn)
        return ws

    async def _receive(self, conn: Connection, ws: web.WebSocketResponse) -> None:
        handler = self.gateway.handler
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
