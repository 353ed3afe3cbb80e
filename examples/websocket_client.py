"""Advanced Usage / WebSocket Client: reconnecting client, channels, messages and an agent stream."""

import asyncio
from typing import Any

import raaf


async def main() -> None:
    gateway = str(raaf.configuration().platform.gateway_url)  # RAAF_GATEWAY_URL; `make run`: port 8080
    client = raaf.WebSocketClient(
        gateway.replace("http", "ws", 1) + "/ws",
        auto_reconnect=True,
        max_reconnect_attempts=5,
        reconnect_delay=2.0,
    )
    got_message = asyncio.Event()

    # Connection management
    @client.on_connect
    def connected() -> None:
        print("Connected to server")
        # client.authenticate(token="user_token") when the gateway has auth on (GATEWAY_AUTH_MODE)

    @client.on_disconnect
    def disconnected(*_: Any) -> None:
        print("Disconnected from server")

    @client.on_reconnect
    def reconnecting(attempt: int) -> None:
        print(f"Reconnecting (attempt {attempt})")

    # Message handling
    @client.on_message
    def handle(message: dict[str, Any]) -> None:
        match message["type"]:
            case "message":
                print(f"on {message['channel']}: {message['data']}")
                got_message.set()
            case "error":
                print(f"error: {message['code']}")

    # Connect and subscribe
    await client.connect()
    await client.subscribe("general")
    await client.subscribe("notifications")

    # Send messages
    await client.publish("general", {"type": "chat_message", "content": "Hello server!"})
    await asyncio.wait_for(got_message.wait(), 10)

    # Start agent streaming
    text = ""
    async for event in client.start_agent_stream("assistant", "Tell me about streaming"):
        if event["type"] == "run_text_delta":
            text += event["delta"]
    print(f"agent stream: {text}")
    await client.close()


asyncio.run(main())
