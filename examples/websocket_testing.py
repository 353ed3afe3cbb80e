"""Testing / WebSocket Testing: a server in the test, a client talking to it (runs as a script or under pytest)."""

import asyncio
from typing import Any

import raaf


async def test_websocket_round_trip() -> list[dict[str, Any]]:
    # Test WebSocket server
    server = raaf.WebSocketServer(port=0, host="127.0.0.1")

    @server.on_message
    async def echo(client: Any, message: dict[str, Any]) -> None:
        await client.send_message({"type": "echo", "content": message["content"]})

    await server.start()
    client = raaf.WebSocketClient(server.url)
    received_messages: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    @client.on_message
    def collect(message: dict[str, Any]) -> None:
        received_messages.append(message)
        arrived.set()

    await client.connect()
    await client.send_message({"type": "test", "content": "hello"})
    await asyncio.wait_for(arrived.wait(), 5)  # rather than sleep(0.1)
    await client.close()
    await server.stop()

    assert received_messages
    assert received_messages[0] == {"type": "echo", "content": "hello"}
    return received_messages


if __name__ == "__main__":
    print(asyncio.run(test_websocket_round_trip()))
