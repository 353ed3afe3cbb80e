"""Presence hygiene: sessions held by a gateway instance that no longer answers NATS micro pings are reaped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS

from proto.subjects import Subjects
from services.chat.room import ChatState

log = logging.getLogger("raaf.chat.presence")

Leave = Callable[[str, str, str], Awaitable[None]]  # (room id, user, session)


class PresenceReaper:
    """A gateway that stops cleanly leaves its rooms itself; one killed leaves ghosts, which this removes.

    Every ``interval`` seconds it pings the gateways (``$SRV.PING.<prefix>-gateway``) and collects the
    instances that answer; sessions whose ``owner`` missed ``misses`` pings in a row leave their rooms.
    Sessions without an owner (joined over NATS directly) are never reaped.
    """

    def __init__(self, nc: NATS, subjects: Subjects, state: ChatState, *, interval: float, leave: Leave,
                 misses: int = 3, reply_window: float = 0.5, service: str = "gateway") -> None:
        self.nc = nc
        self.state = state
        self.interval = interval
        self.leave = leave
        self.misses = misses
        self.reply_window = reply_window
        self.ping_subject = f"$SRV.PING.{subjects.prefix}-{service}"
        self._missed: dict[str, int] = {}
        self.reaped = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:
                log.exception("presence check failed")

    async def check(self) -> int:
        """One round: ping, count misses, reap; returns how many sessions were reaped."""
        owners = {s.owner for room in self.state.rooms.values() for s in room.sessions.values() if s.owner}
        if not owners:
            self._missed.clear()
            return 0
        alive = await self.alive()
        for owner in list(self._missed):
            if owner not in owners or owner in alive:
                del self._missed[owner]
        gone = set()
        for owner in owners - alive:
            self._missed[owner] = self._missed.get(owner, 0) + 1
            if self._missed[owner] >= self.misses:
                gone.add(owner)
        reaped = 0
        for room in list(self.state.rooms.values()):
            for session in [s for s in room.sessions.values() if s.owner in gone]:
                await self.leave(room.id, session.user, session.session)
                reaped += 1
        for owner in gone:
            self._missed.pop(owner, None)
        if reaped:
            log.warning("reaped %d sessions of vanished gateways", reaped, extra={"gateways": sorted(gone)})
        self.reaped += reaped
        return reaped

    async def alive(self) -> set[str]:
        """Instances of the gateway service that answer a ping within the reply window."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        instances: set[str] = set()
        try:
            await self.nc.publish(self.ping_subject, b"", reply=inbox)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.reply_window
            while (left := deadline - loop.time()) > 0:
                try:
                    msg = await sub.next_msg(timeout=left)
                except Exception:
                    break
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    instance = json.loads(msg.data).get("metadata", {}).get("instance")
                    if isinstance(instance, str):
                        instances.add(instance)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return instances
