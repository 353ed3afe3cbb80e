"""What the gateway does with one client message: limits, decoding, auth, then its handler from the table.

Every failure is answered with a typed ``error`` carrying the client's ``id`` as ``ref``; nothing a
client sends can crash the gateway or its connection.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec

from proto.base import ClientRequest
from proto.errors import ErrorCode
from proto.gateway import Auth, ClientPeek, Ping, client_peek_decoder
from services.gateway.auth import Authenticator
from services.gateway.connection import Connection
from services.gateway.errors import (
    bad_message,
    forbidden,
    message_too_large,
    not_authenticated,
    unknown_message_type,
)
from services.gateway.hooks import GatewayHooks
from services.gateway.metrics import GatewayCounters
from services.gateway.routing import MessageTable
from shared import access
from shared.errors import StreamingError
from shared.json_depth import DEFAULT_MAX_DEPTH, JsonTooDeepError, check_json_depth

log = logging.getLogger("raaf.gateway.dispatch")

_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)
_generic_decoder = msgspec.json.Decoder(dict[str, Any])


def _peek(data: bytes) -> ClientPeek:
    try:
        return client_peek_decoder.decode(data)
    except (*_DECODE_ERRORS, ValueError, RecursionError):
        return ClientPeek()


class MessageHandler:
    def __init__(self, table: MessageTable, *, max_message_size: int, authenticator: Authenticator,
                 counters: GatewayCounters, hooks: GatewayHooks, max_json_depth: int = DEFAULT_MAX_DEPTH,
                 access_table: access.AccessTable = access.DEFAULT_TABLE) -> None:
        self.table = table
        self.access = access_table
        self.max_message_size = max_message_size
        self.max_json_depth = max_json_depth
        self.authenticator = authenticator
        self.counters = counters
        self.hooks = hooks
        # Types a client may send without being authenticated.
        self.before_auth = (Auth, Ping)
        self.decoder = table.decoder

    async def handle(self, conn: Connection, data: bytes) -> None:
        """One WebSocket text or binary frame from ``conn``."""
        self.counters.messages_received += 1
        now = time.monotonic()
        conn.last_active = now
        ref: str | None = None
        try:
            if len(data) > self.max_message_size:
                ref = _peek(data).id
                raise message_too_large(len(data), self.max_message_size)
            try:
                conn.take_rate_token(now)
                data.decode()  # text frames must be UTF-8, and every string we forward must be too
                check_json_depth(data, self.max_json_depth)  # before any decoder recurses into it
                message = self.decoder.decode(data)
            except JsonTooDeepError as exc:
                raise bad_message(exc.message) from None  # no ref: peeking would decode the whole depth
            except StreamingError:
                ref = _peek(data).id
                raise
            except _DECODE_ERRORS as exc:
                peek = _peek(data)
                ref = peek.id
                await self._undecodable(conn, data, peek, exc)
                return
            ref = message.id
            await self.dispatch(conn, message)
        except StreamingError as exc:  # the gateway's own errors and the access module's
            await conn.send_error(exc.code, exc.message, ref, exc.details or None)
            if self.hooks.error:
                await self.hooks.fire_error(conn, exc)
        except Exception as exc:
            log.exception("error handling a message from %s", conn.id)
            await conn.send_error(ErrorCode.INTERNAL, "internal error", ref)
            await self.hooks.fire_error(conn, exc)

    async def _undecodable(self, conn: Connection, data: bytes, peek: ClientPeek, exc: Exception) -> None:
        """Not one of our types: an application message for the hooks, or an error."""
        if peek.type is not None and peek.type not in self.table.tags:
            if not self.hooks.message:
                raise unknown_message_type(peek.type)
            try:
                message = _generic_decoder.decode(data)
            except _DECODE_ERRORS as inner:
                raise bad_message(str(inner)) from None
            await self._require_auth(conn, None)
            await self.hooks.fire_message(conn, message)
            return
        if peek.type is None and isinstance(exc, msgspec.ValidationError) and "type" in str(exc):
            raise unknown_message_type(None)
        raise bad_message(str(exc))

    async def _require_auth(self, conn: Connection, message: ClientRequest | None) -> None:
        if (self.authenticator.required and conn.identity.subject is None
                and not isinstance(message, self.before_auth)):
            raise not_authenticated()

    async def dispatch(self, conn: Connection, message: ClientRequest) -> None:
        await self._require_auth(conn, message)
        decision = self.access.message(str(type(message).__struct_config__.tag))
        if decision is None:  # every message type declares its rule in shared.access; none: refused
            raise forbidden("message", str(type(message).__struct_config__.tag))
        if decision.rule is access.Rule.ADMIN:
            access.require_admin(conn.identity, decision.kind, decision.action)
        await self.table.handler(message)(conn, message)
