"""The client messages the gateway itself owns: auth, ping, channel subscribe / unsubscribe / publish, presence."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from proto.gateway import (
    Ack,
    Auth,
    Authenticated,
    Ping,
    Pong,
    Presence,
    PresenceQuery,
    Publish,
    Subscribe,
    Unsubscribe,
)
from services.gateway.auth import Authenticator
from services.gateway.channels import ChannelHub, check_channel
from services.gateway.cluster import Cluster
from services.gateway.connection import Connection
from services.gateway.errors import (
    authentication_failed,
    forbidden,
    not_subscribed,
)
from services.gateway.extension import Handlers
from shared.identity import Identity


class CoreMessages:
    """Channels on this gateway's hub, presence across the cluster, and a connection's identity."""

    name = "core"

    def __init__(self, hub: ChannelHub, cluster: Cluster, authenticator: Authenticator,
                 on_reauth: Callable[[Connection], Awaitable[None]] | None = None,
                 set_identity: Callable[[Connection, Identity], None] | None = None) -> None:
        self.hub = hub
        self.cluster = cluster
        self.authenticator = authenticator
        self.on_reauth = on_reauth  # the extensions drop what the new token no longer grants
        self.set_identity = set_identity or _assign  # the registry's, which counts connections per identity
        self.handles: Handlers = {
            Auth: self.auth, Ping: self.ping, Subscribe: self.subscribe, Unsubscribe: self.unsubscribe,
            Publish: self.publish, PresenceQuery: self.presence,
        }

    async def subscribe(self, conn: Connection, message: Subscribe) -> None:
        name = self._allowed_channel(conn, message.channel)
        if conn.channels is None or name not in conn.channels:
            conn.check_subscription_room()
            await self.hub.join(conn, name, presence=message.presence, info=message.info)
        _ack(conn, message.id)

    async def unsubscribe(self, conn: Connection, message: Unsubscribe) -> None:
        name = check_channel(message.channel)
        if not await self.hub.leave(conn, name):
            raise not_subscribed(name)
        _ack(conn, message.id)

    async def publish(self, conn: Connection, message: Publish) -> None:
        name = self._allowed_channel(conn, message.channel)
        await self.hub.publish(name, message.data, conn)
        _ack(conn, message.id)

    async def ping(self, conn: Connection, message: Ping) -> None:
        conn.send_nowait(Pong(ref=message.id, at=time.time()))

    async def presence(self, conn: Connection, message: PresenceQuery) -> None:
        name = self._allowed_channel(conn, message.channel)
        members = await self.cluster.presence(name)
        conn.send_nowait(Presence(ref=message.id, channel=name, members=members))

    async def auth(self, conn: Connection, message: Auth) -> None:
        identity = self.authenticator.verify(message.token)
        current = conn.identity.subject
        if current is not None and identity.subject != current:
            raise authentication_failed("a connection keeps its subject; reconnect to change user")
        self.set_identity(conn, identity)
        for name in list(conn.channels or ()):
            if not identity.may("channel", name):  # a fresh token may grant less than the last one
                await self.hub.leave(conn, name)
        if self.on_reauth is not None:
            await self.on_reauth(conn)
        conn.send_nowait(Authenticated(ref=message.id, subject=identity.subject, roles=list(identity.roles),
                                       expires_at=identity.expires_at))

    @staticmethod
    def _allowed_channel(conn: Connection, channel: str) -> str:
        name = check_channel(channel)
        if not conn.identity.may("channel", name):
            raise forbidden("channel", name)
        return name


def _assign(conn: Connection, identity: Identity) -> None:
    conn.identity = identity


def _ack(conn: Connection, ref: str | None) -> None:
    if ref is not None:
        conn.send_nowait(Ack(ref=ref))
