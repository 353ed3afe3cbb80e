"""The chat service's seed variables (the seed's ``config.chat`` as ``CHAT_*``), shared with ``raaf.configure``."""

from __future__ import annotations

from shared.service.settings import Setting

MAX_ROOMS = Setting("CHAT_MAX_ROOMS", 100, min=1)
MAX_PARTICIPANTS_PER_ROOM = Setting("CHAT_MAX_PARTICIPANTS_PER_ROOM", 50, min=1)
MESSAGE_HISTORY_SIZE = Setting("CHAT_MESSAGE_HISTORY_SIZE", 500, min=1, max=100_000)  # also the feed's cap
ENABLE_TYPING_INDICATORS = Setting("CHAT_ENABLE_TYPING_INDICATORS", True)
MAX_MESSAGE_LENGTH = Setting("CHAT_MAX_MESSAGE_LENGTH", 2000, min=1, max=1_000_000)  # characters
RATE_LIMIT = Setting("CHAT_RATE_LIMIT", 60, min=1)  # messages per minute per user, across rooms
