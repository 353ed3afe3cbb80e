"""Stream processors the agent-runner loads in the tests, by name (``RAAF_STREAM_PROCESSOR=MODULE:CLASS``)."""

from __future__ import annotations

from typing import Any

import raaf


class Redactor(raaf.StreamProcessor):
    """Replaces the word ``secret`` (the model sends it whole: the mock streams word by word)."""

    def process_chunk(self, chunk: Any, stream_id: str) -> dict[str, Any] | None:
        processed = super().process_chunk(chunk, stream_id)
        if processed is not None and isinstance(processed.get("content"), str):
            processed["content"] = processed["content"].replace("secret", "******")
        return processed


class Exploding(raaf.StreamProcessor):
    """Fails on every chunk: the run must fail rather than publish unprocessed text."""

    def process_chunk(self, chunk: Any, stream_id: str) -> dict[str, Any] | None:
        raise RuntimeError("boom")


class NotAProcessor:
    pass
