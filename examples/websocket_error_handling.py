"""Error Handling / WebSocket Error Handling: the gateway's errors arrive in on_error as the seed's classes."""

import asyncio
from typing import Any

import raaf


async def main() -> None:
    # A gateway in this process with a small rate limit, so the example can run into it
    server = raaf.WebSocketServer(port=0, host="127.0.0.1", env={"WEBSOCKET_RATE_LIMIT": "5",
                                                                  "WEBSOCKET_RATE_BURST": "5"})
    seen: list[str] = []

    @server.on_error
    async def on_error(client: Any, error: BaseException) -> None:
        match error:
            case raaf.ProtocolError():
                seen.append(f"Protocol error ({type(error).__name__}): {error.code.value}")
            case raaf.RateLimitError():
                seen.append(f"Rate limited: {error.code.value}")
            case raaf.ConnectionError():
                seen.append("Connection error")
            case raaf.TimeoutError():
                seen.append("Timeout error")
            case _:
                seen.append(f"Unknown error: {type(error).__name__}")

    await server.start()
    client = raaf.WebSocketClient(server.url, auto_reconnect=False)
    await client.connect()

    # The client sees the same errors, raised as the same classes
    try:
        await client.request({"type": "subscribe", "channel": "x" * 1000})  # over the channel name limit
        print("client: subscribed")
    except raaf.StreamingError as error:
        print(f"client: {type(error).__name__} {error.code.value}")
    try:
        await client.request({"type": "subscribe"})  # no channel
    except raaf.ProtocolError as error:
        print(f"client: {type(error).__name__} {error.code.value}")
    try:
        for _ in range(10):
            await client.ping()
    except raaf.RateLimitError as error:
        print(f"client: {type(error).__name__} retry_after known: {error.retry_after is not None}")

    await asyncio.sleep(0.2)
    print("server on_error:")
    print("\n".join(f"  {line}" for line in sorted(set(seen))))
    await client.close()
    await server.stop()


asyncio.run(main())
