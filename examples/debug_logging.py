"""Monitoring and Debugging / Debug Logging: debug logs per category, JSON lines, and a logging processor."""

import asyncio
import json
import logging
import sys
from typing import Any

import raaf


class JsonFormatter(logging.Formatter):
    """log_format = :json — one JSON object per line (the services log the same way: LOG_FORMAT=json)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry)


# Enable debug logging for the streaming categories (raaf's loggers are named raaf.<area>)
handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(JsonFormatter())
for category in ("raaf.stream_processor", "raaf.client", "raaf.jobs", "debug.streaming"):
    logger = logging.getLogger(category)
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
log = logging.getLogger("debug.streaming")


# Log streaming events
class DebugStreamProcessor(raaf.StreamProcessor):
    def process_chunk(self, chunk: Any, stream_id: str) -> dict[str, Any] | None:
        processed = super().process_chunk(chunk, stream_id)
        if processed is not None and processed["type"] == "run_text_delta":
            log.debug("Processing chunk", extra={"fields": {
                "chunk_size": len(processed["content"] or ""), "chunk_type": processed["type"]}})
        return processed


async def main() -> None:
    async with raaf.Runner("assistant") as runner:
        async for _ in runner.run("Debug me", stream=True, processor=DebugStreamProcessor()):
            pass


asyncio.run(main())
