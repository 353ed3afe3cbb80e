"""Quick Start and Core Components / 2. WebSocket Server: a gateway in this process with the seed's hooks,
channels and broadcast; a client connects to show it working."""

import asyncio
from typing import Any

import raaf

agent = raaf.Agent(name="assistant", instructions="You are helpful.")


async def main() -> None:
    # Create WebSocket server (port 0: any free port; NATS_URL from the environment or raaf.configure)
    server = raaf.WebSocketServer(port=0, host="127.0.0.1", max_connections=5000, heartbeat_interval=30)
    runner = raaf.Runner(agent)

    # Connection lifecycle events
    @server.on_connection
    async def connected(client: Any) -> None:
        print("New client connected")
        client.set_metadata("user_id", "user123")

    @server.on_disconnection
    async def disconnected(client: Any) -> None:
        print(f"Client disconnected (user_id={client.get_metadata('user_id')})")

    @server.on_error
    async def failed(client: Any, error: BaseException) -> None:
        print(f"Error from client: {type(error).__name__}")

    # Message handling: message types the gateway does not own itself come here
    @server.on_message
    async def message(client: Any, message: dict[str, Any]) -> None:
        match message["type"]:
            case "chat_message":
                # Process message with agent, streaming each chunk to the client
                async for chunk in runner.run(message["content"], stream=True):
                    if chunk.content:
                        await client.send_message({"type": "response_chunk", "content": chunk.content})
                await client.send_message({"type": "response_done"})
            case "join":
                await server.subscribe_to_channel(client.id, message["channel"])
                await client.send_message({"type": "joined_channel", "channel": message["channel"]})

    # Start server
    await server.start()
    print("WebSocket server running")

    # A client (the seed's examples leave this to a browser)
    received: list[dict[str, Any]] = []
    done = asyncio.Event()
    client = raaf.WebSocketClient(server.url)

    @client.on_message
    def show(message: dict[str, Any]) -> None:
        received.append(message)
        if message["type"] in ("response_done", "joined_channel", "message"):
            done.set()

    await client.connect()
    await client.send_message({"type": "chat_message", "content": "Hello server"})
    await asyncio.wait_for(done.wait(), 10)
    print("client got: " + "".join(m["content"] for m in received if m["type"] == "response_chunk"))

    # Channel support for room-based communication
    done.clear()
    await client.send_message({"type": "join", "channel": "general"})
    await asyncio.wait_for(done.wait(), 10)
    done.clear()
    await server.broadcast({"type": "announcement", "message": "Welcome to the chat!"}, channel="general")
    await asyncio.wait_for(done.wait(), 10)
    print(f"client got on general: {[m['data'] for m in received if m['type'] == 'message']}")
    print(f"connections: {server.connection_count}")

    await client.close()
    await asyncio.sleep(0.2)
    await runner.close()
    await server.stop()


asyncio.run(main())
