"""What the gateway does with one client message: limits, decoding, auth, then the core or an extension.

Every failure is answered with a typed ``error`` carrying the client's ``id`` as ``ref``; nothing a
client sends can crash the gateway or its connection.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from proto.errors import ErrorCode
from proto.gateway import (
    Ack,
    Auth,
    Authenticated,
    ClientMessage,
    ClientPeek,
    Ping,
    Pong,
    Presence,
    PresenceQuery,
    Publish,
    Subscribe,
    Unsubscribe,
    client_decoder,
    client_peek_decoder,
)
from services.gateway.channels import check_channel
from services.gateway.connection import Connection
from services.gateway.errors import (
    AuthenticationFailed,
    BadMessage,
    Forbidden,
    GatewayError,
    MessageTooLarge,
    NotAuthenticated,
    NotSubscribed,
    UnknownMessageType,
)

if TYPE_CHECKING:
    from services.gateway.app import GatewayApp

log = logging.getLogger("raaf.gateway.dispatch")

_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)
_generic_decoder = msgspec.json.Decoder(dict[str, Any])


def _peek(data: bytes) -> ClientPeek:
    try:
        return client_peek_decoder.decode(data)
    except (*_DECODE_ERRORS, ValueError):
        return ClientPeek()


class MessageHandler:
    def __init__(self, gateway: GatewayApp) -> None:
        self.gateway = gateway
        settings = gateway.gateway_settings
        self.max_message_size = settings.max_message_size
        self.hub = gateway.hub
        self.authenticator = gateway.authenticator
        self.counters = gateway.counters
        self.hooks = gateway.hooks
        # Types a client may send without being authenticated.
        self.before_auth = (Auth, Ping)
        # The client union's decoder; tests of an extension may swap in one for a union with their types.
        self.decoder: msgspec.json.Decoder[Any] = client_decoder

    async def handle(self, conn: Connection, data: bytes) -> None:
        """One WebSocket text or binary frame from ``conn``."""
        self.counters.messages_received += 1
        now = time.monotonic()
        conn.last_active = now
        ref: str | None = None
        try:
            if len(data) > self.max_message_size:
                ref = _peek(data).id
                raise MessageTooLarge(len(data), self.max_message_size)
            try:
                conn.take_rate_token(now)
                data.decode()  # text frames must be UTF-8, and every string we forward must be too
                message = self.decoder.decode(data)
            except GatewayError:
                ref = _peek(data).id
                raise
            except _DECODE_ERRORS as exc:
                peek = _peek(data)
                ref = peek.id
                await self._undecodable(conn, data, peek, exc)
                return
            ref = message.id
            await self.dispatch(conn, message)
        except GatewayError as exc:
            await conn.send_error(exc.code, exc.message, ref, exc.details or None)
            if self.hooks.error:
                await self.hooks.fire_error(conn, exc)
        except Exception as exc:
            log.exception("error handling a message from %s", conn.id)
            await conn.send_error(ErrorCode.INTERNAL, "internal error", ref)
            await self.hooks.fire_error(conn, exc)

    async def _undecodable(self, conn: Connection, data: bytes, peek: ClientPeek, exc: Exception) -> None:
        """Not one of our types: an application message for the hooks, or an error."""
        if peek.type is not None and peek.type not in self.gateway.client_types:
            if not self.hooks.message:
                raise UnknownMessageType(peek.type)
            try:
                message = _generic_decoder.decode(data)
            except _DECODE_ERRORS as inner:
                raise BadMessage(str(inner)) from None
            await self._require_auth(conn, None)
            await self.hooks.fire_message(conn, message)
            return
        if peek.type is None and isinstance(exc, msgspec.ValidationError) and "type" in str(exc):
            raise UnknownMessageType(None)
        raise BadMessage(str(exc))

    async def _require_auth(self, conn: Connection, message: ClientMessage | None) -> None:
        if (self.authenticator.required and conn.identity.subject is None
                and not isinstance(message, self.before_auth)):
            raise NotAuthenticated()

    async def dispatch(self, conn: Connection, message: ClientMessage) -> None:
        await self._require_auth(conn, message)
        match message:
            case Subscribe():
                await self.subscribe(conn, message)
            case Publish():
                await self.publish(conn, message)
            case Unsubscribe():
                name = check_channel(message.channel)
                if not await self.hub.leave(conn, name):
                    raise NotSubscribed(name)
                self._ack(conn, message.id)
            case Ping():
                conn.send_nowait(Pong(ref=message.id, at=time.time()))
            case PresenceQuery():
                name = self._allowed_channel(conn, message.channel)
                members = await self.gateway.cluster.presence(name)
                conn.send_nowait(Presence(ref=message.id, channel=name, members=members))
            case Auth():
                await self.auth(conn, message)
            case _:
                for extension in self.gateway.extensions:
                    if await extension.handle(conn, message):
                        return
                raise UnknownMessageType(str(message.__struct_config__.tag))

    async def subscribe(self, conn: Connection, message: Subscribe) -> None:
        name = self._allowed_channel(conn, message.channel)
        if conn.channels is None or name not in conn.channels:
            conn.check_subscription_room()
            await self.hub.join(conn, name, presence=message.presence, info=message.info)
        self._ack(conn, message.id)

    async def publish(self, conn: Connection, message: Publish) -> None:
        name = self._allowed_channel(conn, message.channel)
        await self.hub.publish(name, message.data, conn)
        self._ack(conn, message.id)

    async def auth(self, conn: Connection, message: Auth) -> None:
        identity = self.authenticator.verify(message.token)
        current = conn.identity.subject
        if current is not None and identity.subject != current:
            raise AuthenticationFailed("a connection keeps its subject; reconnect to change user")
        conn.identity = identity
        for name in list(conn.channels or ()):
            if not identity.may("channel", name):  # a fresh token may grant less than the last one
                await self.hub.leave(conn, name)
        conn.send_nowait(Authenticated(ref=message.id, subject=identity.subject, roles=list(identity.roles),
                                       expires_at=identity.expires_at))

    def _allowed_channel(self, conn: Connection, channel: str) -> str:
        name = check_channel(channel)
        if not conn.identity.may("channel", name):
            raise Forbidden("channel", name)
        return name

    @staticmethod
    def _ack(conn: Connection, ref: str | None) -> None:
        if ref is not None:
            conn.send_nowait(Ack(ref=ref))
