"""The gateway service: clients' WebSocket, SSE and REST entry to the platform."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any, ClassVar

import msgspec
from aiohttp import web
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from proto.base import Message
from proto.gateway import CloseCode, GatewayStats, server_encoder
from services.gateway.addresses import ClientAddresses, parse_networks
from services.gateway.auth import Authenticator, OriginCheck
from services.gateway.channels import ChannelHub, check_channel
from services.gateway.cluster import Cluster
from services.gateway.connection import Connection, ConnectionContext
from services.gateway.context import GatewayContext
from services.gateway.core import CoreMessages
from services.gateway.dispatch import MessageHandler
from services.gateway.extension import GatewayExtension
from services.gateway.extensions import default_extensions
from services.gateway.frames import Deflater, Outgoing
from services.gateway.guard import access_middleware
from services.gateway.heartbeat import Sweeper
from services.gateway.hooks import GatewayHooks
from services.gateway.metrics import GatewayCounters, GatewayMetrics
from services.gateway.quota import StreamQuota
from services.gateway.registry import ConnectionRegistry
from services.gateway.rest import RestRoutes
from services.gateway.routing import MessageTable
from services.gateway.settings import GatewaySettings
from services.gateway.sse import SseStreams
from services.gateway.websocket import WebSocketEndpoint
from shared import access
from shared.service.app import App

CHAT_PAGE = Path(__file__).parent / "static" / "chat.html"
PLAYGROUND_PAGE = Path(__file__).parent / "static" / "playground.html"

_CLOSE_REASONS: dict[int, str] = {
    CloseCode.NORMAL: "normal", CloseCode.GOING_AWAY: "going_away", CloseCode.PROTOCOL_ERROR: "protocol_error",
    CloseCode.MESSAGE_TOO_BIG: "too_big", CloseCode.INTERNAL_ERROR: "error",
    CloseCode.TRY_AGAIN_LATER: "try_again_later", CloseCode.IDLE_TIMEOUT: "idle",
    CloseCode.UNAUTHORIZED: "unauthorized", CloseCode.HEARTBEAT_TIMEOUT: "heartbeat",
    CloseCode.SLOW_CONSUMER: "slow_consumer",
}


class GatewayApp(App):
    """WebSocket ``/ws``, SSE and REST ``/v1/...``, the playground ``/`` and channel page ``/channels``; channels
    over NATS; extensions."""

    service: ClassVar[str] = "gateway"

    def __init__(self, settings: GatewaySettings, hooks: GatewayHooks | None = None) -> None:
        settings.check_exposure()  # before anything listens
        super().__init__(settings)
        self.gateway_settings = settings
        self.counters = GatewayCounters()
        self.authenticator = Authenticator(settings)
        self.origin_check = OriginCheck(settings.allowed_origins)
        self.registry = ConnectionRegistry(settings.max_connections, settings.max_connections_per_identity,
                                           settings.max_connections_per_address)
        self.addresses = ClientAddresses(parse_networks(settings.trusted_proxies))
        self.stream_quota = StreamQuota(self.registry, self.addresses, self.counters)
        self.deflater = (Deflater(settings.compression_level, settings.compression_threshold)
                         if settings.enable_compression else None)
        self.gateway_metrics = GatewayMetrics(
            self.metrics.registry, self.counters,
            connections=lambda: dict(self.registry.counts), channels=lambda: len(self.hub.channels),
            subscriptions=lambda: self.hub.subscription_count, peers=lambda: self.cluster.peer_count,
        )
        self.hub = ChannelHub(self.subjects, self.counters, self.gateway_metrics,
                              presence_subjects=settings.presence_subjects)
        self.cluster = Cluster(self.subjects, self.runtime.instance_id, interval=settings.peer_interval,
                               timeout=settings.presence_timeout, local_members=self.hub.local_members,
                               local_stats=self.local_stats)
        self.connection_context = ConnectionContext(
            counters=self.counters, deflater=self.deflater, send_queue_bytes=settings.send_queue_bytes,
            rate_limit=settings.rate_limit, rate_burst=settings.rate_burst,
            max_subscriptions=settings.max_subscriptions,
            spawn=lambda coro, name: self.spawn(coro, name=name), close=self._close_connection,
        )
        self.hooks = hooks or GatewayHooks()
        self.sweeper = Sweeper(self.registry, settings)
        self.sse = SseStreams(
            settings, instance_id=self.runtime.instance_id, authenticator=self.authenticator,
            registry=self.registry, counters=self.counters, connection_context=self.connection_context,
            hub=self.hub, accepting=lambda: self.accepting, disconnect=self.disconnect, addresses=self.addresses,
        )
        self.accepting = False
        self._started_at = time.monotonic()
        self._broadcast_sub: Subscription | None = None
        self.context = GatewayContext(
            settings=settings, runtime=self.runtime, subjects=self.subjects, authenticator=self.authenticator,
            metrics=self.metrics.registry, open_stream=self.sse.open_stream, stream_quota=self.stream_quota,
            _nats=lambda: self.nc, _jetstream=lambda: self.js,
        )
        self.extensions: list[GatewayExtension] = default_extensions(self.context)
        self.core = CoreMessages(self.hub, self.cluster, self.authenticator, on_reauth=self._narrow,
                                 set_identity=self.registry.authenticate)
        # One table for every client message type; a type two parts claim stops the gateway here.
        self.messages = MessageTable([(self.core.name, self.core.handles),
                                      *((e.name, e.handles) for e in self.extensions)])
        # One access table: the built-in rules and those each extension declares for its routes and messages.
        self.access = access.DEFAULT_TABLE
        for extension in self.extensions:
            self.access = self.access.extended(extension.name, getattr(extension, "access_rules", {}))
        self.handler = MessageHandler(self.messages, max_message_size=settings.max_message_size,
                                      authenticator=self.authenticator, counters=self.counters, hooks=self.hooks,
                                      max_json_depth=settings.max_json_depth, access_table=self.access)
        self.http_app.middlewares.append(access_middleware(self.authenticator, self.access, self.origin_check,
                                                           settings.host_allow_list))
        self._install_routes()

    def _install_routes(self) -> None:
        s = self.gateway_settings
        router = self.http_app.router
        websocket = WebSocketEndpoint(
            s, instance_id=self.runtime.instance_id, authenticator=self.authenticator,
            origin_check=self.origin_check, registry=self.registry, counters=self.counters,
            connection_context=self.connection_context, hooks=self.hooks, handler=self.handler,
            accepting=lambda: self.accepting, disconnect=self.disconnect, addresses=self.addresses,
        )
        router.add_get("/ws", websocket.handle)
        if s.chat_page:
            router.add_get("/", self._playground_page)
            router.add_get("/channels", self._chat_page)
        if s.enable_sse:
            router.add_get("/v1/channels/{channel}/events", self.sse.channel_events)
        rest = RestRoutes(s, instance_id=self.runtime.instance_id, authenticator=self.authenticator, hub=self.hub,
                          cluster=self.cluster, local_stats=self.local_stats)
        router.add_routes(rest.routes())
        for extension in self.extensions:
            router.add_routes(extension.routes())

    async def _chat_page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(CHAT_PAGE, headers={"Cache-Control": "no-cache"})

    async def _playground_page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(PLAYGROUND_PAGE, headers={"Cache-Control": "no-cache"})

    # ---- lifecycle ----------------------------------------------------------------------------

    async def on_start(self) -> None:
        if self.gateway_settings.anonymous_exposed:
            self.log.warning("GATEWAY_ALLOW_ANONYMOUS=true: anyone who reaches %s is served without a token, "
                             "as the admin", self.gateway_settings.host)
        self.hub.attach(self.nc, direct=self.gateway_settings.direct_delivery)
        await self.cluster.start(self.nc)
        self._broadcast_sub = await self.nc.subscribe(self.subjects.gateway_broadcast, cb=self._on_broadcast)
        self.spawn(self.cluster.run(), name="peers")
        self.spawn(self.sweeper.run(), name="sweeper")
        for extension in self.extensions:
            await extension.start()
        self.accepting = True

    async def on_stop(self) -> None:
        """Refuse new connections, ask every client to reconnect elsewhere (1001), then stop extensions."""
        self.accepting = False
        for conn in self.registry.snapshot():
            conn.close_soon(CloseCode.GOING_AWAY, "server shutting down")
        await self.registry.wait_empty(self.gateway_settings.close_timeout + 1.0)
        for extension in self.extensions:
            try:
                await extension.stop()
            except Exception:
                self.log.exception("extension %s failed to stop", extension.name)
        await self.cluster.stop()
        if self._broadcast_sub is not None:
            with contextlib.suppress(Exception):
                await self._broadcast_sub.unsubscribe()
        await self.hub.close()

    def micro_metadata(self) -> dict[str, str]:
        return {"websocket": self.http_url.replace("http", "ws", 1) + "/ws"}

    # ---- connections --------------------------------------------------------------------------

    async def _close_connection(self, conn: Connection, code: int, reason: str) -> None:
        """Say goodbye (a close frame, or the end of the SSE stream), then make sure the socket goes."""
        transport = conn.transport
        try:
            if conn.ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.ws.close(code=code, message=reason.encode()[:120]),
                                           self.gateway_settings.close_timeout)
            else:
                if conn.sse_chunked and not transport.is_closing():
                    transport.write(b"0\r\n\r\n")  # the last chunk: the client sees the stream end, not break
                transport.close()
        finally:
            conn.mark_closed()
            # A peer that stopped reading keeps our buffer forever: drop it after the close timeout.
            loop = asyncio.get_running_loop()
            loop.call_later(self.gateway_settings.close_timeout, _abort_if_stuck, transport)

    async def _narrow(self, conn: Connection) -> None:
        """After a re-``auth``: each extension drops the rooms, patterns and streams the new token does not grant."""
        for extension in self.extensions:
            hook = getattr(extension, "on_reauth", None)
            if hook is not None:
                await hook(conn)

    async def disconnect(self, conn: Connection, reason: str | None = None) -> None:
        """Everything that happens once a connection is gone, whatever ended it."""
        self.registry.remove(conn)
        conn.mark_closed()
        if reason is None:
            reason = "client" if conn.close_code is None else _CLOSE_REASONS.get(conn.close_code, "error")
        self.counters.disconnects[reason] += 1
        with contextlib.suppress(Exception):
            await self.hub.leave_all(conn)
        for extension in self.extensions:
            try:
                await extension.on_disconnect(conn)
            except Exception:
                self.log.exception("extension %s failed on disconnect", extension.name)
        await conn.release()
        await self.hooks.fire_disconnection(conn)

    # ---- server-side API (used by raaf.WebSocketServer) -----------------------------------------

    def connection(self, connection_id: str) -> Connection | None:
        return self.registry.get(connection_id)

    async def broadcast(self, message: Message | dict[str, Any] | bytes, channel: str | None = None) -> None:
        """To ``channel``'s subscribers on every gateway (as a channel ``message``), or without a channel
        to every connection of every gateway (as is)."""
        payload = _json_bytes(message)
        if channel is not None:
            await self.hub.publish(check_channel(channel), msgspec.Raw(payload))
        else:
            await self.nc.publish(self.subjects.gateway_broadcast, payload)

    async def _on_broadcast(self, msg: Msg) -> None:
        try:
            msgspec.json.decode(msg.data)
            msg.data.decode()
        except (msgspec.DecodeError, UnicodeDecodeError):
            self.log.warning("ignoring a broadcast that is not UTF-8 JSON")
            return
        out = Outgoing(msg.data)
        for conn in self.registry.snapshot():
            conn.deliver(out)

    def stats(self) -> dict[str, Any]:
        """The seed's ``websocket_server`` figures for ``raaf.stats()`` (summed across gateways by the metrics
        service, except ``channels``, which is shared)."""
        local = self.local_stats()
        return {"websocket_server": {
            "running": self.accepting, "connections": local.connections,
            "max_connections": self.gateway_settings.max_connections, "channels": local.channels,
            "subscriptions": local.subscriptions, "sse_streams": local.sse_connections,
            "messages_sent": local.messages_sent, "messages_received": local.messages_received,
            "bytes_sent": local.bytes_sent, "slow_consumer_disconnects": local.slow_consumers}}

    def local_stats(self) -> GatewayStats:
        c = self.counters
        counts = self.registry.counts
        return GatewayStats(
            connections=len(self.registry) + self.registry.streams, websocket_connections=counts["ws"],
            sse_connections=counts["sse"],
            authenticated_connections=self.registry.authenticated, channels=len(self.hub.channels),
            subscriptions=self.hub.subscription_count, messages_received=c.messages_received,
            messages_sent=c.messages_sent, bytes_sent=c.bytes_sent, errors_sent=c.errors_sent,
            slow_consumers=c.slow_consumers, rate_limited=c.rate_limited,
            uptime_seconds=round(time.monotonic() - self._started_at, 3),
        )


def _abort_if_stuck(transport: Any) -> None:
    if not transport.is_closing() or transport.get_write_buffer_size():
        transport.abort()


def _json_bytes(message: Message | dict[str, Any] | bytes) -> bytes:
    if isinstance(message, bytes):
        msgspec.json.decode(message)  # must be JSON
        return message
    if isinstance(message, Message):
        return server_encoder.encode(message)
    return msgspec.json.encode(message)
