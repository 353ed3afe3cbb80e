"""Best Practices / Rate Limiting: the gateway's per-connection limit, and a custom one in a hook."""

import asyncio
import time
from collections import defaultdict
from typing import Any

import raaf
from proto.errors import ErrorCode

MAX_PER_MINUTE = 3


async def main() -> None:
    # Built in: WEBSOCKET_RATE_LIMIT messages per minute per connection (burst WEBSOCKET_RATE_BURST)
    server = raaf.WebSocketServer(port=0, host="127.0.0.1", env={"WEBSOCKET_RATE_LIMIT": "60"})

    # Custom: at most MAX_PER_MINUTE chat messages per user per minute, across reconnects
    rate_limits: dict[str, list[float]] = defaultdict(list)

    def rate_limit_exceeded(user: str) -> bool:
        now = time.monotonic()
        rate_limits[user] = [t for t in rate_limits[user] if t > now - 60]  # Last minute
        return len(rate_limits[user]) >= MAX_PER_MINUTE

    @server.on_message
    async def handle_message(client: Any, message: dict[str, Any]) -> None:
        user = message.get("user", "anonymous")
        if rate_limit_exceeded(user):
            await client.send_error(ErrorCode.RATE_LIMITED, "Rate limit exceeded", ref=message.get("id"),
                                    details={"retry_after": 60})
            return
        rate_limits[user].append(time.monotonic())
        await client.send_message({"type": "ack", "ref": message.get("id")})

    await server.start()
    async with raaf.WebSocketClient(server.url, auto_reconnect=False) as client:
        for n in range(1, 6):
            try:
                await client.request({"type": "chat_message", "user": "u1", "content": f"message {n}"})
                print(f"message {n}: accepted")
            except raaf.RateLimitError as error:
                print(f"message {n}: {error.message} (retry after {error.retry_after:g}s)")
    await server.stop()


asyncio.run(main())
