"""``StreamProcessor``: the seed's chunk pipeline; subclass it, then plug it into a run stream (client or runner).

::

    class Redactor(raaf.StreamProcessor):
        def process_chunk(self, chunk, stream_id):
            processed = super().process_chunk(chunk, stream_id)
            if processed is not None and processed["content"]:
                processed["content"] = processed["content"].replace("secret", "******")
            return processed

    async for processed in Redactor(chunk_size=512).process(runner.run("Hi", stream=True)):
        print(processed["content"] or "", end="")

Sizes follow the seed's ``streaming`` section: ``chunk_size`` is the most text (characters) one processed
chunk carries (a chunk is processed whole, then text longer than that is cut into several chunks, in order);
``buffer_size`` is the most text a processor keeps per stream as context (``window(stream_id)``, the stream's
latest processed text), so memory per stream is bounded whatever a run's length. Both default to
``raaf.configuration().streaming``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from shared.errors import BadRequestError, ConfigurationError
from shared.runs import settings as runs_settings
from shared.runs.chunks import RunChunk
from shared.service.overrides import configured

log = logging.getLogger("raaf.stream_processor")

ProcessedChunk = dict[str, Any]
ChunkFilter = Callable[[ProcessedChunk], ProcessedChunk | None]
ChunkLike = RunChunk | Mapping[str, Any] | str


class StreamProcessor:
    """A chunk pipeline: ``process_chunk`` turns each chunk into a dict (``type``, ``seq``, ``run_id``,
    ``content``, ``tool_calls``), ``filters`` run on it in order (a filter returning None drops the chunk), and
    ``handle_error`` decides what an error becomes (re-raise, by default). Subclass and call ``super()``.

    ``process_chunk`` may be a coroutine function in a subclass; ``process`` awaits it either way.
    """

    def __init__(self, *, chunk_size: int | None = None, buffer_size: int | None = None,
                 filters: Iterable[ChunkFilter] = ()) -> None:
        self.chunk_size = configured(runs_settings.CHUNK_SIZE) if chunk_size is None else chunk_size
        self.buffer_size = configured(runs_settings.BUFFER_SIZE) if buffer_size is None else buffer_size
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise ConfigurationError(f"chunk_size must be a whole number >= 1, not {chunk_size!r}")
        if isinstance(self.buffer_size, bool) or not isinstance(self.buffer_size, int) or self.buffer_size < 0:
            raise ConfigurationError(f"buffer_size must be a whole number >= 0, not {buffer_size!r}")
        self.filters: list[ChunkFilter] = list(filters)
        for position, candidate in enumerate(self.filters):
            if not callable(candidate):
                raise ConfigurationError(f"filters[{position}] is {candidate!r}, not a callable")
        self._windows: dict[str, str] = {}
        self.chunks_in = 0
        self.chunks_out = 0
        self.chunks_dropped = 0
        self.errors = 0
        self.characters_out = 0

    # ---- the seed's two hooks ------------------------------------------------------------------------

    def process_chunk(self, chunk: ChunkLike, stream_id: str) -> ProcessedChunk | None:
        """The chunk as a dict, through every filter in order; None drops it."""
        processed: ProcessedChunk | None = as_dict(chunk)
        for chunk_filter in self.filters:
            if processed is None:
                break
            processed = chunk_filter(processed)
        return processed

    def handle_error(self, error: BaseException, stream_id: str) -> ProcessedChunk | None:
        """What an error while processing (or reading) stream ``stream_id`` becomes: return a chunk to emit
        in its place, None to skip, or raise. The default counts it, logs it and raises it again."""
        log.warning("stream %s: %s: %s", stream_id, type(error).__name__, error)
        raise error

    # ---- plugging in -------------------------------------------------------------------------------------

    async def process(self, chunks: AsyncIterable[ChunkLike], stream_id: str | None = None
                      ) -> AsyncIterator[ProcessedChunk]:
        """Processed chunks of a stream (e.g. ``runner.run(..., stream=True)``); ``stream_id`` defaults to the
        chunks' ``run_id``. An error of the stream itself also goes to ``handle_error``."""
        current = stream_id
        iterator = aiter(chunks)
        try:
            while True:
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    return
                except Exception as exc:
                    replacement = self._on_error(exc, current or "")
                    if replacement is not None:
                        yield replacement
                    return
                if current is None and isinstance(chunk, RunChunk):
                    current = chunk.run_id
                for processed in await self.apply(chunk, current or ""):
                    yield processed
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()
            self.end_stream(current or "")

    async def apply(self, chunk: ChunkLike, stream_id: str) -> list[ProcessedChunk]:
        """One incoming chunk as the processed chunks it becomes: processed whole (filters see all of its
        text), then cut into several when its text exceeds ``chunk_size``."""
        self.chunks_in += 1
        try:
            result = self.process_chunk(as_dict(chunk), stream_id)
            processed = await result if inspect.isawaitable(result) else result
            if processed is not None and not isinstance(processed, dict):
                raise BadRequestError(f"{type(self).__name__}.process_chunk returned {type(processed).__name__}, "
                                      "not a dict or None")
        except Exception as exc:
            processed = self._on_error(exc, stream_id)
        if processed is None:
            self.chunks_dropped += 1
            return []
        out = self.split(processed)
        for piece in out:
            content = piece.get("content")
            if isinstance(content, str):
                self.characters_out += len(content)
                self._remember(stream_id, content)
        self.chunks_out += len(out)
        return out

    def split(self, chunk: ProcessedChunk) -> list[ProcessedChunk]:
        """A chunk whose text is longer than ``chunk_size`` as several chunks of at most that much text."""
        content = chunk.get("content")
        if not isinstance(content, str) or len(content) <= self.chunk_size:
            return [chunk]
        size = self.chunk_size
        return [{**chunk, "content": content[i:i + size], "part": n}
                for n, i in enumerate(range(0, len(content), size))]

    def window(self, stream_id: str) -> str:
        """The latest processed text of a stream, at most ``buffer_size`` characters."""
        return self._windows.get(stream_id, "")

    def end_stream(self, stream_id: str) -> None:
        """Forget a finished stream's context."""
        self._windows.pop(stream_id, None)

    def stats(self) -> dict[str, Any]:
        return {"chunks_in": self.chunks_in, "chunks_out": self.chunks_out, "chunks_dropped": self.chunks_dropped,
                "errors": self.errors, "characters_out": self.characters_out, "active_streams": len(self._windows),
                "chunk_size": self.chunk_size, "buffer_size": self.buffer_size, "filters": len(self.filters)}

    def _remember(self, stream_id: str, content: str) -> None:
        if self.buffer_size == 0:
            return
        self._windows[stream_id] = (self._windows.get(stream_id, "") + content)[-self.buffer_size:]

    def _on_error(self, error: Exception, stream_id: str) -> ProcessedChunk | None:
        self.errors += 1
        replacement = self.handle_error(error, stream_id)
        if replacement is not None and not isinstance(replacement, dict):
            raise BadRequestError(f"{type(self).__name__}.handle_error returned {type(replacement).__name__}, "
                                  "not a dict or None")
        return replacement


def as_dict(chunk: ChunkLike) -> ProcessedChunk:
    """The seed's hash view of a chunk: a ``RunChunk``, a mapping (copied) or a bare string of text."""
    if isinstance(chunk, RunChunk):
        return {"type": chunk.type, "seq": chunk.seq, "run_id": chunk.run_id, "content": chunk.content,
                "tool_calls": None if chunk.tool_calls is None else [
                    {"id": c.id, "name": c.name, "arguments": c.arguments, "output": c.output,
                     "is_error": c.is_error} for c in chunk.tool_calls]}
    if isinstance(chunk, str):
        return {"type": "text", "seq": None, "run_id": None, "content": chunk, "tool_calls": None}
    if isinstance(chunk, Mapping):
        return dict(chunk)
    raise BadRequestError(f"a chunk must be a RunChunk, a mapping or a string, not {type(chunk).__name__}")


def load_processor(spec: str, *, chunk_size: int | None = None, buffer_size: int | None = None
                   ) -> StreamProcessor:
    """``"package.module:ClassName"`` as an instance (``RAAF_STREAM_PROCESSOR``); ``ConfigurationError`` if
    it cannot be imported, is not a ``StreamProcessor`` subclass, or cannot be built with the sizes."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(f"stream processor {spec!r} must look like 'package.module:ClassName'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r} ({exc})") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigurationError(f"{module_name!r} has no {attribute!r}")
        target = getattr(target, part)
    if not (isinstance(target, type) and issubclass(target, StreamProcessor)):
        raise ConfigurationError(f"{spec!r} is not a subclass of raaf.StreamProcessor")
    try:
        built = target(chunk_size=chunk_size, buffer_size=buffer_size)
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConfigurationError(f"cannot build {spec!r}: {type(exc).__name__}: {exc}") from None
    assert isinstance(built, StreamProcessor)
    return built

