"""Bounded run concurrency: ``pool_size`` slots, ``queue_size`` places to wait, ``overloaded`` beyond."""

from __future__ import annotations

import asyncio
import collections

from services.agent_runner.errors import pool_overloaded


class RunPool:
    """Admission is synchronous (an answer at once); a queued run awaits its slot in arrival order."""

    def __init__(self, pool_size: int, queue_size: int) -> None:
        self.pool_size = pool_size
        self.queue_size = queue_size
        self.active = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def admit(self) -> asyncio.Future[None] | None:
        """Take a slot (None: run now) or a queue place (await the future); ``RunError`` (overloaded) if neither."""
        if self.active < self.pool_size:
            self.active += 1
            return None
        if len(self._waiting) < self.queue_size:
            place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append(place)
            return place
        raise pool_overloaded(self.pool_size, self.queue_size)

    def withdraw(self, place: asyncio.Future[None]) -> None:
        """A queued run left before its turn (cancelled): give its place back."""
        if self.detach(place):
            place.cancel()
        elif place.done() and not place.cancelled():
            self.release()  # it had already been handed a slot

    def detach(self, place: asyncio.Future[None]) -> bool:
        """Take a waiting run out of line without ending it (while it is being handed over); False if it
        is no longer waiting."""
        try:
            self._waiting.remove(place)
        except ValueError:
            return False
        return True

    def reattach(self, place: asyncio.Future[None]) -> None:
        """Put a detached run back at the front of the line, or start it if a slot freed meanwhile."""
        if self.active < self.pool_size:
            self.active += 1
            place.set_result(None)
        else:
            self._waiting.appendleft(place)

    def release(self) -> None:
        """A run ended: hand its slot to the first one waiting, or free it."""
        while self._waiting:
            place = self._waiting.popleft()
            if not place.done():
                place.set_result(None)
                return
        self.active -= 1
