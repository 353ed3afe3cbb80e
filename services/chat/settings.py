"""Chat settings from the environment (the seed's ``config.chat`` keys as ``CHAT_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from proto.chat import BusyPolicy
from proto.runs import is_agent_name
from shared.chat.settings import (
    ENABLE_TYPING_INDICATORS,
    MAX_MESSAGE_LENGTH,
    MAX_PARTICIPANTS_PER_ROOM,
    MAX_ROOMS,
    MESSAGE_HISTORY_SIZE,
    RATE_LIMIT,
)
from shared.errors import invalid_setting
from shared.service.settings import Env, RuntimeSettings


@dataclass(frozen=True, kw_only=True)
class ChatSettings:
    runtime: RuntimeSettings
    max_rooms: int = MAX_ROOMS.default
    max_participants_per_room: int = MAX_PARTICIPANTS_PER_ROOM.default
    message_history_size: int = MESSAGE_HISTORY_SIZE.default  # also the feed stream's per-subject cap
    enable_typing_indicators: bool = ENABLE_TYPING_INDICATORS.default
    # The seed's ``chat.configure`` block.
    enable_handoffs: bool = True
    enable_message_history: bool = True
    max_message_length: int = MAX_MESSAGE_LENGTH.default  # characters
    rate_limit: int = RATE_LIMIT.default  # messages per minute per user, across rooms
    # Beyond the seed.
    typing_timeout: float = 6.0  # seconds a typing indicator lives without a refresh
    busy_policy: BusyPolicy = BusyPolicy.ENQUEUE  # a room's default
    max_queued_messages: int = 20  # per room, messages waiting for an answer (busy policy enqueue)
    max_agents_per_room: int = 10
    max_sessions_per_user: int = 10  # sessions (tabs) one user may join a room from
    max_room_name_length: int = 100
    max_command_bytes: int = 256 * 1024
    max_inflight_commands: int = 256  # commands handled at once by one replica; more get ``overloaded``
    default_agent: str = "assistant"  # a room's primary agent when the creator names none
    answer_timeout: float = 120.0  # seconds an agent may take to answer
    context_messages: int = 50  # earlier conversation messages sent with each run
    snapshot_every: int = 200  # room log events between snapshots (compaction)
    presence_check_interval: float = 15.0  # seconds between checks for sessions of vanished gateways; 0: off
    relay_adopt_after: float = 10.0  # seconds an answer may show no progress before another replica relays it

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ChatSettings:
        env = Env(environ)
        default_agent = env.string("CHAT_DEFAULT_AGENT", cls.default_agent)
        if not is_agent_name(default_agent):
            raise invalid_setting("CHAT_DEFAULT_AGENT", default_agent, "expected 1-48 letters, digits, '_' or '-'")
        return cls(
            runtime=RuntimeSettings.from_env(env, default_http_port=9102),
            max_rooms=MAX_ROOMS.read(env),
            max_participants_per_room=MAX_PARTICIPANTS_PER_ROOM.read(env),
            message_history_size=MESSAGE_HISTORY_SIZE.read(env),
            enable_typing_indicators=ENABLE_TYPING_INDICATORS.read(env),
            enable_handoffs=env.boolean("CHAT_ENABLE_HANDOFFS", cls.enable_handoffs),
            enable_message_history=env.boolean("CHAT_ENABLE_MESSAGE_HISTORY", cls.enable_message_history),
            max_message_length=MAX_MESSAGE_LENGTH.read(env),
            rate_limit=RATE_LIMIT.read(env),
            typing_timeout=env.number("CHAT_TYPING_TIMEOUT", cls.typing_timeout, min=0.1, max=3600),
            busy_policy=BusyPolicy(env.choice("CHAT_BUSY_POLICY", cls.busy_policy.value,
                                              tuple(p.value for p in BusyPolicy))),
            max_queued_messages=env.integer("CHAT_MAX_QUEUED_MESSAGES", cls.max_queued_messages, min=1),
            max_agents_per_room=env.integer("CHAT_MAX_AGENTS_PER_ROOM", cls.max_agents_per_room, min=1, max=100),
            max_sessions_per_user=env.integer("CHAT_MAX_SESSIONS_PER_USER", cls.max_sessions_per_user, min=1),
            max_room_name_length=env.integer("CHAT_MAX_ROOM_NAME_LENGTH", cls.max_room_name_length, min=1,
                                             max=1000),
            max_command_bytes=env.integer("CHAT_MAX_COMMAND_BYTES", cls.max_command_bytes, min=1024),
            max_inflight_commands=env.integer("CHAT_MAX_INFLIGHT_COMMANDS", cls.max_inflight_commands, min=1),
            default_agent=default_agent,
            answer_timeout=env.number("CHAT_ANSWER_TIMEOUT", cls.answer_timeout, min=1, max=86_400),
            context_messages=env.integer("CHAT_CONTEXT_MESSAGES", cls.context_messages, min=0, max=10_000),
            snapshot_every=env.integer("CHAT_SNAPSHOT_EVERY", cls.snapshot_every, min=2),
            presence_check_interval=env.number("CHAT_PRESENCE_CHECK_INTERVAL", cls.presence_check_interval, min=0),
            relay_adopt_after=env.number("CHAT_RELAY_ADOPT_AFTER", cls.relay_adopt_after, min=0.1, max=3600),
        )
