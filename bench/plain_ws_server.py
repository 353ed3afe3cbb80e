"""The anchor for bench_gateway.py: a plain aiohttp WebSocket server, written the usual way.

Channels over NATS like the gateway (one NATS subscription per channel), a ``send_str`` loop over
the channel's sockets, aiohttp's own heartbeat and per-connection compression; it runs on the event loop
``RAAF_EVENT_LOOP`` names, as the gateway does. Usage: plain_ws_server.py PORT NATS_URL COMPRESS(0|1)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys

import nats
from aiohttp import WSMsgType, web
from nats.aio.msg import Msg

from shared.service.eventloop import loop_name, run

_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

PORT, NATS_URL, COMPRESS = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
channels: dict[str, set[web.WebSocketResponse]] = {}
everyone: set[web.WebSocketResponse] = set()
state: dict[str, nats.NATS] = {}


async def send_all(sockets: set[web.WebSocketResponse], text: str) -> None:
    for ws in list(sockets):
        with contextlib.suppress(ConnectionError):
            await ws.send_str(text)


async def subscribe(name: str, ws: web.WebSocketResponse) -> None:
    members = channels.get(name)
    if members is None:
        members = channels[name] = set()

        async def deliver(msg: Msg) -> None:
            await send_all(members, msg.data.decode())

        await state["nc"].subscribe(f"plain.channel.{name}", cb=deliver)
        await state["nc"].flush()
    members.add(ws)


async def handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=COMPRESS, heartbeat=30)
    await ws.prepare(request)
    everyone.add(ws)
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            if message.get("type") == "subscribe":
                await subscribe(message["channel"], ws)
            elif message.get("type") == "publish":
                await ws.send_str(msg.data)  # echo: the traffic exercises this connection's compressor
            if "id" in message:
                await ws.send_str(json.dumps({"type": "ack", "ref": message["id"]}, separators=(",", ":")))
    finally:
        everyone.discard(ws)
        for members in channels.values():
            members.discard(ws)
    return ws


async def main() -> None:
    state["nc"] = await nats.connect(NATS_URL)

    async def broadcast(msg: Msg) -> None:
        await send_all(everyone, msg.data.decode())

    await state["nc"].subscribe("plain.broadcast", cb=broadcast)
    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", PORT).start()
    print(f"ready {loop_name()}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    run(main(), os.environ.get("RAAF_EVENT_LOOP", "auto"))
