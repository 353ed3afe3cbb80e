"""A small WebSocket chat client for tests: requests answered by ``ref``, room events queued in arrival order."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable
from typing import Any

import aiohttp


class WsChat:
    """One real WebSocket connection to the gateway."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, welcome: dict[str, Any]) -> None:
        self.ws = ws
        self.welcome = welcome
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.others: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = [welcome]  # everything, in arrival order
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, gateway_http: str, token: str | None = None) -> WsChat:
        url = gateway_http.replace("http", "ws", 1) + "/ws" + (f"?token={token}" if token else "")
        ws = await session.ws_connect(url)
        welcome = await ws.receive_json(timeout=5)
        assert welcome["type"] == "welcome", welcome
        return cls(ws, welcome)

    @property
    def connection_id(self) -> str:
        return str(self.welcome["connection_id"])

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            self.received.append(message)
            ref = message.get("ref")
            if ref is not None and ref in self._waiting and message["type"] != "chat_event":
                self._waiting.pop(ref).set_result(message)
            elif message["type"] == "chat_event":
                self.events.put_nowait(message)
            else:
                self.others.append(message)

    async def call(self, kind: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Send a message with a fresh id; its answer (reply, ``ack`` or ``error``)."""
        ref = str(next(self._ids))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = future
        await self.ws.send_json({"type": kind, "id": ref, **fields})
        return await asyncio.wait_for(future, timeout)

    async def ok(self, kind: str, **fields: Any) -> dict[str, Any]:
        reply = await self.call(kind, **fields)
        assert reply["type"] != "error", reply
        return reply

    async def event(self, timeout: float = 5.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def events_until(self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0
                           ) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while not done(seen):
                seen.append(await self.events.get())
        return seen

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"]["type"] for e in events]


def agent_messages(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["event"] for e in events if e["event"]["type"] == "agent_message"]


def answered(count: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda events: len(agent_messages(events)) >= count


def of_type(kind: str, count: int = 1) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda events: sum(e["event"]["type"] == kind for e in events) >= count
