"""Advanced Usage / Custom Stream Processor: a chunk pipeline with filters, metadata and error handling.

The same class can run inside the agent-runner for every client: RAAF_STREAM_PROCESSOR=module:CustomStreamProcessor.
"""

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import raaf

log = logging.getLogger("custom_stream_processor")


class CustomStreamProcessor(raaf.StreamProcessor):
    def process_chunk(self, chunk: Any, stream_id: str) -> dict[str, Any] | None:
        # Apply the base processing: the chunk as a dict, then the filters given, in order
        processed = super().process_chunk(chunk, stream_id)
        if processed is None:
            return None
        # Add metadata
        processed["processed_at"] = datetime.now(UTC).isoformat()
        processed["stream_id"] = stream_id
        processed["processor"] = type(self).__name__
        return processed

    def handle_error(self, error: BaseException, stream_id: str) -> dict[str, Any] | None:
        # Custom error handling: log, then let the base class decide (it re-raises)
        log.error("Stream processing error in %s: %s", stream_id, error)
        return super().handle_error(error, stream_id)


# Use custom processor
processor = CustomStreamProcessor(
    chunk_size=512,
    filters=[
        lambda chunk: {**chunk, "filtered": True},
        lambda chunk: {**chunk, "timestamp": int(datetime.now(UTC).timestamp())},
    ],
)


async def main() -> None:
    async with raaf.Runner("assistant") as runner:
        # Plug it into a run stream (or: processor.process(runner.run(..., stream=True)))
        text = ""
        async for chunk in runner.run("Process me", stream=True, processor=processor):
            if chunk["type"] == "run_text_delta":
                text += chunk["content"]
                keys = sorted(set(chunk) - {"seq", "run_id", "tool_calls"})
        print(f"text: {text}")
        print(f"keys of a processed chunk: {keys}")
        stats = processor.stats()
        print(f"chunk_size={stats['chunk_size']} filters={stats['filters']} errors={stats['errors']}")

    # chunk_size cuts long text after processing
    small = CustomStreamProcessor(chunk_size=4)
    print([piece["content"] for piece in await small.apply("abcdefghij", "local")])


asyncio.run(main())
