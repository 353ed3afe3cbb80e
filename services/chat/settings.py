"""Chat settings from the environment (the seed's ``config.chat`` keys as ``CHAT_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import Env, RuntimeSettings


@dataclass(frozen=True, kw_only=True)
class ChatSettings:
    runtime: RuntimeSettings
    max_rooms: int = 100
    max_participants_per_room: int = 50
    message_history_size: int = 500
    enable_typing_indicators: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ChatSettings:
        env = Env(environ)
        return cls(
            runtime=RuntimeSettings.from_env(env, default_http_port=9102),
            max_rooms=env.integer("CHAT_MAX_ROOMS", cls.max_rooms, min=1),
            max_participants_per_room=env.integer("CHAT_MAX_PARTICIPANTS_PER_ROOM", cls.max_participants_per_room,
                                              min=1),
            message_history_size=env.integer("CHAT_MESSAGE_HISTORY_SIZE", cls.message_history_size, min=0),
            enable_typing_indicators=env.boolean("CHAT_ENABLE_TYPING_INDICATORS", cls.enable_typing_indicators),
        )
