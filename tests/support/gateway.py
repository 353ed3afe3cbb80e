"""Helpers for the gateway tests: settings, connecting, reading typed messages, tokens, raw sockets."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
import uuid
from typing import Any

import aiohttp
import jwt
import msgspec

from services.gateway import GatewayApp, GatewaySettings
from tests.support.env import service_env, unique_prefix

SECRET = "test-secret-that-is-long-enough-for-hs256"


def gateway_env(nats_url: str, redis_url: str = "redis://127.0.0.1:1/0", **extra: str) -> dict[str, str]:
    env = service_env(nats_url, redis_url, RAAF_PREFIX=unique_prefix(), WEBSOCKET_RATE_LIMIT="0",
                      GATEWAY_PEER_INTERVAL="0.5")
    env.update(extra)
    return env


def make_gateway(nats_url: str, **extra: str) -> GatewayApp:
    return GatewayApp(GatewaySettings.from_env(gateway_env(nats_url, **extra)))


def ws_url(app: GatewayApp, query: str = "") -> str:
    return f"{app.http_url.replace('http://', 'ws://')}/ws{query}"


def token(sub: str = "alice", *, secret: str = SECRET, expires_in: float | None = 3600, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, **claims}
    if expires_in is not None:
        payload["exp"] = int(time.time() + expires_in)
    return jwt.encode(payload, secret, algorithm="HS256")


async def connect(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[aiohttp.ClientWebSocketResponse,
                                                                                dict[str, Any]]:
    """Open ``/ws`` and read the ``welcome``."""
    ws = await session.ws_connect(url, **kw)
    welcome = await receive(ws)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type} {msg.data!r} {msg.extra!r}"
    value: dict[str, Any] = msgspec.json.decode(msg.data)
    return value


async def receive_type(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next message of type ``kind`` (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        message = await receive(ws, max(0.01, deadline - time.monotonic()))
        if message["type"] == kind:
            return message


async def request(ws: aiohttp.ClientWebSocketResponse, message: dict[str, Any], timeout: float = 5.0
                  ) -> dict[str, Any]:
    """Send with a fresh id and return the answer carrying it as ``ref``."""
    ref = uuid.uuid4().hex[:8]
    await ws.send_json({**message, "id": ref})
    deadline = time.monotonic() + timeout
    while True:
        reply = await receive(ws, max(0.01, deadline - time.monotonic()))
        if reply.get("ref") == ref:
            return reply


async def expect_close(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> int | None:
    """Read until the server closes; the code in its close frame."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        if msg.type is aiohttp.WSMsgType.CLOSE:
            return int(msg.data)
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return ws.close_code
        if msg.type is aiohttp.WSMsgType.ERROR:
            return ws.close_code


class RawWebSocket:
    """A hand-rolled client that answers nothing on its own: it can play dead or stop reading."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: bytes) -> None:
        self.reader = reader
        self.writer = writer
        self.response = response

    @classmethod
    async def open(cls, host: str, port: int, *, extensions: str = "", rcvbuf: int | None = None) -> RawWebSocket:
        """``rcvbuf`` pins the socket's receive buffer before connecting (no autotuning) and reads little:
        a client whose backlog cannot hide in kernel buffers."""
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        else:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=rcvbuf)
        key = base64.b64encode(os.urandom(16)).decode()
        ext = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n".encode()
        )
        response = await reader.readuntil(b"\r\n\r\n")
        assert b" 101 " in response.split(b"\r\n")[0], response
        return cls(reader, writer, response)

    def send_text(self, payload: bytes, opcode: int = 0x1) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        n = len(payload)
        if n < 126:
            header = bytes([0x80 | opcode, 0x80 | n])
        elif n < 65536:
            header = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            header = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
        self.writer.write(header + mask + masked)

    async def read_frame(self, timeout: float = 5.0) -> tuple[int, int, bytes]:
        """(first byte, opcode, payload) of the next frame."""
        async def read() -> tuple[int, int, bytes]:
            head = await self.reader.readexactly(2)
            n = head[1] & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            return head[0], head[0] & 0x0F, await self.reader.readexactly(n)

        return await asyncio.wait_for(read(), timeout)

    async def close_codes(self, timeout: float = 5.0) -> list[int]:
        """Read past whatever was queued up to the server's close frame: ``[its code]``, or ``[]`` if the
        connection ended without one."""
        while True:
            try:
                _, opcode, payload = await self.read_frame(timeout=timeout)
            except (asyncio.IncompleteReadError, ConnectionError):
                return []
            if opcode == 0x8:
                return [int.from_bytes(payload[:2], "big")]

    def close(self) -> None:
        self.writer.transport.abort()
