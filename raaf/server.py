"""``WebSocketServer``: the seed's server-side API over a gateway running in this process.

::

    server = WebSocketServer(port=8080, max_connections=1000)

    @server.on_connection
    async def hello(client: Connection) -> None:
        client.set_metadata("user_id", "user123")

    @server.on_message  # client messages of your own types, e.g. {"type": "chat_message", ...}
    async def chat(client: Connection, message: dict) -> None:
        await server.broadcast({"type": "announcement", "text": message["text"]}, channel="general")

    await server.start()

Channels work across every gateway on the same NATS; with no reachable ``NATS_URL`` (and
``start_nats=True``) the server starts a local ``nats-server`` for itself.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

from proto.base import Message
from services.gateway.app import GatewayApp
from services.gateway.channels import check_channel
from services.gateway.connection import Connection
from services.gateway.hooks import ConnectionHook, ErrorHook, GatewayHooks, MessageHook
from services.gateway.settings import GatewaySettings
from shared.devstack.servers import EmbeddedNats, url_reachable
from shared.errors import NotFoundError


class WebSocketServer:
    """A gateway in this process: hooks, channels, broadcast, and the whole ``/ws`` protocol."""

    def __init__(
        self,
        port: int = 8080,
        host: str = "localhost",
        max_connections: int = 1000,
        heartbeat_interval: float = 30.0,
        *,
        enable_compression: bool = True,
        nats_url: str | None = None,
        prefix: str | None = None,
        start_nats: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env`` sets any other gateway variable (``WEBSOCKET_RATE_LIMIT``, ``GATEWAY_AUTH_MODE`` ...)."""
        self._environ: dict[str, str] = {**os.environ, **(env or {})}
        self._environ.update(
            WEBSOCKET_PORT=str(port), WEBSOCKET_HOST=host, WEBSOCKET_MAX_CONNECTIONS=str(max_connections),
            WEBSOCKET_HEARTBEAT_INTERVAL=str(heartbeat_interval),
            WEBSOCKET_ENABLE_COMPRESSION="true" if enable_compression else "false",
        )
        if nats_url is not None:
            self._environ["NATS_URL"] = nats_url
        if prefix is not None:
            self._environ["RAAF_PREFIX"] = prefix
        self.settings = GatewaySettings.from_env(self._environ)
        self.start_nats = start_nats
        self.hooks = GatewayHooks()
        self.app = GatewayApp(self.settings, self.hooks)
        self._nats = EmbeddedNats("raaf-nats-")

    # ---- hooks ----------------------------------------------------------------------------------

    def on_connection(self, fn: ConnectionHook) -> ConnectionHook:
        self.hooks.connection.append(fn)
        return fn

    def on_disconnection(self, fn: ConnectionHook) -> ConnectionHook:
        self.hooks.disconnection.append(fn)
        return fn

    def on_message(self, fn: MessageHook) -> MessageHook:
        """Client messages whose ``type`` the gateway does not own, as dicts, with their connection."""
        self.hooks.message.append(fn)
        return fn

    def on_error(self, fn: ErrorHook) -> ErrorHook:
        """Errors while handling a client's message: typed ones arrive as ``raaf`` errors (``ProtocolError``,
        ``RateLimitedError`` ...), an exception from an ``on_message`` hook as itself."""

        async def public(client: Connection, error: BaseException) -> None:
            result = fn(client, error)  # the gateway's typed errors are the raaf classes of their codes
            if inspect.isawaitable(result):
                await result

        self.hooks.error.append(public)
        return fn

    # ---- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Where clients connect: ``ws://host:port/ws``."""
        return self.app.http_url.replace("http://", "ws://", 1) + "/ws"

    @property
    def running(self) -> bool:
        return self.app.accepting

    async def start(self) -> None:
        if self.start_nats and not url_reachable(self.app.runtime.nats_url):
            self.app = self._rebuild(await self._nats.start())
        await self.app.start()

    async def stop(self) -> None:
        """Drain: clients are told to reconnect (1001), then everything stops."""
        await self.app.stop()
        await self._nats.stop()

    async def serve_forever(self) -> None:
        """Start, run until SIGINT/SIGTERM, stop."""
        await self.app.run()

    def _rebuild(self, nats_url: str) -> GatewayApp:
        self._environ["NATS_URL"] = nats_url
        self.settings = GatewaySettings.from_env(self._environ)
        return GatewayApp(self.settings, self.hooks)

    # ---- the seed's server-side API ---------------------------------------------------------------

    @property
    def connections(self) -> list[Connection]:
        return self.app.registry.snapshot()

    @property
    def connection_count(self) -> int:
        return len(self.app.registry)

    def connection(self, client_id: str) -> Connection:
        conn = self.app.connection(client_id)
        if conn is None:
            raise NotFoundError(f"no connection {client_id!r} on this server")
        return conn

    async def subscribe_to_channel(self, client_id: str, channel: str) -> None:
        """Put a connected client in a channel (as if it had sent ``subscribe``)."""
        conn = self.connection(client_id)
        name = check_channel(channel)
        if conn.channels is None or name not in conn.channels:
            conn.check_subscription_room()
            await self.app.hub.join(conn, name)

    async def unsubscribe_from_channel(self, client_id: str, channel: str) -> bool:
        return await self.app.hub.leave(self.connection(client_id), channel)

    async def broadcast(self, message: Message | dict[str, Any], channel: str | None = None) -> None:
        """To ``channel``'s subscribers (on every gateway), or to every connected client."""
        await self.app.broadcast(message, channel=channel)

    async def send(self, client_id: str, message: Message | dict[str, Any]) -> bool:
        """To one client of this server; False if it could not take it (gone, or cut off as too slow)."""
        conn = self.connection(client_id)
        if isinstance(message, dict):
            return await conn.send_message(message)
        return await conn.send(message)

    def stats(self) -> dict[str, Any]:
        """This server's counters (``/v1/stats`` has the cluster-wide view)."""
        stats = self.app.local_stats()
        return {name: getattr(stats, name) for name in stats.__struct_fields__} | {"running": self.running}

