"""The gateway's chat extension: rooms over the WebSocket, backed by the chat service over NATS.

A connection joins a room as its authenticated subject (``guest-<connection id>`` when anonymous), with the
connection as its session. It then follows the room's feed from the chat's event store (history first, then
live: one order for everyone), the room's log (presence) and its typing notices, through subscriptions this
gateway shares among the room's members here (``services.gateway.rooms``). Restricted rooms admit identities
whose token grants them (the ``rooms`` claim) or that the room allows by name.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from proto.base import ClientRequest, Message
from proto.chat_ws import (
    ChatCreateRoom,
    ChatGetHistory,
    ChatHandoff,
    ChatHistory,
    ChatJoin,
    ChatJoined,
    ChatLeave,
    ChatListRooms,
    ChatRoom,
    ChatRooms,
    ChatSend,
    ChatSent,
    ChatTyping,
)
from proto.gateway import Ack, server_encoder
from services.gateway.connection import Connection
from services.gateway.context import GatewayContext
from services.gateway.errors import forbidden
from services.gateway.extension import Handler, Handlers
from services.gateway.quota import IdentityRate
from services.gateway.responses import error_response
from services.gateway.rooms import RoomHub
from shared import access
from shared.clients.chat import ChatClient
from shared.errors import StreamingError
from shared.identity import Identity
from shared.service.settings import Env
from shared.tracing import traced

log = logging.getLogger("raaf.gateway.chat")

ROOMS_PAGE = Path(__file__).parent / "static" / "rooms.html"
_REQUEST_TIMEOUT = 5.0  # seconds a chat command may take before the client gets ``unavailable``


@dataclass
class JoinedRoom:
    name: str
    room_id: str
    user: str


def user_of(conn: Connection) -> str:
    return conn.identity.subject or f"guest-{conn.id}"


def granted(identity: Identity, room: str) -> bool:
    """The token grants this room explicitly (a ``rooms`` claim): what a restricted room asks for."""
    return "room" in identity.grants and identity.may("room", room)


class ChatExtension:
    name = "chat"

    def __init__(self, ctx: GatewayContext, *, environ: Mapping[str, str] | None = None) -> None:
        self.ctx = ctx
        per_minute = Env(environ).integer("GATEWAY_ROOMS_PER_MINUTE", 10, min=0, max=1_000_000)
        self.room_rate = IdentityRate(per_minute, what="rooms", setting="GATEWAY_ROOMS_PER_MINUTE")
        self._client: ChatClient | None = None
        self._hub: RoomHub | None = None
        self.joined: dict[str, dict[str, JoinedRoom]] = {}  # connection id -> room name -> room
        handlers: dict[type[ClientRequest], Handler] = {
            ChatListRooms: self._list_rooms_ws, ChatCreateRoom: self._create_room, ChatJoin: self._join,
            ChatLeave: self._leave_ws, ChatSend: traced("raaf.gateway", "chat_send")(self._send),
            ChatTyping: self._typing, ChatHandoff: self._handoff,
            ChatGetHistory: self._history,
        }
        self.handles: Handlers = {t: _answering_chat_errors(h) for t, h in handlers.items()}

    @property
    def client(self) -> ChatClient:
        assert self._client is not None, "chat extension not started"
        return self._client

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/rooms", self._rooms_page), web.get("/v1/chat/rooms", self._list_rooms),
                web.get("/v1/chat/stats", self._stats)]

    @property
    def hub(self) -> RoomHub:
        assert self._hub is not None, "chat extension not started"
        return self._hub

    async def start(self) -> None:
        self._client = ChatClient(self.ctx.nc, prefix=self.ctx.runtime.prefix, timeout=_REQUEST_TIMEOUT)
        self._hub = RoomHub(self._client, self._room_closed)

    async def stop(self) -> None:
        self.joined.clear()
        if self._hub is not None:
            await self._hub.close()

    async def on_reauth(self, conn: Connection) -> None:
        for name in list(self.joined.get(conn.id, {})):
            if not conn.identity.may("room", name):
                await self._leave(conn, name, "access revoked")

    # ---- client messages ---------------------------------------------------------------------------

    async def _list_rooms_ws(self, conn: Connection, message: ChatListRooms) -> None:
        rooms = [r for r in await self.client.rooms() if conn.identity.may("room", r.name)]
        conn.send_nowait(ChatRooms(ref=message.id, rooms=rooms))

    async def _create_room(self, conn: Connection, message: ChatCreateRoom) -> None:
        name, identity = message.room, conn.identity
        self._may(conn, name)
        if message.agent is not None:  # the room's agent answers for everyone in it: the creator must hold its grant
            access.check_agents(identity, message.agent)
        self.room_rate.take(identity)
        info = await self.client.create_room(
            name, agent=message.agent, max_participants=message.max_participants,
            message_history=message.message_history, restricted=message.restricted,
            allowed=[identity.subject] if message.restricted and identity.subject else None,
            busy_policy=message.busy_policy, max_message_length=message.max_message_length,
            by=user_of(conn))
        conn.send_nowait(ChatRoom(ref=message.id, room=info))

    async def _leave_ws(self, conn: Connection, message: ChatLeave) -> None:
        await self._leave(conn, message.room, "left")
        self._ack(conn, message.id)

    async def _send(self, conn: Connection, message: ChatSend) -> None:
        name = message.room
        self._may(conn, name)
        accepted = await self.client.post(name, user_of(conn), conn.id, message.text, client_id=message.client_id)
        conn.send_nowait(ChatSent(ref=message.id, room=name, message_id=accepted.message_id, count=accepted.count,
                                  queued=accepted.queued, duplicate=accepted.duplicate))

    async def _typing(self, conn: Connection, message: ChatTyping) -> None:
        self._may(conn, message.room)
        await self.client.typing(message.room, user_of(conn), conn.id, message.typing)
        self._ack(conn, message.id)

    async def _handoff(self, conn: Connection, message: ChatHandoff) -> None:
        self._may(conn, message.room)
        access.check_grant(conn.identity, "run", message.agent)
        info = await self.client.handoff(message.room, user_of(conn), conn.id, message.agent, reason=message.reason)
        conn.send_nowait(ChatRoom(ref=message.id, room=info))

    async def _history(self, conn: Connection, message: ChatGetHistory) -> None:
        name = message.room
        self._may(conn, name)
        messages = await self.client.history(name, user_of(conn), granted=granted(conn.identity, name),
                                             limit=message.limit)
        conn.send_nowait(ChatHistory(ref=message.id, room=name, messages=messages))

    async def _join(self, conn: Connection, message: ChatJoin) -> None:
        name, user = message.room, user_of(conn)
        self._may(conn, name)
        rooms = self.joined.setdefault(conn.id, {})
        already = name in rooms
        if not already:
            conn.check_subscription_room()  # a room counts as one subscription, however many share it
        joined = await self.client.join(name, user, conn.id, granted=granted(conn.identity, name),
                                        owner=self.ctx.runtime.instance_id)
        reply = ChatJoined(ref=message.id, room=joined.room, user=user, typing=joined.typing)
        if already:
            conn.send_nowait(reply)
            return
        rooms[name] = JoinedRoom(name=name, room_id=joined.room.id, user=user)
        conn.shared_subscriptions += 1
        try:
            # The reply, then the room's history, then everything live: the hub sends them in that order.
            if not await self.hub.join(conn, name, joined, reply) and conn.open:
                self._drop(conn, name)  # the room was deleted meanwhile (a closed connection leaves on disconnect)
        except Exception:
            self._drop(conn, name)
            with contextlib.suppress(StreamingError):
                await self.client.leave(name, user, conn.id, reason="gateway could not follow the room")
            raise

    async def _leave(self, conn: Connection, name: str, reason: str) -> None:
        room = await self._forget(conn, name)
        await self.client.leave(name, room.user if room else user_of(conn), conn.id, reason=reason)

    async def _forget(self, conn: Connection, name: str) -> JoinedRoom | None:
        room = self._drop(conn, name)
        if room is not None:
            await self.hub.leave(conn, room.room_id)
        return room

    def _drop(self, conn: Connection, name: str) -> JoinedRoom | None:
        room = self.joined.get(conn.id, {}).pop(name, None)
        if room is not None:
            conn.shared_subscriptions -= 1
        return room

    def _room_closed(self, conn: Connection, name: str, room_id: str) -> None:
        """The hub saw the room deleted: the connection is in it no more."""
        room = self.joined.get(conn.id, {}).get(name)
        if room is not None and room.room_id == room_id:
            self._drop(conn, name)

    async def on_disconnect(self, conn: Connection) -> None:
        for name, room in (self.joined.pop(conn.id, None) or {}).items():
            conn.shared_subscriptions -= 1
            await self.hub.leave(conn, room.room_id)
            try:
                await self.client.leave(name, room.user, conn.id, reason="disconnected")
            except StreamingError as exc:  # the chat service reaps the session later if it missed this
                log.info("leave of %s after disconnect failed: %s", name, exc)

    def _may(self, conn: Connection, name: str) -> None:
        if not conn.identity.may("room", name):
            raise forbidden("room", name)

    @staticmethod
    def _ack(conn: Connection, ref: str | None) -> None:
        if ref is not None:
            conn.send_nowait(Ack(ref=ref))

    # ---- HTTP ------------------------------------------------------------------------------------------

    async def _rooms_page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(ROOMS_PAGE, headers={"Cache-Control": "no-cache"})

    async def _list_rooms(self, request: web.Request) -> web.Response:
        """``GET /v1/chat/rooms``: the rooms the caller may use."""
        return await self._answer(request, lambda identity: self._visible_rooms(identity))

    async def _visible_rooms(self, identity: Identity) -> Message:
        return ChatRooms(rooms=[r for r in await self.client.rooms() if identity.may("room", r.name)])

    async def _stats(self, request: web.Request) -> web.Response:
        """``GET /v1/chat/stats``: the seed's ``chat.stats``."""
        return await self._answer(request, lambda identity: self.client.stats())

    async def _answer(self, request: web.Request, answer: Callable[[Identity], Awaitable[Message]]
                      ) -> web.Response:
        try:
            body = await answer(self.ctx.authenticator.require(request))
        except StreamingError as exc:
            return error_response(exc)
        return web.Response(body=server_encoder.encode(body), content_type="application/json")


def _answering_chat_errors(handler: Handler) -> Handler:
    """The chat service's typed errors go back to the client as they came, with its kind and attributes."""
    @functools.wraps(handler)
    async def answer(conn: Connection, message: Any) -> None:
        try:
            await handler(conn, message)
        except StreamingError as exc:
            await conn.send_error(exc.code, exc.message, message.id, exc.details or None)

    return answer
