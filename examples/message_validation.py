"""Best Practices / Message Validation: reject bad messages with a typed error, process the rest."""

import asyncio
from typing import Any

import raaf
from proto.errors import ErrorCode


async def main() -> None:
    websocket_server = raaf.WebSocketServer(port=0, host="127.0.0.1")
    processed: list[str] = []

    # Validate all incoming messages (the gateway already rejects non-JSON, non-objects and messages without a
    # type before hooks run: WEBSOCKET_MAX_MESSAGE_SIZE, bad JSON ... answer {"type": "error", ...})
    @websocket_server.on_message
    async def validate(client: Any, message: dict[str, Any]) -> None:
        ref = message.get("id")
        match message["type"]:
            case "chat_message":
                content = message.get("content")
                if not isinstance(content, str) or len(content) > 2000:
                    await client.send_error(ErrorCode.BAD_REQUEST, "Invalid content", ref=ref)
                    return
            case "agent_stream_request":
                if not isinstance(message.get("query"), str) or not message.get("agent_id"):
                    await client.send_error(ErrorCode.BAD_REQUEST, "Invalid streaming request", ref=ref)
                    return
        # Process valid message
        processed.append(message["type"])
        await client.send_message({"type": "ack", "ref": ref})

    await websocket_server.start()
    async with raaf.WebSocketClient(websocket_server.url, auto_reconnect=False) as client:
        for message in ({"type": "chat_message", "content": "hello"},
                        {"type": "chat_message", "content": "x" * 2001},
                        {"type": "agent_stream_request", "query": "hi"},
                        {"type": "agent_stream_request", "query": "hi", "agent_id": "a1"}):
            try:
                await client.request(message)
                print(f"accepted: {message['type']}")
            except raaf.BadRequestError as error:
                print(f"rejected: {message['type']}: {error.message}")
        # The gateway's own message types are validated before any hook: a typed error, never a crash
        try:
            await client.request({"type": "subscribe", "channel": 42})
        except raaf.ProtocolError as error:
            print(f"rejected by the gateway: {type(error).__name__} {error.code.value}")
    print(f"processed: {processed}")
    await websocket_server.stop()


asyncio.run(main())
