"""Event history: the JetStream stream that keeps events, and reads of it (the last N, or from a time or sequence)."""

from __future__ import annotations

import builtins
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, DiscardPolicy, StorageType, StreamConfig

from proto.events import Event, read_event
from proto.subjects import Subjects
from shared.errors import ConnectionError, HistoryUnavailableError, TimeoutError
from shared.events.settings import EventSettings

MSG_ID = "Nats-Msg-Id"
_FETCH_BATCH = 256
# Reading the whole filtered history is cheaper than a binary search while it is this small.
_SCAN_ALL_BELOW = 512


def events_stream_config(subjects: Subjects, settings: EventSettings) -> StreamConfig:
    """The stream every event subject is stored in, with the configured limits (oldest events go first)."""
    return StreamConfig(
        name=subjects.stream_name("events"),
        description="RAAF application events (EventEmitter history)",
        subjects=[subjects.events_all],
        max_msgs_per_subject=settings.history_size,
        max_msgs=settings.history_max_msgs,
        max_bytes=settings.history_max_bytes,
        max_age=settings.max_age,
        duplicate_window=min(settings.duplicate_window, settings.max_age),
        max_msg_size=settings.max_event_size,
        storage=StorageType.FILE if settings.storage == "file" else StorageType.MEMORY,
        num_replicas=settings.runtime.jetstream_replicas,
        discard=DiscardPolicy.OLD,
        allow_direct=True,
    )


class EventHistory:
    """Reads the events stream through short-lived, in-memory, no-ack consumers (deleted after each read)."""

    def __init__(self, nc: NATS, js: JetStreamContext, subjects: Subjects, *, timeout: float) -> None:
        self._nc = nc
        self._js = js
        self.stream = subjects.stream_name("events")
        self._name_start = len(subjects.prefix) + len(".events.")
        self._timeout = timeout

    async def last(self, subject: str, limit: int) -> list[Event]:
        """The last ``limit`` stored events on ``subject`` (a NATS filter), oldest first."""
        async with self._errors():
            total = await self._pending(subject, None)
            if total <= limit or total < _SCAN_ALL_BELOW:
                window: deque[Event] = deque(maxlen=limit)
                async for event in self._read(subject, start_seq=None, start_time=None, count=total):
                    window.append(event)
                return list(window)
            start = await self._start_of_last(subject, limit)
            return [event async for event in self._read(subject, start_seq=start, start_time=None, count=limit)]

    async def since(self, subject: str, *, start_seq: int | None, start_time: float | None,
                    limit: int) -> list[Event]:
        """At most ``limit`` stored events on ``subject`` from a stream sequence or a time on, oldest first."""
        async with self._errors():
            return [event async for event in self._read(subject, start_seq=start_seq, start_time=start_time,
                                                         count=limit)]

    async def _start_of_last(self, subject: str, limit: int) -> int:
        """The stream sequence from which exactly ``limit`` events on ``subject`` are stored (binary search)."""
        info = await self._js.stream_info(self.stream)
        low, high = max(1, info.state.first_seq), info.state.last_seq + 1  # pending(low) >= limit > pending(high)
        while high - low > 1:
            middle = (low + high) // 2
            if await self._pending(subject, middle) >= limit:
                low = middle
            else:
                high = middle
        return low

    async def _pending(self, subject: str, start_seq: int | None) -> int:
        """How many stored events on ``subject`` have a sequence >= ``start_seq`` (all when None)."""
        info = await self._js.add_consumer(self.stream, self._config(subject, start_seq, None))
        await self._delete(info.name)
        return info.num_pending or 0

    async def _read(self, subject: str, *, start_seq: int | None, start_time: float | None,
                    count: int) -> AsyncIterator[Event]:
        """Up to ``count`` events from the start, stopping at what was stored when the read began."""
        if count <= 0:
            return
        info = await self._js.add_consumer(self.stream, self._config(subject, start_seq, start_time))
        try:
            remaining = min(count, info.num_pending or 0)
            if remaining == 0:
                return
            psub = await self._js.pull_subscribe_bind(consumer=info.name, stream=self.stream)
            try:
                while remaining > 0:
                    try:
                        msgs = await psub.fetch(min(remaining, _FETCH_BATCH), timeout=self._timeout)
                    except nats.errors.TimeoutError:
                        return  # the rest aged out or was removed by a limit while we read
                    for msg in msgs:
                        yield self._event(msg)
                    remaining -= len(msgs)
            finally:
                with contextlib.suppress(Exception):
                    await psub.unsubscribe()
        finally:
            await self._delete(info.name)

    def _event(self, msg: Msg) -> Event:
        meta = msg.metadata
        seq = meta.sequence.stream
        headers = msg.headers
        msg_id = headers.get(MSG_ID) if headers else None
        return read_event(msg.subject[self._name_start:], msg.data, default_id=msg_id or f"seq-{seq}",
                          timestamp=meta.timestamp.timestamp(), seq=seq)

    def _config(self, subject: str, start_seq: int | None, start_time: float | None) -> ConsumerConfig:
        config = ConsumerConfig(
            name=self._nc.new_inbox().rsplit(".", 1)[-1],
            filter_subject=subject,
            ack_policy=AckPolicy.NONE,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=max(30.0, self._timeout * 2),  # a backstop: reads delete their consumer
        )
        if start_seq is not None:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = max(1, start_seq)
        elif start_time is not None:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = datetime.fromtimestamp(start_time, UTC)
        return config

    async def _delete(self, name: str) -> None:
        with contextlib.suppress(Exception):
            await self._js.delete_consumer(self.stream, name)

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        """JetStream and connection failures as the API's typed errors."""
        try:
            yield
        except nats.js.errors.NotFoundError as exc:
            raise HistoryUnavailableError(f"the events stream {self.stream} does not exist") from exc
        except (nats.errors.TimeoutError, builtins.TimeoutError) as exc:
            raise TimeoutError(f"reading event history timed out after {self._timeout:g}s: {exc!r}",
                               details={"timeout": self._timeout}) from exc
        except nats.js.errors.NoStreamResponseError as exc:
            raise HistoryUnavailableError("JetStream did not answer (is it enabled?)") from exc
        except (nats.errors.ConnectionClosedError, nats.errors.NoRespondersError) as exc:
            raise ConnectionError(f"cannot read event history: {exc!r}") from exc
