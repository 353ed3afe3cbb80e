"""Reading a ``text/event-stream`` body in tests: complete events with their id, name and data."""

from __future__ import annotations

import json
from typing import Any


class SseEvent:
    def __init__(self, id: str | None, event: str | None, data: bytes) -> None:
        self.id = id
        self.event = event
        self.data = data

    def json(self) -> Any:
        return json.loads(self.data)


async def sse_events(response: Any) -> Any:
    """Parse a ``text/event-stream`` body (aiohttp response) into complete events; comments are skipped."""
    event_id: str | None = None
    event: str | None = None
    data: list[bytes] = []
    async for line in response.content:
        line = line.rstrip(b"\r\n")
        if not line:
            if data:
                yield SseEvent(event_id, event, b"\n".join(data))
            event_id, event, data = None, None, []
        elif line.startswith(b":"):
            continue
        else:
            field, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if field == b"id":
                event_id = value.decode()
            elif field == b"event":
                event = value.decode()
            elif field == b"data":
                data.append(value)
