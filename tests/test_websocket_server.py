"""raaf.WebSocketServer: the seed's hooks and server-side API over an in-process gateway."""

from __future__ import annotations

from typing import Any

import pytest

import raaf
import raaf.errors  # a submodule: `import raaf` alone does not load it
from services.gateway import Connection
from shared.devstack.servers import NatsServer, free_port
from tests.support.env import unique_prefix
from tests.support.waiting import eventually


async def test_hooks_see_connections_app_messages_errors_and_disconnections(nats_server: NatsServer) -> None:
    server = raaf.WebSocketServer(port=0, host="127.0.0.1", nats_url=nats_server.url, prefix=unique_prefix())
    seen: list[tuple[str, Any]] = []

    @server.on_connection
    def hello(client: Connection) -> None:
        client.set_metadata("user_id", "user123")
        seen.append(("connect", client.id))

    @server.on_message
    async def chat(client: Connection, message: dict[str, Any]) -> None:
        if message.get("content") == "boom":
            raise ValueError("application bug")
        seen.append(("message", (client.get_metadata("user_id"), message)))
        await server.broadcast({"type": "announcement", "text": message["content"]}, channel="general")

    @server.on_error
    def oops(client: Connection, error: BaseException) -> None:
        seen.append(("error", type(error).__name__))

    @server.on_disconnection
    async def bye(client: Connection) -> None:
        seen.append(("disconnect", client.id))

    await server.start()
    client = raaf.WebSocketClient(server.url, auto_reconnect=False)
    got: list[dict[str, Any]] = []
    client.on_message(got.append)
    announcements: list[Any] = []
    client.on_message(lambda m: announcements.append(m["data"]) if m["type"] == "message" else None)
    try:
        await client.connect()
        assert server.connection_count == 1
        await server.subscribe_to_channel(client.connection_id or "", "general")
        await client.send_message({"type": "chat_message", "content": "Hello server!"})
        await eventually(lambda: announcements == [{"type": "announcement", "text": "Hello server!"}])
        assert ("message", ("user123", {"type": "chat_message", "content": "Hello server!", "id": "c1"})) in seen
        with pytest.raises(raaf.errors.InternalError):
            await client.request({"type": "chat_message", "content": "boom"})
        with pytest.raises(raaf.errors.BadRequestError):
            await client.request({"type": "subscribe"})
        await server.broadcast({"type": "maintenance", "at": "soon"})  # no channel: every client
        await eventually(lambda: {"type": "maintenance", "at": "soon"} in got)
        assert await server.send(client.connection_id or "", {"type": "direct", "n": 1})
        with pytest.raises(raaf.errors.NotFoundError):
            await server.send("nobody", {"type": "direct"})
        stats = server.stats()
        assert stats["connections"] == 1 and stats["running"] is True
    finally:
        await client.close()
        await eventually(lambda: server.connection_count == 0)
        await server.stop()
    kinds = [kind for kind, _ in seen]
    assert kinds.count("connect") == 1 and kinds.count("disconnect") == 1
    assert ("error", "ValueError") in seen and ("error", "BadRequestError") in seen


async def test_the_server_starts_its_own_nats_when_none_is_reachable() -> None:
    server = raaf.WebSocketServer(port=0, host="127.0.0.1", nats_url=f"nats://127.0.0.1:{free_port()}")
    await server.start()
    try:
        client = raaf.WebSocketClient(server.url)
        got: list[dict[str, Any]] = []
        client.on_message(got.append)
        async with client:
            await client.subscribe("solo")
            await client.publish("solo", "works")
            await eventually(lambda: any(m.get("data") == "works" for m in got))
    finally:
        await server.stop()
