"""Each posted message's trace context, from the stored message's headers: any replica's answer links to it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Final

from proto.chat import UserMessage
from services.chat.store import StoredEvent
from shared.tracing import TRACING

REMEMBERED: Final = 10_000  # posted messages whose trace context is kept for their answers


class MessageTraces:
    """Message id -> the ``traceparent`` of the command that posted it (while tracing is on).

    Filled from the feed as the fold reads it (the ``traceparent`` header the message was stored with), so a
    replica that restarts or adopts an answer another replica started still links the answer to its message.
    """

    def __init__(self, keep: int = REMEMBERED) -> None:
        self.keep = keep
        self._by_id: OrderedDict[str, str] = OrderedDict()

    def note(self, event: StoredEvent, headers: Mapping[str, str]) -> None:
        """A stored event the fold read: keep a posted message's trace context."""
        if TRACING.on and isinstance(event, UserMessage):
            value = headers.get("traceparent")
            if value:
                self.remember(event.id, value)

    def remember(self, message_id: str, traceparent: str) -> None:
        if not traceparent:
            return
        self._by_id[message_id] = traceparent
        self._by_id.move_to_end(message_id)
        while len(self._by_id) > self.keep:
            self._by_id.popitem(last=False)

    def of(self, message_id: str) -> str | None:
        return self._by_id.get(message_id)
