"""A lean nats-py publish for plain messages (no reply, no headers) on subjects already checked by the caller.

nats-py's ``publish`` does generic work on every call: subject validation, three status properties, two more
coroutine frames (``_send_publish``, ``_send_command``) and a PUB line built from an f-string and two
concatenations. For a hot publisher on known subjects, :class:`LeanPublish` writes the same PUB command into
the client's pending buffer the way ``_send_publish`` does (same buffer, so ordering with every other publish
on the connection is kept; same flusher kick and pending-size limit), with the ``PUB <subject> `` prefix built
once per subject. It touches nats-py's private attributes (pinned by ``uv.lock``; tests/test_nats_publish.py
covers it), so the client's shape is checked once and anything unexpected falls back to ``nc.publish``; so
does every publish while the client is not plainly connected (reconnecting, draining, closed), which keeps
nats-py's own buffering and errors for those states.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

_PREFIX_CACHE_SIZE = 4096
_CONNECTED = NATS.CONNECTED


def lean_shape(nc: NATS) -> bool:
    """Whether ``nc`` (connected) has the private attributes :class:`LeanPublish` writes, with the types it expects."""
    try:
        stats = nc.stats
        return (_CONNECTED == 1 and isinstance(nc._pending, list) and isinstance(nc._pending_data_size, int)
                and isinstance(nc._max_pending_size, int) and isinstance(nc._max_payload, int)
                and isinstance(nc._flush_queue, asyncio.Queue) and callable(nc._flush_pending)
                and isinstance(nc._status, int) and isinstance(stats, dict)
                and isinstance(stats.get("out_msgs"), int) and isinstance(stats.get("out_bytes"), int))
    except AttributeError:
        return False


class LeanPublish:
    """``await publish(subject, payload)``: a plain publish on ``nc``, lean when the client's shape allows."""

    __slots__ = ("_prefixes", "lean", "nc", "publish")

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.lean = lean_shape(nc)
        self._prefixes: dict[str, bytes] = {}
        self.publish: Callable[[str, bytes], Awaitable[None]] = self._lean if self.lean else self._plain

    async def _plain(self, subject: str, payload: bytes) -> None:
        await self.nc.publish(subject, payload)

    async def _lean(self, subject: str, payload: bytes) -> None:
        nc: Any = self.nc
        if nc._status != _CONNECTED:
            # Reconnecting (buffer or OutboundBufferLimitError), draining, closed: nats-py decides.
            await nc.publish(subject, payload)
            return
        size = len(payload)
        if size > nc._max_payload:
            raise nats.errors.MaxPayloadError
        prefix = self._prefixes.get(subject)
        if prefix is None:
            if not subject:
                raise nats.errors.BadSubjectError
            if len(self._prefixes) >= _PREFIX_CACHE_SIZE:
                self._prefixes.clear()
            prefix = self._prefixes[subject] = f"PUB {subject}  ".encode()  # empty reply, as nats-py writes it
        command = b"%b%d\r\n%b\r\n" % (prefix, size, payload)
        nc._pending.append(command)
        nc._pending_data_size += len(command)
        stats = nc.stats
        stats["out_msgs"] += 1
        stats["out_bytes"] += size
        if nc._max_pending_size > 0 and nc._pending_data_size > nc._max_pending_size:
            await nc._flush_pending(force_flush=True)
        if nc._flush_queue.empty():
            await nc._flush_pending()
