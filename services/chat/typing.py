"""Typing indicators: notices on core NATS (never stored) that expire on their own after CHAT_TYPING_TIMEOUT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from proto.chat import TypingStarted, TypingStopped, chat_encoder, typing_decoder
from proto.subjects import Subjects

log = logging.getLogger("raaf.chat.typing")

StopReason = Literal["stopped", "expired", "sent", "left"]
_GRACE = 1.0  # seconds past its deadline an indicator of another replica is kept before it is dropped silently


@dataclass(slots=True)
class _Typing:
    deadline: float  # monotonic
    origin: str  # the replica that expires it (announces ``typing_stopped``)
    announced: float  # monotonic time of the last ``typing_started``


class TypingTracker:
    """Who types where; the replica that announced an indicator is the one that expires it.

    Every replica listens to every room's notices so any of them can say who is typing (in a join reply); an
    indicator of a replica that vanished is dropped silently once its deadline has passed.
    """

    def __init__(self, nc: NATS, subjects: Subjects, *, instance: str, timeout: float,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.nc = nc
        self.subjects = subjects
        self.instance = instance
        self.timeout = timeout
        self.clock = clock
        self.wall = wall
        self._typing: dict[tuple[str, str], _Typing] = {}
        self._wake = asyncio.Event()
        self._sub: Subscription | None = None
        self.on_expired: Callable[[], None] | None = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(self.subjects.chat_room_events_all, cb=self._on_notice)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    def typing_in(self, room_id: str) -> list[str]:
        now = self.clock()
        return [user for (room, user), t in self._typing.items() if room == room_id and t.deadline > now]

    @property
    def active(self) -> int:
        return len(self._typing)

    async def started(self, room_id: str, user: str) -> None:
        """The user types: announce it (again, at most every half timeout, so receivers' timers extend)."""
        now = self.clock()
        key = (room_id, user)
        current = self._typing.get(key)
        fresh = current is None or current.origin != self.instance or now - current.announced >= self.timeout / 2
        self._typing[key] = _Typing(deadline=now + self.timeout, origin=self.instance,
                                    announced=now if fresh else current.announced if current else now)
        self._wake.set()
        if fresh:
            await self._publish(room_id, TypingStarted(room_id=room_id, user=user, expires_in=self.timeout,
                                                       origin=self.instance, at=self.wall()))

    async def stopped(self, room_id: str, user: str, reason: StopReason = "stopped") -> bool:
        """The user stopped typing (or posted, or left): announce it if an indicator was on."""
        if self._typing.pop((room_id, user), None) is None:
            return False
        await self._publish(room_id, TypingStopped(room_id=room_id, user=user, reason=reason, at=self.wall()))
        return True

    def forget_room(self, room_id: str) -> None:
        for key in [key for key in self._typing if key[0] == room_id]:
            del self._typing[key]

    async def run(self) -> None:
        """Expire this replica's indicators at their deadlines; drop others' past deadline plus grace."""
        while True:
            now = self.clock()
            for key, t in list(self._typing.items()):
                if t.origin == self.instance and t.deadline <= now:
                    if self.on_expired is not None:
                        self.on_expired()
                    await self.stopped(key[0], key[1], "expired")
                elif t.origin != self.instance and t.deadline + _GRACE <= now:
                    self._typing.pop(key, None)
            deadlines = [t.deadline if t.origin == self.instance else t.deadline + _GRACE
                         for t in self._typing.values()]
            wait = max(0.01, min(deadlines) - self.clock()) if deadlines else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _publish(self, room_id: str, notice: TypingStarted | TypingStopped) -> None:
        try:
            await self.nc.publish(self.subjects.chat_room_events(room_id), chat_encoder.encode(notice))
        except Exception as exc:  # a notice lost while NATS reconnects is harmless: indicators expire anyway
            log.debug("typing notice not published: %s", exc)

    async def _on_notice(self, msg: Msg) -> None:
        try:
            notice = typing_decoder.decode(msg.data)
        except msgspec.DecodeError:
            return
        key = (notice.room_id, notice.user)
        match notice:
            case TypingStarted(origin=origin, expires_in=expires_in) if origin != self.instance:
                now = self.clock()
                self._typing[key] = _Typing(deadline=now + min(expires_in, self.timeout * 10), origin=origin,
                                            announced=now)
                self._wake.set()
            case TypingStopped():
                # Whoever announced it: a stop sent through another replica ends this replica's indicator too.
                self._typing.pop(key, None)
