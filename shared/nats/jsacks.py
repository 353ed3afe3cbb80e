"""JetStream publishes acknowledged on one shared inbox: no request, task or inbox per message (the hot path)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Final

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

_NO_RESPONDERS: Final = "503"


class _AckError(msgspec.Struct, frozen=True):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _Ack(msgspec.Struct, frozen=True):
    duplicate: bool = False
    error: _AckError | None = None


_ack_decoder: Final = msgspec.json.Decoder(_Ack)


class AckInbox:
    """``publish()`` stores a message in JetStream and returns whether it was a duplicate (``Nats-Msg-Id``).

    nats-py's ``js.publish`` is a request per message (a new future, a ``wait_for`` task and timer, a
    reply token); at thousands of tokens per second that is most of a runner's NATS cost. Here every ack comes
    to one wildcard inbox and resolves its waiter directly. Errors keep nats-py's types.
    """

    def __init__(self, nc: NATS, *, timeout: float = 5.0) -> None:
        self.nc = nc
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._waiting: dict[bytes, asyncio.Future[Msg]] = {}
        self._prefix = ""
        self._sub: Subscription | None = None

    async def start(self) -> None:
        inbox = self.nc.new_inbox()
        self._prefix = f"{inbox}."
        self._sub = await self.nc.subscribe(f"{inbox}.*", cb=self._on_ack, pending_msgs_limit=-1,
                                            pending_bytes_limit=-1)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(nats.errors.ConnectionClosedError())
        self._waiting.clear()

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> bool:
        """Store ``payload``; True if JetStream reports it as a duplicate of an earlier message id."""
        if self._sub is None:
            raise RuntimeError("AckInbox.start() first")
        token = str(next(self._ids))
        waiter: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        key = token.encode()
        self._waiting[key] = waiter
        try:
            await self.nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
            try:
                async with asyncio.timeout(self.timeout):
                    msg = await waiter
            except TimeoutError:
                raise nats.errors.TimeoutError from None
        finally:
            self._waiting.pop(key, None)
        if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
            raise nats.js.errors.NoStreamResponseError
        ack = _ack_decoder.decode(msg.data)
        if ack.error is not None:
            raise nats.js.errors.APIError(code=ack.error.code, err_code=ack.error.err_code,
                                          description=ack.error.description)
        return ack.duplicate

    async def _on_ack(self, msg: Msg) -> None:
        waiter = self._waiting.get(msg.subject.encode()[len(self._prefix):])
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)
