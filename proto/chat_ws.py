"""Chat on the gateway's WebSocket: what clients send about rooms, and what the gateway pushes back."""

from __future__ import annotations

from typing import Annotated

import msgspec

from proto.base import ClientRequest, Message
from proto.chat import (
    AgentAdded,
    BusyPolicy,
    FeedEvent,
    FeedMessage,
    ParticipantJoined,
    ParticipantLeft,
    RoomClosed,
    RoomInfo,
    RoomSummary,
    TypingStarted,
    TypingStopped,
)

RoomName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]

# ---- client -> gateway (each answered by its reply, ``ack`` or a typed ``error`` with ``ref`` = ``id``) ------


class ChatListRooms(ClientRequest, frozen=True, kw_only=True, tag="chat_rooms"):
    """The rooms this identity may use; answered by ``chat_rooms``."""


class ChatCreateRoom(ClientRequest, frozen=True, kw_only=True, tag="chat_create_room"):
    """Create a room (its name must be one the identity may use); answered by ``chat_room``."""

    room: RoomName
    agent: str | None = None  # an agent the runners serve; None: the chat's default agent
    max_participants: int | None = None
    message_history: int | None = None
    restricted: bool = False
    busy_policy: BusyPolicy | None = None
    max_message_length: int | None = None


class ChatJoin(ClientRequest, frozen=True, kw_only=True, tag="chat_join"):
    """Join a room: answered by ``chat_joined``, then its history and live events as ``chat_event``."""

    room: RoomName


class ChatLeave(ClientRequest, frozen=True, kw_only=True, tag="chat_leave"):
    room: RoomName


class ChatSend(ClientRequest, frozen=True, kw_only=True, tag="chat_send"):
    """Post a message (answered by ``chat_sent``); it comes back to everyone in the room as a ``chat_event``."""

    room: RoomName
    text: str
    client_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None  # a retry with it is stored once


class ChatTyping(ClientRequest, frozen=True, kw_only=True, tag="chat_typing"):
    """Start (or refresh) or stop this user's typing indicator; it expires on its own after a while."""

    room: RoomName
    typing: bool = True


class ChatHandoff(ClientRequest, frozen=True, kw_only=True, tag="chat_handoff"):
    """Ask to move the room's conversation to another of its agents; answered by ``chat_room``."""

    room: RoomName
    agent: Annotated[str, msgspec.Meta(min_length=1, max_length=48)]
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class ChatGetHistory(ClientRequest, frozen=True, kw_only=True, tag="chat_history"):
    """The room's last messages (at most its ``message_history``); answered by ``chat_history``."""

    room: RoomName
    limit: int | None = None


ChatClientMessage = (
    ChatListRooms | ChatCreateRoom | ChatJoin | ChatLeave | ChatSend | ChatTyping | ChatHandoff | ChatGetHistory
)

# ---- gateway -> client --------------------------------------------------------------------------------------


class ChatRooms(Message, frozen=True, kw_only=True, omit_defaults=False, tag="chat_rooms"):
    ref: str | None = None
    rooms: list[RoomSummary]


class ChatRoom(Message, frozen=True, kw_only=True, omit_defaults=False, tag="chat_room"):
    ref: str | None = None
    room: RoomInfo


class ChatJoined(Message, frozen=True, kw_only=True, omit_defaults=False, tag="chat_joined"):
    """You are in the room as ``user``; its history (``chat_event`` with ``history: true``) follows."""

    ref: str | None = None
    room: RoomInfo
    user: str
    typing: list[str] = []


class ChatSent(Message, frozen=True, kw_only=True, omit_defaults=False, tag="chat_sent"):
    ref: str | None = None
    room: str
    message_id: str
    count: int
    queued: bool = False
    duplicate: bool = False


class ChatHistory(Message, frozen=True, kw_only=True, omit_defaults=False, tag="chat_history"):
    ref: str | None = None
    room: str
    messages: list[FeedMessage]


# What a room pushes to its participants: its feed (one order for everyone), presence and typing.
ChatEventBody = (
    FeedEvent | ParticipantJoined | ParticipantLeft | AgentAdded | RoomClosed | TypingStarted | TypingStopped
)


class ChatEvent(Message, frozen=True, kw_only=True, omit_defaults=False, tag="chat_event"):
    """One event of a joined room. Feed events (messages, answers, handoffs) carry ``seq``: their order, the
    same for every participant; presence and typing notices carry none. ``history`` marks messages from
    before the join."""

    room: str
    room_id: str
    seq: int | None = None
    history: bool = False
    event: ChatEventBody


ChatServerMessage = ChatRooms | ChatRoom | ChatJoined | ChatSent | ChatHistory | ChatEvent
