"""One sweeper for all connections: pings, dead peers, idle and unauthenticated connections, expired tokens.

A single task visiting every connection a few times per interval costs far less memory than a timer
per connection. A peer silent for ``WEBSOCKET_HEARTBEAT_INTERVAL`` gets a ping; one that does not
answer within ``WEBSOCKET_PONG_TIMEOUT`` is dropped, so a dead peer is gone within interval + timeout.
"""

from __future__ import annotations

import asyncio
import time

from proto.errors import Error, ErrorCode
from proto.gateway import CloseCode
from services.gateway.connection import Connection
from services.gateway.frames import PING_FRAME, http_chunk
from services.gateway.registry import ConnectionRegistry
from services.gateway.settings import GatewaySettings

_SSE_KEEPALIVE = b": keepalive\n\n"


class Sweeper:
    def __init__(self, registry: ConnectionRegistry, settings: GatewaySettings) -> None:
        self.registry = registry
        self.interval = settings.heartbeat_interval
        self.pong_timeout = settings.pong_timeout
        self.idle_timeout = settings.idle_timeout
        self.auth_timeout = settings.auth_timeout if settings.auth_required else 0.0
        periods = [p for p in (self.interval, self.pong_timeout, self.idle_timeout, self.auth_timeout) if p > 0]
        # Visiting every connection 4 times per shortest period bounds how late anything is noticed.
        self.tick = min(1.0, max(0.01, min(periods) / 4)) if periods else 1.0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            self.sweep(time.monotonic(), time.time())

    def sweep(self, now: float, wall: float) -> None:
        slack = self.tick  # act up to one tick early, so acting up to one tick late still meets the bound
        for conn in self.registry.snapshot():
            if conn.transport.is_closing():
                conn.mark_closed()
                continue
            if not conn.open:
                continue
            if self.auth_timeout and conn.identity.subject is None and now - conn.connected_at >= self.auth_timeout:
                conn.close_soon(CloseCode.UNAUTHORIZED, "authentication timeout")
                continue
            expires = conn.identity.expires_at
            if expires is not None and wall >= expires:
                if conn.kind == "sse":  # no close code on SSE: a last typed error event says why it ends
                    conn.ctx.counters.errors_sent += 1
                    conn.send_nowait(Error(code=ErrorCode.UNAUTHORIZED, message="token expired"))
                conn.close_soon(CloseCode.UNAUTHORIZED, "token expired")
                continue
            # SSE streams only listen, so only WebSocket connections can be idle.
            if self.idle_timeout and conn.kind == "ws" and now - conn.last_active >= self.idle_timeout:
                conn.close_soon(CloseCode.IDLE_TIMEOUT, "idle timeout")
                continue
            if self.interval:
                self._heartbeat(conn, now, slack)

    def _heartbeat(self, conn: Connection, now: float, slack: float) -> None:
        if conn.kind == "sse":
            # SSE has no pong: a comment keeps proxies from timing out and a dead peer fails the write.
            if now - conn.last_tx >= self.interval - slack:
                conn.write(http_chunk(_SSE_KEEPALIVE) if conn.sse_chunked else _SSE_KEEPALIVE)
            return
        if conn.ping_at:
            if now - conn.ping_at >= self.pong_timeout - slack:
                conn.close_code = CloseCode.HEARTBEAT_TIMEOUT
                conn.close_reason = "no pong"
                conn.abort()
        elif now - conn.last_rx >= self.interval - slack and conn.write(PING_FRAME):
            conn.ping_at = now
